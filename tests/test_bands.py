"""One source for band names (geocodec.codecs.bands) and one finder of band files (sentinel2.band_files)."""

from __future__ import annotations

import json
import shutil

import pytest

from geocodec.codecs.bands import (COMMON_BANDS, L2A_BANDS, SCL_BAND, SENTINEL2_BANDS, band_in_name,
                                   model_bands)
from geocodec.codecs.learned import MODELS_DIR, LearnedModel
from geocodec.errors import InputError
from geocodec.producer.local.sentinel2 import band_files, folder_band_files, label_files


def test_band_orders():
    assert len(SENTINEL2_BANDS) == 13 and SENTINEL2_BANDS.index("B8A") == 8
    assert L2A_BANDS == tuple(b for b in SENTINEL2_BANDS if b != "B10") and len(L2A_BANDS) == 12
    assert set(COMMON_BANDS) <= set(L2A_BANDS)


def test_model_bands_come_from_model_json(tmp_path):
    assert model_bands() == tuple(LearnedModel.load().bands) == COMMON_BANDS   # the shipped model
    folder = tmp_path / "m"
    shutil.copytree(MODELS_DIR / "s2-5band-v1", folder, ignore=shutil.ignore_patterns("*.onnx", "*.safetensors"))
    card = json.loads((folder / "model.json").read_text())
    card["bands"] = ["B04", "B03", "B02"]
    (folder / "model.json").write_text(json.dumps(card))
    assert model_bands(folder) == ("B04", "B03", "B02")
    with pytest.raises(InputError, match="no model folder"):
        model_bands(tmp_path / "nothing-here")


def test_the_graph_loads_the_models_bands(tmp_path):
    pytest.importorskip("openeo")
    from geocodec.producer.backend.graph import build_graph

    folder = tmp_path / "m"
    shutil.copytree(MODELS_DIR / "s2-5band-v1", folder, ignore=shutil.ignore_patterns("*.onnx", "*.safetensors"))
    card = json.loads((folder / "model.json").read_text())
    card["bands"] = ["B08", "B04"]
    (folder / "model.json").write_text(json.dumps(card))
    for model, want in ((None, list(COMMON_BANDS)), (str(folder), ["B08", "B04"])):
        g = build_graph([5.0, 51.0, 5.1, 51.1], ("2023-06-01", "2023-07-01"), model=model, code="pass")
        lc = next(n for n in g["process_graph"].values() if n["process_id"] == "load_collection")
        assert lc["arguments"]["bands"] == want + [SCL_BAND]


@pytest.mark.parametrize("name, band", [
    ("genoa_2023-08-17_B02.tif", "B02"), ("B02.jp2", "B02"), ("s2_B8A.jp2", "B8A"),
    ("T32TLR_20230101T103421_B8A_20m.jp2", "B8A"), ("T32TLR_20230101T103421_B02_10m.jp2", "B02"),
    ("scene.b11.tif", "B11"), ("x-B12.tiff", "B12"), ("T32TLR_20230101T103421_SCL_20m.jp2", "SCL"),
    ("/some/dir_B03/scene.tif", None), ("band0.tif", None), ("xB02.tif", None), ("B13.tif", None),
    ("genoa_rgb.tiff", None),
])
def test_band_in_name(name, band):
    assert band_in_name(name) == band


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")
    return folder


def test_band_files_of_a_folder(tmp_path):
    d = _touch(tmp_path / "a", "scene_B04.tif", "scene_B02.tif", "B03.jp2", "T1_B08_10m.jp2", "T1_B11_20m.jp2",
               "preview.jp2", "notes_B05.txt", "other_B05.TIF")
    files = band_files(str(d), COMMON_BANDS)
    assert list(files) == list(COMMON_BANDS)                      # in the order asked for
    assert {b: p.rsplit("/", 1)[1] for b, p in files.items()} == {
        "B02": "scene_B02.tif", "B03": "B03.jp2", "B04": "scene_B04.tif", "B08": "T1_B08_10m.jp2",
        "B11": "T1_B11_20m.jp2"}
    assert folder_band_files(str(d))["B05"].endswith("other_B05.TIF")   # rasters only, any case
    assert band_files(str(d), ["B02", SCL_BAND], optional=[SCL_BAND])[SCL_BAND] is None
    with pytest.raises(InputError, match="no raster for band B12"):
        band_files(str(d), ["B02", "B12"])
    assert list(band_files(str(d))) == list(model_bands())         # default: the shipped model's bands
    with pytest.raises(InputError, match="not a folder"):
        band_files(str(d / "scene_B02.tif"), ["B02"])


def test_band_files_of_a_folder_take_the_first_of_a_band(tmp_path):
    d = _touch(tmp_path / "b", "z_B02.tif", "a_B02.jp2")
    assert band_files(str(d), ["B02"])["B02"].endswith("a_B02.jp2")


def test_band_files_of_a_list(tmp_path):
    d = _touch(tmp_path / "c", "s_B03.tif", "s_B02.tif", "one.tif", "two.tif")
    listed = [str(d / "s_B03.tif"), str(d / "s_B02.tif")]
    assert band_files(listed, ["B02", "B03"]) == {"B02": listed[1], "B03": listed[0]}   # by name, any order
    plain = [str(d / "one.tif"), str(d / "two.tif")]
    assert band_files(plain, ["B03", "B02"], labels=["B02", "B03"]) == {"B03": plain[1], "B02": plain[0]}
    with pytest.raises(InputError, match="--bands"):
        label_files(plain)
    with pytest.raises(InputError, match="2 input files but 1 --bands"):
        label_files(plain, ["B02"])
    with pytest.raises(InputError, match="B02 more than once"):
        label_files(plain, ["B02", "B02"])
