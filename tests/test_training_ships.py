"""Targets, threshold choice and scoring of the ship-head training (geocodec.training.ships), on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

S = pytest.importorskip("geocodec.training.ships", reason="ship-head training needs torch (the train extra)")
R = pytest.importorskip("geocodec.training.ships_report")


def _port(boxes):
    data = np.full((5, 256, 256), 0.05, np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    return S.Port("synthetic", data, np.ones((256, 256), bool), centres, "2023-01-01", boxes)


def test_tile_port_cover_and_counts():
    # one 20 x 8 px box at x 20..40, y 40..48: cell (5, 2) half covered, (5, 3) and (5, 4) fully
    out = S.tile_port(_port([(20, 40, 20, 8)]))
    assert out["tiles"].shape == (4, 5, 128, 128)
    cov = out["cover"][0]
    assert cov[5, 2] == 0.5 and cov[5, 3] == 1.0 and cov[5, 4] == 1.0 and cov.sum() == 2.5
    assert out["cover"][1:].sum() == 0
    # the centre (30, 44) is in cell (5, 3)
    assert out["count_map"][0, 5, 3] == 1 and out["counts"].tolist() == [1, 0, 0, 0]
    tgt = S.cell_target(out["cover"])
    assert tgt[0, 5, 3] == 1.0 and tgt[0, 5, 2] == 1.0 and tgt[0, 4, 3] == 0.0


def test_tile_port_transforms_move_boxes_with_pixels():
    port = _port([(20, 40, 20, 8)])
    port.data[:, 40:48, 20:40] = 0.3  # the ship is bright
    for k in range(4):
        for flip in (False, True):
            out = S.tile_port(port, k=k, flip=flip)
            bright = out["tiles"][:, 0].reshape(len(out["tiles"]), 16, 8, 16, 8).mean(axis=(2, 4)) > 0.2
            assert np.array_equal(bright, out["cover"] >= 1.0), (k, flip)


def test_scores_match_within_one_cell():
    cm = np.zeros((1, 16, 16), np.float32)
    cm[0, 5, 5] = 1
    prob = np.zeros((1, 16, 16), np.float32)
    prob[0, 6, 6] = 0.9       # a neighbour: matches
    prob[0, 12, 12] = 0.8     # far: a false positive
    s = S.scores(prob, cm, np.array([[0, 0]]), 0.5)
    assert s["detections"] == 2 and s["obj_precision"] == 0.5 and s["obj_recall"] == 1.0
    prob[0, 6, 6] = 0.0
    prob[0, 7, 7] = 0.9       # two cells away: no match
    assert S.scores(prob, cm, np.array([[0, 0]]), 0.5)["obj_recall"] == 0.0


def test_choose_threshold_uses_every_set():
    cm = np.zeros((1, 16, 16), np.float32)
    cm[0, 5, 5] = 1
    rc = np.array([[0, 0]])
    a = np.zeros((1, 16, 16), np.float32)
    a[0, 5, 5], a[0, 12, 12] = 0.6, 0.5  # a threshold in [0.5, 0.6) is perfect here
    b = np.zeros((1, 16, 16), np.float32)
    b[0, 5, 5] = 0.3                     # ... but this set needs a threshold under 0.3
    t_a, f_a = S.choose_threshold([(a, cm, rc)])
    assert 0.5 <= t_a < 0.6 and f_a == 1.0
    t_ab, f_ab = S.choose_threshold([(a, cm, rc), (b, cm, rc)])
    assert t_ab < 0.3 and f_ab == pytest.approx((2 / 3 + 1) / 2)


def test_grid_baselines_shapes():
    pytest.importorskip("faiss", reason="PQ baseline needs faiss-cpu")
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 24, 16, 16)).astype(np.float32)
    test = rng.normal(size=(3, 24, 16, 16)).astype(np.float32)
    out = S.grid_baselines(train, test)
    names = [o.name for o in out]
    assert names[:3] == ["float32", "float16", "int8/vector"] and "pq8x8" in names and "pca8+int8" in names
    assert all(o.decoded.shape == test.shape for o in out)
    assert np.array_equal(out[0].decoded, test)


def test_report_writes_doc_and_plot(tmp_path):
    """The page and the plot are written from a report alone (what --report-only does), with every row."""
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)

    def row(bits):
        f = float(rng.uniform(0.1, 0.5))
        return {"tile_precision": 0.5, "tile_recall": 0.5, "tile_f1": 0.5, "count_mae": 0.2, "detections": 9,
                "ships": 7, "obj_precision": f, "obj_recall": f, "obj_f1": f, "bits_per_tile": bits}

    names = [f"q{q}" for q in S.QUALITIES] + ["float32+zstd", "float16+zstd", "int8/vector+zstd", "pca2+int8+zstd",
                                               "pq2x8+zstd", "raw pixels"]
    rows = {n: row(1000.0 * (i + 1)) for i, n in enumerate(names)}
    cv = {p: {k: row(1.0) for k in [f"q{q}" for q in S.QUALITIES] + ["raw pixels"]} for p in S.TRAIN_PORTS}
    report = {"results": {p: rows for p in S.HELD_OUT}, "cv": cv, "threshold": 0.4, "cv_f1": 0.2,
              "pixel_threshold": 0.8, "pixel_cv_f1": 0.3, "train_tiles": 10, "pixel_tiles": 5, "steps": 1,
              "pixel_steps": 1, "seed": 0, "minutes": 0.1, "command": "python -m geocodec.training.ships",
              "ships": {p: 7 for p in S.HELD_OUT}, "tiles": {p: 3 for p in S.HELD_OUT}, "onnx_check": 0.0,
              "model": "m", "date": "2026-01-01"}
    doc, png = tmp_path / "ships.md", tmp_path / "ships.png"
    R.write(report, doc, png)
    text = doc.read_text()
    assert png.stat().st_size > 10_000
    for p in S.HELD_OUT:
        assert f"### {p}" in text
    assert text.count("| pq2x8+zstd |") == len(S.HELD_OUT) and "2026-01-01" in text
    flt = np.mean([rows["float32+zstd"]["obj_f1"]] * 2)
    assert f"float latents {flt:.2f}" in text


def test_committed_page_is_what_the_committed_report_gives(tmp_path):
    """docs/ships.md holds exactly what `geocodec train ships --report-only` writes from
    geocodec/models/heads/ships_scores.json: no figure on the page was typed by hand or left stale."""
    import json

    report = json.loads(R.REPORT_PATH.read_text())
    R.write_doc(report, tmp_path / "ships.md")
    assert (tmp_path / "ships.md").read_text() == R.DOC_PATH.read_text()


def test_load_port_names_the_annotation_file_when_a_port_has_no_boxes(tmp_path):
    """A port folder without an entry in coco_annotations.json is refused with the file named."""
    import json
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "sen2ships" / "genoa"
    if not src.is_dir():
        pytest.skip("needs ../shared/data/sen2ships")
    (tmp_path / "sen2ships").mkdir()
    shutil.copytree(src, tmp_path / "sen2ships" / "genoa")
    (tmp_path / "sen2ships" / "coco_annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"coco_annotations\.json: no image genoa_rgb\.tiff"):
        S.load_port("genoa", tmp_path)


def test_report_only_without_a_report_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(R, "REPORT_PATH", S.REPO / "geocodec" / "models" / "heads" / "missing.json")
    with pytest.raises(SystemExit) as e:
        S.main(["--report-only"])
    assert e.value.code == 2 and "missing.json is missing" in capsys.readouterr().err
