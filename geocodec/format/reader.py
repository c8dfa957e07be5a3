"""Reading compressed-embedding GeoParquet: a file, a directory of files or an HTTP(S) URL.

Queries (bbox, time) are pushed down to row groups through the Parquet
statistics of the ``bbox`` covering column and ``datetime``; only the row groups
that can match are fetched. Code bytes are entropy-decoded and run through the
ONNX decoder only when asked for (:meth:`GeocodecFile.decode`).

Entropy decoding is parallel: constriction holds the GIL while it decodes, so
threads do not help; tables of at least :data:`PARALLEL_MIN_BLOCKS` code blocks
are cut into chunks of blocks that a pool of worker processes decodes (one per
core, or ``$GEOCODEC_THREADS``; ``1`` decodes in-process). Results are bit-exact
with the serial decoder and errors name the same block. :meth:`GeocodecFile.iter_decoded`
streams row groups with one row group decoding ahead, so memory stays bounded
by about two row groups whatever the file size.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import threading
import types
import warnings
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geocodec.format.entropy import IntegerTable, bytes_to_words, decode_block
from geocodec.errors import BitstreamError, GeocodecError, InputError, MetadataError
from geocodec.threads import THREADS_ENV, decode_workers
from geocodec.format.metadata import (DECODER_KEY, EMB_KEY, EXT_KEY, GEO_KEY, CodecSpec, decode_decoder,
                       parse_json_key, validate_extension)
from geocodec.format.onnx_model import OnnxDecoder, load_decoder
from geocodec.format.writer import CODE_COLUMNS, CORE_NAMES


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


@dataclass(frozen=True)
class Query:
    bbox: tuple[float, float, float, float] | None = None   # in the file's CRS
    time: tuple[np.datetime64 | None, np.datetime64 | None] | None = None

    @staticmethod
    def make(bbox=None, time=None) -> "Query":
        if bbox is not None:
            bbox = tuple(float(v) for v in bbox)
            if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
                raise InputError(f"bbox must be xmin,ymin,xmax,ymax with min <= max, got {bbox}", field="bbox")
        if time is not None:
            start, end = time
            time = (None if start is None else np.datetime64(start, "ms"),
                    None if end is None else np.datetime64(end, "ms"))
        return Query(bbox=bbox, time=time)


def _open_binary(source: str):
    if is_url(source):
        import fsspec

        fs = fsspec.filesystem("http")
        # no read-ahead: pyarrow asks for exactly the byte ranges it needs. block_size must be
        # non-zero (fsspec gives an unseekable streaming file for 0); cache_type "none" then
        # fetches exactly the requested ranges, whatever the block size.
        return fs.open(source, "rb", block_size=1 << 20, cache_type="none")
    return open(source, "rb")


class GeocodecFile:
    """One file of the extension, opened lazily: only the footer is read at first."""

    def __init__(self, source: str | os.PathLike):
        self.source = os.fspath(source)
        try:
            self._handle = _open_binary(self.source)
            self.parquet = pq.ParquetFile(self._handle)
        except FileNotFoundError as exc:
            raise GeocodecError("no such file", source=self.source) from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"not a readable Parquet file: {exc}", source=self.source) from exc
        kv = self.parquet.metadata.metadata or {}
        self.geo = parse_json_key(kv, GEO_KEY, source=self.source)
        self.emb = parse_json_key(kv, EMB_KEY, source=self.source, required=False)
        self.ext = validate_extension(parse_json_key(kv, EXT_KEY, source=self.source), source=self.source)
        self.spec = CodecSpec(self.ext)
        self._decoder_b64 = kv.get(DECODER_KEY.encode())
        names = self.parquet.schema_arrow.names
        missing = [c for c in CORE_NAMES if c not in names]
        if missing:
            raise MetadataError(f"missing column(s) {missing}", source=self.source, field=missing[0])
        self._row_offsets = np.concatenate(
            [[0], np.cumsum([self.parquet.metadata.row_group(i).num_rows
                             for i in range(self.parquet.num_row_groups)])])

    def close(self):
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metadata ------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return self.parquet.metadata.num_rows

    @property
    def crs(self):
        return self.geo["columns"][self.geo["primary_column"]].get("crs")

    @property
    def extra_columns(self) -> list[str]:
        return [n for n in self.parquet.schema_arrow.names if n not in CORE_NAMES]

    @cached_property
    def decoder_bytes(self) -> bytes:
        href = self.ext["decoder"]["href"]
        if href == "#" + DECODER_KEY:
            if self._decoder_b64 is None:
                raise MetadataError(f"the decoder should be embedded under footer key '{DECODER_KEY}' but is not",
                                    source=self.source, field="decoder.href")
            return decode_decoder(self._decoder_b64, source=self.source)
        return _fetch_asset(href, source=self.source)

    @cached_property
    def decoder(self) -> OnnxDecoder:
        d = self.ext["decoder"]
        return load_decoder(self.decoder_bytes, d["sha256"], source=self.source, input_name=d.get("input"),
                            output_name=d.get("output"))

    # -- row-group selection -------------------------------------------------------------
    def _stat(self, rg: int, path: str):
        meta = self.parquet.metadata.row_group(rg)
        for j in range(meta.num_columns):
            col = meta.column(j)
            if col.path_in_schema == path:
                st = col.statistics
                if st is not None and st.has_min_max:
                    return st.min, st.max
                return None
        return None

    def row_groups(self, query: Query | None = None) -> list[int]:
        """Row groups whose statistics say they may hold rows matching ``query``."""
        query = query or Query()
        keep = []
        for rg in range(self.parquet.num_row_groups):
            if query.bbox is not None:
                s = [self._stat(rg, f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
                if all(v is not None for v in s):
                    qx0, qy0, qx1, qy1 = query.bbox
                    if s[0][0] > qx1 or s[1][0] > qy1 or s[2][1] < qx0 or s[3][1] < qy0:
                        continue
            if query.time is not None:
                t0, t1 = query.time
                st = self._stat(rg, "datetime")
                se = self._stat(rg, "end_datetime") or st
                if st is not None:
                    lo = np.datetime64(st[0].replace(tzinfo=None), "ms")
                    # a row without end_datetime ends at its start (see row_mask): take the later max
                    hi = max(np.datetime64(se[1].replace(tzinfo=None), "ms"),
                             np.datetime64(st[1].replace(tzinfo=None), "ms"))
                    if (t1 is not None and lo > t1) or (t0 is not None and hi < t0):
                        continue
            keep.append(rg)
        return keep

    # -- reading ---------------------------------------------------------------------------
    def read_row_group(self, rg: int, columns: list[str] | None = None) -> pa.Table:
        cols = None if columns is None else list(dict.fromkeys([*columns, *CODE_COLUMNS]))
        try:
            return self.parquet.read_row_group(rg, columns=cols)
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"row group {rg} could not be read: {exc}", source=self.source,
                                row=int(self._row_offsets[rg])) from exc

    def iter_tables(self, query: Query | None = None, columns: list[str] | None = None
                    ) -> Iterator[tuple[int, pa.Table]]:
        """(first row index in the file, table) per matching row group, rows filtered by ``query``.

        Blocks are self-contained within a row group, so each table carries the
        code bytes of all its rows; filtered-out rows keep their block's codes
        decodable through :meth:`decode`, which works on whole row groups.
        """
        for rg in self.row_groups(query):
            table = self.read_row_group(rg, columns)
            yield int(self._row_offsets[rg]), table

    def row_mask(self, table: pa.Table, query: Query | None) -> np.ndarray:
        n = table.num_rows
        mask = np.ones(n, dtype=bool)
        if query is None:
            return mask
        if query.bbox is not None:
            b = table.column("bbox").combine_chunks()
            x0, y0, x1, y1 = (b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
            qx0, qy0, qx1, qy1 = query.bbox
            mask &= (x0 <= qx1) & (x1 >= qx0) & (y0 <= qy1) & (y1 >= qy0)
        if query.time is not None:
            t0, t1 = query.time
            start = table.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
            end = table.column("end_datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
            end = np.where(np.isnat(end), start, end)
            if t0 is not None:
                mask &= ~np.isnat(end) & (end >= t0)
            if t1 is not None:
                mask &= ~np.isnat(start) & (start <= t1)
        return mask

    def decode_codes(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Integer codes ``(N, C, S)`` of a whole row group table, bit-exact."""
        return decode_code_columns(table, self.spec, source=self.source, row_offset=row_offset)

    def latents(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        return self.spec.dequantize(self.decode_codes(table, row_offset))

    def decode(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Float32 embeddings ``(N, D)`` of a whole row group table."""
        emb = self.decoder(self.latents(table, row_offset))
        if emb.shape[0] != table.num_rows:
            raise MetadataError(f"decoder returned {emb.shape[0]} rows for {table.num_rows}", source=self.source,
                                field="decoder")
        return emb.reshape(table.num_rows, -1)

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None, *,
                     threads: int | None = None) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(table of matching rows without code columns, their embeddings), per row group.

        ``threads``: entropy-decoding workers (default ``$GEOCODEC_THREADS``, else every
        core; 1 decodes in-process). With more than one, the next row group is read and
        handed to the workers while the current one goes through the ONNX decoder, so at
        most two row groups are held at a time.
        """
        workers = decode_workers(threads)
        if workers <= 1:
            for offset, table in self.iter_tables(query, columns):
                mask = self.row_mask(table, query)
                if not mask.any():
                    continue
                # entropy-decode only the blocks holding matching rows, run the decoder on those rows only
                codes = decode_code_columns(table, self.spec, source=self.source, row_offset=offset, needed=mask,
                                            threads=1)
                yield self._finish_decoded(table, mask, codes)
            return
        ahead: deque = deque()
        tables = self.iter_tables(query, columns)
        try:
            while True:
                try:
                    item = next(tables, None)
                except GeocodecError:
                    # the row groups before a bad one are still delivered, as the serial reader does
                    while ahead:
                        table, mask, job = ahead.popleft()
                        yield self._finish_decoded(table, mask, job.result())
                    raise
                if item is None:
                    break
                offset, table = item
                mask = self.row_mask(table, query)
                if not mask.any():
                    continue
                job = _start_decode(table, self.spec, source=self.source, row_offset=offset, needed=mask,
                                    threads=workers)
                ahead.append((table, mask, job))
                if len(ahead) > 1:
                    table, mask, job = ahead.popleft()
                    yield self._finish_decoded(table, mask, job.result())
            while ahead:
                table, mask, job = ahead.popleft()
                yield self._finish_decoded(table, mask, job.result())
        finally:
            for _, _, job in ahead:
                job.cancel()

    def _finish_decoded(self, table: pa.Table, mask: np.ndarray, codes: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        every = bool(mask.all())
        if not every:
            codes = codes[mask]
            table = table.filter(pa.array(mask))
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
        out = table.drop_columns([c for c in CODE_COLUMNS if c in table.column_names])
        return out, emb


def decode_code_columns(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int = 0,
                        needed: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Integer codes (N, C, S) of a row-group table; every block's structure is checked.

    With ``needed`` (bool mask), blocks holding no needed row are skipped and
    their rows are left as zeros. ``threads``: decoding workers (default
    ``$GEOCODEC_THREADS``, else every core); tables of fewer than
    :data:`PARALLEL_MIN_BLOCKS` blocks are always decoded in-process. The result
    and the error raised for a bad block do not depend on ``threads``.
    """
    return _start_decode(table, spec, source=source, row_offset=row_offset, needed=needed,
                         threads=threads).result()


# -- parallel entropy decoding ----------------------------------------------------------------
PARALLEL_MIN_BLOCKS = 32     # fewer blocks than this (8192 rows at 256 per block): decode in-process
CHUNK_ROWS = 8192            # rows per task sent to a worker (32 blocks of 256)
DECODER_BATCH_ROWS = 8192    # rows per ONNX decoder call in iter_decoded


@dataclass(frozen=True)
class _Block:
    start: int      # first row in the table
    rows: int
    data: bytes
    bits: int


def _scan_blocks(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int,
                 needed: np.ndarray | None):
    """Check every block's structure and checksum in row order.

    Returns (blocks to decode, row ranges to zero, the first error or None); the
    blocks listed are those before the first bad one, so a caller that decodes them
    first and then raises the error reports what the serial reader would.
    """
    n = table.num_rows
    index = table.column("code_index").to_numpy(zero_copy_only=False)
    code_col = table.column("code").combine_chunks()
    has_code = code_col.is_valid().to_numpy(zero_copy_only=False)
    rows_col = table.column("code_rows").combine_chunks()
    has_rows = rows_col.is_valid().to_numpy(zero_copy_only=False)
    rows = rows_col.fill_null(0).to_numpy(zero_copy_only=False)
    bits = table.column("code_bits").combine_chunks()
    crcs = table.column("code_crc32").combine_chunks()
    blocks: list[_Block] = []
    zeros: list[tuple[int, int]] = []
    i = 0
    try:
        while i < n:
            where = row_offset + i
            if index[i] != 0 or not has_code[i] or not has_rows[i]:
                raise BitstreamError("expected the first row of a code block (code_index 0 with code bytes)",
                                     source=source, row=where, field="code_index")
            m = int(rows[i])
            if m > spec.block_rows:
                raise BitstreamError(f"code block claims {m} rows, more than block_rows {spec.block_rows}",
                                     source=source, row=where, field="code_rows")
            if m < 1 or i + m > n:
                raise BitstreamError(f"code block claims {m} rows but the row group has {n - i} left",
                                     source=source, row=where, field="code_rows")
            if not np.array_equal(index[i:i + m], np.arange(m)):
                raise BitstreamError("code_index does not count 0..n-1 through the block", source=source,
                                     row=where, field="code_index")
            tail = np.flatnonzero(has_code[i + 1:i + m] | has_rows[i + 1:i + m])
            if tail.size:
                raise BitstreamError("a row inside a code block carries block fields (code/code_rows must be null)",
                                     source=source, row=row_offset + i + 1 + int(tail[0]), field="code")
            data = code_col[i].as_py()
            nbits, crc = bits[i].as_py(), crcs[i].as_py()
            if nbits is None or crc is None:
                raise BitstreamError("code block without code_bits or code_crc32", source=source, row=where)
            if 8 * len(data) != nbits:
                raise BitstreamError(f"code holds {8 * len(data)} bits but code_bits says {nbits} (truncated?)",
                                     source=source, row=where, field="code")
            if zlib.crc32(data) != crc:
                raise BitstreamError("checksum mismatch: the code bytes are corrupted", source=source, row=where,
                                     field="code_crc32")
            if needed is not None and not needed[i:i + m].any():
                zeros.append((i, m))
            else:
                blocks.append(_Block(i, m, data, int(nbits)))
            i += m
    except BitstreamError as exc:
        return blocks, zeros, exc
    return blocks, zeros, None


def _decode_one(block: _Block, spec: CodecSpec, *, source: str, row_offset: int) -> np.ndarray:
    where = row_offset + block.start
    try:
        return decode_block(bytes_to_words(block.data, bits=block.bits), spec.tables, block.rows, spec.positions)
    except GeocodecError as exc:
        raise exc.at(source=source, row=where, field="code")
    except BaseException as exc:
        raise BitstreamError(f"code block could not be decoded: {exc}", source=source, row=where,
                             field="code") from exc


class _PendingDecode:
    """Codes of one table: decoded in-process on :meth:`result`, or by the pool's workers."""

    def __init__(self, out, blocks, chunks, futures, error, spec, source, row_offset):
        self.out, self.blocks, self.chunks, self.futures = out, blocks, chunks, futures
        self.error, self.spec, self.source, self.row_offset = error, spec, source, row_offset

    def _serial(self, blocks):
        for b in blocks:
            self.out[b.start:b.start + b.rows] = _decode_one(b, self.spec, source=self.source,
                                                             row_offset=self.row_offset)

    def result(self) -> np.ndarray:
        if self.futures is None:
            self._serial(self.blocks)
        else:
            futures, self.futures = self.futures, []
            broken = False
            try:
                for chunk, fut in zip(self.chunks, futures):
                    if broken:
                        self._serial(chunk)
                        continue
                    try:
                        status, payload = fut.result()
                    except _BrokenPool as exc:
                        broken = True
                        _reset_pool()
                        warnings.warn(f"geocodec: the decoding worker processes failed ({exc}); decoding "
                                      f"in-process (set {THREADS_ENV}=1 to skip the workers; a script that "
                                      "starts them must guard its code with if __name__ == '__main__':)",
                                      RuntimeWarning, stacklevel=2)
                        self._serial(chunk)
                        continue
                    if status == "ok":
                        r = 0
                        for b in chunk:
                            self.out[b.start:b.start + b.rows] = payload[r:r + b.rows]
                            r += b.rows
                    else:
                        # a block failed in a worker: decode up to it here, which raises the very
                        # error (class, row, message, cause) the serial reader raises
                        self._serial(chunk)
            finally:
                for fut in futures:
                    fut.cancel()
        if self.error is not None:
            raise self.error
        return self.out

    def cancel(self):
        for fut in self.futures or []:
            fut.cancel()


def _start_decode(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int = 0,
                  needed: np.ndarray | None = None, threads: int | None = None) -> _PendingDecode:
    blocks, zeros, error = _scan_blocks(table, spec, source=source, row_offset=row_offset, needed=needed)
    out = np.empty((table.num_rows, spec.channels, spec.positions), dtype=np.int32)
    for start, m in zeros:
        out[start:start + m] = 0
    workers = decode_workers(threads)
    if len(blocks) < PARALLEL_MIN_BLOCKS or _in_daemon():
        workers = 1
    if workers <= 1:
        return _PendingDecode(out, blocks, None, None, error, spec, source, row_offset)
    chunks, cur, cur_rows = [], [], 0
    per_chunk = max(spec.block_rows, min(CHUNK_ROWS, -(-sum(b.rows for b in blocks) // workers)))
    for b in blocks:
        cur.append(b)
        cur_rows += b.rows
        if cur_rows >= per_chunk:
            chunks.append(cur)
            cur, cur_rows = [], 0
    if cur:
        chunks.append(cur)
    key, packed = _packed_tables(spec)
    try:
        pool = _pool(workers)
        with _main_hidden():
            futures = [pool.submit(_decode_chunk, key, packed, spec.positions,
                                   [(b.data, b.bits, b.rows) for b in chunk]) for chunk in chunks]
    except Exception as exc:  # BrokenProcessPool, RuntimeError, OSError (no processes allowed here)
        _reset_pool()
        warnings.warn(f"geocodec: could not start decoding worker processes ({exc}); decoding in-process "
                      f"(set {THREADS_ENV}=1 to skip them; a script that starts them must guard its code with "
                      "if __name__ == '__main__':)", RuntimeWarning, stacklevel=3)
        return _PendingDecode(out, blocks, None, None, error, spec, source, row_offset)
    return _PendingDecode(out, blocks, chunks, futures, error, spec, source, row_offset)


def _in_daemon() -> bool:
    """Daemonic processes (dask or multiprocessing workers) may not start processes of their own."""
    import multiprocessing as mp

    return bool(mp.current_process().daemon)


def _packed_tables(spec: CodecSpec):
    """(key, arrays) of the spec's tables, cheap to send to a worker (cached on the spec)."""
    cached = spec.__dict__.get("_geocodec_packed_tables")
    if cached is None:
        tables = spec.tables
        lo = np.array([t.lo for t in tables], dtype=np.int64)
        sizes = np.array([len(t.freq) for t in tables], dtype=np.int64)
        freq = np.concatenate([np.asarray(t.freq, dtype=np.int64) for t in tables]) if tables else \
            np.zeros(0, np.int64)
        h = hashlib.sha256()
        for a in (lo, sizes, freq):
            h.update(a.tobytes())
        cached = (h.hexdigest(), (lo, sizes, freq))
        spec.__dict__["_geocodec_packed_tables"] = cached
    return cached


# worker side: tables rebuilt once per codec and process
_WORKER_TABLES: dict[str, list[IntegerTable]] = {}


def _decode_chunk(key: str, packed, positions: int, blocks: list[tuple[bytes, int, int]]):
    """In a worker: decode consecutive blocks; ('ok', codes) or ('error', index of the bad block)."""
    tables = _WORKER_TABLES.get(key)
    if tables is None:
        lo, sizes, freq = packed
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        tables = [IntegerTable(lo=int(lo[c]), freq=tuple(int(v) for v in freq[bounds[c]:bounds[c + 1]]))
                  for c in range(len(lo))]
        if len(_WORKER_TABLES) >= 8:
            _WORKER_TABLES.clear()
        _WORKER_TABLES[key] = tables
    parts = []
    for k, (data, bits, rows) in enumerate(blocks):
        try:
            parts.append(decode_block(bytes_to_words(data, bits=bits), tables, rows, positions))
        except BaseException:
            return "error", k
    codes = np.concatenate(parts) if parts else np.zeros((0, len(tables), positions), np.int32)
    # most codes are small: send them in the narrowest integer type that holds them
    if codes.size:
        lo_v, hi_v = int(codes.min()), int(codes.max())
        for dt in (np.int8, np.int16):
            info = np.iinfo(dt)
            if info.min <= lo_v and hi_v <= info.max:
                codes = codes.astype(dt)
                break
    return "ok", codes


from concurrent.futures.process import BrokenProcessPool as _BrokenPool  # noqa: E402

_POOL = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def _pool(workers: int):
    """The process pool of ``workers`` decoding processes, started on first use and reused."""
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is not None and _POOL_WORKERS == workers:
            return _POOL
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: fresh interpreters, never a fork of this process (which runs onnxruntime and
        # pyarrow threads); no global multiprocessing setting is changed
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        _POOL_WORKERS = workers
        return _POOL


@contextmanager
def _main_hidden():
    """Start workers without re-running the caller's ``__main__`` in them.

    multiprocessing's spawn re-imports the main script in each worker, so a script that
    reads a file at top level without an ``if __name__ == "__main__":`` guard would run
    again in every worker. The workers only need ``geocodec.format.reader``; the main module is
    swapped for an empty one while :meth:`submit` may start processes (which happens in
    the calling thread), so the workers' start-up data names no main module.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = main


def _reset_pool():
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL, _POOL_WORKERS = None, 0


def shutdown_workers():
    """Stop the decoding worker processes (they are started again when needed)."""
    _reset_pool()


atexit.register(shutdown_workers)


def _fetch_asset(href: str, *, source: str) -> bytes:
    try:
        if is_url(href):
            import fsspec

            with fsspec.open(href, "rb") as f:
                return f.read()
        if is_url(source):  # relative to the file's own URL
            from urllib.parse import urljoin

            import fsspec

            with fsspec.open(urljoin(source, href), "rb") as f:
                return f.read()
        path = href
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(os.path.abspath(source)), href)
        with open(path, "rb") as f:
            return f.read()
    except (OSError, ValueError) as exc:
        raise MetadataError(f"decoder asset {href} could not be read: {exc}", source=source,
                            field="decoder.href") from exc


class GeocodecDataset:
    """A file, a directory of files (e.g. partitioned by grid cell and year) or a URL."""

    def __init__(self, source: str | os.PathLike):
        source = os.fspath(source)
        self.source = source
        if not is_url(source) and os.path.isdir(source):
            paths = sorted(os.path.join(root, f) for root, _, files in os.walk(source)
                           for f in files if f.endswith(".parquet") and not f.startswith("."))
            if not paths:
                raise GeocodecError("directory holds no .parquet files", source=source)
        else:
            paths = [source]
        self.files = [GeocodecFile(p) for p in paths]
        first = self.files[0]
        for f in self.files[1:]:
            reason = merge_incompatibility(first, f)
            if reason:
                raise MetadataError(f"files in one dataset must share one codec: {reason}", source=f.source)

    @property
    def spec(self) -> CodecSpec:
        return self.files[0].spec

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    def files_for(self, query: Query | None) -> list[GeocodecFile]:
        if query is None or query.bbox is None:
            return self.files
        out = []
        for f in self.files:
            b = f.geo["columns"][f.geo["primary_column"]].get("bbox")
            qx0, qy0, qx1, qy1 = query.bbox
            if b and (b[0] > qx1 or b[1] > qy1 or b[2] < qx0 or b[3] < qy0):
                continue
            out.append(f)
        return out

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None, *,
                     threads: int | None = None):
        for f in self.files_for(query):
            yield from f.iter_decoded(query, columns, threads=threads)

    def read(self, query: Query | None = None, columns: list[str] | None = None, *,
             threads: int | None = None) -> tuple[pa.Table, np.ndarray]:
        tables, embs = [], []
        for t, e in self.iter_decoded(query, columns, threads=threads):
            tables.append(t)
            embs.append(e)
        if not tables:
            empty = self.files[0].parquet.schema_arrow.empty_table()
            return empty.drop_columns(list(CODE_COLUMNS)), np.zeros((0, self.spec.dimension), np.float32)
        return pa.concat_tables(tables), np.concatenate(embs)

    def close(self):
        for f in self.files:
            f.close()


def open_dataset(source) -> GeocodecDataset:
    return GeocodecDataset(source)


def merge_incompatibility(a: GeocodecFile, b: GeocodecFile) -> str | None:
    """Why two files cannot be concatenated without re-encoding, or None if they can."""
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
