"""Map tool: click a tile, get the k most similar tiles as a layer styled by score (geocodec.search)."""

from __future__ import annotations

from qgis.core import QgsCoordinateTransform, QgsProject
from qgis.gui import QgsMapTool

from .layers import SOURCE_PROPERTY, graduated, memory_layer, qgis_crs


class SimilarityMapTool(QgsMapTool):
    def __init__(self, canvas, source: str | None = None, k: int = 10, on_message=None):
        super().__init__(canvas)
        self.source = source
        self.k = k
        self.on_message = on_message or (lambda text, level="info": None)
        self._searchers = {}
        self.last_layer = None

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
            self.search_at(pt.x(), pt.y(), crs)
        except Exception as exc:  # noqa: BLE001 - shown in the message bar, never a bare traceback
            self.on_message(f"geocodec similarity search: {exc}", "critical")

    def searcher(self, source):
        from geocodec.search import Searcher

        if source not in self._searchers:
            self._searchers[source] = Searcher(source, progress=False)
        return self._searchers[source]

    def search_at(self, x: float, y: float, crs=None):
        """The k tiles most like the tile under (x, y) (``crs``: a QgsCoordinateReferenceSystem) as a layer."""
        source = self.source_for_click()
        if not source:
            self.on_message("select a layer loaded by geocodec (or set the file) before clicking", "warning")
            return None
        s = self.searcher(source)
        file_crs = s.ds.files[0].crs
        if crs is not None and crs.isValid():
            tr = QgsCoordinateTransform(crs, qgis_crs(file_crs), QgsProject.instance())
            p = tr.transform(x, y)
            x, y = p.x(), p.y()
        tiles = s.tiles_at_point(x, y)
        table = s.search(tiles, self.k + len(tiles.rows), include_query=True)  # the clicked tile(s) + k
        layer = memory_layer(table, file_crs, f"similar to {table.column('tile_id')[0].as_py()}")
        graduated(layer, "score")
        layer.setCustomProperty(SOURCE_PROPERTY, source)
        QgsProject.instance().addMapLayer(layer)
        self.last_layer = layer
        self.on_message(f"{table.num_rows} tiles most similar to the one {tiles.how}", "info")
        return layer

    def deactivate(self):
        for s in self._searchers.values():
            s.close()
        self._searchers.clear()
        super().deactivate()
