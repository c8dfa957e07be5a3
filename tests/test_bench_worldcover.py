"""The cell labelling and neighbourhood windows of bench/bench_worldcover.py, on synthetic arrays
(synthetic data only checks the arithmetic; the benchmark itself runs on the real greenearthnet cubes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import load_bench



@pytest.fixture(scope="module")
def wc():
    return load_bench("bench_worldcover")


def test_a_cell_takes_the_class_covering_half_of_it(wc):
    codes = np.zeros((8, 12), np.uint8)       # two rows of three 4 x 4 cells
    codes[:4, :4] = 40                        # pure cropland
    codes[:4, 4:8] = 30
    codes[:4, 4:6] = 10                       # half tree, half grass: a tie at exactly PURITY -> the later code
    codes[:4, 8:12] = 0
    codes[:4, 8:11] = 20                      # 12/16 shrubland, rest unlabelled
    codes[4:, :4] = 10
    codes[4:6, :4] = 50                       # half built-up, half tree
    codes[4:, 4:8] = 80
    codes[4:, 4:7] = 90                       # 12/16 wetland, 4/16 water
    codes[4:, 8:] = 0                         # unlabelled
    lab = wc.cell_labels(codes, 4)
    assert lab.shape == (2, 3)
    assert lab[0, 0] == 40 and lab[0, 2] == 20 and lab[1, 1] == 90 and lab[1, 2] == 0
    assert lab[0, 1] in (10, 30) and lab[1, 0] in (10, 50)   # exactly half: either class qualifies
    # partial cells at the edge are left out
    assert wc.cell_labels(np.full((9, 13), 40, np.uint8), 4).shape == (2, 3)


def test_cell_valid_is_the_share_of_pixels_valid_in_every_band(wc):
    valid = np.ones((5, 8, 8), bool)
    valid[2, :2, :4] = False                  # one band, 8 pixels of the first cell
    valid[:, 4:, 4:] = False
    share = wc.cell_valid(valid, 4)
    np.testing.assert_allclose(share, [[0.5, 1.0], [1.0, 0.0]])


def test_windows_are_the_edge_padded_neighbourhoods(wc):
    grid = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    ij = np.array([[0, 0], [2, 3]])
    w = wc.windows(grid, ij, 1).reshape(2, 2, 3, 3)
    np.testing.assert_array_equal(w[1], grid[:, 1:4, 2:5])
    padded = np.pad(grid, ((0, 0), (1, 1), (1, 1)), mode="edge")
    np.testing.assert_array_equal(w[0], padded[:, 0:3, 0:3])
    pix = np.random.default_rng(0).uniform(0.01, 0.5, (5, 16, 24)).astype(np.float32)
    p = wc.pixel_windows(pix, np.array([[1, 1]]), 8, 1).reshape(5, 24, 24)
    # the window of cell (1, 1) with radius one cell starts one cell up-left of it: rows 0..23 of the padded image
    lg = np.pad(np.log(pix + 0.01), ((0, 0), (8, 8), (8, 8)), mode="edge")
    np.testing.assert_allclose(p, lg[:, 8:32, 8:32], rtol=1e-6)


def test_the_pixel_cnn_trains_with_the_head_recipe(wc):
    pytest.importorskip("torch")
    from geocodec.training.heads import torch_predict, train_mlp

    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 5, 24, 24)).astype(np.float32)
    x[y == 1, 3] += 1.5                        # class 1: one band brighter
    _, mu, sd, net = train_mlp([x.reshape(n, -1)], y, 2, epochs=15, batch=64, build=wc.cnn_builder(24))
    acc = np.mean(torch_predict(net, mu, sd, x.reshape(n, -1)).argmax(1) == y)
    assert acc > 0.9


def test_the_latent_cnn_learns_a_pattern_across_cells_and_refuses_another_shape():
    """The latent head of the page: a class told by a channel that is high in the neighbour cells (not in the centre
    cell, so a per-cell head on the centre alone could not tell it) is learnt; a window of another shape is refused."""
    pytest.importorskip("torch")
    from geocodec.training.heads import latent_cnn, torch_predict, train_mlp

    rng = np.random.default_rng(2)
    n, c = 400, 16
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, c, 3, 3)).astype(np.float32)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    x[:, 5][:, ring] += np.where(y == 1, 1.2, 0.0)[:, None]
    _, mu, sd, net = train_mlp([x.reshape(n, -1)], y, 2, epochs=20, batch=64, build=latent_cnn(c, 3))
    assert np.mean(torch_predict(net, mu, sd, x.reshape(n, -1)).argmax(1) == y) > 0.9
    with pytest.raises(ValueError, match="16 channels x 3 x 3"):
        latent_cnn(c, 3)(c * 25, 2)


def test_every_row_name_belongs_to_a_family_of_the_page(wc):
    names = ["majority class", "raw pixels", "float latents", "float latents + latent CNN", "geocodec q3",
             "geocodec q3 + latent CNN", "geocodec q3 preview + CNN", "J2K q3 + CNN", "J2K q3 + encoder",
             "J2K q3 + encoder + latent CNN"]
    fams = [wc.family(n) for n in names]
    assert fams == list(wc.FAMILIES)


def test_the_committed_page_is_the_rendering_of_its_json(wc, tmp_path):
    """docs/benchmarks-worldcover.md is what ``--report-only`` renders from the committed JSON (no hand edits)."""
    import shutil

    pytest.importorskip("matplotlib")
    docs = Path(__file__).resolve().parents[1] / "docs"
    shutil.copy(docs / "benchmarks-worldcover.json", tmp_path / "benchmarks-worldcover.json")
    out, plot = tmp_path / "benchmarks-worldcover.md", tmp_path / "img" / "rate_utility_worldcover.png"
    assert wc.main(["--report-only", "--out", str(out), "--plot", str(plot)]) == 0
    assert out.read_text() == (docs / "benchmarks-worldcover.md").read_text()
    assert plot.stat().st_size > 10_000
