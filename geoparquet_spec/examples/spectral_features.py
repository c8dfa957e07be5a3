"""Per-tile spectral-spatial statistics: a fixed, training-free tile descriptor.

For each tile and band: mean, standard deviation and the 10/50/90th
percentiles of reflectance, plus the band means of a 4 x 4 grid of sub-tiles.
Used as the demo's embedding until the learned encoder replaces it; it is
documented as what it is, not as a learned model.
"""

from __future__ import annotations

import numpy as np

SUBGRID = 4


def tile_statistics(tiles: np.ndarray, subgrid: int = SUBGRID) -> tuple[np.ndarray, np.ndarray]:
    """``tiles`` (N, bands, T, T) reflectance with NaN for nodata -> (vectors (N, D), valid fraction (N,)).

    Order: means of every band, then standard deviations, then per band the 10/50/90th
    percentiles, then (if ``subgrid``) per band the ``subgrid x subgrid`` sub-tile means.
    Vectors of tiles with no valid pixel are NaN: the caller decides to drop them.
    """
    n, b, t, _ = tiles.shape
    flat = tiles.reshape(n, b, t * t)
    valid = np.isfinite(flat).all(axis=1).mean(axis=1).astype(np.float32)
    import warnings

    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(flat, axis=2)
            std = np.nanstd(flat, axis=2)
            pct = np.nanpercentile(flat, [10, 50, 90], axis=2).transpose(1, 2, 0).reshape(n, -1)
            parts = [mean, std, pct]
            if subgrid:
                s = t // subgrid
                sub = tiles[:, :, : s * subgrid, : s * subgrid].reshape(n, b, subgrid, s, subgrid, s)
                parts.append(np.nanmean(sub, axis=(3, 5)).reshape(n, -1))
    return np.concatenate(parts, axis=1).astype(np.float32), valid
