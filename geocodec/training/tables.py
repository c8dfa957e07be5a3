"""The integer entropy tables of a learned codec, fitted on its training latents (encoder side).

One place for what ``geocodec train codec`` does after optimisation and what
``geocodec train codec --tables-only`` does on an existing model folder:

1. sample ``table_tiles`` tiles of 128 px (>= 90 % valid) from the training scenes, seeded;
2. run the encoder on them (torch during training, the shipped ONNX encoder with ``--tables-only``);
3. at each quality step, ``q = round(latent / step)`` and fit either one
   :class:`~geocodec.format.entropy.IntegerTable` per channel (``factorized``) or the checkerboard
   context model of spec 0.3.0 (:class:`~geocodec.format.context.CheckerboardContext`): shared tables
   and the integer rule that picks one per value.

Torch-free: the encoder comes in as a function.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from geocodec.format.entropy_model import CHANNEL_MAJOR, CHECKERBOARD, EntropyModel

__all__ = ["table_tiles", "fit_qualities", "describe", "refit_model_tables"]


def table_tiles(scenes, *, tile: int = 128, n: int = 1200, seed: int = 0) -> np.ndarray:
    """Up to ``n`` tiles (N, B, tile, tile) reflectance of ``scenes`` (>= 90 % valid), drawn with ``seed + 2``."""
    from geocodec.training import data as D

    parts = [D.grid_tiles(s, tile, min_valid=0.9)[0] for s in scenes]
    tiles = np.concatenate(parts) if parts else np.zeros((0, len(D.BANDS), tile, tile), np.float32)
    if len(tiles) > n:
        tiles = tiles[np.random.default_rng(seed + 2).choice(len(tiles), n, replace=False)]
    return tiles


def fit_qualities(latents: np.ndarray, quality_steps: dict, *, context: bool = True, progress: bool = False) -> dict:
    """``{"<quality>": {"step", "tables", "context"?}}`` of a model card from latents (N, C, h, w)."""
    from tqdm.auto import tqdm

    out = {}
    for qi, st in tqdm(sorted(quality_steps.items()), desc="tables", disable=not progress):
        q = np.round(latents / st).astype(np.int64)
        em = EntropyModel.fit(q, context=context)
        out[str(qi)] = {"step": float(st), **{k: v for k, v in em.json_members().items() if k != "symbol_order"}}
    return out


def describe(context: bool, tiles: int) -> dict:
    """The card's ``training.entropy_tables`` record."""
    if context:
        how = ("checkerboard context model (spec 0.3.0, SPEC.md 4.5.1): shared integer tables picked per value "
               "by the sum of |q| over earlier channels at the position and, for non-anchor positions, over the "
               "channel's 4 anchor neighbours; (channel, context) histograms clustered into <= 64 tables by "
               "k-means in rate space (geocodec.format.context.CheckerboardContext.fit)")
    else:
        how = "one integer table per latent channel (IntegerTable.fit)"
    return {"symbol_order": CHECKERBOARD if context else CHANNEL_MAJOR, "how": how,
            "fitted_on": f"round(latent / step) of {tiles} training tiles of 128 px (>= 90 % valid pixels)"}


def refit_model_tables(model_dir, scenes, *, encode: Callable[[np.ndarray], np.ndarray], context: bool = True,
                       n_tiles: int = 1200, seed: int = 0, progress: bool = True) -> tuple[dict, int]:
    """(new ``qualities`` of the model card in ``model_dir``, steps kept; tiles used) from ``encode`` on ``scenes``' tiles."""
    import json
    from pathlib import Path

    card = json.loads((Path(model_dir) / "model.json").read_text())
    steps = {int(k): float(v["step"]) for k, v in card["qualities"].items()}
    tiles = table_tiles(scenes, tile=int(card.get("tile_px", 128)), n=n_tiles, seed=seed)
    lat = np.concatenate([encode(tiles[i:i + 32]) for i in range(0, len(tiles), 32)])
    return fit_qualities(lat, steps, context=context, progress=progress), len(tiles)
