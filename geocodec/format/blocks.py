"""Code blocks of a row-group table: structure and CRC checks, serial and parallel entropy decoding.

Every block is checked in row order (``code_index`` counting 0..n-1, ``code_rows``,
``code_bits``, ``code_crc32``) before it is decoded; errors name the file, the row of
the block and the field. constriction holds the GIL while it decodes, so threads do
not help: tables of at least :data:`PARALLEL_MIN_BLOCKS` blocks are cut into chunks
that a pool of worker processes decodes (one per core, or ``$GEOCODEC_THREADS``; ``1``
decodes in-process). Results are bit-exact with the serial decoder and errors name
the same block.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import sys
import threading
import types
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from geocodec.errors import BitstreamError, GeocodecError
from geocodec.format.entropy import bytes_to_words
from geocodec.format.entropy_model import EntropyModel
from geocodec.format.metadata import CodecSpec
from geocodec.threads import THREADS_ENV, decode_workers

PARALLEL_MIN_BLOCKS = 32     # fewer blocks than this (8192 rows at 256 per block): decode in-process
CHUNK_ROWS = 8192            # rows per task sent to a worker (32 blocks of 256)


def decode_code_columns(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int = 0,
                        needed: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Integer codes (N, C, S) of a row-group table; every block's structure is checked.

    With ``needed`` (bool mask), blocks holding no needed row are skipped and
    their rows are left as zeros. ``threads``: decoding workers (default
    ``$GEOCODEC_THREADS``, else every core); tables of fewer than
    :data:`PARALLEL_MIN_BLOCKS` blocks are always decoded in-process. The result
    and the error raised for a bad block do not depend on ``threads``.
    """
    return start_decode(table, spec, source=source, row_offset=row_offset, needed=needed,
                         threads=threads).result()


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
        return spec.entropy.decode(bytes_to_words(block.data, bits=block.bits), block.rows, spec.positions)
    except GeocodecError as exc:
        raise exc.at(source=source, row=where, field="code")
    except BaseException as exc:
        raise BitstreamError(f"code block could not be decoded: {exc}", source=source, row=where,
                             field="code") from exc


class PendingDecode:
    """Codes of one table being decoded: in-process on :meth:`result`, or already by the pool's workers."""

    def __init__(self, out, blocks, chunks, futures, error, spec, source, row_offset):
        self.out, self.blocks, self.chunks, self.futures = out, blocks, chunks, futures
        self.error, self.spec, self.source, self.row_offset = error, spec, source, row_offset

    def _serial(self, blocks):
        for b in blocks:
            self.out[b.start:b.start + b.rows] = _decode_one(b, self.spec, source=self.source,
                                                             row_offset=self.row_offset)

    def result(self) -> np.ndarray:
        """The codes ``(N, C, S)`` int32; raises the first bad block's error, as the serial decoder does."""
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
        """Drop the work not yet started (a stream closed early)."""
        for fut in self.futures or []:
            fut.cancel()


def start_decode(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int = 0,
                 needed: np.ndarray | None = None, threads: int | None = None) -> PendingDecode:
    """Check the blocks of ``table`` and hand them to the workers; the codes come from ``.result()``.

    Arguments as :func:`decode_code_columns`, which is ``start_decode(...).result()``.
    """
    blocks, zeros, error = _scan_blocks(table, spec, source=source, row_offset=row_offset, needed=needed)
    if error is None:  # declared sizes bounded by what the bytes can hold, before allocating
        bits = pa.compute.sum(table.column("code_bits")).as_py() or 0
        spec.check_decode(table.num_rows, bits, len(blocks) + len(zeros), source=source, row=row_offset)
    out = np.empty((table.num_rows, spec.channels, spec.positions), dtype=np.int32)
    for start, m in zeros:
        out[start:start + m] = 0
    workers = decode_workers(threads)
    if len(blocks) < PARALLEL_MIN_BLOCKS or _in_daemon():
        workers = 1
    if workers <= 1:
        return PendingDecode(out, blocks, None, None, error, spec, source, row_offset)
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
        return PendingDecode(out, blocks, None, None, error, spec, source, row_offset)
    return PendingDecode(out, blocks, chunks, futures, error, spec, source, row_offset)


def _in_daemon() -> bool:
    """Daemonic processes (dask or multiprocessing workers) may not start processes of their own."""
    import multiprocessing as mp

    return bool(mp.current_process().daemon)


def _packed_tables(spec: CodecSpec):
    """(key, arrays) of the spec's entropy model, cheap to send to a worker (cached on the spec): the
    tables as integer arrays, the context rule (or None) as its JSON text and latent shape."""
    cached = spec.__dict__.get("_geocodec_packed_tables")
    if cached is None:
        tables = spec.tables
        lo = np.array([t.lo for t in tables], dtype=np.int64)
        sizes = np.array([len(t.freq) for t in tables], dtype=np.int64)
        freq = np.concatenate([np.asarray(t.freq, dtype=np.int64) for t in tables]) if tables else \
            np.zeros(0, np.int64)
        ctx = spec.entropy.context
        ctx_json = None if ctx is None else json.dumps(ctx.to_json(), sort_keys=True)
        h = hashlib.sha256()
        for a in (lo, sizes, freq):
            h.update(a.tobytes())
        h.update((ctx_json or "").encode() + repr(spec.latent_shape).encode())
        cached = (h.hexdigest(), (lo, sizes, freq, ctx_json, spec.latent_shape))
        spec.__dict__["_geocodec_packed_tables"] = cached
    return cached


# worker side: the entropy model rebuilt once per codec and process
_WORKER_MODELS: dict[str, EntropyModel] = {}


def _decode_chunk(key: str, packed, positions: int, blocks: list[tuple[bytes, int, int]]):
    """In a worker: decode consecutive blocks; ('ok', codes) or ('error', index of the bad block)."""
    lo, sizes, freq, ctx_json, shape = packed
    model = _WORKER_MODELS.get(key)
    if model is None:
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        tables = [{"min": int(lo[c]), "freq": [int(v) for v in freq[bounds[c]:bounds[c + 1]]]} for c in range(len(lo))]
        model = EntropyModel.from_json(tables, None if ctx_json is None else json.loads(ctx_json), shape)
        if len(_WORKER_MODELS) >= 8:
            _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = model
    parts = []
    for k, (data, bits, rows) in enumerate(blocks):
        try:
            parts.append(model.decode(bytes_to_words(data, bits=bits), rows, positions))
        except BaseException:
            return "error", k
    codes = np.concatenate(parts) if parts else np.zeros((0, int(shape[0]), positions), np.int32)
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
    again in every worker. The workers only need ``geocodec.format.blocks``; the main module is
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
