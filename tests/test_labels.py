"""Few-shot labels (geocodec.tasks.labels): read, checked with errors naming file, row and column, reprojected."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from geocodec.errors import InputError
from geocodec.tasks.labels import prepare_labels, read_labels

UTM = "EPSG:32720"
BBOX = [500_000.0, 8_999_840.0, 500_640.0, 9_000_000.0]


def prep(geoms, values, crs=UTM, **kw):
    return prepare_labels(geoms, values, crs=crs, target_crs=UTM, bbox=BBOX, source="lab.gpkg", column="cls", **kw)


def test_prepare_keeps_labelled_rows_and_reprojects():
    from pyproj import Transformer

    tr = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform([500_080.0, 500_240.0, 500_400.0], [8_999_920.0] * 3)
    labels = prep(list(shapely.points(lon, lat)) + [None], ["veg", None, "water", "veg"], crs="EPSG:4326")
    assert labels.values == ["veg", "water"] and labels.rows.tolist() == [0, 2] and labels.classes == ["veg", "water"]
    np.testing.assert_allclose([labels.geometries[0].x, labels.geometries[1].x], [500_080.0, 500_400.0], atol=1e-3)
    assert len(labels) == 2 and labels.source == "lab.gpkg" and labels.column == "cls"


def test_prepare_errors_name_file_row_and_column():
    pt = shapely.Point(500_080.0, 8_999_920.0)
    with pytest.raises(InputError, match="no label has both") as e:
        prep([None, pt], ["a", None])
    assert (e.value.source, e.value.field) == ("lab.gpkg", "cls")
    with pytest.raises(InputError, match="a LineString label: labels must be points or polygons") as e:
        prep([pt, shapely.LineString([(0, 0), (1, 1)])], ["a", "b"], rows=[10, 11], geometry_field="geom")
    assert (e.value.source, e.value.row, e.value.field) == ("lab.gpkg", 11, "geom")
    assert "lab.gpkg, row 11, field 'geom'" in str(e.value)
    with pytest.raises(InputError, match="no CRS"):
        prep([pt, pt], ["a", "b"], crs=None)
    with pytest.raises(InputError, match="none of the 2 labels falls within the file's extent"):
        prep([shapely.Point(0, 0), shapely.Point(1, 1)], ["a", "b"])
    with pytest.raises(InputError, match="single class") as e:
        prep([pt, shapely.box(500_000, 8_999_900, 500_100, 9_000_000)], ["a", "a"])
    assert e.value.field == "cls"


def test_read_labels_files(compressed_file, tmp_path):
    """GeoParquet (pyarrow) and GeoPackage (pyogrio) label files, in the file's CRS (lon/lat here)."""
    pts = shapely.points([-62.0, -61.0, -61.5], [-10.0, -11.0, -10.5])
    t = pa.table({"cls": ["a", "b", "a"], "geometry": pa.array(list(shapely.to_wkb(pts)), pa.binary())})
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}  # no crs: OGC:CRS84
    lp = tmp_path / "labels.parquet"
    pq.write_table(t.replace_schema_metadata({"geo": json.dumps(geo)}), lp)
    labels = read_labels(lp, "cls", compressed_file)
    assert labels.values == ["a", "b", "a"] and labels.geometries[1].equals(pts[1])
    with pytest.raises(InputError, match=r"no column 'nope'; the labels have \['cls'\]") as e:
        read_labels(lp, "nope", compressed_file)
    assert (e.value.source, e.value.field) == (str(lp), "nope")
    with pytest.raises(InputError, match="no such labels file"):
        read_labels(tmp_path / "missing.gpkg", "cls", compressed_file)
    pyogrio = pytest.importorskip("pyogrio")
    gp = tmp_path / "labels.gpkg"
    pyogrio.write_arrow(t, gp, geometry_name="geometry", geometry_type="Point", crs="EPSG:4326", driver="GPKG")
    assert read_labels(gp, "cls", compressed_file).values == ["a", "b", "a"]
    nocrs = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="crs"):
        pyogrio.write_arrow(t, nocrs, geometry_name="geometry", geometry_type="Point", driver="GPKG")
    with pytest.raises(InputError, match="no CRS") as e:
        read_labels(nocrs, "cls", compressed_file)
    assert e.value.source == str(nocrs)
