"""The files are plain GeoParquet 1.1: geopandas, pyarrow, duckdb and geoparquet-validator read them
without any geocodec code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import CRS

from helpers import UTM18N, edit_geo, grid_points, make_codec, random_codes, rewrite, write_codes
from geocodec.format.dataset import open_dataset
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile

UTM_EXTENT = (500_000, 4_000_000, 520_000, 4_020_000)


@pytest.fixture(scope="module")
def utm_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("utm")
    ext, decoder = make_codec(channels=4, block_rows=16)
    n = 400
    geoms = shapely.buffer(grid_points(n, extent=UTM_EXTENT), 40, quad_segs=2)  # polygons: chip footprints
    return write_codes(d / "utm.parquet", random_codes(n, 4), ext=ext, decoder=decoder, crs=UTM18N, geometry=geoms,
                       row_group_rows=64)


# -- geopandas ----------------------------------------------------------------------------------
def test_geopandas_reads_crs84(compressed_file):
    gpd = pytest.importorskip("geopandas")
    gdf = gpd.read_parquet(compressed_file)
    assert len(gdf) == 600
    assert gdf.crs == CRS.from_user_input("OGC:CRS84")
    table, _ = open_dataset(compressed_file).read()
    ours = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert shapely.equals(gdf.geometry.values, ours).all()
    assert gdf.geom_type.unique().tolist() == ["Point"]


def test_geopandas_reads_utm(utm_file):
    gpd = pytest.importorskip("geopandas")
    gdf = gpd.read_parquet(utm_file)
    assert gdf.crs.to_epsg() == 32618
    assert gdf.geom_type.unique().tolist() == ["Polygon"]
    x0, y0, x1, y1 = gdf.total_bounds
    assert UTM_EXTENT[0] - 50 < x0 < x1 < UTM_EXTENT[2] + 50 and UTM_EXTENT[1] - 50 < y0 < y1 < UTM_EXTENT[3] + 50


def test_geopandas_bbox_filter_uses_the_covering(utm_file):
    gpd = pytest.importorskip("geopandas")
    box = (505_000, 4_005_000, 507_000, 4_007_000)
    try:
        gdf = gpd.read_parquet(utm_file, bbox=box)
    except TypeError:
        pytest.skip("this geopandas has no bbox filter")
    table, _ = open_dataset(utm_file).read(Query.make(bbox=box))
    assert 0 < len(gdf) < 400
    assert sorted(gdf["tile_id"]) == sorted(table.column("tile_id").to_pylist())


# -- pyarrow --------------------------------------------------------------------------------------
def test_pyarrow_reads_schema_and_footer(compressed_file):
    pf = pq.ParquetFile(compressed_file)
    kv = pf.metadata.metadata
    assert {b"geo", b"emb", b"geocodec", b"geocodec.decoder"} <= set(kv)
    geo = json.loads(kv[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    emb = json.loads(kv[b"emb"])
    assert emb["emb:dimensions"] == 16 and emb["emb:quantization"]["method"] == "geocodec"
    t = pf.read()
    assert t.schema.field("bbox").type == pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
    assert t.schema.field("code").type == pa.binary()
    assert all(pf.metadata.row_group(0).column(j).compression == "ZSTD" for j in range(pf.metadata.num_columns))
    # the bbox column agrees with the WKB geometry
    b = t.column("bbox").combine_chunks()
    got = np.stack([b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax")], axis=1)
    np.testing.assert_array_equal(got, shapely.bounds(shapely.from_wkb(t.column("geometry").to_numpy())))


def test_pyarrow_dataset_over_hive_directory(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=8)
    for i, (cell, year) in enumerate([("a", 2022), ("a", 2023), ("b", 2022)]):
        d = tmp_path / f"cell={cell}" / f"year={year}"
        d.mkdir(parents=True)
        write_codes(d / "part.parquet", random_codes(20 + i, 3, seed=i), ext=ext, decoder=decoder,
                    tile_prefix=f"{cell}{year}-")
    ds = pads.dataset(tmp_path, format="parquet", partitioning="hive")
    t = ds.to_table(filter=(pads.field("cell") == "a") & (pads.field("year") == 2023))
    assert t.num_rows == 21
    assert set(t.column("tile_id").to_pylist()) == {f"a2023-{i:06d}" for i in range(21)}
    assert open_dataset(tmp_path).num_rows == ds.count_rows() == 63


# -- duckdb -------------------------------------------------------------------------------------
def test_duckdb_reads_the_file(compressed_file):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    n, blocks, bits = con.execute(
        "SELECT count(*), count(code), sum(code_bits) FROM read_parquet(?)", [compressed_file]).fetchone()
    assert n == 600
    with GeocodecFile(compressed_file) as f:
        assert bits == f.ext["rate"]["code_bits"]
    assert blocks == 30  # 6 row groups of 100 rows, blocks of 20
    # the bbox covering struct is queryable; the answer matches geocodec's own query
    box = (-62.0, -11.0, -61.0, -10.0)
    ids = [r[0] for r in con.execute(
        "SELECT tile_id FROM read_parquet(?) WHERE bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? "
        "AND bbox.ymax >= ? ORDER BY tile_id", [compressed_file, box[2], box[0], box[3], box[1]]).fetchall()]
    table, _ = open_dataset(compressed_file).read(Query.make(bbox=box))
    assert ids == sorted(table.column("tile_id").to_pylist()) and ids
    # the code bytes are plain blobs, byte for byte what pyarrow reads
    blobs = [r[0] for r in con.execute(
        "SELECT code FROM read_parquet(?, file_row_number=true) WHERE code IS NOT NULL ORDER BY file_row_number",
        [compressed_file]).fetchall()]
    assert blobs == [c for c in pq.read_table(compressed_file, columns=["code"]).column("code").to_pylist()
                     if c is not None]
    kv = dict(con.execute("SELECT key, value FROM parquet_kv_metadata(?)", [compressed_file]).fetchall())
    from geocodec.format.metadata import SPEC_VERSION

    assert json.loads(kv[b"geocodec"])["version"] == SPEC_VERSION


def test_duckdb_hive_partitions(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    ext, decoder = make_codec(channels=3, block_rows=8)
    for cell, year, n in [("a", 2022, 10), ("a", 2023, 12), ("b", 2022, 14)]:
        d = tmp_path / f"cell={cell}" / f"year={year}"
        d.mkdir(parents=True)
        write_codes(d / "part.parquet", random_codes(n, 3), ext=ext, decoder=decoder)
    rows = duckdb.connect().execute(
        "SELECT cell, count(*) FROM read_parquet(?, hive_partitioning=true) GROUP BY cell ORDER BY cell",
        [os.fspath(tmp_path / "*" / "*" / "*.parquet")]).fetchall()
    assert rows == [("a", 22), ("b", 14)]


# -- geoparquet-validator -----------------------------------------------------------------------
def _validator():
    exe = shutil.which("geoparquet-validator")
    if exe is None:
        venv_bin = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "geoparquet-validator")
        exe = venv_bin if os.path.exists(venv_bin) else None
    if exe is None:
        pytest.skip("the geoparquet-validator binary is not installed")
    return exe


def _check(path, *extra):
    return subprocess.run([_validator(), "check", *extra, os.fspath(path)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("which", ["compressed", "utm"])
def test_geoparquet_validator_core_and_covering(which, compressed_file, utm_file):
    path = compressed_file if which == "compressed" else utm_file
    r = _check(path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "=> core:" in r.stdout and "=> covering:" in r.stdout
    for cls in ("core", "covering"):
        line = next(x for x in r.stdout.splitlines() if x.strip().startswith(f"=> {cls}:"))
        assert line.rstrip().endswith(": conformant") and " 0 fail" in line, line
    report = json.loads(_check(path, "--json").stdout)
    failed = [o["id"] for o in report["outcomes"] if o["status"] == "fail"]
    assert failed == []
    passed = {o["id"] for o in report["outcomes"] if o["status"] == "pass"}
    assert {"/conf/core/crs-projjson", "/conf/core/wkb", "/conf/covering/bbox-paths"} <= passed


def test_geoparquet_validator_catches_a_broken_covering(tmp_path, compressed_file):
    """Control: the validator does fail files that break the covering rules."""
    _validator()
    bad = rewrite(compressed_file, tmp_path / "bad.parquet",
                  meta=edit_geo(lambda g: g["columns"]["geometry"]["covering"]["bbox"].update(xmin=["bbox", "x"])))
    r = _check(bad, "--class", "covering")
    assert r.returncode != 0
    assert "NOT CONFORMANT" in r.stdout
