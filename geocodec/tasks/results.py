"""The result layer of a task (classify, monitor, ships, search) and the one writer for it.

A :class:`Result` is an Arrow table with a WKB geometry column, its CRS and, optionally, a
:class:`Style` (a categorized legend of class names and colours, or graduated colours on a
numeric field). :func:`write_result` writes it, by the output's suffix (:func:`output_kind`),
as GeoParquet 1.1 (``.parquet``/``.geoparquet``, with its ``geo`` footer) or as a GeoPackage
layer (``.gpkg``, GDAL through pyogrio), atomically: each file is written beside its target and
renamed into place, so a failed write leaves no partial file.

A styled result also gets a QGIS style sidecar, ``<output without suffix>.qml`` beside the
output (:func:`style_path`): QGIS loads it as the layer's default style when the file is
opened. The QGIS plugin applies the same QML (:meth:`Result.qml`) to its output layers.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa

from geocodec.atomic import atomic_output
from geocodec.errors import InputError

#: output suffixes and the format each one selects
OUTPUT_KINDS = {".parquet": "geoparquet", ".geoparquet": "geoparquet", ".gpkg": "gpkg"}
FALLBACK_COLOR = "#888888"
_OUTLINE = "35,35,35,255"


def output_kind(path) -> str:
    """``"geoparquet"`` or ``"gpkg"`` from the suffix of ``path``; :class:`InputError` for any other."""
    path = os.fspath(path)
    kind = OUTPUT_KINDS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise InputError("the output must end in .parquet or .gpkg", source=path)
    return kind


def style_path(path) -> str:
    """Where :func:`write_result` puts the QGIS style of ``path``: the same name with ``.qml``."""
    return os.path.splitext(os.fspath(path))[0] + ".qml"


# -- style -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    """How a desktop GIS should draw a result layer.

    With ``categories`` (``(value, "#rrggbb")`` pairs in legend order): one legend entry per
    value of ``field`` (the classes of a head). Without: graduated colours from ``low`` to
    ``high`` over ``classes`` equal intervals of the numeric ``field`` (a score).
    """

    field: str
    categories: tuple = ()
    low: str = "#ffffcc"
    high: str = "#bd0026"
    classes: int = 5

    @classmethod
    def categorized(cls, field: str, names, colors=()) -> "Style":
        """One category per name, coloured in order (names without a colour get grey)."""
        colors = list(colors or [])
        colors += [FALLBACK_COLOR] * max(0, len(names) - len(colors))
        return cls(field, tuple((str(n), str(c)) for n, c in zip(names, colors)))

    @classmethod
    def graduated(cls, field: str, classes: int = 5) -> "Style":
        """Yellow-to-red colours over ``classes`` equal intervals of a numeric field."""
        return cls(field, classes=int(classes))

    @property
    def kind(self) -> str:
        """``"categorized"`` or ``"graduated"``."""
        return "categorized" if self.categories else "graduated"

    def ranges(self, values) -> list[tuple[float, float, str]]:
        """Graduated classes over ``values``: ``(lower, upper, "#rrggbb")``, equal intervals."""
        v = np.asarray([x for x in values if x is not None], dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return []
        n = max(1, min(self.classes, len(np.unique(v))))
        lo, hi = float(v.min()), float(v.max())
        edges = np.linspace(lo, hi, n + 1) if hi > lo else np.array([lo, hi])
        n = len(edges) - 1
        a, b = np.array(_rgb(self.low), float), np.array(_rgb(self.high), float)
        cols = [a + (b - a) * (i / (n - 1) if n > 1 else 0.0) for i in range(n)]
        return [(float(edges[i]), float(edges[i + 1]), "#%02x%02x%02x" % tuple(int(round(c)) for c in cols[i]))
                for i in range(n)]

    def qml(self, table: pa.Table, geometry_types=()) -> str:
        """The QGIS style (QML) of this style on ``table``, for symbols of ``geometry_types``."""
        kind = _symbol_kind(geometry_types)
        root = ET.Element("qgis", version="3.22.0", styleCategories="Symbology")
        attrs = {"attr": self.field, "forceraster": "0", "symbollevels": "0", "enableorderby": "0"}
        if self.categories:
            ren = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", **attrs)
            cats, syms = ET.SubElement(ren, "categories"), ET.SubElement(ren, "symbols")
            for i, (value, color) in enumerate(self.categories):
                ET.SubElement(cats, "category", render="true", symbol=str(i), value=value, label=value)
                _symbol(syms, str(i), kind, color)
        else:
            ren = ET.SubElement(root, "renderer-v2", type="graduatedSymbol", graduatedMethod="GraduatedColor",
                                **attrs)
            rngs, syms = ET.SubElement(ren, "ranges"), ET.SubElement(ren, "symbols")
            values = table.column(self.field).to_pylist() if self.field in table.column_names else []
            for i, (lo, hi, color) in enumerate(self.ranges(values)):
                ET.SubElement(rngs, "range", render="true", symbol=str(i), lower=repr(lo), upper=repr(hi),
                              label=f"{lo:.4g} - {hi:.4g}")
                _symbol(syms, str(i), kind, color)
            _symbol(ET.SubElement(ren, "source-symbol"), "0", kind, self.low)
            ramp = ET.SubElement(ren, "colorramp", type="gradient", name="[source]")
            for k, v in (("color1", _qcolor(self.low)), ("color2", _qcolor(self.high)), ("discrete", "0"),
                         ("rampType", "gradient")):
                ET.SubElement(ramp, "prop", k=k, v=v)
            method = ET.SubElement(ren, "classificationMethod", id="EqualInterval")
            ET.SubElement(method, "labelFormat", format="%1 - %2", labelprecision="4", trimtrailingzeroes="1")
        return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode")


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _qcolor(color: str) -> str:
    return ",".join(str(v) for v in _rgb(color)) + ",255"


def _symbol_kind(geometry_types) -> str:
    types = {str(t).replace(" Z", "").replace("Multi", "") for t in geometry_types or []}
    if types == {"Point"}:
        return "marker"
    if types == {"LineString"}:
        return "line"
    return "fill"


def _symbol(parent, name: str, kind: str, color: str) -> None:
    sym = ET.SubElement(parent, "symbol", type=kind, name=name, alpha="1", clip_to_extent="1", force_rhr="0")
    if kind == "marker":
        layer, props = "SimpleMarker", {"color": _qcolor(color), "name": "circle", "outline_color": _OUTLINE,
                                        "outline_style": "solid", "outline_width": "0", "size": "2.6",
                                        "size_unit": "MM"}
    elif kind == "line":
        layer, props = "SimpleLine", {"line_color": _qcolor(color), "line_style": "solid", "line_width": "0.6",
                                      "line_width_unit": "MM"}
    else:
        layer, props = "SimpleFill", {"color": _qcolor(color), "style": "solid", "outline_color": _OUTLINE,
                                      "outline_style": "solid", "outline_width": "0.26", "outline_width_unit": "MM"}
    el = ET.SubElement(sym, "layer", {"class": layer, "pass": "0", "locked": "0", "enabled": "1"})
    for k, v in props.items():
        ET.SubElement(el, "prop", k=k, v=v)


# -- result ----------------------------------------------------------------------------------
@dataclass
class Result:
    """A task's output layer: ``table`` with WKB geometries in ``geometry_column``, in ``crs``.

    ``crs``: PROJJSON (as the files' ``geo`` metadata gives it), any text pyproj reads, or
    None (unknown). ``bbox`` and ``geometry_types``, when the task knows them, save a pass
    over the geometries; otherwise :meth:`geo` computes them.
    """

    table: pa.Table
    crs: object = None
    geometry_column: str = "geometry"
    style: Style | None = None
    bbox: list | None = None
    geometry_types: list | None = None

    @property
    def num_rows(self) -> int:
        """Rows (features) of the layer."""
        return self.table.num_rows

    def _extent(self) -> tuple[list | None, list[str]]:
        """(bbox or None for no geometry, geometry types): the given ones, else from the geometries."""
        bbox, types = self.bbox, self.geometry_types
        if bbox is None or types is None:
            import shapely

            g = shapely.from_wkb(self.table.column(self.geometry_column).to_numpy(zero_copy_only=False))
            g = g[~shapely.is_missing(g) & ~shapely.is_empty(g)] if len(g) else g
            if len(g):
                bbox = bbox if bbox is not None else [float(v) for v in shapely.total_bounds(g)]
                types = types if types is not None else sorted({_TYPE_NAMES[t] for t in shapely.get_type_id(g).tolist()})
        return (None if bbox is None else [float(v) for v in bbox]), list(types or [])

    def geo(self) -> dict:
        """The GeoParquet 1.1 ``geo`` metadata of the layer (a ``bbox`` struct column is its covering)."""
        from geocodec.format.metadata import build_geo

        bbox, types = self._extent()
        covering = "bbox" in self.table.column_names and pa.types.is_struct(self.table.schema.field("bbox").type) \
            and {"xmin", "ymin", "xmax", "ymax"} <= {f.name for f in self.table.schema.field("bbox").type}
        return build_geo(crs=_projjson(self.crs), bbox=bbox, geometry_types=types, column=self.geometry_column,
                         covering=covering)

    def qml(self) -> str | None:
        """The QGIS style (QML text) of the layer, or None when it has no style."""
        if self.style is None:
            return None
        return self.style.qml(self.table, self._extent()[1])


_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
               6: "MultiPolygon", 7: "GeometryCollection"}


def _projjson(crs):
    if crs is None or isinstance(crs, dict):
        return crs
    from pyproj import CRS

    return CRS.from_user_input(crs).to_json_dict()


# -- the writer --------------------------------------------------------------------------------
def write_result(result: Result, path, *, layer: str | None = None) -> str:
    """Write ``result`` to ``path``: GeoParquet 1.1 or a GeoPackage layer by its suffix, atomically.

    ``layer``: the GeoPackage layer name (default: the file name). A styled result also gets
    its QGIS style as ``<path without suffix>.qml`` (:func:`style_path`), written with the
    layer and left out when the layer fails. Returns ``path``.
    """
    path = os.fspath(path)
    kind = output_kind(path)
    qml = result.qml()
    with contextlib.ExitStack() as stack:
        if qml is not None:
            tmp_style = stack.enter_context(atomic_output(style_path(path)))
            with open(tmp_style, "w", encoding="utf-8") as fh:
                fh.write(qml)
        if kind == "gpkg":
            _write_gpkg(result, path, layer)
        else:
            from geocodec.format.embeddings_io import write_geoparquet
            from geocodec.format.metadata import GEO_KEY

            write_geoparquet(result.table.replace_schema_metadata({GEO_KEY: json.dumps(result.geo())}), path)
    return path


def _write_gpkg(result: Result, path: str, layer: str | None) -> None:
    from geocodec.tasks.gpkg import flat_table, write_batches

    flat = flat_table(result.table, geometry_column=result.geometry_column)
    batches = flat.to_batches() or [pa.record_batch([pa.array([], f.type) for f in flat.schema], schema=flat.schema)]
    write_batches(batches, path, crs=result.crs, geometry_types=result._extent()[1], layer=layer,
                  geometry_column=result.geometry_column)
