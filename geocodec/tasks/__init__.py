"""What a laptop does with a file, on onnxruntime alone (no torch).

Heads as ONNX files carrying their metadata (:mod:`.heads`), per-date latent cells (:mod:`.series`),
land-cover classification (:mod:`.classify`), forest monitoring (:mod:`.monitor`), ship detection
(:mod:`.ships`), similarity search (:mod:`.search`), few-shot heads (:mod:`.fewshot`) and their labels
(:mod:`.labels`), the preview image (:mod:`.preview`) and GeoPackage output (:mod:`.gpkg`). Classify,
monitor, ships and search return :class:`.results.Result` layers, written by the one writer
:func:`.results.write_result`. The CLI and the QGIS plugin call these.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "Head": ".heads", "classify_file": ".classify", "monitor_place": ".monitor", "detect_events": ".monitor",
    "detect_ships": ".ships", "Searcher": ".search", "SearchIndex": ".search",
    "train_head": ".fewshot", "train_head_on_file": ".fewshot", "train_head_from_labels": ".fewshot",
    "Labels": ".labels", "read_labels": ".labels", "prepare_labels": ".labels",
    "Result": ".results", "Style": ".results", "write_result": ".results", "output_kind": ".results",
    "cell_series": ".series", "tile_series": ".series", "preview_mosaic": ".preview",
    "decode_to_gpkg": ".gpkg",
})
