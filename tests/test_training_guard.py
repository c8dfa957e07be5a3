"""The divergence guard of codec training rolls a blown-up run back to a healthy state."""

import math

import pytest

torch = pytest.importorskip("torch")

from geocodec.training.guard import DivergenceGuard, TrainingDiverged  # noqa: E402


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    return model, opt


def _step(model, opt, scale=1.0):
    loss = (model(torch.ones(4, 3)) ** 2).sum() * scale
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_healthy_windows_never_roll_back_and_warmup_accepts_a_falling_loss():
    model, opt = _setup()
    g = DivergenceGuard(model, opt, warmup=3)
    for i, d in enumerate([50.0, 8.0, 1.0, 0.9, 1.1, 0.8, 1.2]):   # the first fast fall is warm-up
        _step(model, opt)
        assert g.end_window(50 * (i + 1), d) is False
    assert g.events == []
    assert g.threshold() == pytest.approx(20.0 * 1.1)   # median of all seven windows


def test_a_spike_restores_the_oldest_snapshot_model_and_optimizer():
    model, opt = _setup()
    g = DivergenceGuard(model, opt, warmup=2, keep=2)
    for i in range(4):
        _step(model, opt)
        g.end_window(50 * (i + 1), 1.0)
    # the oldest kept snapshot is the state after the third window
    want_w = g.snapshots[0][0]["weight"].clone()
    want_m = g.snapshots[0][1]["state"][0]["exp_avg"].clone()
    _step(model, opt, scale=1e6)   # a wild update
    assert not torch.equal(model.weight.detach(), want_w)
    assert g.end_window(250, 67.0) is True
    assert torch.equal(model.weight.detach(), want_w)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], want_m)
    assert g.events == [{"step": 250, "distortion": 67.0, "limit": 20.0}]
    assert len(g.snapshots) == 1
    # training goes on from there: a healthy window is accepted again
    _step(model, opt)
    assert g.end_window(300, 1.1) is False


def test_non_finite_distortion_rolls_back_even_in_warmup():
    model, opt = _setup()
    g = DivergenceGuard(model, opt, warmup=10)
    _step(model, opt)
    g.end_window(50, 3.0)
    assert g.end_window(100, math.nan) is True


def test_repeated_divergence_raises_with_the_step():
    model, opt = _setup()
    g = DivergenceGuard(model, opt, warmup=1, max_consecutive=2)
    g.end_window(50, 1.0)
    g.end_window(100, 1.0)
    assert g.end_window(150, 100.0) and g.end_window(200, 100.0)
    with pytest.raises(TrainingDiverged, match="step 250"):
        g.end_window(250, 100.0)


def test_nan_before_any_healthy_window_raises():
    model, opt = _setup()
    with pytest.raises(TrainingDiverged, match="before any healthy window"):
        DivergenceGuard(model, opt).end_window(50, math.inf)


def test_bad_settings_are_refused():
    model, opt = _setup()
    with pytest.raises(ValueError, match="factor"):
        DivergenceGuard(model, opt, factor=1.0)
