"""Codecs: floats to integer codes and back, over the format layer.

:class:`LinearCodec` (PCA rotation + one uniform step, for embeddings anyone produced;
``geocodec compress``), :class:`LearnedModel` (the learned Sentinel-2 codec shipped as ONNX
files in ``geocodec/models``), the Sentinel-2 band names and a model's bands (:mod:`.bands`), and the
image metrics their rate-distortion is measured with.
No torch: training lives in :mod:`geocodec.training`.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "LinearCodec": ".linear", "build_linear_decoder": ".linear",
    "LearnedModel": ".learned", "model_dir": ".learned", "read_card": ".learned", "DEFAULT_MODEL": ".learned",
    "SENTINEL2_BANDS": ".bands", "L2A_BANDS": ".bands", "SCL_BAND": ".bands", "COMMON_BANDS": ".bands",
    "RGB_BANDS": ".bands", "model_bands": ".bands", "band_in_name": ".bands",
    "decompress": ".compress",
    "psnr": ".image_metrics", "ssim": ".image_metrics",
})
