"""Encode-time refinement of the latents: spend producer compute for smaller codes at the same quality.

The encoder is one forward pass, trained to be good on average (amortized); for one tile, the
latents that minimise that tile's own rate-distortion cost are usually elsewhere (the
"amortization gap", Yang, Bamler & Mandt 2020, "Improving inference for neural image
compression"). :func:`refine_codes` starts from the encoder's latents and takes ``iterations``
Adam steps on

    J(y) = R(y) + lambda_q * D(y)

with R the bits per pixel of the training-time density on ``y`` plus uniform noise of one
quantization step (the relaxation of rounding used in training), D the preview decoder's mean
squared error in reflectance over the tile's valid pixels (what PSNR measures), and lambda_q the
slope of the model's own held-out rate-distortion curve at quality q (:func:`rd_slopes`, from
``model.json``). The learning rate is ``lr * step`` with a cosine decay.

Nothing about the file changes: the codes are integers under the same tables, decoded by the same
decoders, so any reader decodes them (bit-exact, no network decides a table). A guard keeps, per
tile, whichever of the plain and the refined codes has the lower *actual* cost (exact bits under
the integer tables + lambda_q x the ONNX preview's squared error), so refinement never makes a
tile worse by that measure.

Needs torch and the model folder's ``weights.safetensors`` (``pip install 'geocodec[train]'``);
the consumer never imports this module. Measured: docs/benchmarks-rd-refine.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from geocodec._optional import import_optional
from geocodec.errors import InputError, MetadataError

__all__ = ["DEFAULT_ITERATIONS", "DEFAULT_LR", "rd_slopes", "refine_codes"]

#: Adam steps per tile that ``geocodec encode --refine`` uses when given no number
DEFAULT_ITERATIONS = 100
#: learning rate in units of the quantization step
DEFAULT_LR = 0.02
#: the set of the card's held-out scores the slopes come from
SLOPE_SET = "all held-out"
#: tiles per optimisation batch (memory: about 40 MB of activations per tile)
BATCH = 16

_CODECS: dict = {}


def rd_slopes(card: dict, source: str = "model.json") -> dict[int, float]:
    """lambda_q per quality: minus the slope d(bits per pixel) / d(MSE) of the card's held-out curve.

    Central differences between the neighbouring qualities (one-sided at the ends) of
    ``scores.sets["all held-out"]``: bits per pixel against the preview's mean squared error in
    reflectance. Raises :class:`~geocodec.errors.MetadataError` if the card has no such scores or the
    curve does not fall (more bits must give a lower error).
    """
    try:
        rows = card["scores"]["sets"][SLOPE_SET]["qualities"]
        rate = {int(k): float(v["bits_per_pixel"]) for k, v in rows.items()}
        mse = {int(k): float(v["rmse_reflectance"]) ** 2 for k, v in rows.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise MetadataError(f"refinement needs the model's held-out scores (bits_per_pixel, rmse_reflectance "
                            f"per quality in scores.sets['{SLOPE_SET}']): {exc!r} is missing",
                            source=source, field="scores") from None
    qs = sorted(rate)
    if len(qs) < 2:
        raise MetadataError("refinement needs held-out scores at two qualities or more", source=source,
                            field="scores")
    out = {}
    for i, q in enumerate(qs):
        lo, hi = qs[max(i - 1, 0)], qs[min(i + 1, len(qs) - 1)]
        dr, dd = rate[hi] - rate[lo], mse[lo] - mse[hi]
        if not (dr > 0 and dd > 0):
            raise MetadataError(f"the held-out curve does not fall between qualities {lo} and {hi} "
                                f"({rate[lo]:.4f} -> {rate[hi]:.4f} bpp, MSE {mse[lo]:.3g} -> {mse[hi]:.3g})",
                                source=source, field="scores")
        out[q] = dr / dd
    return out


def _codec(model):
    """The torch codec of ``model``'s folder (cached), checked against its ONNX preview decoder."""
    key = str(model.path)
    if key in _CODECS:
        return _CODECS[key]
    torch = import_optional("torch", extra="train", purpose="encode-time refinement (--refine)")
    import_optional("safetensors", extra="train", purpose="encode-time refinement (--refine)")
    from geocodec.producer.torch_codec import load_codec

    weights = Path(model.path) / "weights.safetensors"
    if not weights.is_file():   # e.g. the openEO UDF archive, which ships the ONNX files only
        raise MetadataError("refinement needs the model's torch weights, which this folder lacks (refine where "
                            "geocodec[train] and the model folder are installed, e.g. geocodec encode --refine)",
                            source=str(weights), field="weights.safetensors")
    codec = load_codec(weights)
    for p in codec.parameters():
        p.requires_grad_(False)
    # the weights must be the ONNX files' own: same latent channels, same preview of one fixed latent grid
    c = int(model.card["channels"])
    if codec.density.loc.shape[0] != c:
        raise MetadataError(f"weights.safetensors has {codec.density.loc.shape[0]} latent channels, model.json {c} "
                            "(the folder mixes two trainings)", source=str(weights), field="weights.safetensors")
    y = np.random.default_rng(0).normal(0.0, 1.0, (1, c, 4, 4)).astype(np.float32)
    with torch.no_grad():
        ref = codec.preview(torch.from_numpy(y)).numpy()
    got = model.preview_decoder(y)
    if got.shape != ref.shape or float(np.abs(got - ref).max()) > 1e-3:
        raise MetadataError("weights.safetensors does not match preview_decoder.onnx (the folder mixes two "
                            "trainings)", source=str(weights), field="weights.safetensors")
    _CODECS[key] = codec
    return codec


def _actual_cost(model, codes: np.ndarray, tiles: np.ndarray, valid: np.ndarray, quality: int,
                 lam: float) -> np.ndarray:
    """Per tile: exact bits per pixel under the integer tables + lam x the ONNX preview's MSE."""
    n, c, s = codes.shape
    k = int(round(math.sqrt(s)))
    em = model.entropy_model(quality, (k, k))
    px = tiles.shape[2] * tiles.shape[3]
    bits = np.array([em.cross_entropy_bits(codes[i:i + 1]) for i in range(n)]) / px
    prev = np.concatenate([model.preview(codes[i:i + BATCH], quality, (k, k)) for i in range(0, n, BATCH)])
    w = valid[:, None].astype(np.float64)
    mse = (((prev - tiles) ** 2) * w).sum(axis=(1, 2, 3)) / np.maximum(w.sum(axis=(1, 2, 3)) * tiles.shape[1], 1.0)
    return bits + lam * mse


def refine_codes(model, tiles: np.ndarray, valid: np.ndarray, quality: int, *,
                 iterations: int = DEFAULT_ITERATIONS, lr: float = DEFAULT_LR, seed: int = 0) -> np.ndarray:
    """Integer codes (N, C, S) of ``tiles`` (N, B, T, T) at ``quality``, refined as the module says.

    ``valid`` (N, T, T) marks the pixels the distortion counts (invalid ones are already filled).
    ``iterations`` 0 gives exactly :meth:`LearnedModel.encode`. Deterministic for a given ``seed`` and thread
    count; torch runs on ``model.threads`` threads where the model has a cap.
    """
    iterations = int(iterations)
    if iterations < 0:
        raise InputError(f"refine iterations must be >= 0, got {iterations}", field="refine")
    tiles = np.asarray(tiles, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (tiles.shape[0], *tiles.shape[2:]):
        raise InputError(f"valid must be (N, T, T) = {(tiles.shape[0], *tiles.shape[2:])}, got {valid.shape}",
                         field="valid")
    y0 = model.latents(tiles)          # one encoder pass: the plain codes and the refinement's start
    plain = model.quantize(y0, quality)
    if iterations == 0 or len(tiles) == 0:
        return plain
    lam = rd_slopes(model.card, str(Path(model.path) / "model.json"))[int(quality)]
    torch = import_optional("torch", extra="train", purpose="encode-time refinement (--refine)")
    codec = _codec(model)
    if model.threads:
        torch.set_num_threads(int(model.threads))
    step = float(model.step(quality))
    gen = torch.Generator().manual_seed(int(seed))
    out = np.empty_like(y0)
    for i in range(0, len(tiles), BATCH):
        x = torch.from_numpy(tiles[i:i + BATCH])
        w = torch.from_numpy(valid[i:i + BATCH]).float()[:, None].expand_as(x)
        denom = w.sum().clamp_min(1.0)
        y = torch.from_numpy(y0[i:i + BATCH].copy()).requires_grad_(True)
        opt = torch.optim.Adam([y], lr=lr * step)
        px = x.shape[0] * x.shape[2] * x.shape[3]
        for it in range(iterations):
            for g in opt.param_groups:
                g["lr"] = lr * step * 0.5 * (1.0 + math.cos(math.pi * it / iterations))
            noisy = y + (torch.rand(y.shape, generator=gen) - 0.5) * step
            d = (((codec.preview(noisy) - x) ** 2) * w).sum() / denom
            r = codec.density.bits(noisy, step) / px
            loss = r + lam * d
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out[i:i + BATCH] = y.detach().numpy()
    refined = model.quantize(out, quality)
    keep = _actual_cost(model, refined, tiles, valid, quality, lam) < _actual_cost(model, plain, tiles, valid,
                                                                                     quality, lam)
    return np.where(keep[:, None, None], refined, plain)
