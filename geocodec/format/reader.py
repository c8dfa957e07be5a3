"""One geocodec file (:class:`GeocodecFile`) and the reader API every task uses.

A file is opened lazily: only the footer is read at first. Queries (bbox, time,
:mod:`.query`) are pushed down to row groups; code bytes are entropy-decoded
(:mod:`.blocks`) and run through the ONNX decoder only when asked for.

The reader API, the same on :class:`GeocodecFile` and
:class:`~geocodec.format.dataset.GeocodecDataset`:

* :meth:`GeocodecFile.iter_rows` — per row group, the rows matching a query: their
  columns, global row indices and, by ``what``, nothing, their ``"codes"``, dequantized
  ``"latents"`` or decoded ``"embeddings"`` (:class:`Rows`). It streams with bounded
  memory: with decoding workers the next row group decodes while the current one is
  delivered, and the ONNX decoder runs in slices of :data:`DECODER_BATCH_ROWS` rows.
  :meth:`GeocodecFile.iter_decoded` is its ``what="embeddings"`` form as (table, embeddings).
* :meth:`GeocodecFile.take` / :meth:`GeocodecFile.iter_take` — rows by global index,
  without the caller knowing row groups; only the blocks holding them are decoded.
* :attr:`GeocodecFile.crs`, :attr:`~GeocodecFile.bbox`, :attr:`~GeocodecFile.grid`,
  :attr:`~GeocodecFile.geometry_column` — what a task needs to place its results.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from geocodec.errors import GeocodecError, InputError, MetadataError
from geocodec.format.blocks import decode_code_columns, start_decode
from geocodec.threads import decode_workers
from geocodec.format.metadata import (DECODER_KEY, EMB_KEY, EXT_KEY, GEO_KEY, CodecSpec, check_fingerprint, check_geo,
                                      decode_decoder,
                                      parse_json_key, validate_extension)
from geocodec.format.onnx_model import OnnxDecoder, load_decoder
from geocodec.format.query import Query, matching_row_groups, row_mask
from geocodec.format.published import decoder_embedded, resolve_decoder, storage_report, tables_embedded
from geocodec.format.rowchecks import check_text
from geocodec.format.sources import open_binary
from geocodec.format.writer import CODE_COLUMNS, CORE_NAMES

DECODER_BATCH_ROWS = 8192    # rows per ONNX decoder call
#: what :meth:`GeocodecFile.iter_rows` and :meth:`GeocodecFile.take` can return with the rows
WHAT = (None, "codes", "latents", "embeddings")


@dataclass
class Rows:
    """Rows of one file (one row group, or the rows taken from it).

    ``table``: the asked-for columns (never the code columns); ``rows``: their global row
    indices (int64; for a dataset, counted over its files in order); ``values``: by
    ``what``, None, codes ``(N, C, S)`` int32, latents ``(N, *latent_shape)`` float32 or
    embeddings ``(N, D)`` float32; ``file``: the :class:`GeocodecFile` they come from.
    """

    file: "GeocodecFile"
    table: pa.Table
    rows: np.ndarray
    values: np.ndarray | None

    def __len__(self) -> int:
        return self.table.num_rows


def check_what(what) -> None:
    """Refuse a ``what`` other than those of :data:`WHAT` (InputError, field ``what``)."""
    if what not in WHAT:
        raise InputError(f"what must be one of {list(WHAT)}, got {what!r}", field="what")


class GeocodecFile:
    """One file of the extension, opened lazily: only the footer is read at first."""

    def __init__(self, source: str | os.PathLike):
        self.source = os.fspath(source)
        try:
            self._handle = open_binary(self.source)
            # pages written with a CRC (geocodec's writers write them) are checked when read
            self.parquet = pq.ParquetFile(self._handle, page_checksum_verification=True)
        except FileNotFoundError as exc:
            raise GeocodecError("no such file", source=self.source) from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"not a readable Parquet file: {exc}", source=self.source) from exc
        kv = self.parquet.metadata.metadata or {}
        self.geo = check_geo(parse_json_key(kv, GEO_KEY, source=self.source), source=self.source)
        self.emb = parse_json_key(kv, EMB_KEY, source=self.source, required=False)
        self.ext = validate_extension(parse_json_key(kv, EXT_KEY, source=self.source), source=self.source)
        check_fingerprint(self.ext, source=self.source)
        self.spec = CodecSpec(self.ext, source=self.source)
        self._decoder_b64 = kv.get(DECODER_KEY.encode())
        names = self.parquet.schema_arrow.names
        missing = [c for c in CORE_NAMES if c not in names]
        if missing:
            raise MetadataError(f"missing column(s) {missing}", source=self.source, field=missing[0])
        self._row_offsets = np.concatenate(
            [[0], np.cumsum([self.parquet.metadata.row_group(i).num_rows
                             for i in range(self.parquet.num_row_groups)])]).astype(np.int64)

    def close(self):
        """Close the underlying file (or HTTP connection)."""
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metadata ------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Rows (tiles x dates) in the file."""
        return self.parquet.metadata.num_rows

    @property
    def geometry_column(self) -> str:
        """Name of the primary geometry column (WKB)."""
        return self.geo["primary_column"]

    @property
    def crs(self):
        """PROJJSON (or None) of the geometry column, as the 'geo' metadata holds it."""
        return self.geo["columns"][self.geometry_column].get("crs")

    @property
    def bbox(self) -> list[float] | None:
        """``[xmin, ymin, xmax, ymax]`` of every geometry in the file (file CRS), None if not recorded."""
        b = self.geo["columns"][self.geometry_column].get("bbox")
        return None if not b else [float(b[0]), float(b[1]), float(b[-2]), float(b[-1])]

    @property
    def geometry_types(self) -> list[str]:
        """GeoParquet geometry types of the geometry column (e.g. ``["Polygon"]``)."""
        return list(self.geo["columns"][self.geometry_column].get("geometry_types", []))

    @property
    def grid(self) -> dict:
        """The tile grid of the extension metadata (``type``, ``origin``, ``tile_size_m`` ...); {} if none."""
        return self.ext.get("grid") or {}

    @property
    def column_names(self) -> list[str]:
        """Every column but the code columns, in file order."""
        return [n for n in self.parquet.schema_arrow.names if n not in CODE_COLUMNS]

    @property
    def extra_columns(self) -> list[str]:
        """The columns beyond the core ones of the spec (e.g. ``valid_cells``)."""
        return [n for n in self.parquet.schema_arrow.names if n not in CORE_NAMES]

    def block_checksums(self) -> np.ndarray:
        """The ``code_crc32`` of every code block, in row order (uint32): a digest of the codes."""
        crc = self.parquet.read(columns=["code_crc32"]).column("code_crc32")
        return pa.compute.drop_null(crc).to_numpy(zero_copy_only=False).astype("<u4")

    @property
    def decoder_embedded(self) -> bool:
        """True when the decoder is in the footer; False when the file names it by reference."""
        return decoder_embedded(self.ext)

    @property
    def tables_embedded(self) -> bool:
        """True when the entropy tables are in the footer; False when they are named by reference."""
        return tables_embedded(self.ext)

    @cached_property
    def decoder_bytes(self) -> bytes:
        """The ONNX decoder: embedded in the footer, or resolved by reference (the installed package, the
        user cache, then ``decoder.href``: https or relative to the file; see :mod:`.published`)."""
        if self.decoder_embedded:
            if self._decoder_b64 is None:
                raise MetadataError(f"the decoder should be embedded under footer key '{DECODER_KEY}' but is not",
                                    source=self.source, field="decoder.href")
            return decode_decoder(self._decoder_b64, source=self.source)
        return resolve_decoder(self.ext["decoder"], source=self.source).data

    def storage(self, *, fetch: bool = False) -> dict:
        """How the decoder and tables are stored and whether they resolve
        (:func:`geocodec.format.published.storage_report`; ``fetch`` False: no network)."""
        return storage_report(self.ext, source=self.source, fetch=fetch)

    @cached_property
    def decoder(self) -> OnnxDecoder:
        """The ONNX decoder session (latents -> embeddings), its sha256 checked."""
        d = self.ext["decoder"]
        return load_decoder(self.decoder_bytes, d["sha256"], source=self.source, input_name=d.get("input"),
                            output_name=d.get("output"), latent_shape=self.spec.latent_shape,
                            dimension=self.spec.dimension)

    # -- row groups (low level) ----------------------------------------------------------
    def row_groups(self, query: Query | None = None) -> list[int]:
        """Row groups whose statistics say they may hold rows matching ``query``."""
        return matching_row_groups(self.parquet.metadata, query)

    def _read(self, rg: int, columns: list[str] | None) -> pa.Table:
        try:
            table = self.parquet.read_row_group(rg, columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"row group {rg} could not be read: {exc}", source=self.source,
                                row=int(self._row_offsets[rg])) from exc
        check_text(table, source=self.source, row_offset=int(self._row_offsets[rg]))
        return table

    def read_row_group(self, rg: int, columns: list[str] | None = None) -> pa.Table:
        """Row group ``rg``: ``columns`` (None: all) plus the code columns."""
        cols = None if columns is None else list(dict.fromkeys([*columns, *CODE_COLUMNS]))
        return self._read(rg, cols)

    def iter_tables(self, query: Query | None = None, columns: list[str] | None = None
                    ) -> Iterator[tuple[int, pa.Table]]:
        """(first row index in the file, whole row-group table) per row group that may match ``query``.

        Low level (validation, the reference decoder's tests): tasks use :meth:`iter_rows`.
        """
        for rg in self.row_groups(query):
            yield int(self._row_offsets[rg]), self.read_row_group(rg, columns)

    def row_mask(self, table: pa.Table, query: Query | None) -> np.ndarray:
        """Bool mask of the rows of a row-group table that match ``query``."""
        return row_mask(table, query)

    def decode_codes(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Integer codes ``(N, C, S)`` of a whole row group table, bit-exact."""
        return decode_code_columns(table, self.spec, source=self.source, row_offset=row_offset)

    def latents(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Dequantized latents ``(N, *latent_shape)`` of a whole row group table."""
        return self.spec.dequantize(self.decode_codes(table, row_offset))

    def decode(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Float32 embeddings ``(N, D)`` of a whole row group table."""
        emb = self.decoder(self.latents(table, row_offset))
        if emb.shape[0] != table.num_rows:
            raise MetadataError(f"decoder returned {emb.shape[0]} rows for {table.num_rows}", source=self.source,
                                field="decoder")
        emb = emb.reshape(table.num_rows, -1)
        check_embeddings(emb, self.spec.dimension, row_offset + np.arange(table.num_rows), source=self.source)
        return emb

    # -- the reader API --------------------------------------------------------------------
    def iter_rows(self, query: Query | None = None, columns: list[str] | None = None, *, what: str | None = None,
                  threads: int | None = None) -> Iterator[Rows]:
        """The rows matching ``query``, one :class:`Rows` per row group holding any.

        ``columns``: the columns to return (None: all but the code columns); ``what``: None
        (columns only: the code bytes are not even read), ``"codes"``, ``"latents"`` or
        ``"embeddings"``. Only the code blocks holding matching rows are decoded.
        ``threads``: entropy-decoding workers (default ``$GEOCODEC_THREADS``, else every core;
        1 decodes in-process); with more than one, the next row group is read and handed to
        the workers while the current one is delivered, so at most two row groups are held.
        Row indices are the file's (see :meth:`GeocodecDataset.iter_rows` for a dataset's).
        """
        return self._iter_rows(query, columns, what=what, threads=threads, base=0)

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None, *,
                     threads: int | None = None) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(table of matching rows without code columns, their embeddings), per row group:
        :meth:`iter_rows` with ``what="embeddings"``."""
        for r in self.iter_rows(query, columns, what="embeddings", threads=threads):
            yield r.table, r.values

    def take(self, rows, columns: list[str] | None = None, *, what: str | None = None,
             threads: int | None = 1) -> tuple[pa.Table, np.ndarray | None]:
        """(columns, values by ``what``) of the rows at global indices ``rows``, in the order given.

        ``rows`` may repeat and come in any order; an index outside the file is an
        :class:`InputError` naming the row. Only the row groups and code blocks holding
        the rows are read and decoded. ``columns``/``what``/``threads`` as in :meth:`iter_rows`.
        """
        return gather(self.iter_take(rows, columns, what=what, threads=threads), rows, self, columns, what)

    def iter_take(self, rows, columns: list[str] | None = None, *, what: str | None = None,
                  threads: int | None = 1) -> Iterator[Rows]:
        """The rows at global indices ``rows`` as :class:`Rows`, per row group, in ascending row order
        (each row once). Arguments as :meth:`take`."""
        rows = as_row_indices(rows)
        return self._iter_take(np.unique(rows), columns, what=what, threads=threads, base=0)

    # -- internals of the reader API ---------------------------------------------------------
    def _out_columns(self, columns) -> list[str]:
        if columns is None:
            return self.column_names
        return [c for c in dict.fromkeys(columns) if c not in CODE_COLUMNS]

    def _values(self, codes: np.ndarray, what: str, rows: np.ndarray) -> np.ndarray:
        if what == "codes":
            return codes
        if what == "latents":
            return self.spec.dequantize(codes)
        n = codes.shape[0]
        # the decoder runs on slices: its temporaries (latents, onnxruntime buffers) stay a few MB
        emb = None
        for lo in range(0, n, DECODER_BATCH_ROWS):
            part = self.decoder(self.spec.dequantize(codes[lo:lo + DECODER_BATCH_ROWS]))
            part = part.reshape(part.shape[0], -1)
            if emb is None:
                if n <= DECODER_BATCH_ROWS:
                    emb = part
                    break
                emb = np.empty((n, part.shape[1]), dtype=part.dtype)
            emb[lo:lo + part.shape[0]] = part
        if emb is None:
            emb = self.decoder(self.spec.dequantize(codes)).reshape(0, -1)
        if emb.shape[0] != n:
            raise MetadataError(f"decoder returned {emb.shape[0]} rows for {n}", source=self.source, field="decoder")
        check_embeddings(emb, self.spec.dimension, rows, source=self.source)
        return emb

    def _empty_values(self, what):
        if what is None:
            return None
        if what == "codes":
            return np.zeros((0, self.spec.channels, self.spec.positions), np.int32)
        if what == "latents":
            return np.zeros((0,) + tuple(self.spec.latent_shape), np.float32)
        return np.zeros((0, self.spec.dimension), np.float32)

    def _empty_table(self, columns) -> pa.Table:
        return self.parquet.schema_arrow.empty_table().select(self._out_columns(columns))

    def _finish(self, table, mask, offset, out_cols, codes, what, base) -> Rows:
        every = bool(mask.all())
        if not every:
            table = table.filter(pa.array(mask))
        rows = np.flatnonzero(mask).astype(np.int64) + offset
        values = None if what is None else self._values(codes if every else codes[mask], what, rows)
        rows += base
        return Rows(self, table.select(out_cols), rows, values)

    def _iter_rows(self, query, columns, *, what, threads, base) -> Iterator[Rows]:
        check_what(what)
        out_cols = self._out_columns(columns)
        read = None if columns is None and what is not None else \
            list(dict.fromkeys([*out_cols, *(query.columns if query else []), *(CODE_COLUMNS if what else [])]))
        workers = 1 if what is None else decode_workers(threads)
        depth = 1 if workers > 1 else 0       # row groups decoding ahead of the one delivered
        ahead: deque = deque()

        def finish(item):
            table, mask, offset, job = item
            return self._finish(table, mask, offset, out_cols, None if job is None else job.result(), what, base)

        try:
            for rg in self.row_groups(query):
                offset = int(self._row_offsets[rg])
                try:
                    table = self._read(rg, read)
                except GeocodecError:
                    # the row groups before a bad one are still delivered, as the serial reader does
                    while ahead:
                        yield finish(ahead.popleft())
                    raise
                mask = row_mask(table, query)
                if not mask.any():
                    continue
                job = None if what is None else start_decode(table, self.spec, source=self.source, row_offset=offset,
                                                             needed=mask, threads=workers)
                ahead.append((table, mask, offset, job))
                while len(ahead) > depth:
                    yield finish(ahead.popleft())
            while ahead:
                yield finish(ahead.popleft())
        finally:
            for *_, job in ahead:
                if job is not None:
                    job.cancel()

    def _iter_take(self, local: np.ndarray, columns, *, what, threads, base) -> Iterator[Rows]:
        """``local``: sorted unique row indices of this file (global minus ``base``)."""
        check_what(what)
        if local.size and (local[0] < 0 or local[-1] >= self.num_rows):
            bad = int(local[0] if local[0] < 0 else local[-1])
            raise InputError(f"row {bad + base} is out of range: the file has {self.num_rows} rows",
                             source=self.source, row=bad, field="row")
        out_cols = self._out_columns(columns)
        read = list(dict.fromkeys([*out_cols, *(CODE_COLUMNS if what else [])]))
        rg_of = np.searchsorted(self._row_offsets, local, side="right") - 1
        for rg in np.unique(rg_of):
            rg = int(rg)
            offset = int(self._row_offsets[rg])
            table = self._read(rg, read)
            mask = np.zeros(table.num_rows, bool)
            mask[local[rg_of == rg] - offset] = True
            codes = None
            if what is not None:
                codes = decode_code_columns(table, self.spec, source=self.source, row_offset=offset, needed=mask,
                                            threads=threads)
            yield self._finish(table, mask, offset, out_cols, codes, what, base)


def check_embeddings(emb: np.ndarray, dimension: int, rows: np.ndarray, *, source: str) -> None:
    """Refuse decoded vectors that are not ``dimension`` wide (SPEC.md 9) or hold NaN/inf (MetadataError,
    field ``decoder``); ``rows``: the file's row index of each vector, for the error."""
    if emb.ndim != 2 or emb.shape[1] != dimension:
        raise MetadataError(f"the decoder gives vectors of {emb.shape[1:]} floats, embedding.dimension says "
                            f"{dimension}", source=source, row=int(rows[0]) if len(rows) else None, field="decoder")
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise MetadataError("the decoder gives a NaN or infinite value", source=source, row=int(rows[i]),
                            field="decoder")


def as_row_indices(rows) -> np.ndarray:
    """``rows`` as a flat int64 array of row indices (InputError, field ``row``, for non-integers)."""
    rows = np.asarray(rows)
    if rows.size and rows.dtype.kind not in "iu":
        raise InputError(f"row indices must be integers, got {rows.dtype}", field="row")
    return rows.astype(np.int64).reshape(-1)


def gather(parts: Iterable[Rows], rows, first: GeocodecFile, columns, what) -> tuple[pa.Table, np.ndarray | None]:
    """(table, values) of ``rows`` in the order given, from :class:`Rows` parts in ascending row order."""
    rows = as_row_indices(rows)
    parts = list(parts)
    if not parts:
        return first._empty_table(columns), first._empty_values(what)
    got = np.concatenate([p.rows for p in parts])
    pos = pa.array(np.searchsorted(got, rows))
    tables = [p.table for p in parts]
    table = (tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")).take(pos)
    values = None if what is None else np.concatenate([p.values for p in parts])[pos.to_numpy()]
    return table, values
