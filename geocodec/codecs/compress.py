"""``geocodec compress`` / ``decompress``: fit the transform codec on any float embeddings."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from geocodec.atomic import atomic_output
from geocodec.codecs.linear import DEFAULT_QUALITY, LinearCodec
from geocodec.format.embeddings_io import ZSTD_LEVEL, arrow_schema_entry, read_embeddings
from geocodec.errors import InputError
from geocodec.format.hilbert import hilbert_order
from geocodec.format.metadata import GEO_KEY, build_extension, build_geo
from geocodec.format.overwrite import refuse_overwrite
from geocodec.format.rowchecks import check_rows
from geocodec.format.onnx_model import DECODER_INPUT, DECODER_OUTPUT, sha256_hex
from geocodec.format.dataset import GeocodecDataset
from geocodec.format.query import Query
from geocodec.format.writer import CORE_NAMES, DEFAULT_BLOCK_ROWS, DEFAULT_ROW_GROUP_ROWS, GeocodecWriter

CODEC_NAME = "geocodec-linear"
CODEC_VERSION = "0.1.0"
TIME_COLUMNS = ("datetime", "end_datetime")
log = logging.getLogger(__name__)
ID_COLUMNS = ("tile_id", "id")


def _time_column(table: pa.Table, name: str):
    if name in table.column_names and pa.types.is_timestamp(table.schema.field(name).type):
        return table.column(name).cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
    return None


def check_coordinates(geometry, *, source: str, field: str) -> None:
    """Refuse (InputError naming the row) a geometry with a NaN or infinite coordinate, or an empty one:
    its bbox would be NaN and the file invalid."""
    import shapely

    bad = np.flatnonzero(~np.isfinite(shapely.bounds(geometry)).all(axis=1))
    if bad.size:
        raise InputError("geometry is empty or has a NaN or infinite coordinate", source=source, row=int(bad[0]),
                         field=field)


def extra_columns(schema: pa.Schema, geometry: str, column: str, id_col: str | None, *, source: str) -> list:
    """The input columns carried into the file as they are: all but the geometry, the vectors, the id and
    the columns the layout fills (bbox, times, valid_fraction). A column of another role under a name the
    layout reserves (``code``, ``code_rows``, a second ``geometry`` ...) is refused, never dropped; so is a
    time column that is not a timestamp. InputError, field the column."""
    used = {geometry, column, id_col, "bbox", *TIME_COLUMNS, "valid_fraction"}
    for f in schema:
        if f.name in CORE_NAMES and f.name not in used:
            raise InputError(f"column '{f.name}' has a name the geocodec layout reserves ({', '.join(CORE_NAMES)}); "
                             "rename it", source=source, field=f.name)
        if f.name in TIME_COLUMNS and not pa.types.is_timestamp(f.type):
            raise InputError(f"column '{f.name}' is {f.type}, not a timestamp; cast it or rename it", source=source,
                             field=f.name)
    return [f for f in schema if f.name not in used and f.name not in CORE_NAMES]


def compress(input_path, column: str, output_path, *, quality: int = DEFAULT_QUALITY, crs=None,
             model: dict | None = None, grid: dict | None = None, block_rows: int = DEFAULT_BLOCK_ROWS,
             row_group_rows: int = DEFAULT_ROW_GROUP_ROWS, progress: bool = True) -> dict:
    """Fit the codec on ``column`` of a GeoParquet file and write the extension file.

    ``model`` describes what made the vectors (name, version, sha256, bands, ...);
    ``grid`` the tiling grid when the rows are tiles of a regular grid (TileGrid.to_json()).
    """
    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    refuse_overwrite(output_path, [input_path])
    t0 = time.perf_counter()
    src = read_embeddings(input_path, column, crs=crs)
    check_coordinates(src.geometry, source=input_path, field=src.geometry_column)
    t1 = time.perf_counter()
    codec = LinearCodec.fit(src.vectors, quality, source=input_path)
    log.info("read %d x %d vectors in %.2f s; fitted the codec at quality %d (%d latent channels) in %.2f s",
             *src.vectors.shape, t1 - t0, codec.quality, codec.latent_channels, time.perf_counter() - t1)
    decoder = codec.decoder_onnx({"geocodec:role": "decoder", "geocodec:codec": CODEC_NAME,
                                  "geocodec:quality": str(codec.quality)})
    import shapely

    order = hilbert_order(shapely.bounds(src.geometry))
    table = src.table
    id_col = next((c for c in ID_COLUMNS if c in table.column_names), None)
    tile_ids = table.column(id_col).to_numpy(zero_copy_only=False).astype(str) if id_col else \
        np.arange(table.num_rows).astype(str)
    extra_fields = extra_columns(table.schema, src.geometry_column, column, id_col, source=input_path)
    model = dict(model or {"name": "external", "version": "", "sha256": None})
    model.setdefault("version", "")
    model.setdefault("sha256", None)
    ext = build_extension(
        codec_name=CODEC_NAME, codec_version=CODEC_VERSION, quality=codec.quality,
        latent_shape=(codec.latent_channels,), step=codec.step, tables=codec.tables, block_rows=block_rows,
        decoder_sha256=sha256_hex(decoder), decoder_size=len(decoder), decoder_input=DECODER_INPUT,
        decoder_output=DECODER_OUTPUT, dimension=codec.dimension, embedding_type="chip",
        semantics=f"float vectors from column '{column}' of {os.path.basename(input_path)}",
        model=model, grid=grid or {"type": "irregular", "crs": None})
    start, end = _time_column(table, "datetime"), _time_column(table, "end_datetime")
    valid = table.column("valid_fraction").to_numpy(zero_copy_only=False) \
        if "valid_fraction" in table.column_names else None
    n = table.num_rows
    with GeocodecWriter(output_path, ext, decoder, src.crs, extra_schema=pa.schema(extra_fields),
                        row_group_rows=row_group_rows) as writer:
        bar = tqdm(total=n, unit="vec", desc="compress", disable=not progress)
        worst = (-1.0, -1)
        for lo in range(0, n, writer.row_group_rows):
            rows = order[lo:lo + writer.row_group_rows]
            q = codec.quantize(src.vectors[rows], source=input_path)
            err = np.abs(codec.reconstruct(q) - src.vectors[rows]).max(axis=1)
            if err.size and float(err.max()) > worst[0]:
                worst = (float(err.max()), int(rows[int(err.argmax())]))
            writer.write(
                tile_id=tile_ids[rows], geometry=src.geometry[rows], q=q,
                datetime=None if start is None else start[rows],
                end_datetime=None if end is None else end[rows],
                valid_fraction=None if valid is None else valid[rows],
                extra={f.name: table.column(f.name).take(pa.array(rows)).combine_chunks() for f in extra_fields})
            bar.update(len(rows))
        bar.close()
    raw = int(src.vectors.size * 4)
    if worst[0] > 0.5 * float(np.abs(src.vectors).max(initial=0.0)):
        log.warning("%s: row %d decodes with an error of %.4g (max abs): it lies far outside the other rows",
                    input_path, worst[1], worst[0])
    return {"rows": n, "worst_row": worst[1], "worst_row_error": worst[0], "dimension": codec.dimension, "quality": codec.quality,
            "latent_channels": codec.latent_channels, "code_bits": writer.code_bits,
            "cross_entropy_bits": writer.cross_entropy, "file_bytes": os.path.getsize(output_path),
            "raw_float32_bytes": raw}


def decompress(input_path, output_path, *, bbox=None, time=None, column: str = "embedding",
               progress: bool = True) -> dict:
    """Decode an extension file back to a plain GeoParquet of float32 vectors, streaming row groups."""
    output_path = os.fspath(output_path)
    refuse_overwrite(output_path, [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path))
    ds = GeocodecDataset(input_path)
    query = Query.make(bbox, time)
    first = ds.files[0]
    rows = 0
    bounds = [np.inf, np.inf, -np.inf, -np.inf]
    writer = None
    with atomic_output(output_path) as tmp:
        try:
            bar = tqdm(total=ds.num_rows, unit="vec", desc="decompress", disable=not progress)
            for part in ds.iter_rows(query, what="embeddings"):
                table, emb = part.table, part.values
                check_rows(table, part.file.geometry_column, source=part.file.source,
                           rows=part.rows - ds.row_offsets[ds.files.index(part.file)])
                d = emb.shape[1]
                table = table.append_column(pa.field(column, pa.list_(pa.float32(), d)),
                                            pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), d))
                if writer is None:
                    schema = table.schema.remove_metadata()
                    # store_schema=False: the Arrow schema is written at the end, when 'geo' is known
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=ZSTD_LEVEL,
                                              use_dictionary=["tile_id"], write_statistics=True,
                                              store_schema=False, write_page_checksum=True)
                if table.num_rows:
                    b = table.column("bbox").combine_chunks()
                    bounds = [min(bounds[0], pa.compute.min(b.field("xmin")).as_py()),
                              min(bounds[1], pa.compute.min(b.field("ymin")).as_py()),
                              max(bounds[2], pa.compute.max(b.field("xmax")).as_py()),
                              max(bounds[3], pa.compute.max(b.field("ymax")).as_py())]
                writer.write_table(table.cast(writer.schema))
                log.debug("%s: %d rows decoded and written", output_path, table.num_rows)
                rows += table.num_rows
                bar.update(table.num_rows)
            bar.close()
            if writer is None:
                raise InputError("no row group matches the query", source=ds.source)
            col = first.geo["columns"][first.geo["primary_column"]]
            geo = build_geo(crs=col.get("crs"), bbox=bounds if rows else col["bbox"],
                            geometry_types=col.get("geometry_types", []))
            import json

            meta = {GEO_KEY: json.dumps(geo)}
            writer.add_key_value_metadata({**meta, **arrow_schema_entry(writer.schema, meta)})
        finally:
            if writer is not None:
                writer.close()
    return {"rows": rows, "dimension": ds.spec.dimension}
