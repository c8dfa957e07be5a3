"""Enums that work in QGIS 3.22 (Qt5) and QGIS 4 (Qt6): scoped names only, newest API first.

Qt6 drops the unscoped aliases (``Qt.RightButton``, ``QMessageBox.Yes``) and ``QVariant.Type``;
QGIS 3.30-3.38 moved many enums to ``Qgis`` (``Qgis.ProcessingSourceType.VectorPolygon``) and field
types to ``QMetaType.Type``, which QGIS 3.22 does not accept. :func:`enum` returns the first dotted name
that exists, :func:`field_type` the field type this QGIS's ``QgsField`` takes.
"""

from __future__ import annotations

import functools

import qgis.core
from qgis.PyQt import QtCore


def enum(*names: str):
    """The first of ``names`` (dotted, from ``qgis.core`` or ``qgis.PyQt.QtCore``) that this QGIS has."""
    for name in names:
        head, *rest = name.split(".")
        obj = getattr(qgis.core, head, None) or getattr(QtCore, head, None)
        for part in rest:
            obj = getattr(obj, part, None)
        if obj is not None:
            return obj
    raise AttributeError(f"none of {names} exists in this QGIS ({qgis.core.Qgis.QGIS_VERSION})")


@functools.lru_cache(maxsize=None)
def _metatype_fields() -> bool:
    """Whether QgsField takes ``QMetaType.Type`` (QGIS >= 3.38); QGIS 3.22 wants ``QVariant.Type``."""
    try:
        qgis.core.QgsField("x", QtCore.QMetaType.Type.Int)
        return True
    except TypeError:
        return False


def field_type(name: str):
    """The field type ``name`` (``Int``, ``LongLong``, ``Double``, ``Bool``, ``QString``/``String``,
    ``QDateTime``/``DateTime``) in the form this QGIS's ``QgsField`` accepts."""
    if _metatype_fields():
        return getattr(QtCore.QMetaType.Type, {"String": "QString", "DateTime": "QDateTime"}.get(name, name))
    return getattr(QtCore.QVariant.Type, {"QString": "String", "QDateTime": "DateTime"}.get(name, name))


# the enums the plugin uses
POLYGON_GEOMETRY = enum("Qgis.GeometryType.Polygon", "QgsWkbTypes.GeometryType.PolygonGeometry")
WKB_POLYGON = enum("Qgis.WkbType.Polygon", "QgsWkbTypes.Type.Polygon")
SOURCE_POLYGON = enum("Qgis.ProcessingSourceType.VectorPolygon", "QgsProcessing.SourceType.TypeVectorPolygon")
SOURCE_POINT = enum("Qgis.ProcessingSourceType.VectorPoint", "QgsProcessing.SourceType.TypeVectorPoint")
SOURCE_ANY_GEOMETRY = enum("Qgis.ProcessingSourceType.VectorAnyGeometry",
                           "QgsProcessing.SourceType.TypeVectorAnyGeometry")
FILE_BEHAVIOR = enum("Qgis.ProcessingFileParameterBehavior.File", "QgsProcessingParameterFile.Behavior.File")
NUMBER_DOUBLE = enum("Qgis.ProcessingNumberParameterType.Double", "QgsProcessingParameterNumber.Type.Double")
FLAG_ADVANCED = enum("Qgis.ProcessingParameterFlag.Advanced", "QgsProcessingParameterDefinition.Flag.FlagAdvanced")
FAST_INSERT = enum("QgsFeatureSink.Flag.FastInsert")
BYTE = enum("Qgis.DataType.Byte")
MESSAGE_LEVELS = {"info": enum("Qgis.MessageLevel.Info"), "warning": enum("Qgis.MessageLevel.Warning"),
                  "critical": enum("Qgis.MessageLevel.Critical"), "success": enum("Qgis.MessageLevel.Success")}
RIGHT_BUTTON = enum("Qt.MouseButton.RightButton")
SHIFT_MODIFIER = enum("Qt.KeyboardModifier.ShiftModifier")
