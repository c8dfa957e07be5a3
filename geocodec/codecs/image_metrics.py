"""Image quality figures for previews (numpy only): PSNR and SSIM."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB over the pixels finite in both images."""
    ok = np.isfinite(a) & np.isfinite(b)
    mse = float(np.mean((a[ok].astype(np.float64) - b[ok]) ** 2))
    return float(10 * np.log10(peak ** 2 / mse)) if mse > 0 else float("inf")


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, win: int = 7, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two 2-D images (uniform win x win window, K1 = 0.01, K2 = 0.03, like skimage).

    With ``mask`` (2-D bool, True = valid pixel) the mean is taken over the windows
    whose every pixel is valid (NaN if there is none); values under invalid pixels
    must still be finite.
    """
    a = a.astype(np.float64)
    b = b.astype(np.float64)

    def box(x):
        c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), 0), 1)
        return (c[win:, win:] - c[:-win, win:] - c[win:, :-win] + c[:-win, :-win]) / (win * win)

    n = win * win
    cov = n / (n - 1)
    ux, uy = box(a), box(b)
    vx = cov * (box(a * a) - ux * ux)
    vy = cov * (box(b * b) - uy * uy)
    vxy = cov * (box(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    if mask is not None:
        full = box(np.asarray(mask, dtype=np.float64)) > 1 - 1e-9
        return float(s[full].mean()) if full.any() else float("nan")
    return float(s.mean())
