"""The openEO process graph of the producer, its job options, and a check against the official processes.

The graph (built with the openeo client, no connection needed)::

    load_collection(SENTINEL2_L2A, the model's bands (B02 B03 B04 B08 B11) + SCL, extent, eo:cloud_cover <= N)
      -> mask(data, SCL in {3, 8, 9, 10})              # reduce_dimension(bands, array_element/eq/or)
      -> apply_neighborhood(run_udf(openeo_udf/udf.py), 128 x 128 px, overlap 0, whole t axis)
      -> rename_labels(bands -> code_000 .. code_{C-1}, valid_fraction[, preview_mse])
      [-> resample_spatial(resolution = 10 m x stride, method "near")]   # --save-at latent
      -> save_result(netCDF | GTiff)

The band names are set twice: by the UDF's ``apply_metadata`` (an experimental hook that not
every backend calls) and by ``rename_labels`` after the UDF, with ``target`` only, so that the
names do not rest on the hook alone (the WorldCereal pattern; the openeo client's metadata, which
openeo-geopyspark-driver uses, renames by position without comparing labels).

Dependencies reach the workers through the job option
``udf-dependency-archives: ["URL#geocodec-deps"]`` (see :func:`job_options` and
:func:`geocodec.cli.packaging.build_udf_archive`); it is not part of the process graph.
"""

from __future__ import annotations

import json
from pathlib import Path

from geocodec.codecs.bands import SCL_BAND, model_bands
from geocodec.producer.chunks import output_band_names
from geocodec.errors import InputError
from geocodec.producer.radiometry import udf_context

COLLECTION = "SENTINEL2_L2A"
DEPS_DIR = "geocodec-deps"
CHUNK_PX = 128
FORMATS = {"netcdf": "netCDF", "gtiff": "GTiff"}


def udf_path() -> Path:
    """openeo_udf/udf.py: installed beside the geocodec package (wheel, editable install, source tree)."""
    from geocodec.resources import package_data_dir

    p = package_data_dir("openeo_udf") / "udf.py"
    if not p.is_file():
        raise InputError("openeo_udf/udf.py not found beside the geocodec package; pass --udf-url", source=str(p))
    return p


def udf_code() -> str:
    """The source text of openeo_udf/udf.py, embedded in the graph when no ``udf_url`` is given."""
    return udf_path().read_text()


def build_graph(bbox, time, *, crs: int | str | None = None, quality: int = 5, cloud_cover: float | None = None,
                udf_url: str | None = None, code: str | None = None, model: str | None = None,
                collection: str = COLLECTION, chunk_px: int = CHUNK_PX, layout: str = "input",
                save_at: str = "input", stride: int = 8, resolution: float = 10.0, fmt: str = "netCDF",
                threads: int = 1, snap: bool = True, scale: float | None = None, offset: float | None = None,
                check_inputs: bool = True, quality_figure: bool = True, refine: int = 0) -> dict:
    """The process graph ``{"process_graph": {...}}`` of one producer job.

    ``bbox``: west, south, east, north in ``crs`` (EPSG code; default 4326).
    With a projected ``crs`` and ``snap``, the box is widened to multiples of
    ``chunk_px * resolution`` so chunk origins (and so tiles) fall on one
    grid in every job. ``save_at="latent"`` appends ``resample_spatial`` with
    ``method="near"`` to keep one pixel per latent cell (needs the backend to
    keep the cube's upper-left origin; ``input`` is exact everywhere).
    ``quality_figure`` False leaves out the UDF's ``preview_mse`` band (the files' ``preview_psnr``)
    and its preview-decoder pass. ``refine`` > 0 asks the UDF for that many steps of encode-time
    refinement per tile (:mod:`geocodec.producer.refine`; the backend's UDF environment needs torch).
    """
    from openeo import UDF
    from openeo.rest.datacube import DataCube

    west, south, east, north = (float(v) for v in bbox)
    if not (west < east and south < north):
        raise InputError(f"bbox {bbox} is empty or inverted (want west,south,east,north)", field="bbox")
    epsg = int(str(crs).upper().replace("EPSG:", "")) if crs is not None else 4326
    if snap and epsg != 4326:
        g = chunk_px * resolution
        west, south = g * (west // g), g * (south // g)
        east, north = -g * (-east // g), -g * (-north // g)
    extent = {"west": west, "south": south, "east": east, "north": north}
    if epsg != 4326:
        extent["crs"] = epsg
    start, end = time
    fmt = FORMATS.get(str(fmt).lower(), fmt)
    if layout not in ("input", "latent") or save_at not in ("input", "latent"):
        raise InputError("layout and save_at are 'input' or 'latent'", field="layout")

    cube = DataCube.load_collection(collection, connection=None, spatial_extent=extent,
                                    temporal_extent=[start, end], bands=list(model_bands(model)) + [SCL_BAND],
                                    max_cloud_cover=cloud_cover)
    scl = cube.band(SCL_BAND)
    cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    cube = cube.mask(cloud)
    context = {"quality": int(quality), "layout": layout, "threads": int(threads)}
    if model:
        context["model"] = model
    if scale is not None or offset is not None:   # reflectance = (DN + offset) / scale; the UDF's default is DN/10000
        context.update(udf_context(scale, offset))
    if not check_inputs:
        context["check_inputs"] = False
    if not quality_figure:
        context["quality_figure"] = False
    if refine:
        context["refine"] = int(refine)
    if udf_url:
        # run_udf accepts "source code, an absolute URL or a path"; a URL is passed through as is
        udf = UDF(code=udf_url, runtime="Python", context=context)
    else:
        udf = UDF(code=code or udf_code(), runtime="Python", context=context)
    cube = cube.apply_neighborhood(
        process=udf,
        size=[{"dimension": "x", "unit": "px", "value": chunk_px}, {"dimension": "y", "unit": "px", "value": chunk_px}],
        overlap=[{"dimension": "x", "unit": "px", "value": 0}, {"dimension": "y", "unit": "px", "value": 0}])
    cube = cube.rename_labels(dimension="bands", target=output_band_names(model, quality_figure))
    if save_at == "latent" and layout == "input":
        cube = cube.process("resample_spatial", data=cube, resolution=resolution * stride, method="near")
    cube = cube.save_result(format=fmt)
    return {"process_graph": cube.flat_graph()}


def job_options(archive_url: str | None) -> dict:
    """Batch-job options for openeo-python-driver backends (``create_job(..., job_options=...)``)."""
    opts = {}
    if archive_url:
        opts["udf-dependency-archives"] = [f"{archive_url}#{DEPS_DIR}"]
    return opts


# -- checking a graph against the official process specs ---------------------------------------------
def official_specs() -> dict[str, dict]:
    """Process id -> spec, from the openEO process definitions bundled with openeo-processes-dask
    (its copy of the openeo-processes repository, top level and ``missing-processes/``)."""
    import openeo_processes_dask.specs as specs

    root = Path(specs.__file__).parent / "openeo-processes"
    out = {}
    for p in sorted(root.glob("*.json")) + sorted(root.glob("missing-processes/*.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:  # one empty placeholder file in some releases
            continue
        if "id" in d and "parameters" in d:
            out.setdefault(d["id"], d)
    return out


def check_graph(graph: dict) -> list[str]:
    """Problems found: process ids that are not official, arguments that are not parameters of
    their process, required parameters left out. Also checks the ids against the openeo client's
    generated ``openeo.processes`` module. Empty list: the graph uses only official processes."""
    import openeo.processes as client_processes

    specs = official_specs()
    problems = []

    def walk(pg: dict, where: str):
        for node_id, node in pg.items():
            pid = node.get("process_id")
            spec = specs.get(pid)
            if spec is None:
                problems.append(f"{where}{node_id}: '{pid}' is not an official openEO process")
                continue
            if not callable(getattr(client_processes, pid, None)) and not callable(
                    getattr(client_processes, pid + "_", None)):
                problems.append(f"{where}{node_id}: '{pid}' is unknown to the openeo client")
            params = {p["name"]: p for p in spec["parameters"]}
            for arg, value in node.get("arguments", {}).items():
                if arg not in params:
                    problems.append(f"{where}{node_id}: '{pid}' has no parameter '{arg}'")
                if isinstance(value, dict) and "process_graph" in value:
                    walk(value["process_graph"], f"{where}{node_id}.{arg}/")
            for name, p in params.items():
                if not p.get("optional", False) and name not in node.get("arguments", {}):
                    problems.append(f"{where}{node_id}: '{pid}' lacks required parameter '{name}'")

    walk(graph.get("process_graph", graph), "")
    return problems
