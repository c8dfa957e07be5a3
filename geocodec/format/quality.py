"""The per-tile quality-figure columns (SPEC.md section 5.1): their distribution for ``geocodec info``
and their checks for ``geocodec validate``.

``preview_psnr`` (float32 dB): the preview decoder's PSNR against the input over the tile's valid pixels;
``rate_ratio`` (float32): the tile's bits per valid cell over the file's reference rate per cell (the
tables' self-entropy, or a context model's ``mean_bits``). Both are optional (files before them, files encoded with ``--no-quality-figure``, files not made by the producer
lack one or both); NaN means "not known for this tile".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: column -> (unit, the side where the codec is out of its depth, the rule-of-thumb threshold on that side)
FIGURES = {
    "preview_psnr": ("dB", "below", 20.0),
    "rate_ratio": ("x the entropy model's typical rate", "above", 2.0),
}


def figure_stats(values, side: str, threshold: float) -> dict:
    """Distribution of one figure over rows: ``rows``, ``known`` (not NaN), ``min``, ``p5``, ``median``,
    ``p95``, ``max`` and ``share_{side}`` (of the known rows, strictly on ``side`` of ``threshold``)."""
    v = np.asarray(values, dtype=np.float64)
    ok = v[np.isfinite(v)]
    out = {"rows": int(v.size), "known": int(ok.size), "threshold": threshold}
    key = f"share_{side}"
    if ok.size == 0:
        return out | {"min": None, "p5": None, "median": None, "p95": None, "max": None, key: None}
    p5, med, p95 = np.percentile(ok, [5, 50, 95])
    off = ok < threshold if side == "below" else ok > threshold
    return out | {"min": round(float(ok.min()), 3), "p5": round(float(p5), 3), "median": round(float(med), 3),
                  "p95": round(float(p95), 3), "max": round(float(ok.max()), 3), key: round(float(off.mean()), 4)}


def quality_summary(columns: dict) -> dict:
    """``{figure: figure_stats(...)}`` for the quality figures present in ``columns`` (name -> values)."""
    return {name: figure_stats(columns[name], side, thr) for name, (_, side, thr) in FIGURES.items()
            if name in columns}


def read_figures(f) -> dict:
    """The quality-figure columns an open :class:`~geocodec.format.reader.GeocodecFile` has, as float arrays
    (name -> values; empty for a file without them)."""
    names = [n for n in FIGURES if n in f.column_names]
    if not names:
        return {}
    table = f.parquet.read(columns=names)
    return {n: table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names}


def format_quality(q: dict) -> list[str]:
    """Lines for ``geocodec info``: one per figure, or one saying the file has none."""
    if not q:
        return ["  quality figures: none (a file from before them, or encoded with --no-quality-figure)"]
    out = []
    for name, st in q.items():
        unit, side, thr = FIGURES[name]
        if st["known"] == 0:
            out.append(f"  {name}: no tile has a value ({st['rows']} NaN)")
            continue
        share = st[f"share_{side}"]
        out.append(f"  {name}: min {st['min']:.2f}, p5 {st['p5']:.2f}, median {st['median']:.2f}, "
                   f"p95 {st['p95']:.2f}, max {st['max']:.2f} {unit}; {100 * share:.1f} % of {st['known']} "
                   f"tiles {side} {thr:g}" + (f" ({st['rows'] - st['known']} NaN)" if st['rows'] > st['known'] else ""))
    return out


def quality_findings(f) -> list[str]:
    """Error messages (naming file, row and column) for quality-figure columns of the wrong type or range:
    float32, each value finite or NaN, ``rate_ratio`` not negative."""
    out = []
    schema = f.parquet.schema_arrow
    for name in FIGURES:
        if name not in schema.names:
            continue
        if not schema.field(name).type.equals(pa.float32()):
            out.append(f"{f.source}: column '{name}' has type {schema.field(name).type}, the spec says float32")
            continue
        v = f.parquet.read(columns=[name]).column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = np.flatnonzero(np.isinf(v) | ((v < 0) if name == "rate_ratio" else False))
        if bad.size:
            what = "infinite" if np.isinf(v[bad[0]]) else "negative"
            out.append(f"{f.source}: row {int(bad[0])}: field '{name}': {v[bad[0]]} is {what} "
                       f"({bad.size} such row(s); the spec allows a finite value or NaN"
                       + (", not below 0)" if name == "rate_ratio" else ")"))
    return out
