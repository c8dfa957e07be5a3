"""Arrow tables (as the geocodec library returns them) -> QGIS memory layers, and the styles."""

from __future__ import annotations

import datetime as _dt

from qgis.core import (QgsCategorizedSymbolRenderer, QgsCoordinateReferenceSystem, QgsFeature, QgsField,
                       QgsFields, QgsGeometry, QgsGradientColorRamp, QgsGraduatedSymbolRenderer,
                       QgsRendererCategory, QgsSymbol, QgsVectorLayer, QgsWkbTypes)
from qgis.PyQt.QtCore import QDateTime, QVariant
from qgis.PyQt.QtGui import QColor

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
        return QVariant.Bool
    if pa.types.is_integer(t):
        return QVariant.LongLong if t.bit_width > 32 else QVariant.Int
    if pa.types.is_floating(t):
        return QVariant.Double
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return QVariant.DateTime
    return QVariant.String


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
        return QgsWkbTypes.Polygon
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


# -- styles ----------------------------------------------------------------------------------------
def categorized(layer, field: str, names: list[str], colors: list[str]) -> None:
    """One legend entry per head class, in the head's order and colours."""
    cats = []
    for name, color in zip(names, colors):
        sym = QgsSymbol.defaultSymbol(layer.geometryType())
        sym.setColor(QColor(color))
        cats.append(QgsRendererCategory(name, sym, name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, cats))
    layer.triggerRepaint()


def graduated(layer, field: str, classes: int = 5, low: str = "#ffffcc", high: str = "#bd0026") -> None:
    """Graduated colours (yellow -> red) on a numeric field, e.g. the similarity score."""
    values = [v for v in (f[field] for f in layer.getFeatures()) if v is not None]
    sym = QgsSymbol.defaultSymbol(layer.geometryType())
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(sym)
    renderer.setSourceColorRamp(QgsGradientColorRamp(QColor(low), QColor(high)))
    if values:
        from qgis.core import QgsClassificationEqualInterval

        renderer.setClassificationMethod(QgsClassificationEqualInterval())
        renderer.updateClasses(layer, min(classes, len(set(values))))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
