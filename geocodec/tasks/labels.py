"""Labels for a few-shot head: read, checked and moved into the CRS of the file they label.

:func:`read_labels` reads a vector file (GeoPackage, GeoJSON, shapefile ... through pyogrio;
GeoParquet through pyarrow), :func:`prepare_labels` takes geometries and values from anywhere
(the QGIS plugin passes a layer's features). Both check what a head can learn from and say
where a problem is (the file, the row, the column): a missing column, no labelled rows,
geometries other than points and polygons, no CRS, no label within the file's extent, fewer
than two classes. Labels are then reprojected to the file's CRS (pyproj, x/y order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from geocodec.errors import InputError

#: the geometry types a label may have (a point labels the tile holding it, a polygon those it intersects)
LABEL_TYPES = ("Point", "MultiPoint", "Polygon", "MultiPolygon")


@dataclass
class Labels:
    """Labelled geometries in the CRS of the file they label.

    ``geometries``: shapely geometries; ``values``: class names (text); ``rows``: each
    label's row in its source (for messages); ``source``/``column``: where they came from.
    """

    geometries: np.ndarray
    values: list[str]
    rows: np.ndarray
    source: str
    column: str

    def __len__(self) -> int:
        return len(self.values)

    @property
    def classes(self) -> list[str]:
        """The distinct class names, sorted."""
        return sorted(set(self.values))


def file_crs_and_bbox(source) -> tuple[object, list[float]]:
    """(CRS, xmin/ymin/xmax/ymax over every file) of a geocodec file or folder, from its metadata."""
    from geocodec.format.dataset import GeocodecDataset

    ds = GeocodecDataset(source)
    try:
        cols = [f.geo["columns"][f.geo["primary_column"]] for f in ds.files]
        boxes = [c["bbox"] for c in cols if c.get("bbox")]
        bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[-2] for b in boxes),
                max(b[-1] for b in boxes)] if boxes else None
        return ds.files[0].crs, bbox
    finally:
        ds.close()


def read_labels(path, column: str, data) -> Labels:
    """Labels from the vector file ``path`` (class in ``column``) for the geocodec file or folder ``data``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("no such labels file", source=path)
    geoms, table, geom_col, crs = _read_vector(path)
    if column not in table.column_names:
        raise InputError(f"no column {column!r}; the labels have {[c for c in table.column_names if c != geom_col]}",
                         source=path, field=column)
    target, bbox = file_crs_and_bbox(data)
    return prepare_labels(geoms, table.column(column).to_pylist(), crs=crs, target_crs=target, bbox=bbox,
                          source=path, column=column, geometry_field=geom_col)


def _read_vector(path: str):
    """(shapely geometries, attribute table, geometry column name, CRS or None) of a vector file."""
    import pyarrow as pa
    import shapely

    if path.lower().endswith((".parquet", ".geoparquet")):
        import pyarrow.parquet as pq

        from geocodec.format.embeddings_io import read_geo_metadata

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"could not read the labels: {exc}", source=path) from exc
        geo = read_geo_metadata(table.schema.metadata, source=path)
        geom_col = geo["primary_column"]
        col = geo["columns"][geom_col]
        crs = col["crs"] if "crs" in col else "OGC:CRS84"  # GeoParquet: no crs key means lon/lat
    else:
        from geocodec._optional import import_optional

        pyogrio = import_optional("pyogrio", extra="gpkg", purpose=f"reading the labels {path}")
        try:
            meta, table = pyogrio.read_arrow(path)[:2]
        except Exception as exc:  # noqa: BLE001 - GDAL's own message, with the file named
            raise InputError(f"could not read the labels: {exc}", source=path) from exc
        geom_col = meta.get("geometry_name") or "wkb_geometry"
        crs = meta.get("crs")
    if geom_col not in table.column_names:
        raise InputError("the labels have no geometry column", source=path, field=geom_col)
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))
    return geoms, table, geom_col, crs


def prepare_labels(geometries, values, *, crs, target_crs, bbox=None, source: str = "labels",
                   column: str = "class", geometry_field: str = "geometry", rows=None) -> Labels:
    """Check labelled geometries and move them from ``crs`` into ``target_crs``.

    Rows without a geometry or a value are left out. ``bbox`` (in ``target_crs``): the
    extent of the labelled file; labels none of which fall inside it are an error. ``rows``:
    each label's row (or feature id) in ``source``, default its position.
    """
    import shapely

    geoms = np.asarray(list(geometries), dtype=object)
    values = list(values)
    if len(geoms) != len(values):
        raise InputError(f"{len(geoms)} geometries for {len(values)} label values", source=source, field=column)
    rows = np.arange(len(values)) if rows is None else np.asarray(list(rows))
    keep = np.array([g is not None and not shapely.is_empty(g) and v is not None
                     for g, v in zip(geoms, values)], dtype=bool)
    if not keep.any():
        raise InputError(f"no label has both a geometry and a value in {column!r} ({len(values)} rows)",
                         source=source, field=column)
    geoms, rows = geoms[keep], rows[keep]
    values = [str(v) for v, k in zip(values, keep) if k]
    for g, r in zip(geoms, rows):
        if g.geom_type not in LABEL_TYPES:
            raise InputError(f"a {g.geom_type} label: labels must be points or polygons", source=source,
                             row=int(r), field=geometry_field)
    if crs is None:
        raise InputError("the labels have no CRS", source=source, field=geometry_field)
    geoms = _reproject(geoms, crs, target_crs, source=source)
    if bbox is not None:
        inside = shapely.intersects(shapely.box(*bbox), geoms)
        if not inside.any():
            raise InputError(f"none of the {len(values)} labels falls within the file's extent "
                             f"{[round(float(v), 6) for v in bbox]} (the labels' CRS moved to the file's)",
                             source=source, field=geometry_field)
    classes = sorted(set(values))
    if len(classes) < 2:
        raise InputError(f"the labels hold a single class ({classes[0]!r}): a head needs two or more",
                         source=source, field=column)
    return Labels(geoms, values, rows, str(source), column)


def _reproject(geoms: np.ndarray, crs, target_crs, *, source: str) -> np.ndarray:
    import shapely
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    if target_crs is None:
        return geoms
    try:
        src, dst = CRS.from_user_input(crs), CRS.from_user_input(target_crs)
    except CRSError as exc:
        raise InputError(f"the labels' CRS is not one pyproj knows: {exc}", source=source) from exc
    if src.equals(dst, ignore_axis_order=False):
        return geoms
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
