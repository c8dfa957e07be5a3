"""What a laptop does with a file, on onnxruntime alone (no torch).

Heads as ONNX files carrying their metadata (:mod:`.heads`), per-date latent cells (:mod:`.series`),
land-cover classification (:mod:`.classify`), forest monitoring (:mod:`.monitor`), ship detection
(:mod:`.ships`), similarity search (:mod:`.search`), few-shot heads (:mod:`.fewshot`), the preview
image (:mod:`.preview`) and GeoPackage output (:mod:`.gpkg`). The CLI and the QGIS plugin call these.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "Head": ".heads", "classify_file": ".classify", "monitor_place": ".monitor", "detect_events": ".monitor",
    "detect_ships": ".ships", "Searcher": ".search", "SearchIndex": ".search",
    "train_head": ".fewshot", "train_head_on_file": ".fewshot",
    "cell_series": ".series", "tile_series": ".series", "preview_mosaic": ".preview",
    "decode_to_gpkg": ".gpkg",
})
