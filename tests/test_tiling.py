"""geocodec.producer.tiling: the one way an image is cut into tiles and put back together."""

from __future__ import annotations

import numpy as np
import pytest

from geocodec.producer.tiling import cut_tiles, join_tiles, pad_to_tiles, tile_counts


def test_tiles_are_row_major_from_the_top_left():
    x = np.arange(2 * 5 * 7).reshape(2, 5, 7)
    rows, cols, tiles = cut_tiles(x, 2)
    assert tiles.shape == (2 * 3, 2, 2, 2) and tile_counts(5, 7, 2) == (2, 3)
    for r, c, t in zip(rows, cols, tiles):
        np.testing.assert_array_equal(t, x[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2])
    assert list(zip(rows, cols)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_padding_to_whole_tiles():
    x = np.ones((5, 7), bool)
    p = pad_to_tiles(x, 4)
    assert p.shape == (8, 8) and p.dtype == bool and p[:5, :7].all() and not p[5:].any() and not p[:, 7:].any()
    assert pad_to_tiles(p, 4) is p
    rows, cols, tiles = cut_tiles(x, 4, pad=True)
    assert tiles.shape == (4, 4, 4) and tile_counts(5, 7, 4, pad=True) == (2, 2)
    assert tiles[3].sum() == 1 * 3          # the bottom-right tile holds 1 x 3 real pixels


@pytest.mark.parametrize("shape", [(9, 13), (3, 9, 13), (2, 3, 8, 8)])
def test_join_undoes_cut(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    rows, cols, tiles = cut_tiles(x, 4, pad=True)
    back = join_tiles(tiles, rows.max() + 1, cols.max() + 1)
    assert back.shape[:-2] == x.shape[:-2]
    np.testing.assert_array_equal(back[..., :shape[-2], :shape[-1]], x)


def test_a_small_image_has_no_whole_tile():
    rows, cols, tiles = cut_tiles(np.zeros((5, 3, 3), np.float32), 4)
    assert tiles.shape == (0, 5, 4, 4) and len(rows) == len(cols) == 0
