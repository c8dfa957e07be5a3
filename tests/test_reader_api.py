"""The reader API every task uses: iter_rows (what=None/codes/latents/embeddings), take/iter_take by
global row index, on a file and on a dataset of several files; the one rule for sources."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from geocodec.errors import GeocodecError, InputError
from geocodec.format.dataset import GeocodecDataset
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile
from geocodec.format.sources import expand_sources

QUERY = Query.make(bbox=(-62.5, -11.5, -61.0, -10.0), time=("2022-02-01", "2022-10-01"))


def whole(f):
    """Reference: every row's codes, latents and embeddings through the low-level row-group calls."""
    codes = np.concatenate([f.decode_codes(t, o) for o, t in f.iter_tables()])
    return codes, f.spec.dequantize(codes), np.concatenate([f.decode(t, o) for o, t in f.iter_tables()])


def tile_ids(f) -> np.ndarray:
    return np.array(sum((t.column("tile_id").to_pylist() for _, t in f.iter_tables(None, ["tile_id"])), []))


@pytest.mark.parametrize("threads", [1, 2])
def test_iter_rows_gives_matching_rows_with_global_indices(compressed_file, threads):
    with GeocodecFile(compressed_file) as f:
        codes, lat, emb = whole(f)
        mask = np.concatenate([f.row_mask(t, QUERY) for _, t in f.iter_tables()])
        want = np.flatnonzero(mask)
        assert 0 < len(want) < f.num_rows
        for what, ref in ((None, None), ("codes", codes), ("latents", lat), ("embeddings", emb)):
            parts = list(f.iter_rows(QUERY, ["tile_id"], what=what, threads=threads))
            rows = np.concatenate([p.rows for p in parts])
            np.testing.assert_array_equal(rows, want)
            assert all(p.table.column_names == ["tile_id"] and p.file is f for p in parts)
            ids = sum((p.table.column("tile_id").to_pylist() for p in parts), [])
            assert ids == list(tile_ids(f)[want])
            if what is None:
                assert all(p.values is None for p in parts)
            else:
                got = np.concatenate([p.values for p in parts])
                np.testing.assert_array_equal(got, ref[want])


def test_iter_rows_all_columns_and_iter_decoded_agree(compressed_file):
    with GeocodecFile(compressed_file) as f:
        parts = list(f.iter_rows(what="embeddings"))
        assert parts[0].table.column_names == f.column_names
        assert not set(parts[0].table.column_names) & {"code", "code_index", "code_crc32"}
        for p, (t, e) in zip(parts, f.iter_decoded()):
            assert p.table.equals(t) and p.values.tobytes() == e.tobytes()
        with pytest.raises(InputError, match="what"):
            next(f.iter_rows(what="pixels"))


def test_take_returns_rows_in_the_order_given(compressed_file):
    with GeocodecFile(compressed_file) as f:
        codes, _, emb = whole(f)
        rows = np.array([599, 3, 250, 3, 101, 0])           # several row groups, a repeat, any order
        table, values = f.take(rows, ["tile_id", "geometry"], what="embeddings")
        assert table.column("tile_id").to_pylist() == list(tile_ids(f)[rows])
        np.testing.assert_array_equal(values, emb[rows])
        _, c = f.take(rows, [], what="codes")
        np.testing.assert_array_equal(c, codes[rows])
        parts = list(f.iter_take(rows, ["tile_id"]))
        np.testing.assert_array_equal(np.concatenate([p.rows for p in parts]), np.unique(rows))
        assert len(parts) == 4                              # row groups 0, 1, 2 and 5 of 100 rows
        empty, none = f.take([], ["tile_id"], what="embeddings")
        assert empty.num_rows == 0 and empty.column_names == ["tile_id"] and none.shape == (0, f.spec.dimension)
        with pytest.raises(InputError) as info:
            f.take([5, 600])
        assert info.value.source == f.source and info.value.field == "row" and info.value.row == 600


def test_dataset_numbers_rows_over_its_files(compressed_file, tmp_path):
    root = tmp_path / "ds"
    for name in ("a=1/part-0.parquet", "a=2/part-0.parquet"):
        (root / name).parent.mkdir(parents=True)
        shutil.copy(compressed_file, root / name)
    with GeocodecDataset(root) as ds, GeocodecFile(compressed_file) as f:
        _, _, emb = whole(f)
        assert len(ds.files) == 2 and ds.num_rows == 1200 and list(ds.row_offsets) == [0, 600, 1200]
        assert ds.bbox == f.bbox and ds.crs == f.crs
        rows = np.concatenate([p.rows for p in ds.iter_rows(QUERY, ["tile_id"])])
        one = np.concatenate([p.rows for p in f.iter_rows(QUERY, ["tile_id"])])
        np.testing.assert_array_equal(rows, np.concatenate([one, one + 600]))
        table, values = ds.take([700, 5, 1199], ["tile_id"], what="embeddings")
        assert table.column("tile_id").to_pylist() == list(tile_ids(f)[[100, 5, 599]])
        np.testing.assert_array_equal(values, emb[[100, 5, 599]])
        assert [p.file.source for p in ds.iter_take([700, 5])] == [ds.files[0].source, ds.files[1].source]
        with pytest.raises(InputError, match="out of range"):
            ds.take([1200])


def test_one_rule_for_sources(compressed_file, tmp_path):
    (tmp_path / "x=1" / "y=2").mkdir(parents=True)
    for name in ("x=1/y=2/b.parquet", "x=1/a.geoparquet", ".hidden.parquet", "x=1/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert expand_sources(tmp_path) == [str(tmp_path / "x=1/a.geoparquet"), str(tmp_path / "x=1/y=2/b.parquet")]
    assert expand_sources(["https://example.org/a.parquet", compressed_file]) == \
        ["https://example.org/a.parquet", compressed_file]
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeocodecError, match="no .parquet files"):
        expand_sources(tmp_path / "empty")
    with pytest.raises(InputError, match="no geocodec file"):
        expand_sources([])
