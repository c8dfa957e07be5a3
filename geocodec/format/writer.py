"""Streaming, atomic writer of compressed-embedding GeoParquet files.

Rows are buffered up to one row group, entropy-coded block by block and
written; memory is bounded by the row-group size, not the file size. The file
is written under a temporary name beside the target and renamed into place
only when complete, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geocodec.atomic import temp_path_for
from geocodec.format.entropy import IntegerTable, words_to_bytes
from geocodec.format.entropy_model import EntropyModel
from geocodec.errors import GeocodecError, InputError
from geocodec.format.metadata import (DECODER_HREF, DECODER_KEY, EMB_KEY, EXT_KEY, GEO_KEY, CodecSpec, build_emb,
                                      build_geo, encode_decoder, fingerprint, tables_sha256, validate_extension)
from geocodec.format.onnx_model import sha256_hex

DEFAULT_ROW_GROUP_ROWS = 65_536
DEFAULT_BLOCK_ROWS = 256
ZSTD_LEVEL = 15

BBOX_TYPE = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()),
                       ("xmax", pa.float64()), ("ymax", pa.float64())])
TIME_TYPE = pa.timestamp("ms", tz="UTC")

#: columns every file of the extension has, in order (see SPEC.md, "Columns")
CORE_FIELDS = [
    pa.field("tile_id", pa.string(), nullable=False),
    pa.field("geometry", pa.binary(), nullable=False),
    pa.field("bbox", BBOX_TYPE, nullable=False),
    pa.field("datetime", TIME_TYPE),
    pa.field("end_datetime", TIME_TYPE),
    pa.field("valid_fraction", pa.float32()),
    pa.field("code_index", pa.int32(), nullable=False),
    pa.field("code_rows", pa.int32()),
    pa.field("code", pa.binary()),
    pa.field("code_bits", pa.int64()),
    pa.field("code_crc32", pa.int64()),
]
CORE_NAMES = [f.name for f in CORE_FIELDS]
CODE_COLUMNS = ("code_index", "code_rows", "code", "code_bits", "code_crc32")


def file_schema(extra: pa.Schema | None = None) -> pa.Schema:
    """The Arrow schema of a geocodec file: the core columns, then those of ``extra``.

    Raises :class:`~geocodec.errors.InputError` if an extra column takes a reserved name.
    """
    fields = list(CORE_FIELDS)
    for f in extra or []:
        if f.name in CORE_NAMES:
            raise InputError(f"column name '{f.name}' is reserved by the geocodec layout", field=f.name)
        fields.append(f)
    return pa.schema(fields)


def encode_row_group(q: np.ndarray, spec: CodecSpec, *, source: str | None = None,
                     row_offset: int = 0) -> dict[str, pa.Array]:
    """Code columns for rows ``q`` (N, C, S), cut into blocks of ``spec.block_rows``.

    Errors name ``source`` and the row, counting from ``row_offset``.
    """
    n = q.shape[0]
    b = spec.block_rows
    index = (np.arange(n) % b).astype(np.int32)
    heads = np.flatnonzero(index == 0)
    rows, codes, bits, crcs = [None] * n, [None] * n, [None] * n, [None] * n
    for start in heads:
        stop = min(start + b, n)
        try:
            data = words_to_bytes(spec.entropy.encode(q[start:stop]))
        except GeocodecError as exc:
            raise type(exc)(exc.message, source=exc.source or source, field=exc.field,
                            row=None if exc.row is None else row_offset + int(start) + exc.row) from None
        rows[start] = stop - start
        codes[start] = data
        bits[start] = 8 * len(data)
        crcs[start] = zlib.crc32(data)
    return {
        "code_index": pa.array(index, pa.int32()),
        "code_rows": pa.array(rows, pa.int32()),
        "code": pa.array(codes, pa.binary()),
        "code_bits": pa.array(bits, pa.int64()),
        "code_crc32": pa.array(crcs, pa.int64()),
    }


class GeocodecWriter:
    """Write rows of quantized latents with their footprints; see :meth:`write`.

    Use as a context manager; leaving the block with an exception removes the
    temporary file and leaves any existing file at ``path`` untouched.

    ``ext`` says how the decoder and tables are stored: embedded (``decoder.href``
    ``"#geocodec.decoder"``, ``entropy_model.tables``; ``decoder`` holds the bytes) or by
    reference to a published model (``decoder.published``, ``entropy_model.tables_ref``;
    see :mod:`geocodec.format.published`), where ``decoder`` may be None and ``tables``
    may give the referenced tables (else they resolve from the package or cache).
    """

    def __init__(self, path: str | os.PathLike, ext: dict, decoder: bytes | None, crs: dict, *,
                 extra_schema: pa.Schema | None = None, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
                 tables: "list[IntegerTable] | EntropyModel | None" = None):
        self.path = os.fspath(path)
        crs = projjson(crs, source=self.path)
        self.ext = validate_extension(dict(ext), source=self.path)
        self.spec = CodecSpec(self.ext, source=self.path)
        check_stored_parts(self.ext, decoder, tables, self.spec, source=self.path)
        _ = self.spec.entropy  # referenced tables resolve (or fail) before anything is written
        if row_group_rows % self.spec.block_rows:
            row_group_rows -= row_group_rows % self.spec.block_rows
        self.row_group_rows = max(row_group_rows, self.spec.block_rows)
        self.decoder = decoder
        self.crs = crs
        self.schema = file_schema(extra_schema)
        self.extra_names = [f.name for f in extra_schema or []]
        self.tmp_path = temp_path_for(self.path)
        # store_schema=False: no ARROW:schema key, so Arrow readers take the schema metadata from the
        # footer keys written at close (geo, emb, geocodec, geocodec.decoder) and a pyarrow read -> write
        # keeps them; an ARROW:schema written at open would hide them (SPEC.md, "Rewriting tools")
        self._writer = pq.ParquetWriter(
            self.tmp_path, self.schema, compression="zstd", compression_level=ZSTD_LEVEL,
            use_dictionary=["tile_id"], write_statistics=statistics_columns(self.schema), store_schema=False,
            write_page_checksum=True)  # a flipped bit in any page is refused on read (SPEC.md 8)
        self._pending: list[dict] = []
        self._pending_rows = 0
        self.rows = 0
        self.code_bits = 0
        self.cross_entropy = 0.0
        self._bbox = [np.inf, np.inf, -np.inf, -np.inf]
        self._types: set[str] = set()
        self._tmin: np.datetime64 | None = None
        self._tmax: np.datetime64 | None = None
        self._closed = False

    # -- writing -----------------------------------------------------------------------
    def write(self, *, tile_id, geometry, q: np.ndarray, datetime=None, end_datetime=None,
              valid_fraction=None, extra: dict | None = None) -> None:
        """Append rows. ``geometry``: shapely geometries or WKB; ``q``: int codes (N, C, S)."""
        q = np.asarray(q)
        n = q.shape[0]
        expected = (self.spec.channels, self.spec.positions)
        if q.ndim != 3 or q.shape[1:] != expected:
            raise InputError(f"codes have shape {q.shape}, the codec expects (rows, {expected[0]}, {expected[1]})",
                             source=self.path)
        geoms = np.asarray(geometry, dtype=object)
        if len(geoms) and isinstance(geoms[0], (bytes, bytearray)):
            geoms = shapely.from_wkb(geoms)
        if len(geoms) != n or len(tile_id) != n:
            raise InputError(f"{len(tile_id)} tile ids and {len(geoms)} geometries for {n} rows", source=self.path)
        bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        if bad.size:
            raise InputError("missing or empty geometry", source=self.path, row=self.rows + self._pending_rows + int(bad[0]))
        chunk = {
            "tile_id": np.asarray(tile_id, dtype=object).astype(str),
            "geometry": geoms,
            "q": q.astype(np.int32, copy=False),
            "datetime": _times(datetime, n),
            "end_datetime": _times(end_datetime, n),
            "valid_fraction": None if valid_fraction is None else np.asarray(valid_fraction, dtype=np.float32),
            "extra": {k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in (extra or {}).items()},
        }
        missing = set(self.extra_names) - set(chunk["extra"])
        if missing:
            raise InputError(f"values missing for extra column(s) {sorted(missing)}", source=self.path)
        self._pending.append(chunk)
        self._pending_rows += n
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _take(self, n: int) -> dict:
        """Remove the first ``n`` pending rows as one chunk."""
        merged = _concat_chunks(self._pending)
        head = _slice_chunk(merged, 0, n)
        rest = _slice_chunk(merged, n, self._pending_rows)
        self._pending = [rest] if self._pending_rows > n else []
        self._pending_rows -= n
        return head

    def _flush(self, n: int) -> None:
        if n == 0:
            return
        chunk = self._take(n)
        geoms = chunk["geometry"]
        bounds = shapely.bounds(geoms)
        self._bbox = [min(self._bbox[0], bounds[:, 0].min()), min(self._bbox[1], bounds[:, 1].min()),
                      max(self._bbox[2], bounds[:, 2].max()), max(self._bbox[3], bounds[:, 3].max())]
        self._types.update(shapely.get_type_id(geoms).tolist())
        for col in ("datetime", "end_datetime"):
            t = chunk[col]
            if t is not None and (~np.isnat(t)).any():
                lo, hi = t[~np.isnat(t)].min(), t[~np.isnat(t)].max()
                self._tmin = lo if self._tmin is None else min(self._tmin, lo)
                self._tmax = hi if self._tmax is None else max(self._tmax, hi)
        codes = encode_row_group(chunk["q"], self.spec, source=self.path, row_offset=self.rows)
        self.code_bits += int(pa.compute.sum(codes["code_bits"]).as_py() or 0)
        self.cross_entropy += self.spec.entropy.cross_entropy_bits(chunk["q"])
        arrays = {
            "tile_id": pa.array(chunk["tile_id"], pa.string()),
            "geometry": pa.array(shapely.to_wkb(geoms), pa.binary()),
            "bbox": pa.StructArray.from_arrays([pa.array(bounds[:, i]) for i in range(4)],
                                               names=["xmin", "ymin", "xmax", "ymax"]),
            "datetime": _time_array(chunk["datetime"], n),
            "end_datetime": _time_array(chunk["end_datetime"], n),
            "valid_fraction": pa.array(chunk["valid_fraction"], pa.float32()) if chunk["valid_fraction"] is not None
            else pa.nulls(n, pa.float32()),
            **codes,
        }
        for name in self.extra_names:
            arrays[name] = chunk["extra"][name].cast(self.schema.field(name).type)
        table = pa.Table.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)
        self._writer.write_table(table, row_group_size=n)
        self.rows += n

    # -- finishing -----------------------------------------------------------------------
    def close(self) -> str:
        """Flush the pending rows, write the footer and move the file into place; return its path.

        Raises :class:`~geocodec.errors.InputError` if no rows were written; on any error the temporary file is removed.
        Closing again does nothing.
        """
        if self._closed:
            return self.path
        try:
            self._flush(self._pending_rows)
            if self.rows == 0:
                raise InputError("no rows were written (empty input)", source=self.path)
            self._writer.add_key_value_metadata(footer_metadata(
                self.ext, self.crs, self._bbox, _geojson_types(self._types),
                None if self._tmin is None else [_iso(self._tmin), _iso(self._tmax)],
                {"rows": self.rows, "code_bits": self.code_bits, "cross_entropy_bits": round(self.cross_entropy, 3)},
                self.decoder))
            self._writer.close()
            self._closed = True
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file; any existing file at ``path`` stays untouched."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
            except Exception:
                pass
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def projjson(crs, *, source: str | None = None) -> dict:
    """The CRS as a PROJJSON object (GeoParquet requires one); strings like 'EPSG:32618' are converted."""
    if not crs:
        raise InputError("a CRS is required for the geometry column", source=source, field="crs")
    from pyproj import CRS

    try:
        return CRS.from_user_input(crs).to_json_dict()
    except Exception as exc:
        raise InputError(f"not a CRS pyproj understands: {exc}", source=source, field="crs") from exc


def statistics_columns(schema: pa.Schema) -> list[str]:
    """Column paths that get Parquet min/max statistics: every column but the code columns and the binary
    ones (``geometry``, ``valid_cells`` ...), whose min/max are whole blobs (up to 8 KB per row group in
    the footer) that no query can use; ``bbox`` and the times keep theirs for row-group pruning."""
    out = []
    for f in schema:
        if f.name in CODE_COLUMNS:
            continue
        if pa.types.is_struct(f.type):
            out += [f"{f.name}.{c.name}" for c in f.type if not pa.types.is_binary(c.type)]
        elif not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)):
            out.append(f.name)
    return out


def check_stored_parts(ext: dict, decoder: bytes | None, tables: "list[IntegerTable] | EntropyModel | None",
                       spec: CodecSpec, *, source: str) -> None:
    """The decoder bytes and tables a writer is given must be the ones ``ext`` names.

    An embedded decoder (``href`` ``"#geocodec.decoder"``) needs its bytes; a referenced one
    may come without. Tables given for ``entropy_model.tables_ref`` are checked against its
    sha256 and used for coding (else they are resolved as a reader would: package, cache).
    """
    want = ext["decoder"]["sha256"]
    if decoder is None and ext["decoder"]["href"] == DECODER_HREF:
        raise InputError("an embedded decoder needs its bytes", source=source, field="decoder")
    if decoder is not None and sha256_hex(decoder) != want:
        raise InputError(f"the decoder bytes hash to {sha256_hex(decoder)}, the metadata says {want}",
                         source=source, field="geocodec.decoder.sha256")
    if tables is not None:
        em = ext["entropy_model"]
        model = tables if isinstance(tables, EntropyModel) else EntropyModel(tuple(tables))
        given = [t.to_json() for t in model.tables]
        context = None if model.context is None else model.context.to_json()
        want_tables = em["tables_ref"]["sha256"] if "tables_ref" in em else \
            tables_sha256(em["tables"], em.get("context"))
        if tables_sha256(given, context) != want_tables:
            raise InputError("the tables given are not the ones the metadata names", source=source,
                             field="geocodec.entropy_model.tables_ref.sha256")
        spec.__dict__["entropy_json"] = (given, context)  # fills CodecSpec's cached property


def footer_metadata(ext: dict, crs: dict, bbox, geometry_types: list[str], temporal_extent, rate: dict,
                    decoder: bytes | None) -> dict:
    """The footer keys of a finished file: ``geo``, ``emb``, ``geocodec`` and, when the decoder is
    embedded (``decoder.href`` ``"#geocodec.decoder"``), ``geocodec.decoder`` (``decoder``'s bytes)."""
    ext = dict(ext)
    ext["temporal_extent"] = temporal_extent
    ext["rate"] = rate
    ext["codec"] = dict(ext["codec"], fingerprint=fingerprint(ext))
    geo = build_geo(crs=crs, bbox=bbox, geometry_types=geometry_types)
    compact = {"separators": (",", ":")}
    out = {GEO_KEY: json.dumps(geo, **compact), EMB_KEY: json.dumps(build_emb(ext), **compact), EXT_KEY: json.dumps(ext, **compact)}
    if ext["decoder"]["href"] == DECODER_HREF:
        if decoder is None:
            raise InputError("the decoder is to be embedded but no decoder bytes were given", field="decoder")
        out[DECODER_KEY] = encode_decoder(decoder)
    return out


_GEOJSON_TYPES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
                  6: "MultiPolygon", 7: "GeometryCollection"}


def _geojson_types(type_ids) -> list[str]:
    return sorted({_GEOJSON_TYPES.get(int(t), "GeometryCollection") for t in type_ids})


def _times(values, n: int):
    if values is None:
        return None
    t = np.asarray(values)
    if t.ndim == 0:
        t = np.full(n, t)
    if not np.issubdtype(t.dtype, np.datetime64):
        try:
            t = t.astype("datetime64[ms]")
        except (ValueError, TypeError) as exc:
            raise InputError(f"datetimes could not be read: {exc}", field="datetime") from exc
    if len(t) != n:
        raise InputError(f"{len(t)} datetimes for {n} rows", field="datetime")
    return t.astype("datetime64[ms]")


def _time_array(t, n: int) -> pa.Array:
    if t is None:
        return pa.nulls(n, TIME_TYPE)
    return pa.array(t, pa.timestamp("ms")).cast(TIME_TYPE)


def _iso(t: np.datetime64) -> str:
    return np.datetime_as_string(t.astype("datetime64[ms]"), unit="s") + "Z"


def _concat_chunks(chunks: list[dict]) -> dict:
    if len(chunks) == 1:
        return chunks[0]
    out = {}
    for key in ("tile_id", "geometry", "q"):
        out[key] = np.concatenate([c[key] for c in chunks])
    n_each = [len(c["tile_id"]) for c in chunks]
    for key in ("datetime", "end_datetime", "valid_fraction"):
        if all(c[key] is None for c in chunks):
            out[key] = None
        else:
            fill = np.datetime64("NaT", "ms") if key != "valid_fraction" else np.float32("nan")
            out[key] = np.concatenate([c[key] if c[key] is not None else np.full(m, fill)
                                       for c, m in zip(chunks, n_each)])
    out["extra"] = {k: pa.concat_arrays([c["extra"][k] for c in chunks]) for k in chunks[0]["extra"]}
    return out


def _slice_chunk(chunk: dict, start: int, stop: int) -> dict:
    out = {}
    for key in ("tile_id", "geometry", "q", "datetime", "end_datetime", "valid_fraction"):
        out[key] = None if chunk[key] is None else chunk[key][start:stop]
    out["extra"] = {k: v.slice(start, stop - start) for k, v in chunk["extra"].items()}
    return out
