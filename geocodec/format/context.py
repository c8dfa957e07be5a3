"""The checkerboard context model of spec 0.3.0 (geoparquet_spec/SPEC.md 4.5.1, 7.4).

A factorized model codes every value of a channel with that channel's one table, blind to
its neighbourhood. Learned latents are not like that: where a tile has structure (a coast,
a field edge, a town) many channels are busy at once, and busy cells cluster in space. This
model picks, for each value, one of a small set of shared integer tables from a *context*
computed from values the decoder already has, in integers only:

* ``a`` = the sum of ``|q|`` over the channels before ``c`` at the same position (how busy
  the cell is so far), bucketed by ``channel_thresholds``: ``k1 = #{t : t <= a}``;
* positions form a checkerboard (``(i + j)`` even: *anchors*, decoded first); a non-anchor
  also sees ``n`` = the sum of ``|q|`` of channel ``c`` at its four neighbours (all anchors,
  already decoded), bucketed by ``neighbour_thresholds``: ``k2 = #{t : t <= n}``;
* context ``x = k1`` for an anchor and ``x = (n1 + 1) + k1 * (n2 + 1) + k2`` otherwise
  (``n1``, ``n2``: the numbers of thresholds); the value's table is
  ``tables[table_index[c][x]]``.

It is the integer, table-index form of the checkerboard context model of He et al. (2021)
combined with the channel conditioning of Minnen & Singh (2020): no network and no float
decides a table, so decoding is bit-exact on any machine by construction (the trap of
CompressAI issues #279/#309 cannot occur). The fitting (:meth:`CheckerboardContext.fit`,
encoder side only) clusters the (channel, context) histograms into a few shared tables by
k-means in rate space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import constriction

from geocodec.errors import BitstreamError, GeocodecError
from geocodec.format.entropy import ESCAPE_BITS, IntegerTable, pop_values, push_values

CONTEXT_TYPE = "checkerboard"
#: the thresholds the reference fitting uses (sums of |q|): powers of two
DEFAULT_CHANNEL_THRESHOLDS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_NEIGHBOUR_THRESHOLDS = (1, 2, 4, 8)
MAX_THRESHOLDS = 15
MAX_TABLES = 1024
#: the widest value range the fitting histograms (values outside share one bin; the tables see them all)
MAX_FIT_BINS = 4096


@dataclass(frozen=True)
class CheckerboardContext:
    """The context rule of one file (or one quality of a model) on an ``height`` x ``width`` latent grid.

    ``table_index[c][x]`` is the table of context ``x`` in channel ``c``; ``mean_bits`` is the
    model's mean code length per latent position (all channels) on its fitting data, the
    reference of the ``rate_ratio`` quality figure (SPEC.md 5.1).
    """

    height: int
    width: int
    channel_thresholds: tuple[int, ...]
    neighbour_thresholds: tuple[int, ...]
    table_index: tuple[tuple[int, ...], ...]
    mean_bits: float

    def __post_init__(self):
        field = "entropy_model.context"
        for name, th in (("channel_thresholds", self.channel_thresholds),
                         ("neighbour_thresholds", self.neighbour_thresholds)):
            if not (1 <= len(th) <= MAX_THRESHOLDS) or any(int(t) < 1 for t in th) or \
                    any(b <= a for a, b in zip(th, th[1:])):
                raise GeocodecError(f"{name} must be 1..{MAX_THRESHOLDS} strictly increasing integers >= 1, "
                                    f"got {list(th)}", field=f"{field}.{name}")
        if self.height < 1 or self.width < 1:
            raise GeocodecError(f"context grid {self.height} x {self.width}", field="latent.shape")
        m = self.n_contexts
        for c, row in enumerate(self.table_index):
            if len(row) != m:
                raise GeocodecError(f"channel {c} has {len(row)} table indices, the thresholds give {m} contexts",
                                    field=f"{field}.table_index.{c}")
            if any(int(v) < 0 for v in row):
                raise GeocodecError("table indices must be >= 0", field=f"{field}.table_index.{c}")
        if not (np.isfinite(self.mean_bits) and self.mean_bits >= 0):
            raise GeocodecError(f"mean_bits {self.mean_bits!r} is not a finite number >= 0", field=f"{field}.mean_bits")

    # -- the rule --------------------------------------------------------------------------------
    @property
    def n_contexts(self) -> int:
        """Contexts per channel: ``(n1 + 1)`` anchor contexts plus ``(n1 + 1) * (n2 + 1)`` others."""
        n1, n2 = len(self.channel_thresholds), len(self.neighbour_thresholds)
        return (n1 + 1) * (n2 + 2)

    @property
    def channels(self) -> int:
        """C, the latent channels the rule has table indices for."""
        return len(self.table_index)

    @cached_property
    def _index(self) -> np.ndarray:
        return np.asarray(self.table_index, dtype=np.int64).reshape(self.channels, self.n_contexts)

    @cached_property
    def _t1(self) -> np.ndarray:
        return np.asarray(self.channel_thresholds, dtype=np.int64)

    @cached_property
    def _t2(self) -> np.ndarray:
        return np.asarray(self.neighbour_thresholds, dtype=np.int64)

    @cached_property
    def anchor(self) -> np.ndarray:
        """(S,) bool: position ``p = i * width + j`` is an anchor when ``i + j`` is even."""
        i, j = np.divmod(np.arange(self.height * self.width), self.width)
        return (i + j) % 2 == 0

    @cached_property
    def phases(self) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the anchors and of the others, ascending."""
        return np.flatnonzero(self.anchor), np.flatnonzero(~self.anchor)

    def neighbour_sums(self, absq: np.ndarray) -> np.ndarray:
        """Sum of ``absq`` (..., S) at the 4 neighbours of each position inside the grid (anchors only count)."""
        lead = absq.shape[:-1]
        a = np.where(self.anchor, absq, 0).reshape(-1, self.height, self.width)
        s = np.zeros_like(a)
        s[:, 1:, :] += a[:, :-1, :]
        s[:, :-1, :] += a[:, 1:, :]
        s[:, :, 1:] += a[:, :, :-1]
        s[:, :, :-1] += a[:, :, 1:]
        return s.reshape(*lead, self.height * self.width)

    def anchor_context(self, activity: np.ndarray) -> np.ndarray:
        """Context ``k1`` of anchors whose earlier channels sum to ``activity`` (any shape, int)."""
        return np.searchsorted(self._t1, activity, side="right")

    def other_context(self, activity: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
        """Context ``(n1 + 1) + k1 * (n2 + 1) + k2`` of non-anchors from ``activity`` and their ``neighbours``' sum."""
        n1, n2 = len(self._t1), len(self._t2)
        k1 = np.searchsorted(self._t1, activity, side="right")
        k2 = np.searchsorted(self._t2, neighbours, side="right")
        return (n1 + 1) + k1 * (n2 + 1) + k2

    def contexts(self, q: np.ndarray) -> np.ndarray:
        """Context number of every value of ``q`` (R, C, S) (encoder side: all values known)."""
        # |q| <= 2**19 (the escape range): with C <= 2**11 channels every sum fits int32 (faster), else int64
        dt = np.int32 if q.shape[1] <= 2048 else np.int64
        absq = np.abs(q.astype(np.int64)).astype(dt)
        activity = np.cumsum(absq, axis=1, dtype=dt)
        activity -= absq
        anchors, others = self.phases
        ctx = np.empty(q.shape, dtype=np.int64)
        ctx[..., anchors] = self.anchor_context(activity[..., anchors])
        ctx[..., others] = self.other_context(activity[..., others], self.neighbour_sums(absq)[..., others])
        return ctx

    def table_ids(self, q: np.ndarray) -> np.ndarray:
        """Table number of every value of ``q`` (R, C, S)."""
        ctx = self.contexts(q)
        return self._index[np.arange(q.shape[1])[None, :, None], ctx]

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The ``entropy_model.context`` object (the grid comes from ``latent.shape``)."""
        return {"type": CONTEXT_TYPE, "channel_thresholds": [int(t) for t in self.channel_thresholds],
                "neighbour_thresholds": [int(t) for t in self.neighbour_thresholds],
                "table_index": [[int(v) for v in row] for row in self.table_index],
                "mean_bits": float(round(self.mean_bits, 6))}

    @classmethod
    def from_json(cls, obj: dict, latent_shape) -> "CheckerboardContext":
        """Inverse of :meth:`to_json` for a latent of shape ``(C, height, width)``."""
        try:
            if obj.get("type") != CONTEXT_TYPE:
                raise GeocodecError(f"unknown context type {obj.get('type')!r}; known: {CONTEXT_TYPE!r}",
                                    field="entropy_model.context.type")
            if len(latent_shape) != 3:
                raise GeocodecError("a context model needs a 'grid' latent [channels, height, width]",
                                    field="latent.shape")
            ctx = cls(height=int(latent_shape[1]), width=int(latent_shape[2]),
                      channel_thresholds=tuple(int(t) for t in obj["channel_thresholds"]),
                      neighbour_thresholds=tuple(int(t) for t in obj["neighbour_thresholds"]),
                      table_index=tuple(tuple(int(v) for v in row) for row in obj["table_index"]),
                      mean_bits=float(obj["mean_bits"]))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise GeocodecError(f"malformed entropy context: {exc}", field="entropy_model.context") from exc
        if ctx.channels != int(latent_shape[0]):
            raise GeocodecError(f"{ctx.channels} rows of table indices for {latent_shape[0]} latent channels",
                                field="entropy_model.context.table_index")
        return ctx

    def check_tables(self, n_tables: int) -> None:
        """Every table index must name one of the ``n_tables`` (at most :data:`MAX_TABLES`) tables."""
        if n_tables > MAX_TABLES:
            raise GeocodecError(f"{n_tables} tables, more than {MAX_TABLES}", field="entropy_model.tables")
        top = int(self._index.max()) if self._index.size else -1
        if top >= n_tables:
            c = int(np.argmax(self._index.max(axis=1) >= n_tables))
            raise GeocodecError(f"table index {top} but only {n_tables} tables", field=f"entropy_model.context.table_index.{c}")

    # -- fitting (encoder side) --------------------------------------------------------------------
    @classmethod
    def fit(cls, q: np.ndarray, *, n_tables: int = 64,
            channel_thresholds=DEFAULT_CHANNEL_THRESHOLDS, neighbour_thresholds=DEFAULT_NEIGHBOUR_THRESHOLDS,
            iterations: int = 12) -> tuple[list[IntegerTable], "CheckerboardContext"]:
        """Shared tables and the context rule for codes ``q`` (N, C, height, width).

        Each (channel, context) group's histogram is assigned to one of ``n_tables`` tables by
        k-means in rate space (assign each group to the table that codes it in the fewest bits,
        refit each table on its groups), started from groups sorted by spread; the final tables are
        :meth:`IntegerTable.fit` on the values of their groups, and every group (also one never seen
        in ``q``) is given the final table that codes it, or else its channel and phase, best.
        """
        q = np.asarray(q).astype(np.int64)
        if q.ndim != 4 or q.size == 0:
            raise GeocodecError(f"fit a context model on codes (N, C, height, width), at least one value; got shape "
                                f"{q.shape}")
        if not 1 <= n_tables <= MAX_TABLES:
            raise GeocodecError(f"n_tables {n_tables}: 1..{MAX_TABLES}", field="n_tables")
        n, c, h, w = q.shape
        probe = cls(height=h, width=w, channel_thresholds=tuple(channel_thresholds),
                    neighbour_thresholds=tuple(neighbour_thresholds),
                    table_index=tuple((0,) * ((len(channel_thresholds) + 1) * (len(neighbour_thresholds) + 2))
                                      for _ in range(c)), mean_bits=0.0)
        m = probe.n_contexts
        flat = q.reshape(n, c, h * w)
        groups = (np.arange(c)[None, :, None] * m + probe.contexts(flat)).ravel()
        values = flat.ravel()
        g_total = c * m
        # histograms over a common range, the last bin standing for everything outside it
        lo, hi = (int(v) for v in np.quantile(values, [1e-5, 1 - 1e-5]))
        lo, hi = min(lo, -1), max(hi, 1)
        if hi - lo + 2 > MAX_FIT_BINS:   # a wide spread: centre the histograms on the median, bounded in memory
            mid, half = int(np.median(values)), (MAX_FIT_BINS - 2) // 2
            lo, hi = max(lo, mid - half), min(hi, mid + half)
        width = hi - lo + 2
        bins = np.where((values >= lo) & (values <= hi), values - lo, width - 1)
        hist = np.bincount(groups * width + bins, minlength=g_total * width).reshape(g_total, width).astype(float)
        counts = hist.sum(1)
        used = np.flatnonzero(counts > 0)
        k = max(1, min(n_tables, len(used)))
        centre = -lo
        spread = (hist[used] * np.abs(np.arange(width) - centre)).sum(1) / counts[used]
        assign = np.zeros(g_total, dtype=np.int64)
        for j, part in enumerate(np.array_split(used[np.argsort(spread, kind="stable")], k)):
            assign[part] = j
        for _ in range(iterations):
            pooled = np.stack([hist[used][assign[used] == j].sum(0) for j in range(k)])
            cost = hist[used] @ _neg_log2(pooled).T
            new = np.argmin(cost, axis=1)
            if np.array_equal(new, assign[used]):
                break
            assign[used] = new
        # final integer tables on the values of their groups, then every group to its best table
        tables, assign = _refit(values, groups, assign, used, k)
        lut, offset = _bits_lut(tables)
        cost = _group_costs(hist, lo, width, lut, offset)         # (groups, tables) bits
        best = np.argmin(cost, axis=1)
        assign[used] = best[used]
        # unseen groups: the table best for their channel and phase's pooled histogram
        n1 = len(channel_thresholds)
        for ch in range(c):
            for phase in (slice(0, n1 + 1), slice(n1 + 1, m)):
                gs = np.arange(ch * m, (ch + 1) * m)[phase]
                pooled = hist[gs].sum(0, keepdims=True)
                if pooled.sum() == 0:
                    pooled = hist[ch * m:(ch + 1) * m].sum(0, keepdims=True)
                fallback = int(np.argmin(_group_costs(pooled, lo, width, lut, offset)[0]))
                assign[gs[counts[gs] == 0]] = fallback
        tables, assign = _refit(values, groups, assign, np.arange(g_total), len(tables), keep_empty=True,
                                previous=tables)
        ctx = cls(height=h, width=w, channel_thresholds=tuple(int(t) for t in channel_thresholds),
                  neighbour_thresholds=tuple(int(t) for t in neighbour_thresholds),
                  table_index=tuple(tuple(int(v) for v in assign[ch * m:(ch + 1) * m]) for ch in range(c)),
                  mean_bits=0.0)
        bits = cross_entropy_bits(flat, tables, ctx)
        mean = bits / max(n * h * w, 1)
        return tables, CheckerboardContext(h, w, ctx.channel_thresholds, ctx.neighbour_thresholds, ctx.table_index,
                                           float(mean))


def _neg_log2(pooled: np.ndarray) -> np.ndarray:
    p = pooled + 0.02
    return -np.log2(p / p.sum(axis=1, keepdims=True))


def _refit(values, groups, assign, members, k, *, keep_empty=False, previous=None):
    """Integer tables fitted on the values of the groups assigned to each table; unused tables dropped
    (or, with ``keep_empty``, kept from ``previous``), the assignment renumbered."""
    order = np.argsort(assign[groups], kind="stable")
    sorted_t = assign[groups][order]
    bounds = np.searchsorted(sorted_t, np.arange(k + 1))
    member = np.zeros(len(assign), bool)
    member[members] = True
    tables, renumber = [], {}
    for j in range(k):
        vals = values[order[bounds[j]:bounds[j + 1]]]
        if vals.size == 0:
            if keep_empty and previous is not None and np.any(assign[members] == j):
                renumber[j] = len(tables)
                tables.append(previous[j])
            continue
        renumber[j] = len(tables)
        tables.append(IntegerTable.fit(vals))
    new = assign.copy()
    for j, r in renumber.items():
        new[assign == j] = r
    return tables, new


def _bits_lut(tables):
    """(tables, values + 1) bits of each value under each table over the union of their ranges; the last
    column is the cost of a value outside every range (an escape everywhere)."""
    lo = min(t.lo for t in tables)
    hi = max(t.lo + t.n_values - 1 for t in tables)
    vals = np.arange(lo, hi + 1)
    lut = np.empty((len(tables), len(vals) + 1))
    for j, t in enumerate(tables):
        idx = vals - t.lo
        esc = (idx < 0) | (idx >= t.n_values)
        lut[j, :-1] = np.where(esc, t.bits[t.escape_index] + ESCAPE_BITS, t.bits[np.clip(idx, 0, t.n_values - 1)])
        lut[j, -1] = t.bits[t.escape_index] + ESCAPE_BITS
    return lut, lo


def _value_bits(lut, offset, tid, values):
    col = values.astype(np.int64) - offset
    col = np.where((col < 0) | (col >= lut.shape[1] - 1), lut.shape[1] - 1, col)
    return lut[tid, col]


def _group_costs(hist, lo, width, lut, offset):
    """Bits of each histogram (groups, width; last bin = outside [lo, lo + width - 2]) under each table."""
    vals = np.arange(lo, lo + width - 1)
    per_value = np.concatenate([_value_bits(lut, offset, np.arange(len(lut))[:, None], vals[None]),
                                lut[:, -1:]], axis=1)                       # (tables, width)
    return hist @ per_value.T


# -- coding ------------------------------------------------------------------------------------------
def _segments(tids: np.ndarray):
    """(order, [(table, start, stop), ...]): positions of ``tids`` grouped by table ascending, each group
    in increasing position (a stable sort)."""
    order = np.argsort(tids, kind="stable")
    st = tids[order]
    if st.size == 0:
        return order, []
    cuts = np.flatnonzero(np.diff(st)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [st.size]])
    return order, [(int(st[a]), int(a), int(b)) for a, b in zip(starts, stops)]


def encode_block(q: np.ndarray, tables: list[IntegerTable], ctx: CheckerboardContext) -> np.ndarray:
    """Entropy-code ``q[rows, channels, positions]`` with the context model into uint32 words.

    Decode order (SPEC.md 7.4): for each channel, the anchors then the other positions; within a
    phase, the values grouped by table number ascending, each group in increasing ``k = r * S + p``
    (its table indices, then its escapes' payloads).
    """
    q = np.asarray(q)
    r, c, s = q.shape
    if c != ctx.channels or s != ctx.height * ctx.width:
        raise GeocodecError(f"expected codes of shape (rows, {ctx.channels}, {ctx.height * ctx.width}), got {q.shape}")
    tid = ctx.table_ids(q)
    plan = []
    for ch in range(c):
        for pos in ctx.phases:
            vals = q[:, ch, pos].reshape(-1).astype(np.int64)
            rows = np.repeat(np.arange(r), len(pos))
            order, segs = _segments(tid[:, ch, pos].reshape(-1))
            for j, a, b in segs:
                sel = order[a:b]
                plan.append((ch, j, vals[sel], rows[sel]))
    coder = constriction.stream.stack.AnsCoder()
    for ch, j, vals, rows in reversed(plan):
        push_values(coder, vals, tables[j], channel=ch, rows=rows)
    return coder.get_compressed()


def decode_block(words: np.ndarray, tables: list[IntegerTable], ctx: CheckerboardContext, rows: int) -> np.ndarray:
    """Inverse of :func:`encode_block`: int32 array ``(rows, channels, positions)``."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    s = ctx.height * ctx.width
    out = np.zeros((rows, ctx.channels, s), dtype=np.int64)
    activity = np.zeros((rows, s), dtype=np.int64)
    anchors, others = ctx.phases
    index = ctx._index
    for ch in range(ctx.channels):
        ctx_a = ctx.anchor_context(activity[:, anchors])
        out[:, ch, anchors] = _decode_phase(coder, tables, index[ch][ctx_a]).reshape(rows, len(anchors))
        nb = ctx.neighbour_sums(np.abs(out[:, ch, :]))
        ctx_o = ctx.other_context(activity[:, others], nb[:, others])
        out[:, ch, others] = _decode_phase(coder, tables, index[ch][ctx_o]).reshape(rows, len(others))
        activity += np.abs(out[:, ch, :])
    if not coder.is_empty():
        raise BitstreamError("the code stream holds more data than its rows need (corrupted or mislabelled block)")
    return out.astype(np.int32)


def _decode_phase(coder, tables, tids: np.ndarray) -> np.ndarray:
    tids = tids.reshape(-1)
    order, segs = _segments(tids)
    vals = np.empty(tids.size, dtype=np.int64)
    for j, a, b in segs:
        vals[order[a:b]] = pop_values(coder, tables[j], b - a)
    return vals


def cell_bits(q: np.ndarray, tables: list[IntegerTable], ctx: CheckerboardContext) -> np.ndarray:
    """Ideal code length in bits of each position of rows ``q`` (n, C, S), summed over channels: (n, S)."""
    lut, offset = _bits_lut(tables)
    return _value_bits(lut, offset, ctx.table_ids(q), q).sum(axis=1)


def cross_entropy_bits(q: np.ndarray, tables: list[IntegerTable], ctx: CheckerboardContext) -> float:
    """Ideal code length of ``q[rows, channels, positions]`` under the context model, in bits."""
    return float(cell_bits(q, tables, ctx).sum())
