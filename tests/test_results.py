"""The one result writer (geocodec.tasks.results): GeoParquet 1.1 with its geo footer, GeoPackage through
pyogrio, atomic, the suffix check, and the QGIS style (.qml sidecar)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from helpers import leftovers
from geocodec.errors import InputError
from geocodec.tasks.results import Result, Style, output_kind, style_path, write_result

UTM = "EPSG:32632"


def polygons(n: int = 5, *, with_bbox: bool = False) -> Result:
    boxes = [shapely.box(500_000 + 100 * i, 4_000_000, 500_100 + 100 * i, 4_000_100) for i in range(n)]
    cols = {"tile_id": [f"t{i}" for i in range(n)], "class": ["a", "b", "a", "c", "b"][:n],
            "score": np.linspace(0.1, 0.9, n).astype(np.float32),
            "geometry": pa.array(list(shapely.to_wkb(boxes)), pa.binary())}
    if with_bbox:
        b = shapely.bounds(np.array(boxes))
        cols["bbox"] = pa.StructArray.from_arrays([pa.array(b[:, k]) for k in range(4)],
                                                  ["xmin", "ymin", "xmax", "ymax"])
    return Result(pa.table(cols), UTM, style=Style.categorized("class", ["a", "b", "c"], ["#ff0000", "#00ff00"]))


def points(n: int = 3) -> Result:
    pts = shapely.points(np.arange(n, dtype=float), np.arange(n, dtype=float))
    t = pa.table({"score": pa.array(np.linspace(0.5, 1, n), pa.float32()),
                  "geometry": pa.array(list(shapely.to_wkb(pts)), pa.binary())})
    return Result(t, "EPSG:4326", style=Style.graduated("score"))


def validator():
    exe = shutil.which("geoparquet-validator") or os.path.join(os.path.dirname(os.path.abspath(sys.executable)),
                                                               "geoparquet-validator")
    if not os.path.exists(exe):
        pytest.skip("the geoparquet-validator binary is not installed")
    return exe


def test_output_kind_is_the_one_suffix_check(tmp_path):
    assert output_kind("a.parquet") == output_kind("a.GeoParquet") == "geoparquet"
    assert output_kind("a.GPKG") == "gpkg"
    with pytest.raises(InputError, match="must end in .parquet or .gpkg") as e:
        output_kind(tmp_path / "a.csv")
    assert e.value.source == str(tmp_path / "a.csv")


def test_refuses_a_bad_suffix_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="must end in .parquet or .gpkg"):
        write_result(polygons(), tmp_path / "out.shp")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("with_bbox", [False, True])
def test_geoparquet_has_a_valid_geo_footer(tmp_path, with_bbox):
    out = tmp_path / "layer.parquet"
    r = polygons(with_bbox=with_bbox)
    assert write_result(r, out) == str(out)
    kv = pq.ParquetFile(out).metadata.metadata
    geo = json.loads(kv[b"geo"])
    col = geo["columns"][geo["primary_column"]]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry" and col["encoding"] == "WKB"
    assert col["geometry_types"] == ["Polygon"] and col["crs"]["id"] == {"authority": "EPSG", "code": 32632}
    assert col["bbox"] == [500_000, 4_000_000, 500_500, 4_000_100]
    assert ("covering" in col) == with_bbox  # a covering only where the bbox struct column exists
    assert pq.read_table(out).drop_columns(["geometry"] + (["bbox"] if with_bbox else [])).to_pylist() == \
        r.table.drop_columns(["geometry"] + (["bbox"] if with_bbox else [])).to_pylist()
    # core conformance; the covering class where a bbox column is declared (the distribution class, advice
    # for published data sets, wants a covering column the result layers only have where their rows did)
    for cls in ("core", "covering") if with_bbox else ("core",):
        res = subprocess.run([validator(), "check", "--class", cls, str(out)], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0 and f"=> {cls}:" in res.stdout and "conformant" in res.stdout, \
            res.stdout + res.stderr


def test_empty_layer_has_geo_without_bbox(tmp_path):
    out = tmp_path / "none.parquet"
    r = points(0)
    r.geometry_types = ["Point"]
    write_result(r, out)
    col = json.loads(pq.ParquetFile(out).metadata.metadata[b"geo"])["columns"]["geometry"]
    assert "bbox" not in col and col["geometry_types"] == ["Point"] and pq.read_table(out).num_rows == 0


def test_geopackage_readable_by_pyogrio(tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    from pyproj import CRS

    out = tmp_path / "layer.gpkg"
    write_result(polygons(with_bbox=True), out)
    assert [list(x) for x in pyogrio.list_layers(out)] == [["layer", "Polygon"]]  # one layer, no style table
    meta, t = pyogrio.read_arrow(out)[:2]
    assert CRS.from_user_input(meta["crs"]).equals(CRS.from_user_input(UTM))
    assert t.column("class").to_pylist() == ["a", "b", "a", "c", "b"] and "bbox" not in t.column_names
    g = shapely.from_wkb(t.column(meta["geometry_name"]).to_numpy(zero_copy_only=False))
    assert g[1].equals(shapely.box(500_100, 4_000_000, 500_200, 4_000_100))
    write_result(points(), tmp_path / "pts.gpkg", layer="ships")
    assert [list(x) for x in pyogrio.list_layers(tmp_path / "pts.gpkg")] == [["ships", "Point"]]


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg"])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, suffix):
    """The layer and its style are written beside their targets: a failure leaves the old files untouched."""
    if suffix == ".gpkg":
        pyogrio = pytest.importorskip("pyogrio")
        real = pyogrio.write_arrow

        def broken(reader, path, **kw):
            real(reader, path, **kw)                  # the file is there ...
            raise OSError("disk full")                # ... and then the write fails
        monkeypatch.setattr(pyogrio, "write_arrow", broken)
    else:
        import geocodec.format.embeddings_io as eio

        def broken(table, where, **kw):
            with open(where, "wb") as fh:
                fh.write(b"PAR1 half a file")
            raise OSError("disk full")
        monkeypatch.setattr(eio.pq, "write_table", broken)
    out = tmp_path / f"layer{suffix}"
    out.write_bytes(b"old layer")
    with pytest.raises(OSError, match="disk full"):
        write_result(polygons(), out)
    assert out.read_bytes() == b"old layer"
    assert sorted(os.listdir(tmp_path)) == [out.name] and leftovers(tmp_path) == []


def test_style_sidecar_categorized(tmp_path):
    out = tmp_path / "classes.parquet"
    write_result(polygons(), out)
    qml = style_path(out)
    assert qml == str(tmp_path / "classes.qml")
    ren = ET.parse(qml).getroot().find("renderer-v2")
    assert ren.get("type") == "categorizedSymbol" and ren.get("attr") == "class"
    cats = [(c.get("value"), c.get("symbol")) for c in ren.find("categories")]
    assert cats == [("a", "0"), ("b", "1"), ("c", "2")]
    colors = {s.get("name"): s.find("layer/prop[@k='color']").get("v") for s in ren.find("symbols")}
    assert colors == {"0": "255,0,0,255", "1": "0,255,0,255", "2": "136,136,136,255"}  # no colour: grey
    assert {s.get("type") for s in ren.find("symbols")} == {"fill"}


def test_style_sidecar_graduated_on_points(tmp_path):
    out = tmp_path / "pts.gpkg"
    pytest.importorskip("pyogrio")
    write_result(points(3), out)
    ren = ET.parse(style_path(out)).getroot().find("renderer-v2")
    assert ren.get("type") == "graduatedSymbol" and ren.get("attr") == "score"
    ranges = [(float(r.get("lower")), float(r.get("upper"))) for r in ren.find("ranges")]
    assert len(ranges) == 3 and ranges[0][0] == pytest.approx(0.5) and ranges[-1][1] == pytest.approx(1.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(ranges, ranges[1:]))
    assert {s.get("type") for s in ren.find("symbols")} == {"marker"}


def test_no_style_no_sidecar(tmp_path):
    r = points()
    r.style = None
    write_result(r, tmp_path / "plain.parquet")
    assert os.listdir(tmp_path) == ["plain.parquet"]


def test_style_ranges():
    s = Style.graduated("v", classes=4)
    assert s.ranges([]) == [] and s.ranges([None]) == []
    assert s.ranges([2.0, 2.0]) == [(2.0, 2.0, "#ffffcc")]
    r = s.ranges([0, 1, 2, 3, 4, None])
    assert [(lo, hi) for lo, hi, _ in r] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert r[0][2] == "#ffffcc" and r[-1][2] == "#bd0026"
