"""Storage baselines of the rate–utility figures (geocodec/baselines.py).

Synthetic vectors here (correlated Gaussians with a decaying spectrum): these are unit
tests of the baselines' contracts, not figures; the reported figures use real tiles
(bench/bench_search_utility.py, geocodec/training/*).
"""

from __future__ import annotations

import numpy as np
import pytest

from geocodec.training import baselines as B

D = 32


def vectors(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    """Correlated vectors: a random rotation of axes with standard deviations 4 * 0.85**i, plus an offset."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    z = rng.normal(size=(n, d)) * (4.0 * 0.85 ** np.arange(d))
    return (z @ basis.T + rng.normal(size=d)).astype(np.float32)


@pytest.fixture(scope="module")
def train():
    return vectors(1200, seed=1)


@pytest.fixture(scope="module")
def test():
    return vectors(300, seed=2)


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


# -- zstd --------------------------------------------------------------------------------------------
def test_zstd_bits_counts_compressed_bytes():
    zeros = np.zeros((100, D), np.float32)
    noise = np.random.default_rng(0).normal(size=(100, D)).astype(np.float32)
    assert 0 < B.zstd_bits(zeros) < 0.05 * zeros.nbytes * 8
    assert 0.8 * noise.nbytes * 8 < B.zstd_bits(noise) < 1.05 * noise.nbytes * 8
    # one frame per array: two arrays cost about the sum of each
    both = B.zstd_bits(noise, noise[::-1].copy())
    assert both == pytest.approx(2 * B.zstd_bits(noise), rel=0.02)


# -- float32 / float16 / int8 ------------------------------------------------------------------------
def test_float32_is_lossless(test):
    st = B.float32(test)
    assert st.name == "float32" and st.side_bits == 0
    assert st.decoded.dtype == np.float32 and np.array_equal(st.decoded, test)
    assert st.decoded is not test  # a copy: the caller's array is not handed back
    assert 0 < st.bits <= 1.01 * test.nbytes * 8
    assert st.bits_per(len(test)) == pytest.approx(st.bits / len(test))


def test_float16_error_is_half_precision(test):
    st = B.float16(test)
    assert st.decoded.dtype == np.float32 and st.decoded.shape == test.shape
    rel = np.abs(st.decoded - test) / np.maximum(np.abs(test), 2.0 ** -14)
    assert rel.max() <= 2.0 ** -11 + 1e-7           # round-to-nearest: half an ulp of a 10-bit mantissa
    assert np.any(st.decoded != test)                # it really rounds
    assert st.bits < 0.6 * B.float32(test).bits


def test_int8_codes_scale_and_bound(test):
    q, scale = B.int8_codes(test)
    assert q.dtype == np.int8 and scale.dtype == np.float16 and scale.shape == (len(test), 1)
    assert np.abs(q).max() <= 127
    assert (np.abs(q).max(axis=1) >= 126).all()     # the largest component uses the full range
    st = B.int8_per_vector(test)
    s = scale.astype(np.float32)
    assert np.array_equal(st.decoded, q.astype(np.float32) * s)
    # each component within half a step of the stored (float16) scale; where the float16 rounding of
    # max/127 pushes the largest component past 127 it is clipped, by at most 127 * 2**-11 steps < 1/2
    err = np.abs(st.decoded - test)
    assert (err <= s / 2 * (1 + 1e-5) + 1e-7).all()
    assert st.bits < B.float16(test).bits


def test_int8_half_step_bound_exact_scale():
    # scales that float16 represents exactly (powers of two): the half-step bound is exact
    x = np.array([[127.0, -50.3, 3.2, 0.49], [-254.0, 100.6, 1.0, -0.2]], np.float32)
    st = B.int8_per_vector(x)
    _, scale = B.int8_codes(x)
    assert scale.ravel().tolist() == [1.0, 2.0]
    assert (np.abs(st.decoded - x) <= scale.astype(np.float32) / 2).all()


def test_int8_all_zero_vector():
    x = np.zeros((3, 8), np.float32)
    x[1, 2] = 5.0
    q, scale = B.int8_codes(x)
    assert scale[0, 0] == 1.0 and scale[2, 0] == 1.0
    st = B.int8_per_vector(x)
    assert np.array_equal(st.decoded[[0, 2]], np.zeros((2, 8))) and st.decoded[1, 2] == pytest.approx(5.0, rel=1e-3)


# -- PCA + int8 --------------------------------------------------------------------------------------
def test_pca_bits_grow_and_error_falls_with_k(train, test):
    ks = (1, 2, 4, 8, 16, 32)
    rows = [B.PCAInt8.fit(train, k).apply(test) for k in ks]
    bits = [r.bits for r in rows]
    errs = [mse(r.decoded, test) for r in rows]
    assert all(b1 < b2 for b1, b2 in zip(bits, bits[1:])), bits
    assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:])), errs
    assert [r.name for r in rows] == [f"pca{k}+int8" for k in ks]


def test_pca_full_rank_is_near_lossless(train):
    p = B.PCAInt8.fit(train, D)
    st = p.apply(train)  # the fit set: no value outside the int8 range
    # orthonormal components: the error norm is at most half a step in each component
    bound = 0.5 * np.linalg.norm(p.scale) * 1.001
    assert np.linalg.norm(st.decoded - train, axis=1).max() <= bound
    assert mse(st.decoded, train) < 1e-3 * float(np.var(train, axis=0).sum())


def test_pca_side_bits_and_components(train, test):
    k = 5
    p = B.PCAInt8.fit(train, k)
    assert p.components.shape == (k, D)
    assert np.allclose(p.components @ p.components.T, np.eye(k), atol=1e-5)
    st = p.apply(test)
    assert st.side_bits == 32.0 * (D + k * D + k)
    assert st.bits <= 1.05 * len(test) * k * 8


def test_pca_rejects_bad_k_and_dims(train):
    with pytest.raises(ValueError, match="k=0"):
        B.PCAInt8.fit(train, 0)
    with pytest.raises(ValueError, match=f"k={D + 1}"):
        B.PCAInt8.fit(train, D + 1)
    p = B.PCAInt8.fit(train, 4)
    with pytest.raises(ValueError, match="fitted on d=32"):
        p.apply(np.zeros((3, D - 1), np.float32))


# -- product quantization (faiss) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def faiss():
    return pytest.importorskip("faiss", reason="faiss-cpu is not installed: the PQ baseline needs it "
                                               "(pip install faiss-cpu, part of the dev and train extras)")


def test_pq_bits_grow_and_error_falls_with_m(faiss, train, test):
    ms = (1, 2, 4, 8, 16, 32)
    rows = [B.ProductQuantizer.fit(train, m, 8).apply(test) for m in ms]
    bits = [r.bits for r in rows]
    errs = [mse(r.decoded, test) for r in rows]
    assert all(b1 < b2 for b1, b2 in zip(bits, bits[1:])), bits
    assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:])), errs
    for m, r in zip(ms, rows):
        assert r.name == f"pq{m}x8"
        assert r.bits <= 1.05 * len(test) * m * 8 + 256  # codes are m bytes a vector before zstd
        assert r.side_bits == 32.0 * D * 256
        assert r.decoded.shape == test.shape and r.decoded.dtype == np.float32
    assert errs[-1] < 0.05 * float(np.var(test, axis=0).sum())


def test_pq_is_deterministic_for_a_seed(faiss, train, test):
    a = B.ProductQuantizer.fit(train, 4, 8, seed=3).apply(test)
    b = B.ProductQuantizer.fit(train, 4, 8, seed=3).apply(test)
    assert np.array_equal(a.decoded, b.decoded) and a.bits == b.bits


def test_pq_rejects_bad_m_and_dims(faiss, train):
    with pytest.raises(ValueError, match="must divide"):
        B.ProductQuantizer.fit(train, 5)
    with pytest.raises(ValueError, match="must divide"):
        B.ProductQuantizer.fit(train, 0)
    pq = B.ProductQuantizer.fit(train, 4, 4)
    with pytest.raises(ValueError, match="fitted on d=32"):
        pq.apply(np.zeros((2, 16), np.float32))


# -- input checks and the sweep -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.zeros(D, np.float32), np.zeros((2, 3, 4), np.float32)])
def test_rejects_non_2d(bad):
    for fn in (B.float32, B.float16, B.int8_per_vector):
        with pytest.raises(ValueError, match=r"\(n, d\)"):
            fn(bad)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        B.PCAInt8.fit(bad, 1)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite(value, train):
    x = vectors(10)
    x[3, 7] = value
    for fn in (B.float32, B.float16, B.int8_per_vector, B.int8_codes):
        with pytest.raises(ValueError, match="finite"):
            fn(x)
    with pytest.raises(ValueError, match="finite"):
        B.PCAInt8.fit(x, 2)
    with pytest.raises(ValueError, match="finite"):
        B.PCAInt8.fit(train, 2).apply(x)


def test_sweep_lists_every_baseline(train, test):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed: the sweep's PQ rows need it")
    rows = B.sweep(train, test, pca_ks=(2, 8, D + 8), pq_ms=(2, 5, 8))
    assert [r.name for r in rows] == ["float32", "float16", "int8/vector", "pca2+int8", "pca8+int8",
                                      "pq2x8", "pq8x8"]  # k > d and m not dividing d are skipped
    assert all(r.decoded.shape == test.shape for r in rows)


def test_sweep_without_pca_or_pq(train, test):
    rows = B.sweep(train, test)
    assert [r.name for r in rows] == ["float32", "float16", "int8/vector"]
    assert rows[0].bits > rows[1].bits > rows[2].bits


def test_j2k_at_bytes_never_exceeds_the_budget_and_uses_it():
    """JPEG 2000 matched to a byte budget: at most the budget, close to it, better with more bytes;
    a budget below the lowest target is an error, not a made-up point."""
    pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(0)
    base = rng.normal(1500, 400, (1, 96, 96)).cumsum(axis=2) / 10 + 1000
    img = np.clip(np.concatenate([base * g for g in (0.8, 1.0, 1.1, 1.6, 1.3)]), 0, 65535).astype(np.uint16)
    errs = []
    for budget in (1500, 6000):
        dec, n, level = B.j2k_at_bytes(img, budget)
        assert dec.shape == img.shape and dec.dtype == np.uint16
        assert n <= budget and n > 0.8 * budget
        assert len(B.j2k_encode(img, level)) == n
        errs.append(float(np.mean((dec.astype(float) - img) ** 2)))
    assert errs[1] < errs[0]
    with pytest.raises(ValueError, match="over the budget"):
        B.j2k_at_bytes(img, 10)


def test_j2k_scene_at_bytes_fills_nodata_and_gives_it_back_invalid():
    """A scene with a nodata corner: coded within the budget, decoded close to the input where valid, 0 where not."""
    pytest.importorskip("imagecodecs")
    from geocodec.training.data import Scene

    rng = np.random.default_rng(1)
    base = rng.normal(0.15, 0.04, (1, 96, 96)).cumsum(axis=2) / 40 + 0.1
    data = np.clip(np.concatenate([base * g for g in (0.8, 1.0, 1.1, 1.6, 1.3)]), 0, 1).astype(np.float32)
    valid = np.ones(data.shape, bool)
    valid[:, :30, :30] = False
    data[~valid] = 0
    rec, n, level = B.j2k_scene_at_bytes(Scene("x", "test", data, valid), 6000)
    assert n <= 6000 and rec.valid is valid and rec.data.dtype == np.float32
    assert (rec.data[~valid] == 0).all()
    assert np.abs(rec.data[valid] - data[valid]).mean() < 0.01
    with pytest.raises(ValueError, match="over the budget"):
        B.j2k_scene_at_bytes(Scene("x", "test", data, valid), 10)
