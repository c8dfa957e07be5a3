"""The matching and Bjøntegaard math of bench/bench_rd.py, on synthetic rate–quality curves
(synthetic data only checks the arithmetic; the benchmark itself runs on real scenes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import load_bench

rd = load_bench("bench_rd")


def curve(psnr, a=2.0, b=0.23, c=0.0):
    """Bytes of a smooth synthetic codec: log(bytes) = a + b * psnr + c * psnr**3."""
    p = np.asarray(psnr, dtype=np.float64)
    return np.exp(a + b * p + c * p ** 3)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("factor", [2.0, 0.5, 1.0, 7.0])
def test_known_rate_factor_gives_known_bd_rate(method, factor):
    ref_p = np.arange(26.0, 42.0, 1.0)            # dense anchor, like the JPEG 2000 sweep
    test_p = np.array([29.3, 31.8, 33.9, 35.2, 36.1])  # five points, like our qualities
    bd = rd.bd_rate(curve(ref_p), ref_p, factor * curve(test_p), test_p, method)
    assert bd == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_pchip_handles_curved_curves():
    # a cubic log-rate curve: PCHIP through dense points integrates it closely
    ref_p = np.linspace(20, 45, 60)
    test_p = np.linspace(25, 40, 12)
    bd = rd.bd_rate(curve(ref_p, c=1e-4), ref_p, 3.0 * curve(test_p, c=1e-4), test_p, "pchip")
    assert bd == pytest.approx(200.0, rel=1e-3)


def test_bd_rate_uses_overlap_only():
    # the anchor is 2x cheaper below 27 dB and equal above: only 30..40 overlaps the test curve
    # (PCHIP is local: the knots from 29 dB on do not see the step)
    ref_p = np.arange(20.0, 41.0, 1.0)
    ref_r = curve(ref_p) * np.where(ref_p < 27, 0.5, 1.0)
    test_p = np.arange(30.0, 41.0, 2.0)
    assert rd.bd_rate(ref_r, ref_p, curve(test_p), test_p) == pytest.approx(0.0, abs=1e-6)


def test_no_overlap_gives_none():
    assert rd.bd_rate(curve([20, 22, 24]), [20, 22, 24], curve([30, 32, 34]), [30, 32, 34]) is None
    assert rd.bd_rate(curve([20]), [20], curve([20, 21]), [20, 21]) is None


def test_rate_at_interpolates_log_linearly_between_brackets():
    p = [30.0, 32.0]
    r = [100.0, 400.0]
    assert rd.rate_at(r, p, 31.0) == pytest.approx(200.0)        # geometric mean: log-linear
    assert rd.rate_at(r, p, 30.0) == pytest.approx(100.0)
    assert rd.rate_at(r, p, 32.0) == pytest.approx(400.0)


def test_unbracketed_points_are_not_reached():
    p = np.arange(30.0, 36.0)
    r = curve(p)
    assert rd.rate_at(r, p, 29.99) is None
    assert rd.rate_at(r, p, 35.01) is None
    assert rd.rate_at(r, p, float("nan")) is None
    assert rd.rate_at([], [], 30.0) is None


def test_pareto_drops_dominated_points():
    # (bytes, psnr): the 3rd point costs more than the 2nd for less quality
    r, m = rd.pareto([100, 200, 250, 300, 300], [30, 32, 31, 33, 32.5])
    assert list(r) == [100, 200, 300]
    assert list(m) == [30, 32, 33]
    # matching never uses a dominated point
    assert rd.rate_at([100, 200, 250, 300], [30, 32, 31, 33], 31.0) == pytest.approx(math.sqrt(100 * 200))


def test_pchip_slopes_match_scipy_when_available():
    scipy_interp = pytest.importorskip("scipy.interpolate")
    x = np.array([0.0, 1.0, 2.5, 3.0, 5.0])
    y = np.array([0.0, 0.8, 1.0, 2.5, 2.6])
    ref = scipy_interp.PchipInterpolator(x, y)
    t = np.linspace(0, 5, 101)
    ours = rd._hermite(x, y, rd._pchip_slopes(x, y), t)
    np.testing.assert_allclose(ours, ref(t), atol=1e-12)


def test_ssim_mask_ignores_windows_touching_invalid_pixels():
    from geocodec.codecs.image_metrics import ssim

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.3, (40, 40))
    b = a + rng.normal(0, 0.01, a.shape)
    full = np.ones(a.shape, bool)
    assert ssim(a, b, 1.0, mask=full) == pytest.approx(ssim(a, b, 1.0))
    c = b.copy()
    c[:, 30:] = 0.9                      # garbage under the invalid columns
    mask = full.copy()
    mask[:, 30:] = False
    assert ssim(a, c, 1.0, mask=mask) == pytest.approx(ssim(a[:, :30], b[:, :30], 1.0))
    assert math.isnan(ssim(a, b, 1.0, mask=np.zeros(a.shape, bool)))


def test_compare_models_reads_the_cards_and_gives_the_bd_rate(tmp_path):
    """bench/compare_models.py: a model whose every held-out rate is halved at the same PSNR is at -50 %."""
    import json

    cm = load_bench("compare_models")

    def card(path, factor):
        qs = {str(q): {"bits_per_pixel": factor * 0.2 * 2 ** q, "psnr_db": 30.0 + 3 * q} for q in range(1, 6)}
        path.mkdir()
        (path / "model.json").write_text(json.dumps({"scores": {"sets": {"a": {"qualities": qs}}}}))
        return path

    ref, new = card(tmp_path / "ref", 1.0), card(tmp_path / "new", 0.5)
    lines = cm.compare(cm.held_out(new), cm.held_out(ref))
    assert "| a | -50.0 % |" in lines[2] and "q3 -50.0 % / +0.00" in lines[2]
    assert cm.main([str(tmp_path / "missing"), "--against", str(ref)]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text(json.dumps({"scores": {}}))
    with pytest.raises(ValueError, match=r"bad/model.json: no held-out scores"):
        cm.held_out(tmp_path / "bad")
    one = {"a": {1: (0.2, 31.0)}}
    assert "fewer than 2 qualities" in cm.compare(one, one)[2]


def test_refined_curve_is_scored_against_the_plain_one():
    """``--refine``: matched() gives the refined codes' BD-rate against the plain encoder's curve."""
    ps = np.array([30.0, 33.0, 36.0, 39.0, 42.0])
    plain_b = curve(ps)

    def rows(b):
        return [{"quality": i + 1, "bytes": float(v), "tile_bytes": float(v) * 1.1, "psnr": float(p), "ssim": 0.9}
                for i, (v, p) in enumerate(zip(b, ps))]

    j2k = [{"bytes": float(v), "psnr": float(p), "ssim": 0.9} for v, p in zip(curve(np.arange(26.0, 47.0)),
                                                                            np.arange(26.0, 47.0))]
    res = {"ours": rows(0.8 * plain_b), "plain": rows(plain_b), "j2k_scene": j2k, "j2k_tiles": j2k}
    m = rd.matched(res)
    assert m["bd_vs_plain_psnr"] == pytest.approx(-20.0, abs=0.01)
    assert m["bd_scene_pchip_psnr"] == pytest.approx(-20.0, abs=0.01)
    assert "bd_vs_plain_psnr" not in rd.matched({**res, "plain": None})


def test_bands_at_interpolates_between_bracketing_points_only():
    pts = [{"psnr": 30.0, "band_psnr": [32.0, 28.0]}, {"psnr": 34.0, "band_psnr": [36.0, 30.0]},
           {"psnr": 38.0, "band_psnr": [40.0, 36.0]}]
    assert rd.bands_at(pts, 32.0) == pytest.approx([34.0, 29.0])
    assert rd.bands_at(pts[::-1], 36.0) == pytest.approx([38.0, 33.0])   # order of the sweep does not matter
    assert rd.bands_at(pts, 38.0) == pytest.approx([40.0, 36.0])
    assert rd.bands_at(pts, 29.9) is None and rd.bands_at(pts, 38.1) is None


def test_band_psnr_counts_valid_pixels_per_band():
    ref = np.zeros((2, 4, 4), np.float32)
    rec = ref.copy()
    rec[0] += 0.01          # band 1: MSE 1e-4 -> 40 dB
    rec[1, 0, 0] = 1.0      # band 2: one bad pixel, masked out below
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    got = rd.band_psnr(ref, rec, valid)
    assert got[0] == pytest.approx(40.0, abs=1e-3) and got[1] == float("inf")
