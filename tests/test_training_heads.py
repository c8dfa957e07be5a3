"""Training side of the task heads (geocodec.training.heads): stacked head training and the rate tables."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def one_thread():
    """torch and faiss on one thread (the test machines are small and shared: more threads only spin)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import faiss
    except ImportError:
        faiss = None
    nf = faiss.omp_get_max_threads() if faiss else None
    if faiss:
        faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(n)
    if faiss:
        faiss.omp_set_num_threads(nf)


def test_train_mlp_stack_trains_each_head_on_its_own_input(one_thread):
    from geocodec.training.heads import torch_predict, train_mlp, train_mlp_stack

    rng = np.random.default_rng(0)
    n = 1200
    y = rng.integers(0, 3, n)
    informative = rng.normal(size=(n, 6)).astype(np.float32)
    informative[:, 0] += 6.0 * y                                   # the class is in channel 0
    noise = rng.normal(size=(n, 6)).astype(np.float32)              # no class information
    heads = train_mlp_stack([informative, noise], y, 3, epochs=15, seed=0, batch=64)
    assert len(heads) == 2
    acc = []
    for (layers, mean, std, net), x in zip(heads, (informative, noise)):
        assert [w.shape for w, _ in layers] == [(6, 128), (128, 64), (64, 3)]
        assert mean.shape == std.shape == (6,)
        p = torch_predict(net, mean, std, x)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
        acc.append(float((p.argmax(1) == y).mean()))
    assert acc[0] > 0.95 and acc[1] < 0.6          # training accuracy; the noise head can only memorise
    _, m, s, net = train_mlp([informative], y, 3, epochs=15, seed=0, batch=64)   # the same recipe, one head
    assert acc[0] == pytest.approx(float((torch_predict(net, m, s, informative).argmax(1) == y).mean()), abs=0.03)


def test_matched_rate_table_compares_the_nearest_cheaper_point():
    from geocodec.training.heads import PCA_KS, PQ_MS, PQ_NBITS, QUALITIES
    from geocodec.training.heads_report import matched_rate_table

    folds = [0, 1]
    rates = {f: {**{f"codes q{q}": 10.0 * q for q in QUALITIES},
                 **{f"latent pq{m}x{PQ_NBITS}": 7.0 * m for m in PQ_MS},
                 **{f"latent pca{k}+int8": 6.0 * k for k in PCA_KS}} for f in folds}

    def score(f, key):          # every baseline 0.1 above every codec quality, on both folds
        return 0.5 if key.startswith("codes") else 0.6

    rows = matched_rate_table(score, rates, "OA")
    q1 = next(r for r in rows if r.startswith("| q1 |"))
    assert "PQ-1 x 8 bit | 7.0 | +0.100 ± 0.000 (2/2)" in q1      # 7 bits <= 10: the largest PQ rate below q1
    assert "PCA-1 + int8 | 6.0 | +0.100" in q1
    assert "at 5 of 5 qualities, PCA at 5 of 5" in rows[-1]


def test_pq_on_short_sub_vectors_decodes_to_the_input_space(one_thread):
    pytest.importorskip("faiss")
    from geocodec.training.baselines import ProductQuantizer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 24)).astype(np.float32)
    pq8 = ProductQuantizer.fit(x, 8)                 # 3-d sub-vectors: padded to 4 inside faiss (speed)
    assert pq8.pad == 1
    st8 = pq8.apply(x[:2000])
    st4 = ProductQuantizer.fit(x, 4).apply(x[:2000])
    assert st8.decoded.shape == (2000, 24) and st8.decoded.dtype == np.float32
    err8 = float(np.mean((st8.decoded - x[:2000]) ** 2))
    err4 = float(np.mean((st4.decoded - x[:2000]) ** 2))
    assert err8 < err4 < 1.0
    assert st8.side_bits == 32.0 * 24 * 256          # codebooks of the real 24 dimensions



def test_committed_page_is_what_the_committed_report_gives(tmp_path):
    """docs/heads.md holds exactly what `geocodec train heads --report-only` writes from
    geocodec/models/heads/scores.json: no figure on the page was typed by hand or left stale."""
    import json
    from pathlib import Path

    from geocodec.training.heads_report import render

    repo = Path(__file__).resolve().parents[1]
    report = json.loads((repo / "geocodec" / "models" / "heads" / "scores.json").read_text())
    render(report, tmp_path / "heads.md",
           {"landcover": "img/rate_utility_landcover.png", "monitor": "img/rate_utility_monitor.png"})
    assert (tmp_path / "heads.md").read_text() == (repo / "docs" / "heads.md").read_text()


def test_report_only_without_a_report_is_a_clear_error(tmp_path, capsys):
    from geocodec.training.heads import main

    with pytest.raises(SystemExit) as e:
        main(["--report-only", "--out", str(tmp_path)])
    assert e.value.code == 2 and "scores.json is missing" in capsys.readouterr().err
