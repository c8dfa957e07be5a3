"""The ship head and `geocodec ships` on a real crop of a held-out port (genoa)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geocodec.cli.main import main
from geocodec.errors import MetadataError
from geocodec.tasks.heads import HEADS_DIR, Head, add_head_metadata
from geocodec.codecs.learned import LearnedModel
from geocodec.tasks.ships import detect_ships, local_peaks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sen2ships"
needs_data = pytest.mark.skipif(not (DATA / "genoa").is_dir(),
                                reason="needs ../shared/data/sen2ships (real Sentinel-2 harbour scenes)")
needs_head = pytest.mark.skipif(not (HEADS_DIR / "ships.onnx").is_file(),
                                reason="ships.onnx not built (python -m geocodec.training.ships)")
# a 256 x 256 px window of genoa (held out from the codec and the head) holding 11 annotated ships
ROW, COL, SIZE = 288, 1568, 256
BANDS = ("B02", "B03", "B04", "B08", "B11")


@needs_head
def test_head_metadata():
    h = Head.load("ships")
    assert h.task == "ships"
    c = int(LearnedModel.load().card["channels"])
    assert h.meta["input"]["kind"] == "latent_grid" and h.meta["input"]["shape"] == [c, 16, 16]
    assert h.meta["output"]["kind"] == "heatmap"
    assert h.meta["codec"]["model_sha256"] == LearnedModel.load().identity()["sha256"]
    assert set(h.meta["training"]["split"]["held_out"]) == {"genoa", "hedland"}
    assert "genoa" not in h.meta["training"]["split"]["train"]
    assert 0 < h.meta["output"]["threshold"] < 1
    assert set(h.meta["scores"]["held_out"]) == {"genoa", "hedland"}
    out = h.run(np.zeros((2, c, 16, 16), np.float32))
    assert out.shape == (2, 16, 16) and np.all((out >= 0) & (out <= 1))


def test_local_peaks():
    p = np.zeros((1, 16, 16), np.float32)
    p[0, 3, 3], p[0, 3, 4], p[0, 10, 10] = 0.9, 0.8, 0.4
    d = local_peaks(p, 0.5)
    assert d.sum() == 1 and d[0, 3, 3]


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    import rasterio
    from rasterio.windows import Window

    tmp = tmp_path_factory.mktemp("ships")
    arrs = []
    for b in BANDS:
        f = next((DATA / "genoa").glob(f"*_{b}.tif"))
        with rasterio.open(f) as src:
            win = Window(COL, ROW, SIZE, SIZE)
            arrs.append(src.read(1, window=win))
            t = src.window_transform(win)
    # the sen2ships rasters name EPSG:3857 through odd GeoTIFF keys and have 10.00176 m pixels, which the
    # producer refuses (it wants the model's 10 m): write the same pixels on an exact 10 m grid at the
    # crop's corner (the shift is under 0.5 m across the crop)
    from affine import Affine

    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=5, dtype="uint16", crs="EPSG:3857",
                   transform=Affine(10.0, 0.0, round(t.c), 0.0, -10.0, round(t.f)))
    tif = tmp / "genoa_crop.tif"
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(np.stack(arrs))
        dst.descriptions = BANDS
    out = tmp / "genoa_crop.parquet"
    assert main(["encode", str(tif), "-o", str(out), "--quality", "3", "--scheduler", "sync",
                 "--date", "2023-07-10"]) == 0
    coco = json.loads((DATA / "coco_annotations.json").read_text())
    img = next(i for i in coco["images"] if i["file_name"] == "genoa_rgb.tiff")
    boxes = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == img["id"]])
    c = boxes[:, :2] + boxes[:, 2:] / 2 - [COL, ROW]
    c = c[(c >= 0).all(axis=1) & (c < SIZE).all(axis=1)]
    t = profile["transform"]
    ships = np.stack([t.c + c[:, 0] * t.a, t.f + c[:, 1] * t.e], 1)  # map coordinates of the ship centres
    return {"file": out, "tmp": tmp, "ships": ships, "bounds": (t.c, t.f + SIZE * t.e, t.c + SIZE * t.a, t.f)}


@needs_data
@needs_head
def test_cli_ships_on_real_crop(crop):
    import pyogrio
    from shapely import from_wkb, get_x, get_y

    gpkg = crop["tmp"] / "ships.gpkg"
    png = crop["tmp"] / "ships.png"
    assert main(["ships", str(crop["file"]), "-o", str(gpkg), "--png", str(png)]) == 0
    assert png.stat().st_size > 1000
    info = pyogrio.read_info(gpkg)
    assert info["geometry_type"] == "Point" and "3857" in info["crs"]
    table = pyogrio.read_arrow(gpkg)[1]
    assert {"tile_id", "score", "datetime"} <= set(table.column_names)
    g = from_wkb(np.asarray(table.column(info.get("geometry_name") or "geom").to_pylist(), dtype=object))
    x, y = get_x(g), get_y(g)
    x0, y0, x1, y1 = crop["bounds"]
    assert len(g) >= 1
    assert np.all((x > x0) & (x < x1) & (y > y0) & (y < y1))
    # a ship counts as found when a detection's cell is its cell or a neighbour (centre within 1.5 cells = 120 m)
    ships = crop["ships"]
    assert len(ships) == 11
    d = np.abs(ships[:, None, :] - np.stack([x, y], 1)[None]).max(axis=2)
    recall = float((d.min(axis=1) <= 120).mean())
    precision = float((d.min(axis=0) <= 120).mean())
    # measured on this crop at quality 3 with the shipped head (on s2-5band-v2u's codes, threshold 0.65): 11
    # detections, recall 5/11, precision 5/11 (the bar leaves one ship of slack; the head on v2's codes reached
    # 2/11 and 1/10). This checks the plumbing (points in the crop, near ships at the measured rate); the slow
    # full-port test below checks the skill against the documented figure.
    assert recall >= 4 / 11, recall
    assert precision >= 4 / 11, precision


@needs_data
@needs_head
def test_detect_ships_api_and_counts(crop):
    r = detect_ships(crop["file"])
    assert r.counts.num_rows == 4  # 2 x 2 tiles of 128 px
    assert int(np.sum(r.counts.table.column("count").to_numpy())) == r.points.num_rows
    # a bbox keeps only the tiles it touches
    x0, y0, x1, y1 = crop["bounds"]
    half = detect_ships(crop["file"], bbox=(x0, (y0 + y1) / 2 + 1, (x0 + x1) / 2 - 1, y1))
    assert half.counts.num_rows == 1
    # a threshold of 1 detects nothing but still reports the tiles
    assert detect_ships(crop["file"], threshold=1.0).points.num_rows == 0


@needs_data
@needs_head
def test_cli_ships_counts_is_geoparquet(crop, tmp_path):
    """`ships --counts`: the tile footprints with their ship count, as GeoParquet with its geo footer."""
    import pyarrow.parquet as pq
    import shapely

    from geocodec.format.reader import GeocodecFile

    pts, counts = tmp_path / "pts.parquet", tmp_path / "counts.parquet"
    assert main(["ships", str(crop["file"]), "-o", str(pts), "--counts", str(counts), "--threshold", "0.2"]) == 0
    t = pq.read_table(counts)
    geo = json.loads(pq.ParquetFile(counts).metadata.metadata[b"geo"])
    col = geo["columns"][geo["primary_column"]]
    with GeocodecFile(crop["file"]) as f:
        tiles = f.parquet.read().select(["tile_id", "geometry"])
        assert col["crs"] == f.crs and col["geometry_types"] == ["Polygon"]
    assert t.num_rows == 4 and t.column_names == ["tile_id", "datetime", "count", "max_score", "geometry"]
    assert int(np.sum(t.column("count").to_numpy())) == pq.read_table(pts).num_rows
    by_id = dict(zip(tiles.column("tile_id").to_pylist(), tiles.column("geometry").to_pylist()))
    assert all(g == by_id[i] for i, g in zip(t.column("tile_id").to_pylist(), t.column("geometry").to_pylist()))
    x0, y0, x1, y1 = shapely.total_bounds(shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False)))
    assert col["bbox"] == [x0, y0, x1, y1]
    assert (tmp_path / "counts.qml").is_file() and (tmp_path / "pts.qml").is_file()
    assert main(["ships", str(crop["file"]), "-o", str(pts), "--counts", str(tmp_path / "c.csv")]) == 2
    assert not (tmp_path / "c.csv").exists()


@needs_data
@needs_head
def test_refuses_file_of_another_model(crop, tmp_path):
    h = Head.load("ships")
    codec = dict(h.meta["codec"], model_sha256="0" * 64)
    other = tmp_path / "other.onnx"
    other.write_bytes(add_head_metadata(h.data, {"codec": codec}))
    with pytest.raises(MetadataError, match="sha256"):
        detect_ships(crop["file"], str(other))
    assert main(["ships", str(crop["file"]), "--head", str(other), "-o", str(tmp_path / "x.parquet")]) == 2
    assert not (tmp_path / "x.parquet").exists()


@needs_data
@needs_head
def test_files_of_an_earlier_default_codec_get_its_shipped_heads(crop, tmp_path, capsys):
    """A file encoded with s2-5band-v2 (the default before s2-5band-v2u) runs through the shipped head names:
    `ships` and `classify` pick heads/s2-5band-v2/*.onnx, trained on v2's codes; a file of a codec with no shipped
    heads (v1) is refused naming the encoder hash."""
    from geocodec.tasks.classify import classify_file
    from geocodec.tasks.heads import shipped_head_path

    tif = crop["tmp"] / "genoa_crop.tif"
    files = {}
    for model in ("s2-5band-v2", "s2-5band-v1"):
        files[model] = tmp_path / f"{model}.parquet"
        assert main(["encode", str(tif), "-o", str(files[model]), "--quality", "3", "--scheduler", "sync",
                     "--date", "2023-07-10", "--model", model]) == 0
    v2 = LearnedModel.load("s2-5band-v2").identity()["sha256"]
    r = detect_ships(files["s2-5band-v2"])
    assert Path(r.head).parent == HEADS_DIR / "s2-5band-v2"
    assert Head.load(r.head).meta["codec"]["model_sha256"] == v2
    assert r.counts.num_rows == 4
    assert main(["ships", str(files["s2-5band-v2"]), "-o", str(tmp_path / "v2.gpkg")]) == 0
    assert "head s2-5band-v2/ships.onnx" in capsys.readouterr().out
    c = classify_file(files["s2-5band-v2"], progress=False)
    assert c.layer.num_rows == 4
    from geocodec.format.reader import GeocodecFile

    with GeocodecFile(files["s2-5band-v2"]) as f:
        assert shipped_head_path("landcover", f.ext) == HEADS_DIR / "s2-5band-v2" / "landcover.onnx"
    with GeocodecFile(crop["file"]) as f:   # the default model's file: the top-level heads
        assert shipped_head_path("ships", f.ext) == HEADS_DIR / "ships.onnx"
    with pytest.raises(MetadataError, match="encoder sha256") as info:
        detect_ships(files["s2-5band-v1"])
    assert info.value.field == "model.sha256"
    assert main(["ships", str(files["s2-5band-v1"]), "-o", str(tmp_path / "v1.gpkg")]) == 2
    assert not (tmp_path / "v1.gpkg").exists()


@pytest.mark.slow
@needs_data
@needs_head
def test_cli_reproduces_documented_score_on_a_held_out_port(tmp_path):
    """`geocodec encode` + `geocodec ships` on the whole genoa scene give the object F1 that docs/ships.md
    reports for quality 3 (computed in training on the same tiles): the file, the decoder, the head and the
    geolocation of every point agree with the evaluation. Random points, or points off by a cell, score far
    lower."""
    import pyogrio
    import rasterio
    from shapely import from_wkb, get_x, get_y

    from geocodec.training.ships import K, REPORT_PATH, STRIDE, _match, _prf, load_port

    expected = json.loads(REPORT_PATH.read_text())["results"]["genoa"]["q3"]
    out = tmp_path / "genoa.parquet"
    assert main(["encode", *map(str, sorted((DATA / "genoa").glob("*.tif"))), "-o", str(out), "--quality", "3"]) == 0
    gpkg = tmp_path / "genoa_ships.gpkg"
    assert main(["ships", str(out), "-o", str(gpkg)]) == 0
    info, table = pyogrio.read_arrow(gpkg)
    g = from_wkb(np.asarray(table.column(info.get("geometry_name") or "geom").to_pylist(), dtype=object))
    with rasterio.open(next((DATA / "genoa").glob("*_B02.tif"))) as src:
        inv = ~src.transform
    x, y = get_x(g), get_y(g)
    px, py = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f  # points in scene pixels
    det = np.stack([np.floor(np.asarray(py) / STRIDE), np.floor(np.asarray(px) / STRIDE)], 1).astype(int)
    port = load_port("genoa", DATA.parent)
    gt = np.floor(port.centres[:, ::-1] / STRIDE).astype(int)  # (row, col) cells of the ship centres
    score = table.column("score").to_numpy()
    _, _, f1 = _prf(_match(det, score, gt), len(det), len(gt))
    assert abs(len(det) - expected["detections"]) <= 3, (len(det), expected["detections"])
    print(f"genoa q3: {len(det)} detections, object F1 {f1:.3f} (documented {expected['obj_f1']:.3f})")
    assert abs(f1 - expected["obj_f1"]) <= 0.03, (f1, expected["obj_f1"])
    assert gt.shape[0] == expected["ships"] and K == 16
