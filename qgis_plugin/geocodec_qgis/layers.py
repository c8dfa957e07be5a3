"""Arrow tables (as the geocodec library returns them) -> QGIS layers, and the library's styles (QML) on them."""

from __future__ import annotations

import datetime as _dt

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsField, QgsFields, QgsGeometry, QgsVectorLayer,
                       QgsWkbTypes)
from qgis.PyQt.QtCore import QDateTime
from qgis.PyQt.QtXml import QDomDocument

from .compat import WKB_POLYGON, field_type

SOURCE_PROPERTY = "geocodec/source"


def qgis_crs(crs) -> QgsCoordinateReferenceSystem:
    """A GeoParquet 'crs' (PROJJSON dict, string or None = OGC:CRS84) as a QGIS CRS."""
    if crs is None:
        return QgsCoordinateReferenceSystem("EPSG:4326")
    if isinstance(crs, dict):
        ident = crs.get("id") or {}
        if ident.get("authority") == "EPSG" and ident.get("code"):
            return QgsCoordinateReferenceSystem(f"EPSG:{ident['code']}")
        from pyproj import CRS

        return QgsCoordinateReferenceSystem.fromWkt(CRS.from_json_dict(crs).to_wkt())
    out = QgsCoordinateReferenceSystem(str(crs))
    if not out.isValid():
        from pyproj import CRS

        out = QgsCoordinateReferenceSystem.fromWkt(CRS.from_user_input(crs).to_wkt())
    return out


def _field_type(arrow_type):
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_boolean(t):
        return field_type("Bool")
    if pa.types.is_integer(t):
        return field_type("LongLong" if t.bit_width > 32 else "Int")
    if pa.types.is_floating(t):
        return field_type("Double")
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return field_type("QDateTime")
    return field_type("QString")


def _value(v):
    if isinstance(v, _dt.datetime):
        return QDateTime(v.year, v.month, v.day, v.hour, v.minute, v.second)
    if isinstance(v, _dt.date):
        return QDateTime(v.year, v.month, v.day, 0, 0, 0)
    if isinstance(v, (list, dict, bytes)):
        return str(v)
    return v


def fields_for(table, skip=("geometry", "bbox")) -> QgsFields:
    fields = QgsFields()
    for f in table.schema:
        if f.name not in skip:
            fields.append(QgsField(f.name, _field_type(f.type)))
    return fields


def features_from_table(table, fields: QgsFields, geometry_column: str = "geometry"):
    """QgsFeatures from an Arrow table with a WKB geometry column (values in table order)."""
    names = [fields.at(i).name() for i in range(fields.count())]
    cols = [table.column(n).to_pylist() for n in names]
    wkb = table.column(geometry_column).to_pylist()
    out = []
    for i, g in enumerate(wkb):
        feat = QgsFeature(fields)
        geom = QgsGeometry()
        geom.fromWkb(g)
        feat.setGeometry(geom)
        feat.setAttributes([_value(c[i]) for c in cols])
        out.append(feat)
    return out


def geometry_type(table, geometry_column: str = "geometry"):
    if table.num_rows == 0:
        return WKB_POLYGON
    g = QgsGeometry()
    g.fromWkb(table.column(geometry_column)[0].as_py())
    return g.wkbType()


def memory_layer(table, crs, name: str, geometry_column: str = "geometry") -> QgsVectorLayer:
    wkb_type = geometry_type(table, geometry_column)
    layer = QgsVectorLayer(f"{QgsWkbTypes.displayString(wkb_type)}?crs={qgis_crs(crs).authid() or 'EPSG:4326'}",
                           name, "memory")
    if not qgis_crs(crs).authid():
        layer.setCrs(qgis_crs(crs))
    fields = fields_for(table)
    layer.dataProvider().addAttributes(fields.toList())
    layer.updateFields()
    layer.dataProvider().addFeatures(features_from_table(table, layer.fields(), geometry_column))
    layer.updateExtents()
    return layer


def result_layer(result, name: str) -> QgsVectorLayer:
    """A memory layer of a geocodec task result (:class:`geocodec.tasks.results.Result`), styled."""
    layer = memory_layer(result.table, result.crs, name, result.geometry_column)
    apply_style(layer, result.qml())
    return layer


# -- styles ----------------------------------------------------------------------------------------
def apply_style(layer, qml: str | None) -> None:
    """Apply a QGIS style given as QML text (a result's :meth:`geocodec.tasks.results.Result.qml`)."""
    if not qml:
        return
    doc = QDomDocument()
    ok = doc.setContent(qml)
    if not (ok[0] if isinstance(ok, tuple) else ok):
        raise ValueError("the result's QGIS style is not valid XML")
    done, error = layer.importNamedStyle(doc)
    if not done:
        raise ValueError(f"QGIS refused the result's style: {error}")
    layer.triggerRepaint()
