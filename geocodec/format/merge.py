"""``geocodec merge``: concatenate files of one codec without re-encoding.

Code blocks never cross row groups, so row groups are copied as they are; only
the footer (bbox, time extent, rate) is recomputed.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from geocodec.atomic import atomic_output
from geocodec.errors import MetadataError
from geocodec.format.hilbert import hilbert_order
from geocodec.format.overwrite import refuse_overwrite
from geocodec.format.published import embedded_form
from geocodec.format.reader import GeocodecFile
from geocodec.format.info import merge_report
from geocodec.format.writer import ZSTD_LEVEL, footer_metadata, statistics_columns

log = logging.getLogger(__name__)


def merge(sources: list[str], output: str, *, progress: bool = True, embed_decoder: bool = False) -> dict:
    """Concatenate the files ``sources`` (one codec) into ``output`` without re-encoding.

    Files are ordered along a Hilbert curve of their bbox centres and their row groups copied as they are. The
    decoder and tables are stored as in the first file (embedded or by reference); ``embed_decoder`` embeds them
    (resolving any reference). Returns ``rows``, ``files`` and ``bytes`` (of the output). Raises
    :class:`~geocodec.errors.MetadataError` when the files cannot be merged.
    """
    refuse_overwrite(output, sources)
    files = [GeocodecFile(s) for s in sources]
    problems = merge_report(files)
    if problems:
        raise MetadataError("; ".join(problems), source=output)
    # order whole files along a Hilbert curve of their bbox centres, keeping spatial locality
    boxes = np.array([f.geo["columns"][f.geo["primary_column"]]["bbox"][:2] +
                      f.geo["columns"][f.geo["primary_column"]]["bbox"][-2:] for f in files])
    files = [files[i] for i in hilbert_order(boxes)]
    first = files[0]
    schema = first.parquet.schema_arrow.remove_metadata()
    bbox = [np.inf, np.inf, -np.inf, -np.inf]
    types: set[str] = set()
    times: list[str] = []
    rate = {"rows": 0, "code_bits": 0, "cross_entropy_bits": 0.0}
    total = sum(f.parquet.num_row_groups for f in files)
    with atomic_output(output) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=ZSTD_LEVEL,
                                  use_dictionary=["tile_id"], write_statistics=statistics_columns(schema),
                                  store_schema=False,  # the footer keys are the Arrow schema metadata (writer.py)
                                  write_page_checksum=True)
        try:
            bar = tqdm(total=total, unit="row group", desc="merge", disable=not progress)
            for f in files:
                col = f.geo["columns"][f.geo["primary_column"]]
                b = col["bbox"]
                bbox = [min(bbox[0], b[0]), min(bbox[1], b[1]), max(bbox[2], b[-2]), max(bbox[3], b[-1])]
                types.update(col.get("geometry_types", []))
                times += [t for t in (f.ext.get("temporal_extent") or []) if t]
                r = f.ext.get("rate") or {}
                for k in rate:
                    rate[k] += r.get(k, 0) or 0
                for rg in range(f.parquet.num_row_groups):
                    table = f.parquet.read_row_group(rg)
                    writer.write_table(table.cast(schema), row_group_size=table.num_rows)
                    log.debug("%s: row group %d (%d rows) copied", f.source, rg, table.num_rows)
                    bar.update(1)
            bar.close()
            extent = [min(times), max(times)] if times else None
            rate["cross_entropy_bits"] = round(rate["cross_entropy_bits"], 3)
            ext = first.ext
            if embed_decoder:
                ext = embedded_form(ext, first.spec.entropy_json)
            decoder = first.decoder_bytes if embed_decoder or first.decoder_embedded else None
            writer.add_key_value_metadata(footer_metadata(ext, first.crs, bbox, sorted(types), extent, rate, decoder))
        finally:
            writer.close()
    for f in files:
        f.close()
    return {"rows": rate["rows"], "files": len(files), "bytes": os.path.getsize(output)}


