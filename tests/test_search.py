"""Similarity search: exact and HNSW search, queries by tile id / point / polygon, saved
indexes and their staleness check, decoding to GeoPackage, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

from geocodec.cli.main import main
from geocodec.codecs.compress import compress
from geocodec.training.datasets import data_root, RONDONIA_FILE
from geocodec.format.dataset import GeocodecDataset
from geocodec.tasks.search import (SearchIndex, Searcher, StaleIndexError, compressed_recall, exact_topk, normalize,
                             open_index, recall_at_k)

from helpers import UTM18N, write_input

HAVE_RONDONIA = data_root() is not None and (data_root() / RONDONIA_FILE).exists()
needs_rondonia = pytest.mark.skipif(not HAVE_RONDONIA, reason="../shared/data/rondonia not available")


# -- exact and approximate search on vectors ----------------------------------------------------
def test_exact_search_finds_planted_neighbours():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    q = rng.normal(size=(3, 32)).astype(np.float32)
    # plant: rows 10, 20, 30 are scaled copies of query 0 plus shrinking noise (cosine ignores scale)
    for j, (row, eps) in enumerate(((10, 0.0), (20, 0.05), (30, 0.1))):
        x[row] = (3.0 + j) * q[0] + eps * rng.normal(size=32)
    ids, scores = exact_topk(x, q, 5)
    assert ids[0, :3].tolist() == [10, 20, 30]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # against brute force, and independent of the block size
    brute = np.argsort(-(normalize(q) @ normalize(x).T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, brute)
    ids_small, _ = exact_topk(x, q, 5, block_rows=7)
    np.testing.assert_array_equal(ids_small, ids)


def test_exact_search_edge_cases():
    x = np.array([[1, 0], [0, 1], [0, 0]], np.float32)      # a zero vector scores 0
    ids, scores = exact_topk(x, np.array([1, 1], np.float32), 5)
    assert ids[0, :3].tolist() == [0, 1, 2] and ids[0, 3:].tolist() == [-1, -1]
    assert scores[0, 2] == 0.0


@pytest.mark.parametrize("kind", ["exact", "ann"])
def test_index_search_exclude_and_roundtrip(tmp_path, kind):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    idx = SearchIndex.build(x, kind=kind)
    ids, scores = idx.search(x[:4], 5)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]
    ids_x, _ = idx.search(x[0], 5, exclude=[0, int(ids[0, 1])])
    assert 0 not in ids_x[0] and int(ids[0, 1]) not in ids_x[0] and ids_x[0, 0] == ids[0, 2]
    idx.meta = {"source": {"rows": 3000, "files": []}}
    idx.save(tmp_path / "i")
    back = SearchIndex.load(tmp_path / "i")
    assert back.kind == kind and back.rows == 3000
    np.testing.assert_array_equal(back.search(x[:4], 5)[0], ids)


@needs_rondonia
def test_ann_recall_against_exact_on_rondonia():
    from geocodec.training.datasets import load_rondonia

    v = load_rondonia()["X"].reshape(-1, 110)
    perm = np.random.default_rng(0).permutation(len(v))
    queries, coll = v[perm[:300]], v[perm[300:]]
    truth, _ = exact_topk(coll, queries, 10)
    found, _ = SearchIndex.build(coll, kind="ann").search(queries, 10)
    assert recall_at_k(truth, found) >= 0.97


@needs_rondonia
def test_compressed_recall_rises_with_quality():
    from geocodec.codecs.linear import LinearCodec
    from geocodec.training.datasets import load_rondonia

    v = load_rondonia()["X"].reshape(-1, 110)
    perm = np.random.default_rng(0).permutation(len(v))
    qi, ci = perm[:300], perm[300:]
    recalls = []
    for quality in (1, 5):
        c = LinearCodec.fit(v[ci], quality)

        def dec(a):
            return (c.quantize(a)[:, :, 0] * c.step) @ c.components + c.mean

        recalls.append(compressed_recall(v[ci], dec(v[ci]), v[qi], dec(v[qi]), k=10)["recall"])
    assert recalls[0] < recalls[1] and recalls[1] >= 0.95


# -- queries on files -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def utm_file(tmp_path_factory) -> str:
    """800 point tiles in UTM 18N (metres), compressed."""
    d = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(5)
    x = rng.uniform(500_000, 520_000, 800)
    y = rng.uniform(4_400_000, 4_420_000, 800)
    src = write_input(d / "in.parquet", n=800, d=16, seed=5, crs=UTM18N, geometry=shapely.points(x, y))
    out = d / "utm.parquet"
    compress(src, "embedding", out, quality=7, block_rows=32, row_group_rows=256, progress=False)
    return str(out)


def _copy(src, tmp_path, name="f.parquet") -> str:
    dst = tmp_path / name
    shutil.copy(src, dst)
    return str(dst)


def test_tile_id_query(utm_file, tmp_path):
    path = _copy(utm_file, tmp_path)
    s = Searcher(path, method="exact", save_index=False, progress=False)
    tiles = s.tiles_by_id("p00042")
    assert len(tiles.rows) == 1
    res = s.search(tiles, 7)
    assert res.column("rank").to_pylist() == list(range(1, 8))
    assert "p00042" not in res.column("tile_id").to_pylist()        # the query itself is left out
    scores = res.column("score").to_numpy()
    assert np.all(np.diff(scores) <= 0)
    # scores are cosines of the decoded vectors; geometry is the hits' own
    table, emb = GeocodecDataset(path).read()
    ids = table.column("tile_id").to_pylist()
    q = emb[ids.index("p00042")]
    for tid, score, wkb in zip(res.column("tile_id").to_pylist(), scores, res.column("geometry").to_pylist()):
        r = ids.index(tid)
        assert score == pytest.approx(float((normalize(q) @ normalize(emb[r]).T)[0, 0]), abs=1e-5)
        assert shapely.from_wkb(wkb).equals(shapely.from_wkb(table.column("geometry")[r].as_py()))
    with_query = s.search(tiles, 3, include_query=True)
    assert with_query.column("tile_id")[0].as_py() == "p00042"


def test_point_query_in_file_crs_and_lonlat(utm_file, tmp_path):
    path = _copy(utm_file, tmp_path)
    s = Searcher(path, method="exact", save_index=False, progress=False)
    table, _ = GeocodecDataset(path).read()
    g = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    target = table.column("tile_id")[17].as_py()
    # exactly on a (point) tile: that tile; a little off: the nearest one
    on = s.tiles_at_point(g[17].x, g[17].y)
    near = s.tiles_at_point(g[17].x + 3.0, g[17].y - 2.0)
    for tiles in (on, near):
        assert s.rows_table(tiles.rows).column("tile_id").to_pylist() == [target]
    assert "nearest" in near.how
    # the same place as lon/lat
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(UTM18N, "EPSG:4326", always_xy=True).transform(g[17].x + 3.0, g[17].y - 2.0)
    via_lonlat = s.tiles_at_point(lon, lat, crs="EPSG:4326")
    assert via_lonlat.rows.tolist() == near.rows.tolist()


def test_polygon_query_is_the_mean_of_intersecting_tiles(utm_file, tmp_path):
    path = _copy(utm_file, tmp_path)
    s = Searcher(path, method="exact", save_index=False, progress=False)
    table, emb = GeocodecDataset(path).read()
    g = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    poly = shapely.box(505_000, 4_405_000, 508_000, 4_408_000)
    inside = np.flatnonzero(shapely.intersects(poly, g))
    assert 3 <= len(inside) < 100
    tiles = s.tiles_in_polygon(poly)
    assert sorted(s.rows_table(tiles.rows).column("tile_id").to_pylist()) == \
        sorted(table.column("tile_id").take(inside).to_pylist())
    np.testing.assert_allclose(tiles.vector, emb[inside].mean(axis=0), rtol=1e-5, atol=1e-5)
    res = s.search(tiles, 5)
    assert not set(res.column("tile_id").to_pylist()) & set(table.column("tile_id").take(inside).to_pylist())
    # WKT text works too, and nothing intersecting is a clear error
    assert s.tiles_in_polygon(poly.wkt).rows.tolist() == tiles.rows.tolist()
    from geocodec.errors import InputError

    with pytest.raises(InputError, match="no tile intersects"):
        s.tiles_in_polygon(shapely.box(0, 0, 1, 1))


def test_polygon_over_every_tile_gives_an_empty_layer(utm_file, tmp_path, capsys):
    """Nothing left to compare with: an empty result layer with its columns, not a traceback."""
    path = _copy(utm_file, tmp_path)
    out = tmp_path / "none.gpkg"
    poly = shapely.box(490_000, 4_390_000, 530_000, 4_430_000).wkt
    assert main(["search", path, "--polygon", poly, "-o", str(out), "--no-save-index"]) == 0
    import geopandas as gpd

    layer = gpd.read_file(out)
    assert len(layer) == 0 and {"rank", "score", "tile_id"} <= set(layer.columns)


# -- saved indexes --------------------------------------------------------------------------
def test_saved_index_is_reused_and_stale_one_refused(utm_file, tmp_path):
    path = _copy(utm_file, tmp_path)
    s = Searcher(path, method="ann", progress=False)
    assert s.index_status.startswith("built and saved")
    index_dir = path + ".geocodec-index"
    assert os.path.exists(os.path.join(index_dir, "index.json"))
    first = s.search(s.tiles_by_id("p00001"), 5)
    again = Searcher(path, method="auto", progress=False)
    assert again.index_status.startswith("loaded") and again.index.kind == "ann"
    assert again.search(again.tiles_by_id("p00001"), 5).column("tile_id").equals(first.column("tile_id"))
    assert open_index(path).rows == 800

    # a different file (other codec, other rows) under the same name: refused
    other = write_input(tmp_path / "other_in.parquet", n=500, d=16, seed=9, crs=UTM18N)
    compress(other, "embedding", path, quality=4, block_rows=32, row_group_rows=256, progress=False)
    with pytest.raises(StaleIndexError, match="stale.*fingerprint"):
        Searcher(path, progress=False)
    with pytest.raises(StaleIndexError, match="rebuild"):
        open_index(path)
    rebuilt = Searcher(path, method="ann", rebuild=True, progress=False)
    assert rebuilt.index.rows == 500


def test_same_codec_and_rows_but_rewritten_codes_is_stale(utm_file, tmp_path):
    path = _copy(utm_file, tmp_path)
    Searcher(path, method="exact", progress=False)          # method exact: saved too
    # same rows, same codec, rows in another order: codes differ
    t = pq.read_table(path)
    kv = dict(pq.ParquetFile(path).metadata.metadata)
    blocks = 32
    n = t.num_rows
    order = np.concatenate([np.arange(lo, min(lo + blocks, n)) for lo in range(0, n, blocks)][::-1])
    t = t.take(order).replace_schema_metadata(kv)
    pq.write_table(t, path, row_group_size=256)
    with pytest.raises(StaleIndexError, match="different codes"):
        Searcher(path, progress=False)


# -- GeoPackage and the CLI -------------------------------------------------------------------
def test_decode_to_gpkg_opens_in_geopandas(utm_file, tmp_path):
    gpd = pytest.importorskip("geopandas")
    out = tmp_path / "decoded.gpkg"
    assert main(["decode", utm_file, "-o", str(out), "-q"]) == 0
    df = gpd.read_file(out)
    assert df.crs.equals(CRS.from_user_input(UTM18N))
    table, emb = GeocodecDataset(utm_file).read()
    cols = [c for c in df.columns if c.startswith("emb_")]
    assert cols == [f"emb_{i:03d}" for i in range(16)]
    assert df["tile_id"].tolist() == table.column("tile_id").to_pylist()
    np.testing.assert_array_equal(df[cols].to_numpy(np.float32), emb)
    g = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert all(a.equals(b) for a, b in zip(df.geometry.values, g))


def test_decode_cli_parquet_with_bbox(utm_file, tmp_path):
    out = tmp_path / "part.parquet"
    assert main(["decode", utm_file, "-o", str(out), "--bbox=500000,4400000,505000,4405000", "-q"]) == 0
    t = pq.read_table(out)
    assert 0 < t.num_rows < 800 and "embedding" in t.column_names
    assert main(["decode", utm_file, "-o", str(tmp_path / "x.csv"), "-q"]) == 2


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg"])
def test_search_cli(utm_file, tmp_path, capsys, suffix):
    if suffix == ".gpkg":
        pytest.importorskip("pyogrio")
    path = _copy(utm_file, tmp_path)
    out = tmp_path / f"hits{suffix}"
    assert main(["search", path, "--tile-id", "p00003", "-k", "4", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "p00003" in printed
    if suffix == ".parquet":
        t = pq.read_table(out)
        assert t.column_names[:3] == ["rank", "score", "tile_id"] and t.num_rows == 4
        assert b"geo" in pq.ParquetFile(out).metadata.metadata
    else:
        import pyogrio

        meta, t = pyogrio.read_arrow(out)[:2]
        assert t.num_rows == 4 and CRS.from_user_input(meta["crs"]).equals(CRS.from_user_input(UTM18N))
    poly = tmp_path / "area.wkt"
    poly.write_text(shapely.box(505_000, 4_405_000, 508_000, 4_408_000).wkt)
    assert main(["search", path, "--polygon", str(poly), "-o", str(tmp_path / "p.parquet"), "-q"]) == 0
    assert main(["search", path, "--point=-74.9,39.8", "--crs", "EPSG:4326", "-k", "3",
                 "-o", str(tmp_path / "pt.parquet"), "-q"]) == 0
    assert main(["search", path, "--tile-id", "nope", "-o", str(tmp_path / "n.parquet"), "-q"]) == 2


def test_search_cli_refuses_stale_index(utm_file, tmp_path, capsys):
    path = _copy(utm_file, tmp_path)
    assert main(["search", path, "--tile-id", "p00003", "--method", "ann", "-o", str(tmp_path / "a.parquet"),
                 "-q"]) == 0
    other = write_input(tmp_path / "o.parquet", n=300, d=16, seed=2, crs=UTM18N)
    compress(other, "embedding", path, quality=5, block_rows=32, progress=False)
    assert main(["search", path, "--tile-id", "p00003", "-o", str(tmp_path / "b.parquet"), "-q"]) == 2
    assert "stale" in capsys.readouterr().err


def test_crs_still_works_after_usearch_is_loaded():
    """usearch's extension breaks PROJ when it is loaded first (pyproj issue #801);
    geocodec.tasks.search loads pyproj before it."""
    code = ("import numpy as np\n"
            "from geocodec.tasks.search import SearchIndex\n"
            "SearchIndex.build(np.random.default_rng(0).normal(size=(100, 8)), kind='ann')\n"
            "from pyproj import CRS, Transformer\n"
            "print(CRS.from_user_input('OGC:CRS84').name)\n"
            "print(round(Transformer.from_crs(4326, 32618, always_xy=True).transform(-75, 40)[0]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["WGS", "84", "(CRS84)", "500000"]


def test_directory_of_files_searches_across_files(tmp_path):
    """Row ids run over the files in order; hits in the second file get its own tile ids and geometry."""
    d = tmp_path / "tiles"
    d.mkdir()
    rng = np.random.default_rng(11)
    base = rng.normal(size=(600, 12)).astype(np.float32)
    geoms = shapely.points(rng.uniform(-63, -60, 600), rng.uniform(-12, -9, 600))
    src = write_input(tmp_path / "all.parquet", vectors=base, geometry=geoms)
    compress(src, "embedding", d / "a.parquet", quality=6, block_rows=32, row_group_rows=128, progress=False)
    # the same codec for the second file: copy the first under another name, then split by rows
    t = pq.read_table(d / "a.parquet")
    kv = dict(pq.ParquetFile(d / "a.parquet").metadata.metadata)
    cut = 320                                   # a block boundary (32 rows per block)
    for name, part in (("a.parquet", t.slice(0, cut)), ("b.parquet", t.slice(cut))):
        pq.write_table(part.replace_schema_metadata(kv), d / name, row_group_size=128)
    s = Searcher(str(d), method="ann", progress=False)
    assert s.index.rows == 600 and os.path.isdir(d / ".geocodec-index")
    last = t.column("tile_id")[-1].as_py()
    tiles = s.tiles_by_id(last)
    assert tiles.rows.tolist() == [599]
    res = s.search(tiles, 5, include_query=True)
    assert res.column("tile_id")[0].as_py() == last and res.column("row")[0].as_py() == 599
    assert shapely.from_wkb(res.column("geometry")[0].as_py()).equals(shapely.from_wkb(t.column("geometry")[-1].as_py()))
    assert len(GeocodecDataset(str(d)).files) == 2          # the index folder is not mistaken for data
    assert Searcher(str(d), progress=False).index_status.startswith("loaded")
