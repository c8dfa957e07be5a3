"""``geocodec encode``: local rasters through the producer process graph into a valid geocodec file.

Uses the random-weight plumbing fixture model of test_openeo_udf (never a reported result).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from geocodec.cli.main import main
from geocodec.errors import InputError
from geocodec.format.reader import GeocodecFile
from geocodec.format.validate import validate_file

pytest.importorskip("openeo_pg_parser_networkx")
from test_openeo_udf import _direct, build_fixture_model, make_crop  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_fixture_model(tmp_path_factory.mktemp("fixture_model") / "fixture-random")


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return make_crop(tmp_path_factory.mktemp("crop") / "S2_20230615_crop.tif")


def test_encode_multiband_file(tmp_path, model_path, crop):
    out = tmp_path / "out.parquet"
    rc = main(["encode", crop[0], "-o", str(out), "--model", str(model_path), "--quality", "5",
               "--scheduler", "sync"])
    assert rc == 0
    assert [f for f in validate_file(str(out)) if f.level == "error"] == []
    item = json.loads((tmp_path / "out.stac.json").read_text())
    assert item["assets"]["embeddings"]["href"] == "out.parquet"
    with GeocodecFile(out) as f:
        assert f.ext["model"]["name"] == "fixture-random"
        assert f.ext["grid"]["type"] == "regular"
        (offset, table), = list(f.iter_tables())
        codes = f.decode_codes(table, offset)
        # the acquisition date comes from the file name
        assert str(table.column("datetime")[0].as_py().date()) == "2023-06-15"
    direct = _direct(model_path, crop[0])
    # every coded tile equals the direct producer's codes for those cells
    k = f.spec.latent_shape[1]
    q = direct.q  # (C, h, w) at latent resolution
    tile_ids = table.column("tile_id").to_pylist()
    for i, tid in enumerate(tile_ids):
        r, c = int(tid[1:6]), int(tid[7:12])
        want = q[:, r * k:(r + 1) * k, c * k:(c + 1) * k]
        got = codes[i].reshape(q.shape[0], k, k)[:, :want.shape[1], :want.shape[2]]
        assert np.array_equal(got, want)


def test_encode_single_band_files_need_bands(tmp_path, model_path, crop):
    import rasterio

    paths = []
    with rasterio.open(crop[0]) as src:
        profile = src.profile | {"count": 1}
        for i in range(src.count):
            p = tmp_path / f"band{i}.tif"
            with rasterio.open(p, "w", **profile) as dst:
                dst.write(src.read(i + 1), 1)
            paths.append(str(p))
    with pytest.raises(InputError, match="--bands"):
        from geocodec.producer.local.encode import encode

        encode(paths, tmp_path / "x.parquet", model=str(model_path), scheduler="sync")
    assert not (tmp_path / "x.parquet").exists()
    out = tmp_path / "bands.parquet"
    rc = main(["encode", *paths, "--bands", "B02,B03,B04,B08,B11", "-o", str(out), "--model", str(model_path),
               "--scheduler", "sync", "--date", "2023-06-15"])
    assert rc == 0 and os.path.getsize(out) > 0


def test_band_read_from_file_names(tmp_path):
    from geocodec.codecs.bands import band_in_name
    from geocodec.producer.local.encode import stage_inputs

    assert band_in_name("genoa_2023-08-17_B02.tif") == "B02"
    assert band_in_name("T32TLR_20230101T103421_B8A_20m.jp2") == "B8A"
    assert band_in_name("scene.b11.tif") == "B11"
    assert band_in_name("band0.tif") is None and band_in_name("xB02.tif") is None
    names = ["s_B02.tif", "s_B03.tif", "s_B04.tif"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    staged = tmp_path / "staged"
    staged.mkdir()
    stage_inputs([str(tmp_path / n) for n in names], None, str(staged))
    assert sorted(os.listdir(staged)) == ["input_B02.tif", "input_B03.tif", "input_B04.tif"]
    # one name without a band, or the same band twice: --bands is asked for
    (tmp_path / "other.tif").write_bytes(b"")
    for bad in (["s_B02.tif", "other.tif"], ["s_B02.tif", "s_B02.tif"]):
        with pytest.raises(InputError, match="--bands"):
            stage_inputs([str(tmp_path / n) for n in bad], None, str(tmp_path / "x"))
    with pytest.raises(InputError, match="2 input files but 1 --bands"):
        stage_inputs([str(tmp_path / n) for n in names[:2]], ["B02"], str(tmp_path / "x"))


def test_encode_chunking_does_not_change_the_codes(tmp_path, model_path):
    """A crop spanning several of the local run's 512 px chunks, with partial edge chunks and tiles, in the
    latent layout: every coded tile equals the direct producer's codes of the whole crop (one chunk)."""
    from geocodec.producer.local.encode import LOCAL_CHUNK_PX

    path, _, _ = make_crop(tmp_path / "S2_20230615_big.tif", row=300, col=300, h=LOCAL_CHUNK_PX + 200,
                           w=LOCAL_CHUNK_PX + 72)
    out = tmp_path / "big.parquet"
    assert main(["encode", path, "-o", str(out), "--model", str(model_path), "--quality", "5",
                 "--scheduler", "sync", "-q"]) == 0
    direct = _direct(model_path, path).q
    with GeocodecFile(out) as f:
        (offset, table), = list(f.iter_tables())
        codes = f.decode_codes(table, offset)
        k = f.spec.latent_shape[1]
    seen = set()
    for i, tid in enumerate(table.column("tile_id").to_pylist()):
        r, c = int(tid[1:6]), int(tid[7:12])
        want = direct[:, r * k:(r + 1) * k, c * k:(c + 1) * k]
        got = codes[i].reshape(direct.shape[0], k, k)[:, :want.shape[1], :want.shape[2]]
        assert np.array_equal(got, want), tid
        seen.add((r, c))
    assert len(seen) == len(codes) and max(r for r, _ in seen) * k * 8 >= LOCAL_CHUNK_PX
