"""Task heads: shipped ONNX heads, series encoding, change events, few-shot heads and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geocodec.training.datasets import data_root
from geocodec.errors import GeocodecError, InputError, MetadataError
from geocodec.tasks.heads import HEADS_DIR, Head
from geocodec.tasks.monitor import detect_events

HAVE_DATA = data_root() is not None and (data_root() / "rondonia/rondonia_s2l2a_monthly.npz").exists()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="real Rondonia data (../shared/data) not present")
needs_heads = pytest.mark.skipif(not (HEADS_DIR / "landcover.onnx").exists(), reason="shipped heads not built")


@pytest.fixture(scope="module")
def model():
    from geocodec.codecs.learned import LearnedModel

    return LearnedModel.load()


@pytest.fixture(scope="module")
def rondonia():
    if not HAVE_DATA:
        pytest.skip("real Rondonia data (../shared/data) not present")
    from geocodec.training.datasets import load_rondonia
    from geocodec.tasks.series import pick_bands

    d = load_rondonia()
    d["x5"] = pick_bands(d["X"])
    return d


def make_rondonia_file(path, model, d, idx, quality=3):
    """A learned-codec file whose tiles are Rondonia points (2 x 2 uniform cells each), one row per date."""
    from geocodec.producer.pack import LatentGrid, pack_grid
    from geocodec.tasks.series import point_series_q

    q = point_series_q(model, d["x5"][idx], quality)          # (n, T, C)
    n, t, c = q.shape
    grid = np.repeat(np.repeat(q.transpose(1, 2, 0)[:, :, None, :], 2, axis=2), 2, axis=3)  # (T, C, 2, 2n)
    lg = LatentGrid(q=grid.astype(np.int32), valid_fraction=np.ones((t, 2, 2 * n), np.float32),
                    times=list(d["dates"]), origin=(500000.0, 9000000.0), pixel_size=10.0, crs="EPSG:32720")
    pack_grid(lg, model, quality, path, tile_cells=2)
    return q


# -- shipped heads --------------------------------------------------------------------------------
@needs_heads
@pytest.mark.parametrize("name,task,kind", [("landcover", "landcover", "latent_cell_series"),
                                            ("monitor", "monitor", "latent_cell_series")])
def test_shipped_heads_load_with_metadata(name, task, kind, model):
    from geocodec.format.onnx_model import sha256_hex

    h = Head.load(name)
    assert h.task == task and h.meta["input"]["kind"] == kind
    assert len(h.class_names) == len(h.meta["output"]["names"]) >= 7
    assert all(c.startswith("#") and len(c) == 7 for c in h.class_colors)
    assert h.meta["codec"]["model_sha256"] == sha256_hex(model.file_bytes("encoder"))
    assert h.meta["codec"]["qualities"] == [1, 2, 3, 4, 5]
    assert "split" in h.meta["training"] and "command" in h.meta["training"]
    assert (HEADS_DIR / f"{name}.onnx").stat().st_size < 500_000


@needs_heads
def test_landcover_matches_torch_reference(model, rondonia):
    from geocodec.tasks.series import point_series_codes

    h = Head.load("landcover")
    chk = h.meta["training"]["check"]
    x = point_series_codes(model, rondonia["x5"][chk["rondonia_indices"]], chk["quality"])
    p = h.run(x)
    np.testing.assert_allclose(p, np.array(chk["torch_probabilities"]), atol=1e-4)


@needs_heads
def test_landcover_heldout_accuracy(model, rondonia):
    from geocodec.tasks.series import point_series_codes
    from geocodec.training.heads import SHIPPED_FOLD, spatial_folds

    h = Head.load("landcover")
    te = np.flatnonzero(spatial_folds(rondonia["lon"], rondonia["lat"]) == SHIPPED_FOLD)
    assert len(te) == h.meta["scores"]["n_test"]
    x = point_series_codes(model, rondonia["x5"][te], 3)
    acc = float((h.run(x).argmax(1) == np.array([h.class_names.index(v) for v in rondonia["y"][te]])).mean())
    assert acc == pytest.approx(h.meta["scores"]["q3"]["oa"], abs=0.01)


def test_homogeneous_patch_size_does_not_matter(model, rondonia):
    from geocodec.tasks.series import homogeneous_latents

    a = homogeneous_latents(model, rondonia["x5"][:3, :2], patch_px=32)
    b = homogeneous_latents(model, rondonia["x5"][:3, :2], patch_px=64)
    assert a.shape == (3, 2, int(model.card["channels"]))
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_spatial_folds_do_not_share_blocks():
    from geocodec.training.heads import BLOCK_DEG, spatial_folds

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-66, -60, 2000), rng.uniform(-13, -8, 2000)
    f = spatial_folds(lon, lat)
    blocks = np.floor(lon / BLOCK_DEG) * 1000 + np.floor(lat / BLOCK_DEG)
    for b in np.unique(blocks):
        assert len(np.unique(f[blocks == b])) == 1
    assert np.bincount(f).min() > 300


# -- change events ----------------------------------------------------------------------------------
def test_change_event_logic():
    names = ["Forest", "Water", "Clear_Cut_Bare_Soil", "Clear_Cut_Burned_Area"]
    dates = np.arange("2022-01", "2022-08", dtype="datetime64[M]").astype("datetime64[D]")
    ev = detect_events([0, 0, 0, 2, 3, 3, 0], names, dates=dates)
    assert ev == [{"index": 3, "date": "2022-04-01", "from": "Forest", "to": "Clear_Cut_Bare_Soil"}]
    assert detect_events([0, 0, 2, 0, 0, 2, 0], names) == []            # single-date flickers
    assert detect_events([2, 2, 2, 2, 2, 2, 2], names) == []            # cleared before the series
    assert detect_events([1, 2, 2, 2, 0, 0, 0], names) == []            # not after forest
    assert detect_events([0, 0, 0, 0, 0, 0, 2], names) == []            # last date cannot be confirmed
    assert detect_events(["Forest", "Clear_Cut_Bare_Soil", "Clear_Cut_Bare_Soil"], names)[0]["index"] == 1


# -- few-shot ---------------------------------------------------------------------------------------
def test_fewshot_separates_two_classes_and_round_trips(model, rondonia, tmp_path):
    from geocodec.tasks.fewshot import train_head
    from geocodec.tasks.series import point_series_codes

    y = rondonia["y"]
    a = np.flatnonzero(y == "Water")[:40]
    b = np.flatnonzero(y == "Forest")[:40]
    idx = np.concatenate([a, b])
    emb = point_series_codes(model, rondonia["x5"][idx, 5], 3)   # one date's codes as C-d embeddings
    c = emb.shape[1]
    labels = np.array(["Water"] * len(a) + ["Forest"] * len(b))
    tr = np.r_[0:30, 40:70]
    te = np.r_[30:40, 70:80]
    codec = {"name": "geocodec-s2-learned", "qualities": [3], "model_sha256": "abc", "decoder_sha256": "def"}
    data = train_head(emb[tr], labels[tr], ["Forest", "Water"], codec=codec)
    p = tmp_path / "fs.onnx"
    p.write_bytes(data)
    h = Head.load(p)
    assert h.task == "custom" and h.meta["input"] == {"kind": "embedding", "shape": [c], "dimension": c}
    assert h.class_names == ["Forest", "Water"] and h.meta["codec"]["decoder_sha256"] == "def"
    pred = np.array(h.class_names)[h.run(emb[te]).argmax(1)]
    assert (pred == labels[te]).mean() >= 0.95
    with pytest.raises(InputError, match="two classes"):
        train_head(emb[:5], ["Water"] * 5)


def test_head_of_other_model_refused(tmp_path):
    from geocodec.tasks.fewshot import train_head

    rng = np.random.default_rng(0)
    data = train_head(rng.normal(size=(20, 4)), ["a", "b"] * 10,
                      codec={"model_sha256": "0" * 64, "decoder_sha256": "1" * 64})
    (tmp_path / "h.onnx").write_bytes(data)
    h = Head.load(tmp_path / "h.onnx")
    with pytest.raises(MetadataError, match="encoder sha256"):
        h.check_file({"model": {"sha256": "f" * 64}, "decoder": {"sha256": "1" * 64}}, "x.parquet")
    with pytest.raises(MetadataError, match="decoder sha256"):
        h.check_file({"model": {"sha256": "0" * 64}, "decoder": {"sha256": "2" * 64}}, "x.parquet")


# -- files and CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rondonia_file(tmp_path_factory, model, rondonia):
    y = rondonia["y"]
    idx = np.array([np.flatnonzero(y == c)[0] for c in ("Forest", "Water", "Clear_Cut_Bare_Soil", "Wetland")])
    path = tmp_path_factory.mktemp("heads") / "rondonia.geocodec.parquet"
    q = make_rondonia_file(path, model, rondonia, idx)
    return path, idx, q


def test_cell_series_from_file(rondonia_file, model):
    from geocodec.tasks.series import cell_series

    path, idx, q = rondonia_file
    # tile 2 spans x 500320..500480 (2 cells of 80 m); a point in its right cell
    cs = cell_series([path], point=(500450.0, 8999950.0))
    assert cs.tile_id == "r00000c00002" and cs.cell == (0, 1) and len(cs.dates) == 11
    np.testing.assert_array_equal(cs.q, q[2])
    np.testing.assert_allclose(cs.latents, q[2] * model.step(3))
    cs2 = cell_series(path, tile_id="r00000c00001")
    np.testing.assert_allclose(cs2.latents, q[1] * model.step(3), atol=1e-6)
    with pytest.raises(InputError, match="no tile"):
        cell_series(path, point=(0.0, 0.0))


@needs_heads
def test_classify_cli_writes_class_names(rondonia_file, tmp_path, model):
    import pyarrow.parquet as pq

    from geocodec.cli.main import main

    path, idx, q = rondonia_file
    out = tmp_path / "cls.parquet"
    assert main(["classify", str(path), "-o", str(out), "-q"]) == 0
    t = pq.read_table(out)
    h = Head.load("landcover")
    assert t.num_rows == 4 and set(t.column("class").to_pylist()) <= set(h.class_names)
    assert json.loads(t.schema.metadata[b"geo"])["columns"]["geometry"]["crs"]["id"]["code"] == 32720
    direct = h.run((q * model.step(3)).astype(np.float32)).argmax(1)
    assert t.column("class").to_pylist() == [h.class_names[i] for i in direct]
    pytest.importorskip("pyogrio")
    g = tmp_path / "cls.gpkg"
    assert main(["classify", str(path), "-o", str(g), "-q"]) == 0
    import pyogrio

    df = pyogrio.read_dataframe(g)
    assert list(df["class"]) == t.column("class").to_pylist()


@needs_heads
def test_monitor_cli(rondonia_file, tmp_path, capsys):
    import pyarrow.parquet as pq

    from geocodec.cli.main import main

    path, idx, q = rondonia_file
    out, png = tmp_path / "mon.parquet", tmp_path / "mon.png"
    assert main(["monitor", str(path), "--tile-id", "r00000c00000", "-o", str(out), "--plot", str(png)]) == 0
    t = pq.read_table(out)
    assert t.num_rows == 11 and "event" in t.column_names and "p_Forest" in t.column_names
    assert png.stat().st_size > 1000
    assert "events:" in capsys.readouterr().out


def test_train_head_cli(rondonia_file, tmp_path, capsys):
    gpd = pytest.importorskip("geopandas")
    pytest.importorskip("pyogrio")
    import shapely

    from geocodec.cli.main import main

    path, idx, q = rondonia_file
    # tile centres of the 4 tiles (160 m wide), given in lon/lat: reprojected to the file's CRS
    xs = 500080.0 + 160.0 * np.arange(4)
    pts = gpd.GeoSeries(shapely.points(xs, np.full(4, 8999920.0)), crs="EPSG:32720").to_crs("EPSG:4326")
    labels = gpd.GeoDataFrame({"cls": ["veg", "water", "veg", "water"]}, geometry=pts.values, crs="EPSG:4326")
    lp = tmp_path / "labels.gpkg"
    labels.to_file(lp, driver="GPKG")
    out = tmp_path / "head.onnx"
    assert main(["train-head", str(path), "--labels", str(lp), "--column", "cls", "-o", str(out)]) == 0
    h = Head.load(out)
    assert h.task == "custom" and h.class_names == ["veg", "water"]
    assert h.meta["input"]["kind"] == "embedding" and h.meta["input"]["dimension"] == 128
    from geocodec.format.reader import GeocodecFile

    with GeocodecFile(path) as f:
        assert h.meta["codec"]["decoder_sha256"] == f.ext["decoder"]["sha256"]
        assert h.meta["codec"]["model_sha256"] == f.ext["model"]["sha256"]
    assert h.meta["training"]["per_class"] == {"veg": 22, "water": 22}
    # the head classifies the file
    cls = tmp_path / "custom.parquet"
    assert main(["classify", str(path), "--head", str(out), "-o", str(cls), "-q"]) == 0
    # errors: unknown column, a single class, labels outside the file
    assert main(["train-head", str(path), "--labels", str(lp), "--column", "nope", "-o", str(out)]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    labels.assign(cls="veg").to_file(tmp_path / "one.gpkg", driver="GPKG")
    assert main(["train-head", str(path), "--labels", str(tmp_path / "one.gpkg"), "--column", "cls", "-o", str(out)]) == 2
    assert "single class" in capsys.readouterr().err
    far = gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=shapely.points([10, 11], [50, 51]), crs="EPSG:4326")
    far.to_file(tmp_path / "far.gpkg", driver="GPKG")
    assert main(["train-head", str(path), "--labels", str(tmp_path / "far.gpkg"), "--column", "cls", "-o", str(out)]) == 2
    assert "none of the 2 labels" in capsys.readouterr().err


def test_classify_refuses_head_of_other_model(rondonia_file, tmp_path, capsys):
    from geocodec.cli.main import main
    from geocodec.tasks.fewshot import train_head

    path, idx, q = rondonia_file
    rng = np.random.default_rng(0)
    data = train_head(rng.normal(size=(20, 128)), ["a", "b"] * 10, codec={"model_sha256": "0" * 64})
    (tmp_path / "other.onnx").write_bytes(data)
    assert main(["classify", str(path), "--head", str(tmp_path / "other.onnx"), "-o", str(tmp_path / "x.parquet")]) == 2
    assert "encoder sha256" in capsys.readouterr().err


@needs_heads
def test_shipped_head_path_picks_by_encoder_and_falls_back_to_the_default():
    """A file's metadata without a usable model hash (absent, not an object, unknown) gets the default head, which
    then refuses or accepts the file by its own check; a missing head name is one clear error naming `head`."""
    from geocodec.errors import MetadataError
    from geocodec.tasks.heads import shipped_head_path

    default = HEADS_DIR / "landcover.onnx"
    for ext in (None, {}, {"model": "s2-5band-v2"}, {"model": {"sha256": "0" * 64}}):
        assert shipped_head_path("landcover", ext) == default
    v2 = Head.load(HEADS_DIR / "s2-5band-v2" / "landcover.onnx").meta["codec"]["model_sha256"]
    assert shipped_head_path("landcover", {"model": {"sha256": v2}}) == HEADS_DIR / "s2-5band-v2" / "landcover.onnx"
    with pytest.raises(MetadataError, match="no head file 'nosuch'") as info:
        shipped_head_path("nosuch", {"model": {"sha256": v2}})
    assert info.value.field == "head"
