"""The producer's file (pack_grid) sorts its rows along a Hilbert curve, as ``geocodec compress`` does
(SPEC.md section 2, item 6); each row's codes, valid cells and date are those of its tile."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from geocodec.format.hilbert import hilbert_keys
from geocodec.format.reader import GeocodecFile


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A 2-date grid of 13 x 18 cells in 4 x 4-cell tiles (partial tiles at the bottom and right), some tiles
    without any valid cell, packed in small row groups. Returns (path, grid, k)."""
    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.pack import LatentGrid, pack_grid

    model = LearnedModel.load()
    c = int(model.card["channels"])
    rng = np.random.default_rng(3)
    t, h, w = 2, 13, 18
    q = rng.integers(-3, 4, (t, c, h, w)).astype(np.int32)
    vf = rng.uniform(0.0, 1.0, (t, h, w)).astype(np.float32)
    vf[0, :4, :4] = 0.0          # tile r0c0 empty on the first date
    vf[1, 8:, 12:] = 0.0         # the bottom-right tile empty on the second
    grid = LatentGrid(q=q, valid_fraction=vf, times=[np.datetime64("2021-06-01"), None],
                      origin=(500000.0, 9000000.0), pixel_size=10.0, crs="EPSG:32720")
    path = tmp_path_factory.mktemp("pack") / "grid.parquet"
    pack_grid(grid, model, 3, path, tile_cells=4, block_rows=8, row_group_rows=16)
    return str(path), grid, 4


def _read(path):
    with GeocodecFile(path) as f:
        parts = list(f.iter_rows(columns=["tile_id", "geometry", "datetime", "valid_fraction", "valid_cells"],
                                 what="codes", threads=1))
        groups = f.parquet.num_row_groups
    table = {name: sum((p.table.column(name).to_pylist() for p in parts), []) for name in parts[0].table.column_names}
    return table, np.concatenate([p.values for p in parts]), groups


def test_rows_follow_the_hilbert_curve_of_tile_centres(packed):
    path, _, _ = packed
    table, _, groups = _read(path)
    assert groups > 1
    b = shapely.bounds(shapely.from_wkb(table["geometry"]))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    keys = hilbert_keys(cx, cy, (cx.min(), cy.min(), cx.max(), cy.max()))
    assert (np.diff(keys) >= 0).all()
    assert (np.diff(keys) > 0).sum() > 10                 # genuinely spread over the curve
    # not the row-major order a date-by-date writer gives
    assert table["tile_id"] != sorted(table["tile_id"], key=lambda s: (s[1:6], s[7:]))
    # the dates of one tile are adjacent, in date order (null = the unknown time, second here)
    ids = table["tile_id"]
    for i in range(1, len(ids)):
        if ids[i] == ids[i - 1]:
            assert table["datetime"][i - 1] is not None and table["datetime"][i] is None


def test_each_row_holds_its_own_tile(packed):
    from geocodec.producer.tiling import cut_tiles

    path, grid, k = packed
    table, codes, _ = _read(path)
    expected = {}
    for ti in range(grid.q.shape[0]):
        rr, cc, tq = cut_tiles(grid.q[ti], k, pad=True)
        tv = cut_tiles(grid.valid_fraction[ti], k, pad=True)[2].reshape(len(rr), -1)
        for r, c, q, v in zip(rr, cc, tq, tv):
            if v.mean() > 0:
                expected[(f"r{r:05d}c{c:05d}", ti)] = (q.reshape(q.shape[0], -1), v)
    got = set()
    for i, tid in enumerate(table["tile_id"]):
        ti = 0 if table["datetime"][i] is not None else 1
        q, v = expected[(tid, ti)]
        np.testing.assert_array_equal(codes[i].reshape(q.shape), q)
        assert table["valid_fraction"][i] == pytest.approx(float(v.mean()), rel=1e-6)
        assert table["valid_cells"][i] == np.packbits(v >= 0.5).tobytes()
        got.add((tid, ti))
    assert got == set(expected)
    assert ("r00000c00000", 0) not in got and ("r00003c00004", 1) not in got
