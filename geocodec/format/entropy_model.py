"""One object for "how a block's codes become bits": the tables plus, from spec 0.3.0, a context rule.

:class:`EntropyModel` is what the writer, the block decoder, the quality figures and the rate
estimates of training and tasks all use, so that the factorized model (one table per channel,
SPEC.md 7.4 ``channel-major``) and the checkerboard context model
(:mod:`geocodec.format.context`, ``checkerboard-context``) are chosen in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from geocodec.errors import GeocodecError
from geocodec.format import context as _ctx
from geocodec.format.entropy import PRECISION, IntegerTable, cross_entropy_bits, decode_block, encode_block

CHANNEL_MAJOR = "channel-major"
CHECKERBOARD = "checkerboard-context"
SYMBOL_ORDERS = (CHANNEL_MAJOR, CHECKERBOARD)


@dataclass(frozen=True)
class EntropyModel:
    """Integer tables and, for ``checkerboard-context``, the rule that picks one per value."""

    tables: tuple[IntegerTable, ...]
    context: _ctx.CheckerboardContext | None = None

    def __post_init__(self):
        if self.context is not None:
            self.context.check_tables(len(self.tables))

    @classmethod
    def from_json(cls, tables: list, context: dict | None = None, latent_shape=None) -> "EntropyModel":
        """From the JSON tables and the ``entropy_model.context`` object (None: factorized)."""
        tabs = tuple(IntegerTable.from_json(t) for t in tables)
        if context is None:
            return cls(tabs)
        return cls(tabs, _ctx.CheckerboardContext.from_json(context, latent_shape))

    @classmethod
    def fit(cls, q: np.ndarray, *, context: bool = True, **kw) -> "EntropyModel":
        """Fit on codes ``q`` (N, C, h, w): a checkerboard context model, or one table per channel."""
        q = np.asarray(q)
        if not context:
            return cls(tuple(IntegerTable.fit(q[:, c]) for c in range(q.shape[1])))
        tables, ctx = _ctx.CheckerboardContext.fit(q, **kw)
        return cls(tuple(tables), ctx)

    @property
    def symbol_order(self) -> str:
        """``entropy_model.symbol_order``: ``channel-major`` or ``checkerboard-context``."""
        return CHANNEL_MAJOR if self.context is None else CHECKERBOARD

    def json_members(self) -> dict:
        """``symbol_order``, ``tables`` and (context models) ``context`` of the ``entropy_model`` object."""
        out = {"symbol_order": self.symbol_order, "tables": [t.to_json() for t in self.tables]}
        if self.context is not None:
            out["context"] = self.context.to_json()
        return out

    def _check(self, q: np.ndarray) -> None:
        if self.context is None:
            channels, positions = len(self.tables), None
        else:
            channels, positions = self.context.channels, self.context.height * self.context.width
        if q.ndim != 3 or q.shape[1] != channels or (positions is not None and q.shape[2] != positions):
            raise GeocodecError(f"expected codes of shape (rows, {channels}, {positions or 'positions'}), "
                                f"got {q.shape}")

    # -- coding ----------------------------------------------------------------------------------
    def encode(self, q: np.ndarray) -> np.ndarray:
        """Codes ``q`` (rows, C, S) of one block -> uint32 words."""
        q = np.asarray(q)
        self._check(q)
        if self.context is None:
            return encode_block(q, list(self.tables))
        return _ctx.encode_block(q, list(self.tables), self.context)

    def decode(self, words: np.ndarray, rows: int, positions: int) -> np.ndarray:
        """uint32 words of one block of ``rows`` rows -> int32 codes (rows, C, S)."""
        if self.context is None:
            return decode_block(words, list(self.tables), rows, positions)
        if positions != self.context.height * self.context.width:
            raise GeocodecError(f"{positions} positions per channel, the context grid has "
                                f"{self.context.height * self.context.width}")
        return _ctx.decode_block(words, list(self.tables), self.context, rows)

    # -- rates -----------------------------------------------------------------------------------
    def cross_entropy_bits(self, q: np.ndarray) -> float:
        """Ideal code length of ``q`` (rows, C, S) in bits, escapes counted (SPEC.md 7.3)."""
        q = np.asarray(q)
        self._check(q)
        if self.context is None:
            return cross_entropy_bits(q, list(self.tables))
        return _ctx.cross_entropy_bits(q, list(self.tables), self.context)

    def cell_bits(self, q: np.ndarray) -> np.ndarray:
        """Ideal code length of each latent position of rows ``q`` (n, C, S), summed over channels: (n, S)."""
        q = np.asarray(q)
        self._check(q)
        if self.context is not None:
            return _ctx.cell_bits(q, list(self.tables), self.context)
        from geocodec.format.entropy import ESCAPE_BITS

        out = np.zeros((q.shape[0], q.shape[2]), dtype=np.float64)
        for c, table in enumerate(self.tables):
            idx = q[:, c, :].astype(np.int64) - table.lo
            esc = (idx < 0) | (idx >= table.n_values)
            out += table.bits[np.where(esc, table.escape_index, idx)] + ESCAPE_BITS * esc
        return out

    @cached_property
    def reference_bits_per_cell(self) -> float:
        """The rate ``rate_ratio`` compares with (SPEC.md 5.1), bits per latent position, all channels:
        the tables' self-entropy (factorized), or the context model's ``mean_bits`` on its fitting data."""
        if self.context is not None:
            return float(self.context.mean_bits)
        total = 0.0
        for t in self.tables:
            f = np.asarray(t.freq, dtype=np.float64)
            total += float((f / f.sum() * t.bits).sum())
        return total

    def min_bits_per_row(self, channels: int, positions: int) -> float:
        """The fewest bits one row can cost: every value at its table's most probable entry."""
        if self.context is None:
            return positions * sum(PRECISION - math.log2(max(t.freq)) for t in self.tables)
        least = min(PRECISION - math.log2(max(t.freq)) for t in self.tables)
        return positions * channels * least
