"""The integer entropy models and the block bitstream: bit-exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geocodec.format.entropy import (ESCAPE_OFFSET, MAX_TABLE_SIZE, TOTAL, IntegerTable, bytes_to_words,
                              cross_entropy_bits, decode_block, encode_block, quantize_pmf, words_to_bytes)
from geocodec.errors import BitstreamError, GeocodecError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the whole codable range: escaped values travel raw in 20 bits
CODABLE = st.integers(-ESCAPE_OFFSET, ESCAPE_OFFSET - 1)


@st.composite
def tables_strategy(draw, channels: int):
    tables = []
    for _ in range(channels):
        n = draw(st.integers(1, 40))
        lo = draw(st.integers(-50, 50))
        weights = draw(hnp.arrays(np.float64, n + 1, elements=st.floats(0.0, 1.0)))
        probs = weights + 1e-6
        tables.append(IntegerTable(lo=lo, freq=tuple(int(v) for v in quantize_pmf(probs))))
    return tables


@st.composite
def block_strategy(draw):
    rows = draw(st.integers(0, 30))
    channels = draw(st.integers(1, 5))
    positions = draw(st.integers(1, 4))
    tables = draw(tables_strategy(channels))
    shape = (rows, channels, positions)
    # mostly values inside each table's range, plus anything in the codable range (escapes)
    inside = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 10**6)))
    lo = np.array([t.lo for t in tables])[None, :, None]
    n_values = np.array([t.n_values for t in tables])[None, :, None]
    q = lo + inside % n_values
    escape_mask = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    escapes = draw(hnp.arrays(np.int64, shape, elements=CODABLE))
    q = np.where(escape_mask, escapes, q)
    return q.astype(np.int32), tables


@SETTINGS
@given(block_strategy())
def test_block_round_trip_is_bit_exact(block):
    q, tables = block
    words = encode_block(q, tables)
    assert words.dtype == np.uint32
    data = words_to_bytes(words)
    back = decode_block(bytes_to_words(data, bits=8 * len(data)), tables, q.shape[0], q.shape[2])
    assert back.dtype == np.int32
    assert back.shape == q.shape
    np.testing.assert_array_equal(back, q)


@SETTINGS
@given(st.integers(1, 3), st.lists(CODABLE, min_size=1, max_size=20))
def test_values_far_outside_the_table_round_trip(channels, values):
    table = IntegerTable(lo=0, freq=(TOTAL - 1, 1))  # one value (0) and the escape
    q = np.array(values, dtype=np.int32).reshape(1, 1, -1).repeat(channels, axis=1)
    back = decode_block(encode_block(q, [table] * channels), [table] * channels, 1, q.shape[2])
    np.testing.assert_array_equal(back, q)


@pytest.mark.parametrize("value", [ESCAPE_OFFSET, -ESCAPE_OFFSET - 1, 10**9])
def test_value_outside_the_codable_range_is_an_error(value):
    table = IntegerTable.fit(np.arange(-3, 4))
    q = np.zeros((4, 1, 1), np.int32)
    q[2, 0, 0] = value
    with pytest.raises(GeocodecError, match="outside the codable range") as info:
        encode_block(q, [table])
    assert info.value.row == 2


def test_extreme_codable_values_round_trip():
    table = IntegerTable.fit(np.arange(-3, 4))
    q = np.array([-ESCAPE_OFFSET, ESCAPE_OFFSET - 1, 0, -3, 3, 4, -4]).reshape(-1, 1, 1).astype(np.int32)
    np.testing.assert_array_equal(decode_block(encode_block(q, [table]), [table], len(q), 1), q)


def test_each_channel_uses_its_own_table():
    """Decoding with the tables of two channels swapped fails or gives other values."""
    a = IntegerTable.fit(np.r_[np.zeros(1000, int), np.arange(-2, 3)])
    b = IntegerTable(lo=100, freq=tuple(int(v) for v in quantize_pmf(np.ones(9))))
    q = np.stack([np.zeros((10, 1), int), np.full((10, 1), 103)], axis=1).astype(np.int32)
    words = encode_block(q, [a, b])
    np.testing.assert_array_equal(decode_block(words, [a, b], 10, 1), q)
    try:
        swapped = decode_block(words, [b, a], 10, 1)
    except BitstreamError:
        return
    assert not np.array_equal(swapped, q)


def test_encode_rejects_wrong_channel_count():
    t = IntegerTable.fit(np.arange(3))
    with pytest.raises(GeocodecError, match=r"shape \(rows, 2, positions\)"):
        encode_block(np.zeros((3, 1, 1), np.int32), [t, t])


def test_empty_block():
    t = IntegerTable.fit(np.arange(3))
    words = encode_block(np.zeros((0, 1, 1), np.int32), [t])
    assert decode_block(words, [t], 0, 1).shape == (0, 1, 1)


def test_decoding_too_few_rows_is_detected():
    t = IntegerTable.fit(np.arange(-5, 6))
    q = np.random.default_rng(0).integers(-5, 6, (40, 1, 1)).astype(np.int32)
    words = encode_block(q, [t])
    with pytest.raises(BitstreamError, match="more data than its rows need"):
        decode_block(words, [t], 39, 1)


def test_truncated_words_are_detected():
    t = IntegerTable.fit(np.arange(-5, 6))
    q = np.random.default_rng(1).integers(-5, 6, (200, 1, 1)).astype(np.int32)
    words = encode_block(q, [t])
    with pytest.raises(BitstreamError):
        decode_block(words[:-1], [t], 200, 1)


def test_bytes_to_words_checks_length():
    data = words_to_bytes(np.array([1, 2, 3], np.uint32))
    assert len(data) == 12
    np.testing.assert_array_equal(bytes_to_words(data), [1, 2, 3])
    with pytest.raises(BitstreamError, match="not a whole number of 32-bit words"):
        bytes_to_words(data[:-1])
    with pytest.raises(BitstreamError, match="header says 64"):
        bytes_to_words(data, bits=64)


def test_words_are_little_endian():
    assert words_to_bytes(np.array([0x01020304], np.uint32)) == b"\x04\x03\x02\x01"


# -- tables ----------------------------------------------------------------------------------
@SETTINGS
@given(hnp.arrays(np.float64, st.integers(2, 300), elements=st.floats(0.0, 1e6)))
def test_quantize_pmf_is_a_valid_table(weights):
    probs = weights + 1e-9
    freq = quantize_pmf(probs)
    assert int(freq.sum()) == TOTAL
    assert (freq >= 1).all()
    IntegerTable(lo=0, freq=tuple(int(v) for v in freq))


def test_quantize_pmf_is_close_to_probs():
    probs = np.array([0.5, 0.25, 0.125, 0.125])
    np.testing.assert_allclose(quantize_pmf(probs) / TOTAL, probs, atol=1e-6)


@pytest.mark.parametrize("freq, msg", [
    ((TOTAL,), "at least one value"),
    ((TOTAL - 1, 0, 1), ">= 1"),
    ((5, 5), "sum to 10"),
])
def test_invalid_tables_are_rejected(freq, msg):
    with pytest.raises(GeocodecError, match=msg) as info:
        IntegerTable(lo=0, freq=freq)
    assert info.value.field == "entropy_model.tables"


def test_table_json_round_trip():
    t = IntegerTable.fit(np.array([-2, -1, 0, 0, 0, 1, 5]), table_bits_per_entry=0.0)
    assert t.lo == -2 and t.n_values == 8  # a free table covers every observed value
    assert IntegerTable.from_json(t.to_json()) == t
    with pytest.raises(GeocodecError, match="malformed entropy table"):
        IntegerTable.from_json({"freq": [1, 2]})


def test_fit_keeps_tables_within_the_size_limit():
    t = IntegerTable.fit(np.arange(0, 3 * MAX_TABLE_SIZE, 7), table_bits_per_entry=0.0)
    assert len(t.freq) <= MAX_TABLE_SIZE


def test_fit_sends_rare_tails_through_the_escape():
    """Few samples spread thinly: a narrow table plus escapes beats a table entry per level."""
    rng = np.random.default_rng(0)
    values = np.round(rng.laplace(0, 2000, 3000)).astype(np.int64)
    t = IntegerTable.fit(values)
    assert t.n_values < 2000
    q = values.reshape(-1, 1, 1)
    words = encode_block(q, [t])
    assert np.array_equal(decode_block(words, [t], len(values), 1), q)


def test_rate_is_close_to_cross_entropy():
    """The operational code length of a large block is within a fraction of a percent of the ideal."""
    rng = np.random.default_rng(3)
    q = np.round(rng.laplace(0, 3, (4000, 4, 1))).astype(np.int32)
    tables = [IntegerTable.fit(q[:, c]) for c in range(4)]
    ideal = cross_entropy_bits(q, tables)
    actual = 32 * len(encode_block(q, tables))
    assert ideal <= actual <= ideal * 1.005 + 64


def test_cross_entropy_counts_escapes():
    t = IntegerTable(lo=0, freq=(TOTAL // 2, TOTAL // 2))  # value 0 and escape, 1 bit each
    q = np.array([0, 0, 7]).reshape(-1, 1, 1)
    assert cross_entropy_bits(q, [t]) == pytest.approx(3 + 20)
