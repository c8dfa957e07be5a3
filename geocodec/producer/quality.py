"""Per-tile quality figures computed at encode time: is the codec out of its depth here?

Two figures go into every producer row (SPEC.md section 5.1), so users and heads can filter
the tiles a code describes badly:

``preview_psnr``
    the learned model's preview decoder run on the tile's dequantized codes, PSNR in dB
    (peak 1.0 reflectance) against the input reflectance over the tile's valid pixels and all
    bands, as :func:`geocodec.codecs.image_metrics.psnr` computes it. Only the UDF sees the
    input, so it writes the squared error of each latent cell (the ``preview_mse`` band,
    :func:`cell_mse`); packing turns the cells of a row into its PSNR (:func:`tile_psnr`),
    weighting each cell by its valid pixels, which gives exactly the PSNR over the row's
    valid pixels whatever tile size the rows are cut at.
``rate_ratio``
    the row's cross-entropy under the file's own entropy model per valid cell, divided by the
    model's reference rate per cell (:func:`reference_bits_per_cell`): about 1 on data like
    the data the tables were fitted on, well above 1 where the codes are unusual (the
    encoder is extrapolating). Computed at packing time from the codes alone; any reader
    can recompute it from the file.
"""

from __future__ import annotations

import numpy as np

#: the UDF output band with each latent cell's preview squared error (mean over its valid pixels and bands)
MSE_BAND = "preview_mse"
#: the floor of a cell's mean squared error, so a perfect preview reads 120 dB rather than infinity
MSE_FLOOR = 1e-12


def cell_mse(model, tiles: np.ndarray, valid: np.ndarray, codes: np.ndarray, quality: int) -> np.ndarray:
    """Preview squared error of every latent cell of encoded tiles.

    ``tiles`` (N, B, t, t) input reflectance, ``valid`` (N, t, t) bool, ``codes`` (N, C, (t/s)^2) the codes the
    tiles were given at ``quality``. Returns (N, t/s, t/s) float32: the mean over the cell's valid pixels and all
    bands of ``(preview - input)^2``; NaN for a cell without valid pixels.
    """
    n, _, t, _ = tiles.shape
    s = model.stride
    k = t // s
    preview = model.preview(codes, quality, (k, k))                              # (N, B, t, t)
    err = np.where(valid[:, None], preview.astype(np.float64) - tiles, 0.0) ** 2
    per_pixel = err.mean(axis=1)                                                 # (N, t, t), 0 where invalid
    total = per_pixel.reshape(n, k, s, k, s).sum(axis=(2, 4))
    count = valid.reshape(n, k, s, k, s).sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mse.astype(np.float32)


def tile_psnr(mse: np.ndarray, valid_fraction: np.ndarray) -> np.ndarray:
    """PSNR (dB, peak 1.0) of each row from its cells: ``mse`` and ``valid_fraction`` (n, cells).

    The cells' squared errors are averaged weighted by their valid pixels (``valid_fraction``), the
    error of the row's valid pixels; NaN for a row without a valid cell with a finite error.
    """
    mse = np.asarray(mse, dtype=np.float64)
    w = np.where(np.isfinite(mse), np.asarray(valid_fraction, dtype=np.float64), 0.0)
    total = np.where(w > 0, mse, 0.0) * w
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(wsum > 0, total.sum(axis=1) / np.where(wsum > 0, wsum, 1.0), np.nan)
        out = 10 * np.log10(1.0 / np.maximum(m, MSE_FLOOR))
    return np.where(np.isfinite(m), out, np.nan).astype(np.float32)


def _entropy(tables):
    from geocodec.format.entropy_model import EntropyModel

    return tables if isinstance(tables, EntropyModel) else EntropyModel(tuple(tables))


def reference_bits_per_cell(tables) -> float:
    """The rate ``rate_ratio`` divides by, bits per latent cell summed over channels (SPEC.md 5.1): for one
    table per channel (a list, or a factorized :class:`~geocodec.format.entropy_model.EntropyModel`) their
    self-entropy ``sum_c sum_j f_cj / 2**24 * log2(2**24 / f_cj)``, escape entry included; for a context
    model its ``mean_bits`` on the fitting data. The rate the codes cost on data like that data."""
    return _entropy(tables).reference_bits_per_cell


def cell_bits(q: np.ndarray, tables) -> np.ndarray:
    """Ideal code length in bits of each cell of rows ``q`` (n, C, cells) under the tables (or entropy model),
    escapes included (as the writer's ``cross_entropy_bits`` counts them): (n, cells) float64."""
    return _entropy(tables).cell_bits(q)


def rate_ratio(q: np.ndarray, tables, cells: np.ndarray, reference: float | None = None) -> np.ndarray:
    """Each row's bits per cell over the cells marked in ``cells`` (n, cells) bool (the rows' ``valid_cells``),
    divided by ``reference`` (default :func:`reference_bits_per_cell` of the tables): (n,) float32, NaN for a
    row with no marked cell."""
    ref = reference_bits_per_cell(tables) if reference is None else float(reference)
    bits = cell_bits(q, tables)
    n = cells.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_cell = np.where(n > 0, np.where(cells, bits, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return (per_cell / ref).astype(np.float32)
