"""Recognise a geocodec file that a rewriting tool stripped of part of the extension.

DuckDB ``COPY`` and geopandas ``read_parquet`` -> ``to_parquet`` write a fresh ``geo`` key and
drop every other footer key; the code columns survive as plain binary/integer columns, but
without the ``geocodec`` key (tables, quantization) and the decoder nothing decodes them.
SPEC.md ("Rewriting tools") lists what each tool keeps.
"""

from __future__ import annotations

import json

from geocodec.format.metadata import DECODER_HREF, DECODER_KEY, EXT_KEY, GEO_KEY
from geocodec.format.writer import CODE_COLUMNS

#: how to get a usable file back, appended to every diagnosis
REMEDY = ("rewrite geocodec files with pyarrow (pq.read_table -> pq.write_table keeps every footer key of a file "
          "this geocodec wrote) or `geocodec merge`, or use the original file")


def diagnose_footer(kv: dict, names: list[str], source: str) -> str | None:
    """Why a file whose footer key/values are ``kv`` and whose columns are ``names`` looks like a
    geocodec file that lost part of its extension in a rewrite, or None if it does not."""
    kv = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (kv or {}).items()}
    codes = [c for c in CODE_COLUMNS if c in names]
    has_geo, has_ext = GEO_KEY in kv, EXT_KEY in kv
    if not has_ext and "code" in names:
        kept = ", ".join(f"`{k}`" for k in sorted(kv) if not k.startswith("ARROW:")) or "none"
        lost = "" if "bbox" in names else "; the `bbox` covering column is gone too"
        return (f"{source}: field '{EXT_KEY}': this looks like a geocodec file rewritten by a tool that dropped the "
                f"`{EXT_KEY}` footer key: it has {'`geo` and ' if has_geo else ''}the code columns "
                f"({', '.join(codes)}) but no `{EXT_KEY}` key (footer keys left: {kept}){lost}, so its codes cannot be "
                f"decoded (DuckDB COPY and geopandas to_parquet keep only `geo`); {REMEDY}")
    if not has_ext:
        return None
    if not has_geo:
        return (f"{source}: field '{GEO_KEY}': this looks like a geocodec file rewritten by a tool that dropped the "
                f"`{GEO_KEY}` footer key: it has `{EXT_KEY}` but no `{GEO_KEY}`; {REMEDY}")
    if "code" not in names:
        return (f"{source}: column 'code': the file has a `{EXT_KEY}` key but no code columns: a rewrite or query "
                f"that selected columns dropped them; {REMEDY}")
    try:
        href = (json.loads(kv[EXT_KEY]).get("decoder") or {}).get("href")
    except (ValueError, AttributeError):
        return None
    if href == DECODER_HREF and DECODER_KEY not in kv:
        return (f"{source}: field '{DECODER_KEY}': this looks like a geocodec file rewritten by a tool that dropped "
                f"the `{DECODER_KEY}` footer key: `{EXT_KEY}` says the decoder is embedded ({DECODER_HREF}) but the "
                f"footer has no such key; {REMEDY}")
    return None


def rewrite_diagnosis(source: str) -> str | None:
    """:func:`diagnose_footer` of the file at ``source`` (path or URL); None if it cannot be read as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geocodec.format.sources import open_binary

    try:
        with open_binary(source) as handle:
            pf = pq.ParquetFile(handle)
            return diagnose_footer(pf.metadata.metadata or {}, pf.schema_arrow.names, source)
    except (OSError, pa.ArrowInvalid):
        return None
