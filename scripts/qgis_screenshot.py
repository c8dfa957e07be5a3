"""Render docs/img/qgis_plugin.png: a QGIS map canvas with a geocodec classification and a similarity result.

Runs the plugin's Processing algorithms in a headless QGIS (Debian's 3.22) on a real file built from
the Rondonia time series (as tests/test_heads.py does), and renders the map with QgsMapRendererParallelJob:

    GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins \\
        QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/qgis_screenshot.py [-o docs/img/qgis_plugin.png]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in os.environ.get("GEOCODEC_QGIS_PATHS", "/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins"
                        ).split(os.pathsep):
    if p and p not in sys.path:
        sys.path.append(p)
sys.path[:0] = [str(REPO / "qgis_plugin"), str(REPO / "tests")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default=str(REPO / "docs/img/qgis_plugin.png"))
    a = ap.parse_args()
    import numpy as np
    from qgis.core import (QgsApplication, QgsLayerTreeModel, QgsLegendRenderer, QgsLegendSettings,  # noqa: F401
                           QgsMapRendererParallelJob, QgsMapSettings, QgsPalLayerSettings, QgsProject,
                           QgsTextFormat, QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    app = QgsApplication([], False)
    app.initQgis()
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    from geocodec_qgis.plugin import GeocodecPlugin

    plugin = GeocodecPlugin(None)
    plugin.initProcessing()
    from geocodec.datasets import load_rondonia
    from geocodec.learned import LearnedModel
    from geocodec.series import pick_bands
    from test_heads import make_rondonia_file

    d = load_rondonia()
    d["x5"] = pick_bands(d["X"])
    y = d["y"]
    classes = ("Forest", "Water", "Clear_Cut_Bare_Soil", "Wetland", "Riparian_Forest", "Clear_Cut_Burned_Area",
               "Seasonally_Flooded", "Forest")
    rng = np.random.default_rng(0)
    idx = np.array([rng.choice(np.flatnonzero(y == c)) for c in classes for _ in range(3)])
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "rondonia.parquet"
    make_rondonia_file(path, LearnedModel.load(), d, idx)
    cls = processing.run("geocodec:classify", {"INPUT": str(path), "HEAD": "landcover",
                                               "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    cls.setName("land cover (landcover head)")
    tiles = [f["tile_id"] for f in cls.getFeatures()]
    sim = processing.run("geocodec:search", {"INPUT": str(path), "TILE_ID": tiles[0], "K": 6,
                                             "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    sim.setName(f"6 tiles most similar to {tiles[0]}")
    for f_lyr in (cls, sim):
        QgsProject.instance().addMapLayer(f_lyr)
    # the similarity result as thick outlines with its score as label, over the classes
    sym = sim.renderer().clone()
    for r in sym.ranges():
        s = r.symbol()
        col = s.color()
        s.symbolLayer(0).setBrushStyle(Qt.NoBrush)
        s.symbolLayer(0).setStrokeColor(col)
        s.symbolLayer(0).setStrokeWidth(1.6)
    sim.setRenderer(sym)
    pal = QgsPalLayerSettings()
    pal.fieldName = "concat('#', \"rank\", ' ', format_number(\"score\", 3))"
    pal.isExpression = True
    fmt = QgsTextFormat()
    fmt.setFont(QFont("DejaVu Sans", 9))
    fmt.setColor(QColor("black"))
    pal.setFormat(fmt)
    sim.setLabeling(QgsVectorLayerSimpleLabeling(pal))
    sim.setLabelsEnabled(True)

    ext = cls.extent()
    ext.grow(40)
    ms = QgsMapSettings()
    ms.setLayers([sim, cls])
    ms.setDestinationCrs(cls.crs())
    ms.setExtent(ext)
    ms.setOutputSize(QSize(1400, 260))
    ms.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    mapimg = job.renderedImage()
    # legend below the map: the head's class names and colours
    img = QImage(1400, 520, QImage.Format_ARGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.drawImage(0, 40, mapimg)
    p.setFont(QFont("DejaVu Sans", 12))
    p.drawText(10, 25, f"geocodec QGIS plugin: {path.name} ({len(tiles)} tiles x 11 dates), classify + "
                       "similarity search (outlines: rank and cosine score)")
    p.setFont(QFont("DejaVu Sans", 10))
    y0 = 320
    for i, c in enumerate(cls.renderer().categories()):
        x, yy = 10 + (i // 5) * 340, y0 + (i % 5) * 34
        p.fillRect(x, yy, 24, 24, c.symbol().color())
        p.drawText(x + 32, yy + 17, c.label())
    p.end()
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    img.save(a.output)
    print(f"wrote {a.output}")
    plugin.unload()


if __name__ == "__main__":
    main()
