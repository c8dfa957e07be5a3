"""``geocodec info``: what a file holds, what it costs, and whether files can be merged."""

from __future__ import annotations

import os


from geocodec.format.compat import merge_incompatibility
from geocodec.format.quality import format_quality, quality_summary, read_figures
from geocodec.format.reader import GeocodecFile


def summarize(f: GeocodecFile) -> dict:
    """What ``geocodec info`` reports on an open file, as a JSON-able dict.

    Codec, model, embedding, latent, grid, CRS, bbox, time extent, rows, sizes in bytes, the rate and
    ``quality``: the distribution of the per-tile quality figures the file has (SPEC.md 5.1; empty if none).
    """
    ext = f.ext
    meta = f.parquet.metadata
    size = _size(f.source)
    code_bytes = sum(meta.row_group(i).column(j).total_compressed_size
                     for i in range(meta.num_row_groups) for j in range(meta.num_columns)
                     if meta.row_group(i).column(j).path_in_schema == "code")
    rate = ext.get("rate") or {}
    rows = f.num_rows
    dim = f.spec.dimension
    col = f.geo["columns"][f.geo["primary_column"]]
    crs = col.get("crs")
    crs_name = crs.get("name") if isinstance(crs, dict) else crs
    if isinstance(crs, dict) and crs.get("id"):
        crs_name = f"{crs['id'].get('authority')}:{crs['id'].get('code')} ({crs.get('name')})"
    out = {
        "file": f.source,
        "spec_version": ext["version"],
        "codec": ext["codec"],
        "model": ext["model"],
        "embedding": ext["embedding"],
        "latent": ext["latent"],
        "grid": {k: v for k, v in ext["grid"].items() if k != "crs"},
        "crs": crs_name,
        "bbox": col.get("bbox"),
        "temporal_extent": ext.get("temporal_extent"),
        "rows": rows,
        "row_groups": meta.num_row_groups,
        "block_rows": f.spec.block_rows,
        "symbol_order": ext["entropy_model"].get("symbol_order", "channel-major"),
        "decoder": {k: ext["decoder"].get(k) for k in ("format", "sha256", "href", "size_bytes", "published")},
        "storage": f.storage(fetch=False),
        "extra_columns": f.extra_columns,
        "bytes": {
            "file": size,
            "code_column": code_bytes,
            "raw_float32": rows * dim * 4,
            "per_row": round(size / rows, 2) if rows and size else None,
            "code_bits_per_row": round(rate["code_bits"] / rows, 2) if rows and rate.get("code_bits") else None,
        },
        "rate": rate,
        "quality": quality_summary(read_figures(f)),
    }
    if rate.get("code_bits") and rate.get("cross_entropy_bits"):
        out["rate"]["overhead_vs_cross_entropy_pct"] = round(
            100 * (rate["code_bits"] / rate["cross_entropy_bits"] - 1), 4)
    if size and rows:
        out["bytes"]["compression_ratio_vs_float32"] = round(rows * dim * 4 / size, 2)
    return out


def _size(source: str) -> int | None:
    if os.path.exists(source):
        return os.path.getsize(source)
    return None


def size_vs_raw(raw: int, size: int) -> str:
    """How a file of ``size`` bytes compares with ``raw`` bytes of float32: ``"4.0x smaller"``,
    ``"4.0x larger"`` (a small file whose footer outweighs its vectors), or ``"about the same size"``."""
    if raw <= 0 or size <= 0:
        return "size unknown"
    ratio = raw / size
    if round(ratio, 1) == 1.0 or round(1 / ratio, 1) == 1.0:
        return "about the same size as raw float32"
    return f"{ratio:.1f}x smaller" if ratio > 1 else f"{1 / ratio:.1f}x larger"


def format_summary(s: dict) -> str:
    """A :func:`summarize` dict as indented lines of text."""
    b = s["bytes"]
    lines = [
        f"{s['file']}",
        f"  geocodec spec {s['spec_version']}, codec {s['codec']['name']} {s['codec']['version']}, "
        f"quality {s['codec']['quality']}",
        f"  model: {s['model'].get('name')} {s['model'].get('version') or ''} "
        f"(sha256 {str(s['model'].get('sha256'))[:12]})",
        f"  embedding: {s['embedding']['dimension']} x float32 per {s['embedding']['type']}; "
        f"latent {s['latent']['layout']} {s['latent']['shape']}",
        f"  rows: {s['rows']} in {s['row_groups']} row group(s), code blocks of {s['block_rows']} rows",
        f"  CRS: {s['crs']}; bbox: {s['bbox']}",
        f"  time: {s['temporal_extent']}",
        f"  decoder: {s['decoder']['format']} sha256 {s['decoder']['sha256'][:12]}... "
        f"({_storage_line(s['storage']['decoder'], s['decoder'].get('href'))})",
        f"  entropy model: {s.get('symbol_order', 'channel-major')}; tables "
        f"{_storage_line(s['storage']['tables'], None)}",
        f"  size: {b['file']} bytes on disk ({b.get('per_row')} B/row), codes {b['code_column']} bytes; "
        f"raw float32 {b['raw_float32']} bytes"
        + (f" -> {size_vs_raw(b['raw_float32'], b['file'])}" if b.get("compression_ratio_vs_float32") else ""),
    ]
    r = s.get("rate") or {}
    if r.get("code_bits"):
        lines.append(f"  rate: {b['code_bits_per_row']} bits/row coded, cross-entropy "
                     f"{r['cross_entropy_bits'] / s['rows']:.2f} bits/row "
                     f"(overhead {r.get('overhead_vs_cross_entropy_pct')} %)")
    if "quality" in s:
        lines += format_quality(s["quality"])
    if s["extra_columns"]:
        lines.append(f"  extra columns: {', '.join(s['extra_columns'])}")
    return "\n".join(lines)


def _storage_line(st: dict, href) -> str:
    """'embedded in the footer' or 'by reference, resolves from ...' / '... does not resolve: why'."""
    if st["storage"] == "embedded":
        return "embedded in the footer"
    if st["resolves"]:
        return f"by reference, resolves from the {st['where']}: {st['detail']}"
    if st["resolves"] is None:
        return f"by reference, not installed or cached; a read fetches {href or 'its href'} once"
    return f"by reference, does not resolve: {st['detail']}"


def merge_report(files: list[GeocodecFile]) -> list[str]:
    """One line per file that cannot be concatenated with the first, saying why."""
    out = []
    for other in files[1:]:
        reason = merge_incompatibility(files[0], other)
        if reason:
            out.append(f"{files[0].source} and {other.source} cannot be merged without re-encoding: {reason}")
    return out
