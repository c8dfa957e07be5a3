"""Integer entropy models and the block bitstream.

Contract (in the spirit of CompressAI's ``entropy_models``):

* :class:`IntegerTable` is one channel's probability model: a contiguous range of
  integer symbols ``[lo, lo + n)`` plus one escape symbol, with integer
  frequencies that sum to ``2**PRECISION``. Tables are serialized as integers,
  so the decoder never recomputes anything from floats.
* :func:`encode_block` turns quantized values ``q[rows, channels, positions]``
  into a stream of 32-bit words; :func:`decode_block` inverts it bit-exactly.

The coder is constriction's ``stack.AnsCoder`` (rANS, 32-bit words, 64-bit
state, 24-bit precision). Models are built with constriction's documented
"fast" quantization, fed ``frequency - 1``: its scale factor is then exactly 1,
so the fixed-point CDF it uses equals ``cumsum(frequency)`` exactly, on every
platform (see geoparquet_spec/SPEC.md, "Entropy coding").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import constriction

from geocodec.errors import BitstreamError, GeocodecError

PRECISION = 24
TOTAL = 1 << PRECISION
ESCAPE_BITS = 20  # escaped values are sent raw, offset by 2**19
ESCAPE_OFFSET = 1 << (ESCAPE_BITS - 1)
MAX_TABLE_SIZE = 1 << 16


@dataclass(frozen=True)
class IntegerTable:
    """Integer PMF over symbols lo..lo+len(freq)-2, the last entry is the escape."""

    lo: int
    freq: tuple[int, ...]

    def __post_init__(self):
        f = np.asarray(self.freq, dtype=np.int64)
        if f.ndim != 1 or len(f) < 2:
            raise GeocodecError("an entropy table needs at least one value and the escape symbol",
                                field="entropy_model.tables")
        if len(f) > MAX_TABLE_SIZE:
            raise GeocodecError(f"entropy table has {len(f)} entries, more than {MAX_TABLE_SIZE}",
                                field="entropy_model.tables")
        if (f < 1).any():
            raise GeocodecError("entropy table frequencies must all be >= 1",
                                field="entropy_model.tables")
        if int(f.sum()) != TOTAL:
            raise GeocodecError(f"entropy table frequencies sum to {int(f.sum())}, not 2**{PRECISION}",
                                field="entropy_model.tables")

    @property
    def n_values(self) -> int:
        """The number of coded symbols, escape excluded."""
        return len(self.freq) - 1

    @property
    def escape_index(self) -> int:
        """The table index of the escape symbol (the last one)."""
        return len(self.freq) - 1

    @cached_property
    def model(self):
        """The constriction categorical model whose fixed-point CDF is ``cumsum(freq)``."""
        weights = np.asarray(self.freq, dtype=np.float64) - 1.0
        return constriction.stream.model.Categorical(weights, perfect=False)

    @cached_property
    def bits(self) -> np.ndarray:
        """Information content in bits of each table index."""
        return PRECISION - np.log2(np.asarray(self.freq, dtype=np.float64))

    def to_json(self) -> dict:
        """The table as stored in the footer: ``{"min": lo, "freq": [...]}``."""
        return {"min": int(self.lo), "freq": [int(v) for v in self.freq]}

    @classmethod
    def from_json(cls, obj: dict) -> "IntegerTable":
        """Inverse of :meth:`to_json`; :class:`~geocodec.errors.GeocodecError` if malformed or invalid."""
        try:
            return cls(lo=int(obj["min"]), freq=tuple(int(v) for v in obj["freq"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise GeocodecError(f"malformed entropy table: {exc}", field="entropy_model.tables") from exc

    @classmethod
    def fit(cls, values: np.ndarray, escape_probability: float = 2.0 ** -14,
            smoothing: float = 0.5, table_bits_per_entry: float = 40.0) -> "IntegerTable":
        """Fit a table to observed integer values (encoder side only).

        The table's range is chosen to minimise the estimated size of the data
        coded with it plus the table itself (``table_bits_per_entry``: about a
        JSON number): rare tails go through the escape symbol instead of widening
        the table, which keeps footers small at high quality.
        """
        values = np.asarray(values).ravel().astype(np.int64)
        if values.size == 0:
            return cls._from_counts(0, np.zeros(1), escape_probability, smoothing)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo + 2 > MAX_TABLE_SIZE:
            # even the widest candidate must fit: cut the tails symmetrically around the median
            mid = int(np.median(values))
            half = (MAX_TABLE_SIZE - 2) // 2
            lo, hi = max(lo, mid - half), min(hi, mid + half)
        counts = np.bincount(np.clip(values, lo, hi) - lo, minlength=hi - lo + 1).astype(np.float64)
        counts[0] -= np.count_nonzero(values < lo)
        counts[-1] -= np.count_nonzero(values > hi)
        n = float(values.size)
        best = None
        for tail in (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 0.6, 1.0):
            if tail:
                c_lo = int(np.quantile(values, tail / 2, method="lower"))
                c_hi = int(np.quantile(values, 1 - tail / 2, method="higher"))
            else:
                c_lo, c_hi = lo, hi
            c_lo, c_hi = max(c_lo, lo), min(c_hi, hi)
            inside = counts[c_lo - lo:c_hi - lo + 1]
            outside = n - inside.sum()
            p_esc = max(escape_probability, (outside + 0.5) / (n + 1.0)) if outside else escape_probability
            p = (inside + smoothing) / (inside.sum() + smoothing * len(inside)) * (1 - p_esc)
            data_bits = float(-(inside * np.log2(p)).sum()) + outside * (ESCAPE_BITS - np.log2(p_esc))
            cost = data_bits + table_bits_per_entry * (len(inside) + 1)
            if best is None or cost < best[0]:
                best = (cost, c_lo, inside, p_esc)
        _, c_lo, inside, p_esc = best
        return cls._from_counts(c_lo, inside, p_esc, smoothing)

    @classmethod
    def _from_counts(cls, lo: int, counts: np.ndarray, escape_probability: float, smoothing: float):
        counts = np.asarray(counts, dtype=np.float64) + smoothing
        probs = counts / counts.sum() * (1.0 - escape_probability)
        probs = np.append(probs, escape_probability)
        return cls(lo=int(lo), freq=tuple(int(v) for v in quantize_pmf(probs)))


def quantize_pmf(probs: np.ndarray) -> np.ndarray:
    """Integer frequencies >= 1 summing to 2**PRECISION, close to ``probs``."""
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    free = TOTAL - n
    freq = 1 + np.floor(probs / probs.sum() * free).astype(np.int64)
    remainder = TOTAL - int(freq.sum())
    if remainder:
        # hand the rest to the most probable symbols, deterministically
        order = np.argsort(-probs, kind="stable")
        freq[order[:remainder]] += 1
    return freq


_UNIFORM = None


def _uniform():
    global _UNIFORM
    if _UNIFORM is None:
        _UNIFORM = constriction.stream.model.Uniform(1 << ESCAPE_BITS)
    return _UNIFORM


def push_values(coder, vals: np.ndarray, table: IntegerTable, *, channel: int, rows: np.ndarray) -> None:
    """Push integer values ``vals`` (1-D, in decode order) with ``table`` onto ``coder`` so that they pop in
    order: their escapes' payloads first (they pop after the indices), then the table indices, both reversed.

    ``rows[i]`` is the block row of ``vals[i]``, named in the error for a value the escape cannot carry.
    """
    idx = vals - table.lo
    esc = (idx < 0) | (idx >= table.n_values)
    if esc.any():
        payload = vals[esc] + ESCAPE_OFFSET
        out_of_range = (payload < 0) | (payload >= (1 << ESCAPE_BITS))
        if out_of_range.any():
            first = int(np.flatnonzero(esc)[np.argmax(out_of_range)])
            raise GeocodecError(
                f"channel {channel}: quantized value {int(vals[first])} is outside the codable range "
                f"+-2**{ESCAPE_BITS - 1}; the input is far outside what the codec was fitted on",
                row=int(rows[first]))
        coder.encode_reverse(payload.astype(np.int32), _uniform())
        idx = np.where(esc, table.escape_index, idx)
    coder.encode_reverse(idx.astype(np.int32), table.model)


def pop_values(coder, table: IntegerTable, n: int) -> np.ndarray:
    """Pop ``n`` values coded by :func:`push_values` with ``table``: int64 (n,)."""
    idx = np.asarray(coder.decode(table.model, n), dtype=np.int64)
    vals = idx + table.lo
    esc = idx == table.escape_index
    if esc.any():
        payload = np.asarray(coder.decode(_uniform(), int(esc.sum())), dtype=np.int64)
        vals[esc] = payload - ESCAPE_OFFSET
    return vals


def encode_block(q: np.ndarray, tables: list[IntegerTable]) -> np.ndarray:
    """Entropy-code ``q[rows, channels, positions]`` (int) into uint32 words.

    Symbol order is channel-major: for each channel, every row's positions in
    row-major order, then that channel's escaped values.
    """
    q = np.asarray(q)
    if q.ndim != 3 or q.shape[1] != len(tables):
        raise GeocodecError(f"expected quantized values of shape (rows, {len(tables)}, positions), got {q.shape}")
    coder = constriction.stream.stack.AnsCoder()
    rows = np.repeat(np.arange(q.shape[0]), q.shape[2])
    for c in range(q.shape[1] - 1, -1, -1):
        push_values(coder, q[:, c, :].reshape(-1).astype(np.int64), tables[c], channel=c, rows=rows)
    return coder.get_compressed()


def decode_block(words: np.ndarray, tables: list[IntegerTable], rows: int, positions: int) -> np.ndarray:
    """Inverse of :func:`encode_block`: int32 array ``(rows, channels, positions)``."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    out = np.empty((rows, len(tables), positions), dtype=np.int32)
    n = rows * positions
    for c, table in enumerate(tables):
        out[:, c, :] = pop_values(coder, table, n).reshape(rows, positions)
    if not coder.is_empty():
        raise BitstreamError("the code stream holds more data than its rows need (corrupted or mislabelled block)")
    return out


def cross_entropy_bits(q: np.ndarray, tables: list[IntegerTable]) -> float:
    """Ideal code length of ``q[rows, channels, positions]`` under the tables, in bits."""
    total = 0.0
    for c, table in enumerate(tables):
        idx = q[:, c, :].reshape(-1).astype(np.int64) - table.lo
        esc = (idx < 0) | (idx >= table.n_values)
        idx = np.where(esc, table.escape_index, idx)
        total += float(table.bits[idx].sum()) + ESCAPE_BITS * int(esc.sum())
    return total


def words_to_bytes(words: np.ndarray) -> bytes:
    """uint32 code words as little-endian bytes."""
    return np.asarray(words, dtype="<u4").tobytes()


def bytes_to_words(data: bytes, *, bits: int | None = None) -> np.ndarray:
    """Little-endian bytes -> uint32 code words.

    Raises :class:`~geocodec.errors.BitstreamError` if the length is not a whole number of words or differs from
    ``bits`` (the bit count the row records).
    """
    if len(data) % 4:
        raise BitstreamError(f"code length {len(data)} bytes is not a whole number of 32-bit words (truncated?)")
    if bits is not None and bits != 8 * len(data):
        raise BitstreamError(f"code holds {8 * len(data)} bits but its header says {bits} (truncated?)")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
