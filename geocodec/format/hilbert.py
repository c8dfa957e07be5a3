"""Hilbert-curve keys for sorting rows spatially (GeoParquet distribution practice)."""

from __future__ import annotations

import numpy as np


def hilbert_keys(x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float],
                 order: int = 16) -> np.ndarray:
    """Distance along a Hilbert curve of ``2**order`` cells a side, for points in ``extent``."""
    xmin, ymin, xmax, ymax = extent
    n = 1 << order
    w = max(xmax - xmin, 1e-300)
    h = max(ymax - ymin, 1e-300)
    xi = np.clip(((np.asarray(x, dtype=np.float64) - xmin) / w * (n - 1)).astype(np.int64), 0, n - 1)
    yi = np.clip(((np.asarray(y, dtype=np.float64) - ymin) / h * (n - 1)).astype(np.int64), 0, n - 1)
    d = np.zeros(xi.shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = ((xi & s) > 0).astype(np.int64)
        ry = ((yi & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve stays continuous
        flip = ry == 0
        swap_flip = flip & (rx == 1)
        xi = np.where(swap_flip, s - 1 - xi, xi)
        yi = np.where(swap_flip, s - 1 - yi, yi)
        xi, yi = np.where(flip, yi, xi), np.where(flip, xi, yi)
        s >>= 1
    return d


def hilbert_order(bounds: np.ndarray) -> np.ndarray:
    """Row order that sorts boxes ``(N, 4)`` by the Hilbert key of their centres."""
    bounds = np.asarray(bounds, dtype=np.float64)
    if len(bounds) == 0:
        return np.zeros(0, dtype=np.int64)
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    extent = (cx.min(), cy.min(), cx.max(), cy.max())
    return np.argsort(hilbert_keys(cx, cy, extent), kind="stable")
