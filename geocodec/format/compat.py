"""Whether two geocodec files can be read as one dataset or merged without re-encoding."""

from __future__ import annotations


def merge_incompatibility(a, b) -> str | None:
    """Why two :class:`~geocodec.format.reader.GeocodecFile` cannot be concatenated without
    re-encoding (spec version, codec, CRS or extra columns differ), or None if they can."""
    if a.ext.get("version") != b.ext.get("version"):
        return f"the spec versions differ ({a.ext.get('version')} vs {b.ext.get('version')})"
    if a.spec.fingerprint != b.spec.fingerprint:
        for field in ("codec", "latent", "quantization", "entropy_model", "decoder", "embedding", "model"):
            va, vb = a.ext.get(field), b.ext.get(field)
            if field == "codec":
                va = {k: v for k, v in va.items() if k != "fingerprint"}
                vb = {k: v for k, v in vb.items() if k != "fingerprint"}
            if field == "decoder":
                va, vb = va.get("sha256"), vb.get("sha256")
            if va != vb:
                if isinstance(va, dict) and isinstance(vb, dict):
                    keys = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
                    diffs = ", ".join(f"{field}.{k}: {_short(va.get(k))} vs {_short(vb.get(k))}" for k in keys)
                    return f"'{field}' differs ({diffs})"
                return f"'{field}' differs ({_short(va)} vs {_short(vb)})"
        return "codec fingerprints differ"
    if _crs_key(a.crs) != _crs_key(b.crs):
        return "the geometry CRS differs"
    extra_a = [(n, str(a.parquet.schema_arrow.field(n).type)) for n in a.extra_columns]
    extra_b = [(n, str(b.parquet.schema_arrow.field(n).type)) for n in b.extra_columns]
    if extra_a != extra_b:
        return f"extra columns differ ({extra_a} vs {extra_b})"
    return None


def _crs_key(crs) -> str:
    try:
        from pyproj import CRS

        return CRS.from_user_input(crs).to_wkt()
    except Exception:
        return repr(crs)


def _short(v) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."
