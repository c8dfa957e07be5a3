"""Inputs at the wrong scale: refused naming the band, and encoded right with --scale/--offset.

Real data: a crop of the sen2ships genoa scene (reflectance x 10000), written once as it is and once as
Sentinel Hub's 16-bit exports store it (x 65535), which is how these files were shipped until 2026-12-01.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from geocodec.errors import InputError
from geocodec.producer.radiometry import check_reflectance, udf_context
from helpers import REPO

DATA = REPO.parent / "shared" / "data" / "sen2ships" / "genoa"
BANDS = ["B02", "B03", "B04", "B08", "B11"]
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/sen2ships")


def test_udf_context_converts_the_user_convention():
    assert udf_context() == {"scale": 1e-4, "offset": 0.0}
    ctx = udf_context(65535, None)
    assert ctx["scale"] == pytest.approx(1 / 65535) and ctx["offset"] == 0.0
    ctx = udf_context(10000, -1000)
    assert 2000 * ctx["scale"] + ctx["offset"] == pytest.approx(0.1)     # (2000 - 1000) / 10000
    for bad in (0, -3, float("nan")):
        with pytest.raises(InputError, match="scale must be a positive number"):
            udf_context(bad)


def test_check_names_the_band_and_the_likely_cause():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.4, (5, 32, 32)).astype(np.float32)
    valid = np.ones((32, 32), bool)
    check_reflectance(x, valid, BANDS)                       # plausible: passes
    y = x.copy()
    y[3] *= 6.5535                                           # B08 as if x 65535 were read as x 10000
    with pytest.raises(InputError, match="band B08: .* above reflectance 1.5.*65535") as info:
        check_reflectance(y, valid, BANDS, where="chunk at x=0, y=0")
    assert info.value.field == "B08" and info.value.source == "chunk at x=0, y=0"
    y = x - 0.1                                              # every band: an offset applied twice
    with pytest.raises(InputError, match="below reflectance -0.05.*offset -1000") as info:
        check_reflectance(y, valid, BANDS)
    assert info.value.field == "bands"
    y = x.copy()
    y[0] = 0.1234
    with pytest.raises(InputError, match="band B02 is constant"):
        check_reflectance(y, valid, BANDS)
    check_reflectance(y, np.zeros_like(valid), BANDS)        # nothing valid to judge: no verdict


@pytest.fixture(scope="module")
def genoa_crops(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip("needs ../shared/data/sen2ships")
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    tmp = tmp_path_factory.mktemp("radiometry")
    arrs, t = [], None
    for b in BANDS:
        with rasterio.open(next(DATA.glob(f"*_{b}.tif"))) as src:
            win = Window(1568, 0, 256, 256)   # col, row: the town above the port (land: vegetation, roofs)
            arrs.append(src.read(1, window=win))
            t = src.window_transform(win)
    dn = np.stack(arrs).astype(np.float64)
    profile = dict(driver="GTiff", width=256, height=256, count=5, dtype="uint16", crs="EPSG:3857",
                   transform=Affine(10.0, 0.0, round(t.c), 0.0, -10.0, round(t.f)))
    paths = {}
    for name, values in (("x10000", dn), ("x65535", np.round(dn * 65535 / 10000))):
        paths[name] = tmp / f"genoa_{name}.tif"
        with rasterio.open(paths[name], "w", **profile) as dst:
            dst.write(np.clip(values, 0, 65535).astype("uint16"))
            dst.descriptions = BANDS
    return tmp, paths


@needs_data
@pytest.mark.slow
def test_encode_refuses_a_sentinel_hub_export_and_reads_it_with_scale(genoa_crops, capsys):
    from geocodec.cli.main import main

    tmp, paths = genoa_crops
    common = ["--quality", "3", "--scheduler", "sync", "--date", "2023-07-10"]
    assert main(["encode", str(paths["x65535"]), "-o", str(tmp / "wrong.parquet"), *common]) == 2
    err = capsys.readouterr().err
    assert "implausible Sentinel-2 reflectance" in err and "B08" in err and "--scale 65535" in err
    assert not (tmp / "wrong.parquet").exists()
    assert main(["encode", str(paths["x10000"]), "-o", str(tmp / "right.parquet"), *common]) == 0
    assert main(["encode", str(paths["x65535"]), "-o", str(tmp / "scaled.parquet"), "--scale", "65535",
                 *common]) == 0
    a = pq.read_table(tmp / "right.parquet").sort_by("tile_id")
    b = pq.read_table(tmp / "scaled.parquet").sort_by("tile_id")
    assert a.column("tile_id").equals(b.column("tile_id"))
    from geocodec.format.reader import GeocodecFile

    qa = np.concatenate([r.values for r in GeocodecFile(tmp / "right.parquet").iter_rows(what="codes")])
    qb = np.concatenate([r.values for r in GeocodecFile(tmp / "scaled.parquet").iter_rows(what="codes")])
    # the x 65535 copy lost < 1 DN to rounding: the codes are those of the right-scale file, bar a few
    assert qa.shape == qb.shape and np.mean(qa == qb) > 0.99
    # --no-input-check encodes the wrong scale anyway (a user's own decision)
    assert main(["encode", str(paths["x65535"]), "-o", str(tmp / "forced.parquet"), "--no-input-check",
                 *common]) == 0
