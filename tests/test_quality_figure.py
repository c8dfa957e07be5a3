"""Per-tile quality figures (SPEC.md 5.1): ``preview_psnr`` and ``rate_ratio``, from the UDF to info/validate.

Real data: a 256 px crop of the sen2ships genoa scene (reflectance x 10000), encoded with ``geocodec encode``
as it is and as if it were a Sentinel Hub x 65535 export forced through with ``--no-input-check``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geocodec.codecs.image_metrics import psnr
from geocodec.format.quality import figure_stats, quality_findings
from geocodec.format.reader import GeocodecFile
from geocodec.producer.quality import cell_mse, rate_ratio, reference_bits_per_cell, tile_psnr
from helpers import REPO, write_codes

DATA = REPO.parent / "shared" / "data" / "sen2ships" / "genoa"
BANDS = ["B02", "B03", "B04", "B08", "B11"]
WINDOW = (1568, 0)   # col, row: the town above the port (land), as tests/test_radiometry.py


# -- the figures themselves --------------------------------------------------------------------------------
def test_tile_psnr_from_cells_is_the_psnr_over_the_valid_pixels():
    from geocodec.codecs.learned import LearnedModel

    m = LearnedModel.load()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.4, (2, 5, 128, 128)).astype(np.float32)
    valid = np.ones((2, 128, 128), bool)
    valid[0, :40, :70] = False                 # a partly valid tile: cells fully, partly and not valid
    valid[1] = False                           # no valid pixel at all
    q = m.encode(x, 3)
    mse = cell_mse(m, x, valid, q, 3)
    assert mse.shape == (2, 16, 16) and np.isnan(mse[1]).all() and np.isnan(mse[0, 0, 0])
    vf = valid.reshape(2, 16, 8, 16, 8).mean(axis=(2, 4))
    got = tile_psnr(mse.reshape(2, -1), vf.reshape(2, -1))
    prev = m.preview(q, 3, (16, 16))
    want = psnr(np.where(valid[0][None], x[0], np.nan), prev[0])
    assert got[0] == pytest.approx(want, abs=1e-3) and np.isnan(got[1])


def test_rate_ratio_is_near_one_on_codes_drawn_from_the_tables_and_high_on_escapes():
    from geocodec.codecs.learned import LearnedModel

    tables = LearnedModel.load().tables(3)
    rng = np.random.default_rng(1)
    n, cells = 64, 256
    q = np.stack([t.lo + rng.choice(len(t.freq), size=(n, cells), p=np.asarray(t.freq) / sum(t.freq))
                  for t in tables], axis=1)             # the escape index draws escapes (rarely)
    mask = np.ones((n, cells), bool)
    r = rate_ratio(q, tables, mask)
    assert r.shape == (n,) and r.dtype == np.float32
    assert np.median(r) == pytest.approx(1.0, abs=0.05)
    assert reference_bits_per_cell(tables) > 0
    far = np.full_like(q, 10_000)                        # every symbol escaped: 20 raw bits + the escape
    assert (rate_ratio(far, tables, mask) > 5).all()
    mask[0] = False
    assert np.isnan(rate_ratio(q, tables, mask)[0])


def test_figure_stats():
    s = figure_stats([10.0, 15.0, 30.0, 40.0, np.nan], "below", 20.0)
    assert s["rows"] == 5 and s["known"] == 4 and s["min"] == 10.0 and s["max"] == 40.0
    assert s["share_below"] == 0.5 and s["median"] == 22.5
    assert figure_stats([np.nan], "above", 2.0)["share_above"] is None


# -- validate and info on files with and without the columns ----------------------------------------------
def _file(tmp_path, **cols):
    q = np.zeros((6, 8, 1), np.int32)
    fields = [pa.field(k, v.type if isinstance(v, pa.Array) else pa.float32()) for k, v in cols.items()]
    return write_codes(tmp_path / "f.parquet", q, extra=cols, extra_schema=pa.schema(fields))


def test_validate_checks_type_and_range(tmp_path):
    from geocodec.format.validate import validate_file

    good = _file(tmp_path, preview_psnr=np.array([30, 25, np.nan, 40, 22, 18], np.float32),
                 rate_ratio=np.array([1.0, 0.8, np.nan, 1.2, 3.0, 0.0], np.float32))
    assert not [x for x in validate_file(good) if x.level == "error"]
    with GeocodecFile(good) as f:
        assert quality_findings(f) == []
    bad = _file(tmp_path, preview_psnr=np.array([30, np.inf, 1, 1, 1, 1], np.float32),
                rate_ratio=np.array([1.0, 1.0, 1.0, -0.5, 1.0, 1.0], np.float32))
    errors = [x.message for x in validate_file(bad) if x.level == "error"]
    assert any("row 1: field 'preview_psnr'" in e and "infinite" in e for e in errors), errors
    assert any("row 3: field 'rate_ratio'" in e and "negative" in e for e in errors), errors
    typed = _file(tmp_path, rate_ratio=pa.array(np.ones(6)))          # float64
    errors = [x.message for x in validate_file(typed) if x.level == "error"]
    assert any("column 'rate_ratio' has type double, the spec says float32" in e for e in errors), errors


def test_info_without_the_columns(tmp_path):
    from geocodec.format.info import format_summary, summarize

    path = write_codes(tmp_path / "old.parquet", np.zeros((4, 8, 1), np.int32))
    with GeocodecFile(path) as f:
        s = summarize(f)
    assert s["quality"] == {}
    assert "quality figures: none" in format_summary(s)


# -- the UDF band ------------------------------------------------------------------------------------------
def test_udf_writes_preview_mse_unless_switched_off():
    xr = pytest.importorskip("xarray")
    from geocodec.producer.chunks import apply_datacube, output_band_names

    rng = np.random.default_rng(2)
    dn = rng.uniform(200, 4000, (5, 128, 128)).astype(np.float32)
    cube = xr.DataArray(dn, dims=("bands", "y", "x"), coords={"bands": BANDS, "y": np.arange(128.0)[::-1] * 10,
                                                             "x": np.arange(128.0) * 10})
    on = apply_datacube(cube, {"quality": 3})
    off = apply_datacube(cube, {"quality": 3, "quality_figure": False})
    assert list(on.bands.values) == output_band_names() and list(on.bands.values)[-1] == "preview_mse"
    assert list(off.bands.values) == output_band_names(quality_figure=False)
    assert list(off.bands.values)[-1] == "valid_fraction"
    np.testing.assert_array_equal(on.values[:-1], off.values)
    mse = on.sel(bands="preview_mse").values
    assert np.isfinite(mse).all() and (mse > 0).all()
    assert (mse[::8, ::8].repeat(8, 0).repeat(8, 1) == mse).all()      # one value per latent cell


# -- real data: the column, an independent PSNR, and an out-of-depth crop ----------------------------------
@pytest.fixture(scope="module")
def genoa(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip("needs ../shared/data/sen2ships")
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from geocodec.cli.main import main

    tmp = tmp_path_factory.mktemp("quality")
    arrs = []
    for b in BANDS:
        with rasterio.open(next(DATA.glob(f"*_{b}.tif"))) as src:
            win = Window(*WINDOW, 256, 256)
            arrs.append(src.read(1, window=win))
            t = src.window_transform(win)
    dn = np.stack(arrs).astype(np.float64)
    origin = (round(t.c), round(t.f))
    profile = dict(driver="GTiff", width=256, height=256, count=5, dtype="uint16", crs="EPSG:3857",
                   transform=Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]))
    common = ["--quality", "3", "--scheduler", "sync", "--date", "2023-07-10", "-q"]
    out = {"dn": dn, "origin": origin}
    for name, values, flags in (("right", dn, []), ("wrong", np.round(dn * 65535 / 10000), ["--no-input-check"]),
                                ("nofig", dn, ["--no-quality-figure"])):
        tif = tmp / f"genoa_{name}.tif"
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(np.clip(values, 0, 65535).astype("uint16"))
            dst.descriptions = BANDS
        out[name] = tmp / f"{name}.parquet"
        assert main(["encode", str(tif), "-o", str(out[name]), *common, *flags]) == 0
    return out


def _independent_psnr(path, dn, origin):
    """PSNR of each row's preview, decoded from the file's codes, against the crop's input reflectance."""
    from geocodec.codecs.learned import LearnedModel

    m = LearnedModel.load()
    with GeocodecFile(path) as f:
        parts = list(f.iter_rows(columns=["bbox", "preview_psnr"], what="codes"))
        q = np.concatenate([p.values for p in parts])
        table = pa.concat_tables([p.table for p in parts])
    prev = m.preview(q, 3, (16, 16))
    bb = table.column("bbox").combine_chunks()
    col = np.rint((bb.field("xmin").to_numpy() - origin[0]) / 1280).astype(int)
    row = np.rint((origin[1] - bb.field("ymax").to_numpy()) / 1280).astype(int)
    refl = np.where((dn > 0).all(axis=0), dn / 10000, np.nan)
    want = np.array([psnr(refl[:, r * 128:(r + 1) * 128, c * 128:(c + 1) * 128], prev[i])
                     for i, (r, c) in enumerate(zip(row, col))])
    return table.column("preview_psnr").to_numpy(), want


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/sen2ships")
def test_preview_psnr_matches_an_independent_decode(genoa):
    schema = pq.read_schema(genoa["right"])
    assert schema.field("preview_psnr").type == pa.float32() and schema.field("rate_ratio").type == pa.float32()
    got, want = _independent_psnr(genoa["right"], genoa["dn"], genoa["origin"])
    assert len(got) == 4 and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=0.05)
    assert (got > 20).all()
    # without the figure the codes are the same; rate_ratio stays, preview_psnr is left out
    nofig = pq.read_table(genoa["nofig"])
    assert "preview_psnr" not in nofig.column_names and "rate_ratio" in nofig.column_names
    right = pq.read_table(genoa["right"]).sort_by("tile_id")
    np.testing.assert_array_equal(nofig.sort_by("tile_id").column("rate_ratio").to_numpy(),
                                  right.column("rate_ratio").to_numpy())


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/sen2ships")
def test_the_figures_say_when_the_codec_is_out_of_its_depth(genoa, capsys):
    from geocodec.cli.main import main

    right = pq.read_table(genoa["right"]).sort_by("tile_id")
    wrong = pq.read_table(genoa["wrong"]).sort_by("tile_id")
    pr, pw = right.column("preview_psnr").to_numpy(), wrong.column("preview_psnr").to_numpy()
    # reflectance x 6.55 (a Sentinel Hub export read as x 10000): the preview is far off on every tile
    assert (pw < pr - 8).all() and (pw < 20).all(), (pr, pw)
    got, want = _independent_psnr(genoa["wrong"], np.round(genoa["dn"] * 65535 / 10000), genoa["origin"])
    np.testing.assert_allclose(got, want, atol=0.05)
    assert main(["info", str(genoa["wrong"])]) == 0
    text = capsys.readouterr().out
    assert "preview_psnr: min" in text and "100.0 % of 4 tiles below 20" in text and "rate_ratio: min" in text
    assert main(["info", str(genoa["right"]), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    q = s["quality"]
    assert q["preview_psnr"]["known"] == 4 and q["preview_psnr"]["share_below"] == 0.0
    assert q["preview_psnr"]["median"] == pytest.approx(float(np.median(pr)), abs=1e-3)
    assert q["rate_ratio"]["known"] == 4 and 0 < q["rate_ratio"]["median"] < 2
    from geocodec.format.validate import validate_file

    assert not [x for x in validate_file(str(genoa["wrong"])) if x.level == "error"]
