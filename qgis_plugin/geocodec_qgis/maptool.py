"""Map tool for similarity search (geocodec.tasks.search), results as a layer styled by score.

* click (left button, no polygon started): the k tiles most like the tile under the point;
* shift + left clicks add the vertices of a query polygon, a right click closes it: the k tiles
  most like the mean embedding of the tiles the polygon covers.
"""

from __future__ import annotations

from qgis.core import QgsCoordinateTransform, QgsGeometry, QgsPointXY, QgsProject
from qgis.gui import QgsMapTool, QgsRubberBand

from .compat import POLYGON_GEOMETRY, RIGHT_BUTTON, SHIFT_MODIFIER
from .layers import SOURCE_PROPERTY, qgis_crs, result_layer


class SimilarityMapTool(QgsMapTool):
    def __init__(self, canvas, source: str | None = None, k: int = 10, on_message=None):
        super().__init__(canvas)
        self.source = source
        self.k = k
        self.on_message = on_message or (lambda text, level="info": None)
        self._searchers = {}
        self.last_layer = None
        self.vertices: list[QgsPointXY] = []
        self.band = None

    def source_for_click(self) -> str | None:
        if self.source:
            return self.source
        layer = self.canvas().currentLayer()
        if layer is not None and layer.customProperty(SOURCE_PROPERTY):
            return layer.customProperty(SOURCE_PROPERTY)
        return None

    def canvasReleaseEvent(self, event):  # noqa: N802
        pt = event.mapPoint()
        crs = self.canvas().mapSettings().destinationCrs()
        try:
            if event.button() == RIGHT_BUTTON:
                if len(self.vertices) >= 3:
                    self.search_polygon([(p.x(), p.y()) for p in self.vertices], crs)
                self._clear_polygon()
            elif self.vertices or event.modifiers() & SHIFT_MODIFIER:
                self._add_vertex(pt)
            else:
                self.search_at(pt.x(), pt.y(), crs)
        except Exception as exc:  # noqa: BLE001 - shown in the message bar, never a bare traceback
            self._clear_polygon()
            self.on_message(f"geocodec similarity search: {exc}", "critical")

    def _add_vertex(self, pt):
        self.vertices.append(QgsPointXY(pt))
        if self.band is None:
            self.band = QgsRubberBand(self.canvas(), POLYGON_GEOMETRY)
        self.band.setToGeometry(QgsGeometry.fromPolygonXY([self.vertices]), None)

    def _clear_polygon(self):
        self.vertices = []
        if self.band is not None:
            self.band.reset(POLYGON_GEOMETRY)

    def searcher(self, source):
        from geocodec.tasks.search import Searcher

        if source not in self._searchers:
            self._searchers[source] = Searcher(source, progress=False)
        return self._searchers[source]

    def search_at(self, x: float, y: float, crs=None):
        """The k tiles most like the tile under (x, y) (``crs``: a QgsCoordinateReferenceSystem) as a layer."""
        source = self.source_for_click()
        if not source:
            self.on_message("select a layer loaded by geocodec (or set the file) before clicking", "warning")
            return None
        s, [(x, y)] = self._to_file_crs(source, crs, [(x, y)])
        tiles = s.tiles_at_point(x, y)
        result = s.result(tiles, self.k + len(tiles.rows), include_query=True)  # the clicked tile(s) + k
        return self._add_result(result, source, f"similar to {result.table.column('tile_id')[0].as_py()}",
                                f"{result.num_rows} tiles most similar to the one {tiles.how}")

    def _to_file_crs(self, source, crs, points):
        """The searcher of ``source`` and ``points`` [(x, y)] in ``crs`` moved into the file's CRS."""
        s = self.searcher(source)
        if crs is not None and crs.isValid():
            tr = QgsCoordinateTransform(crs, qgis_crs(s.ds.files[0].crs), QgsProject.instance())
            points = [(p.x(), p.y()) for p in (tr.transform(x, y) for x, y in points)]
        return s, points

    def _add_result(self, result, source, name: str, message: str):
        layer = result_layer(result, name)
        layer.setCustomProperty(SOURCE_PROPERTY, source)
        QgsProject.instance().addMapLayer(layer)
        self.last_layer = layer
        self.on_message(message, "info")
        return layer

    def search_polygon(self, vertices, crs=None):
        """The k tiles most like the tiles a polygon (vertices in ``crs``) covers, as a layer."""
        import shapely

        source = self.source_for_click()
        if not source:
            self.on_message("select a layer loaded by geocodec (or set the file) before drawing", "warning")
            return None
        s, vertices = self._to_file_crs(source, crs, vertices)
        tiles = s.tiles_in_polygon(shapely.Polygon(vertices))
        result = s.result(tiles, self.k)
        if result.num_rows == 0:
            self.on_message("the polygon covers every tile of the file: nothing else to compare with", "warning")
            return None
        return self._add_result(result, source, f"similar to a polygon ({len(tiles.rows)} tiles)",
                                f"{result.num_rows} tiles most similar to the {len(tiles.rows)} tiles under the polygon")

    def deactivate(self):
        self._clear_polygon()
        for s in self._searchers.values():
            s.close()
        self._searchers.clear()
        super().deactivate()
