"""The QGIS plugin in a real, headless QGIS: provider, every algorithm through processing.run, map tool.

Skips where QGIS's Python bindings are absent. scripts/test_qgis.sh runs it with
GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins (appended to
sys.path, so the venv's numpy/pyarrow still win over Debian's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "qgis_plugin"))
import headless  # noqa: E402  (qgis_plugin/headless.py: the one headless-QGIS bootstrap)

headless.add_qgis_paths(debian_default=False)
qgis_core = pytest.importorskip("qgis.core")
sys.path.insert(0, str(Path(__file__).resolve().parent))
DATA = REPO.parent / "shared" / "data"
HAVE_SHIPS = (DATA / "sen2ships" / "genoa").is_dir()
HAVE_RONDONIA = (DATA / "rondonia" / "rondonia_s2l2a_monthly.npz").is_file()


@pytest.fixture(scope="module")
def qgs():
    app, plugin = headless.start()
    assert plugin.missing == [], plugin.missing
    yield app
    plugin.unload()


@pytest.fixture(scope="module")
def genoa(tmp_path_factory):
    if not HAVE_SHIPS:
        pytest.skip("needs ../shared/data/sen2ships")
    import test_ships

    return test_ships.crop.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="module")
def rondonia(tmp_path_factory):
    if not HAVE_RONDONIA:
        pytest.skip("needs ../shared/data/rondonia")
    from geocodec.training.datasets import load_rondonia
    from geocodec.codecs.learned import LearnedModel
    from geocodec.tasks.series import pick_bands
    from test_heads import make_rondonia_file

    d = load_rondonia()
    d["x5"] = pick_bands(d["X"])
    y = d["y"]
    idx = np.array([np.flatnonzero(y == c)[i] for c in ("Forest", "Water", "Clear_Cut_Bare_Soil", "Wetland")
                    for i in range(2)])
    path = tmp_path_factory.mktemp("qgis_ron") / "rondonia.parquet"
    make_rondonia_file(path, LearnedModel.load(), d, idx)
    return path


def run(alg, **params):
    import processing

    params.setdefault("OUTPUT", "TEMPORARY_OUTPUT")
    return processing.run(f"geocodec:{alg}", params)


def layer_of(result):
    from qgis.core import QgsProcessingContext, QgsProject

    out = result["OUTPUT"]
    if isinstance(out, str):
        out = QgsProject.instance().mapLayer(out) or qgis_core.QgsVectorLayer(out, "x", "ogr")
    return out


def test_provider_registered(qgs):
    from qgis.core import QgsApplication

    names = {a.name() for a in QgsApplication.processingRegistry().providerById("geocodec").algorithms()}
    assert names == {"load", "classify", "ships", "monitor", "preview", "search", "train_head"}


def test_metadata_txt():
    import configparser

    m = configparser.ConfigParser()
    m.read(REPO / "qgis_plugin" / "geocodec_qgis" / "metadata.txt")
    g = m["general"]
    for k in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository",
              "tracker"):
        assert g.get(k), k
    assert g["qgisMinimumVersion"] == "3.22" and g["hasProcessingProvider"] == "yes"


def test_load_layer_with_query(qgs, genoa):
    from geocodec.format.reader import GeocodecFile

    r = run("load", INPUT=str(genoa["file"]))
    lyr = layer_of(r)
    with GeocodecFile(genoa["file"]) as f:
        n = f.num_rows
    assert lyr.featureCount() == n == r["TILES"] > 0
    assert {"tile_id", "datetime", "valid_fraction"} <= set(lyr.fields().names())
    assert lyr.crs().authid() == "EPSG:3857"
    from geocodec.resources import DEFAULT_MODEL

    assert DEFAULT_MODEL in lyr.metadata().abstract() and "bytes on disk" in lyr.metadata().abstract()
    assert lyr.customProperty("geocodec/source") == str(genoa["file"])
    f0 = next(lyr.getFeatures())
    assert f0.geometry().type() == qgis_core.QgsWkbTypes.PolygonGeometry and 0 <= f0["valid_fraction"] <= 1
    # the per-tile quality figures (SPEC.md 5.1) as fields, the file's values
    assert {"preview_psnr", "rate_ratio"} <= set(lyr.fields().names())
    import pyarrow.parquet as pq

    t = pq.read_table(genoa["file"], columns=["tile_id", "preview_psnr", "rate_ratio"]).to_pydict()
    want = {tid: (p, r) for tid, p, r in zip(t["tile_id"], t["preview_psnr"], t["rate_ratio"])}
    for feat in lyr.getFeatures():
        p, r = want[feat["tile_id"]]
        assert feat["preview_psnr"] == pytest.approx(p, abs=1e-4) and feat["rate_ratio"] == pytest.approx(r, abs=1e-5)
    x0, y0, x1, y1 = genoa["bounds"]
    half = run("load", INPUT=str(genoa["file"]), EXTENT=f"{x0},{(x0 + x1) / 2 - 1},{y0},{y1} [EPSG:3857]")
    assert 0 < half["TILES"] < n
    assert run("load", INPUT=str(genoa["file"]), START="2030-01-01")["TILES"] == 0


def test_ships_points(qgs, genoa):
    from geocodec.tasks.ships import detect_ships

    r = run("ships", INPUT=str(genoa["file"]))
    lyr = layer_of(r)
    want = detect_ships(genoa["file"]).points.num_rows
    assert lyr.featureCount() == r["COUNT"] == want
    assert lyr.geometryType() == qgis_core.QgsWkbTypes.PointGeometry
    assert r["THRESHOLD"] > 0


def test_preview_geotiff(qgs, genoa, tmp_path):
    out = str(tmp_path / "preview.tif")
    r = run("preview", INPUT=str(genoa["file"]), OUTPUT=out)
    rl = qgis_core.QgsRasterLayer(out, "p")
    assert rl.isValid() and rl.bandCount() == 4 and rl.crs().authid() == "EPSG:3857"
    assert rl.width() == r["WIDTH"] >= 200
    x0, y0, x1, y1 = genoa["bounds"]
    e = rl.extent()
    assert abs(e.xMinimum() - x0) < 200 and abs(e.yMaximum() - y1) < 200
    stats = rl.dataProvider().bandStatistics(1)
    assert stats.maximumValue > 100


def test_search_by_tile_and_polygon(qgs, genoa, tmp_path):
    first = next(layer_of(run("load", INPUT=str(genoa["file"]))).getFeatures())
    r = run("search", INPUT=str(genoa["file"]), TILE_ID=first["tile_id"], K=2)
    lyr = layer_of(r)
    scores = [f["score"] for f in lyr.getFeatures()]
    assert len(scores) == 2 and first["tile_id"] not in [f["tile_id"] for f in lyr.getFeatures()] and scores == sorted(scores, reverse=True) and scores == pytest.approx(r["SCORES"])
    assert isinstance(lyr.renderer(), qgis_core.QgsGraduatedSymbolRenderer)
    poly = qgis_core.QgsVectorLayer("Polygon?crs=EPSG:3857", "q", "memory")
    feat = qgis_core.QgsFeature()
    feat.setGeometry(first.geometry().buffer(-1, 1))
    poly.dataProvider().addFeatures([feat])
    r2 = run("search", INPUT=str(genoa["file"]), POLYGON=poly, K=2)
    assert layer_of(r2).featureCount() == 2


def test_classify_landcover_legend(qgs, rondonia):
    from geocodec.tasks.heads import Head

    r = run("classify", INPUT=str(rondonia), HEAD="landcover")
    lyr = layer_of(r)
    h = Head.load("landcover")
    assert lyr.featureCount() == 8
    classes = [f["class"] for f in lyr.getFeatures()]
    assert set(classes) <= set(h.class_names) and r["CLASSES"] == h.class_names
    ren = lyr.renderer()
    assert isinstance(ren, qgis_core.QgsCategorizedSymbolRenderer) and ren.classAttribute() == "class"
    cats = ren.categories()
    assert [c.label() for c in cats] == h.class_names
    assert [c.symbol().color().name() for c in cats] == [c.lower() for c in h.class_colors]
    # the test's Rondonia points include forest and water: the head finds both
    assert {"Forest", "Water"} <= set(classes)


def test_written_results_open_styled(qgs, rondonia, genoa, tmp_path):
    """A result the library writes (CLI output) opens in QGIS with its style: the .qml sidecar beside it."""
    from geocodec.tasks.classify import classify_file
    from geocodec.tasks.results import write_result
    from geocodec.tasks.ships import detect_ships

    r = classify_file(rondonia, "landcover", progress=False)
    out = tmp_path / "classes.gpkg"
    write_result(r.layer, out)
    lyr = qgis_core.QgsVectorLayer(str(out), "classes", "ogr")
    assert lyr.isValid() and lyr.featureCount() == 8
    ren = lyr.renderer()
    assert isinstance(ren, qgis_core.QgsCategorizedSymbolRenderer) and ren.classAttribute() == "class"
    assert [c.label() for c in ren.categories()] == r.names
    assert [c.symbol().color().name() for c in ren.categories()] == [c for _, c in r.layer.style.categories]
    ships = detect_ships(genoa["file"], threshold=0.2)
    write_result(ships.points, tmp_path / "ships.gpkg")
    lyr = qgis_core.QgsVectorLayer(str(tmp_path / "ships.gpkg"), "ships", "ogr")
    ren = lyr.renderer()
    assert isinstance(ren, qgis_core.QgsGraduatedSymbolRenderer) and ren.classAttribute() == "score"
    assert len(ren.ranges()) == min(5, len(set(ships.points.table.column("score").to_pylist())))
    assert lyr.geometryType() == qgis_core.QgsWkbTypes.PointGeometry


def test_monitor_events_and_chart(qgs, rondonia, tmp_path):
    png = str(tmp_path / "series.png")
    pt = "500080,8999920 [EPSG:32720]"
    r = run("monitor", INPUT=str(rondonia), POINT=pt, PLOT=png)
    lyr = layer_of(r)
    assert lyr.featureCount() == 11 and "event" in lyr.fields().names()
    assert os.path.getsize(png) > 1000 and isinstance(r["EVENTS"], list)


def test_train_head_then_classify(qgs, rondonia, tmp_path):
    from geocodec.tasks.heads import Head

    pts = qgis_core.QgsVectorLayer("Point?crs=EPSG:32720&field=cls:string", "labels", "memory")
    feats = []
    for i, c in enumerate(["veg", "veg", "water", "water"]):
        f = qgis_core.QgsFeature(pts.fields())
        f.setGeometry(qgis_core.QgsGeometry.fromPointXY(qgis_core.QgsPointXY(500080.0 + 160 * i, 8999920.0)))
        f["cls"] = c
        feats.append(f)
    pts.dataProvider().addFeatures(feats)
    head = str(tmp_path / "fewshot.onnx")
    r = run("train_head", INPUT=str(rondonia), LABELS=pts, FIELD="cls", HEAD=head, STEPS=100)
    h = Head.load(head)
    assert h.class_names == ["veg", "water"] == r["CLASSES"]
    lyr = layer_of(r)
    assert lyr.featureCount() == 8 * 11  # one row per tile and date
    assert {f["class"] for f in lyr.getFeatures()} <= {"veg", "water"}
    assert [c.label() for c in lyr.renderer().categories()] == ["veg", "water"]


def test_map_tool_click(qgs, genoa):
    from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY, QgsProject
    from qgis.gui import QgsMapCanvas, QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    from geocodec_qgis.maptool import SimilarityMapTool

    canvas = QgsMapCanvas()
    canvas.resize(400, 400)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    x0, y0, x1, y1 = genoa["bounds"]
    canvas.setExtent(qgis_core.QgsRectangle(x0, y0, x1, y1))
    canvas.refresh()
    messages = []
    tool = SimilarityMapTool(canvas, str(genoa["file"]), k=2, on_message=lambda t, lv="info": messages.append(t))
    canvas.setMapTool(tool)
    click = QgsPointXY(x0 + 100, y1 - 100)  # inside the top-left tile
    pix = canvas.getCoordinateTransform().transform(click)
    ev = QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(int(pix.x()), int(pix.y())), Qt.LeftButton)
    tool.canvasReleaseEvent(ev)
    lyr = tool.last_layer
    assert lyr is not None, messages
    feats = list(lyr.getFeatures())
    assert len(feats) == 3 and feats[0]["rank"] == 1  # the clicked tile (score 1) then 2 similar ones
    assert feats[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert feats[0].geometry().buffer(20, 1).intersects(qgis_core.QgsGeometry.fromPointXY(click))
    assert QgsProject.instance().mapLayer(lyr.id()) is not None

    # draw a polygon (shift + left clicks, right click closes it) inside the top-left tile (the crop has 2 x 2)
    def release(x, y, button, mods=Qt.NoModifier):
        p = canvas.getCoordinateTransform().transform(QgsPointXY(x, y))
        tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(int(p.x()), int(p.y())),
                                                 button, button, mods))

    for x, y in ((x0 + 200, y1 - 200), (x0 + 1000, y1 - 200), (x0 + 1000, y1 - 1000), (x0 + 200, y1 - 1000)):
        release(x, y, Qt.LeftButton, Qt.ShiftModifier)
    assert len(tool.vertices) == 4
    release(x0 + 200, y1 - 200, Qt.RightButton)
    assert tool.vertices == [] and tool.last_layer is not lyr, messages
    poly = list(tool.last_layer.getFeatures())
    assert len(poly) == 2 and poly[0]["rank"] == 1 and "polygon" in messages[-1]
    tool.deactivate()




QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's /usr/bin/qgis_process wrapper adds an option 3.22 rejects
# what the plugin's dependency check installs for QGIS 3.22's GEOS 3.11 (shapely 2.0.x), prepared by test_qgis.sh
QGIS_DEPS = [str(REPO / ".qgis-deps")] if (REPO / ".qgis-deps").is_dir() else []


@pytest.mark.skipif(not os.path.exists(QGIS_PROCESS) or not QGIS_DEPS,
                    reason="qgis_process (Debian package qgis) or .qgis-deps (scripts/test_qgis.sh) missing")
def test_algorithms_run_in_qgis_process(tmp_path, genoa):
    """The provider loads in the standalone qgis_process, as a user's enabled plugin, and runs."""
    import subprocess

    cfg = tmp_path / "cfg"
    plugins = cfg / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "geocodec_qgis").symlink_to(REPO / "qgis_plugin" / "geocodec_qgis")
    (cfg / "profiles" / "default" / "QGIS").mkdir(parents=True)
    (cfg / "profiles" / "default" / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\ngeocodec_qgis=true\n")
    site = [p for p in sys.path if p.endswith("site-packages")]
    # a clean environment: QGIS embeds Debian's Python, which must not pick up this venv's interpreter settings
    # (QGIS finds its Python through PATH: keep the venv's and pyenv's python3 out of it)
    env = {k: os.environ[k] for k in ("HOME", "LANG", "XDG_RUNTIME_DIR") if k in os.environ}
    env.update(PATH="/usr/bin:/bin", QGIS_CUSTOM_CONFIG_PATH=str(cfg), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([*QGIS_DEPS, str(REPO), *site]))
    listed = subprocess.run([QGIS_PROCESS, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert "geocodec:classify" in listed.stdout and "geocodec:ships" in listed.stdout, listed.stderr[-3000:]
    out = tmp_path / "ships.gpkg"
    r = subprocess.run([QGIS_PROCESS, "run", "geocodec:ships", "--", f"INPUT={genoa['file']}", f"OUTPUT={out}"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert out.exists() and out.stat().st_size > 0


@pytest.mark.parametrize("damage", ["code", "truncate"])
def test_corrupted_file_is_a_processing_error_not_a_crash(qgs, rondonia, tmp_path, damage):
    """A corrupted code block or a truncated file: QgsProcessingException naming the file, QGIS goes on."""
    import pyarrow.parquet as pq

    from helpers import rewrite, set_column_value

    bad = tmp_path / "bad.parquet"
    if damage == "code":
        codes = pq.read_table(rondonia, columns=["code"]).column("code").to_pylist()
        row = max(i for i, c in enumerate(codes) if c)
        code = bytearray(codes[row])
        code[len(code) // 2] ^= 0x20
        rewrite(rondonia, bad, table=set_column_value("code", row, bytes(code)))
    else:
        data = Path(rondonia).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    algs = [("classify", {"HEAD": "landcover"})] + ([("load", {})] if damage == "truncate" else [])
    for alg, params in algs:
        with pytest.raises(qgis_core.QgsProcessingException) as exc:
            run(alg, INPUT=str(bad), **params)
        assert str(bad) in str(exc.value) and "Traceback" not in str(exc.value)
        if damage == "code" and alg == "classify":
            assert "row" in str(exc.value) and "code" in str(exc.value)
    assert layer_of(run("classify", INPUT=str(rondonia), HEAD="landcover")).featureCount() == 8  # QGIS still works
