"""docs/benchmarks-refine-ships.md is the rendering of its committed JSON (bench/bench_refine_ships.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import load_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_refine_ships")


def test_the_committed_page_is_the_rendering_of_its_json(bench, tmp_path):
    docs = ROOT / "docs"
    shutil.copy(docs / "benchmarks-refine-ships.json", tmp_path / "page.json")
    assert bench.main(["--report-only", "--out", str(tmp_path / "page.md")]) == 0
    assert (tmp_path / "page.md").read_text() == (docs / "benchmarks-refine-ships.md").read_text()


def test_per_byte_comparison_takes_the_cheapest_plain_point_at_or_above(bench):
    def pt(f1, bits):
        return {"obj_f1": f1, "precision": 0.0, "recall": 0.0, "bits_per_tile": bits}

    res = {"model": "m", "threshold": 0.5, "steps": 10, "ships": {"p": 3}, "tiles": {"p": 4}, "command": "c",
           "wall_s": 1.0, "date": "d", "machine": "x",
           "ports": {"p": {"q1": {"plain": pt(0.2, 100.0), "refined": pt(0.25, 80.0), "changed_tiles": 1},
                           "q2": {"plain": pt(0.4, 200.0), "refined": pt(0.3, 150.0), "changed_tiles": 2},
                           "q3": {"plain": pt(0.5, 300.0), "refined": pt(0.6, 310.0), "changed_tiles": 2}}}}
    text = bench.report(res)
    # q1 (80 b) vs plain q1 (100 b): +0.05; q2 (150 b) vs plain q2 (200 b): -0.1; q3 (310 b): no plain point that large
    assert "p q1 vs plain q1 +0.050, p q2 vs plain q2 -0.100." in text
    assert "(2 points;" in text
