"""The checkerboard context model of spec 0.3.0 (geocodec.format.context): coding, metadata, files.

Synthetic codes only (a unit test of the format): the real-data figures are in docs/benchmarks-rd.md.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import shapely
from pyproj import CRS

from geocodec.errors import BitstreamError, GeocodecError, MetadataError
from geocodec.format.entropy_model import EntropyModel
from geocodec.format.metadata import build_extension, validate_extension
from geocodec.format.onnx_model import sha256_hex


def _codes(n=300, c=6, h=4, w=4, seed=0):
    rng = np.random.default_rng(seed)
    busy = (rng.random((n, 1, h // 2, w // 2)) < 0.3).repeat(2, axis=2).repeat(2, axis=3)
    scale = np.where(busy, 3.0, 0.3) * rng.uniform(0.5, 1.5, (1, c, 1, 1))
    return np.round(rng.laplace(0, 1.0, (n, c, h, w)) * scale).astype(np.int64)


@pytest.fixture(scope="module")
def fitted():
    q = _codes(1050)
    return q, EntropyModel.fit(q[:1000])


def _decoder(c, h, w):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceMean", ["latent"], ["embedding"], axes=[2, 3], keepdims=0)],
                              "mean", [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", c])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _ext(em, c=6, h=4, w=4, block_rows=4):
    dec = _decoder(c, h, w)
    ext = build_extension(codec_name="context-test", codec_version="0", quality=1, latent_shape=(c, h, w),
                          step=np.full(c, 0.5, np.float32), tables=em, block_rows=block_rows,
                          decoder_sha256=sha256_hex(dec), decoder_size=len(dec), decoder_input="latent",
                          decoder_output="embedding", dimension=c, embedding_type="chip", semantics="test",
                          model={"name": "context-test", "version": "0", "sha256": None},
                          grid={"type": "irregular", "crs": None})
    return ext, dec


def test_round_trip_and_rate(fitted):
    q, em = fitted
    block = q[1000:1016].reshape(16, 6, 16)
    words = em.encode(block)
    np.testing.assert_array_equal(em.decode(words, 16, 16), block)
    ce = em.cross_entropy_bits(block)
    assert abs(32 * len(words) - ce) <= 64 + 0.01 * ce
    np.testing.assert_allclose(em.cell_bits(block).sum(), ce)
    held = q[1000:].reshape(50, 6, 16)
    assert em.cross_entropy_bits(held) < 0.9 * EntropyModel.fit(q[:1000], context=False).cross_entropy_bits(held)
    # the reference rate is the mean rate on the fitting data: rate_ratio ~ 1 there
    fit_rate = em.cross_entropy_bits(q[:1000].reshape(1000, 6, 16)) / (1000 * 16)
    assert em.reference_bits_per_cell == pytest.approx(fit_rate, rel=1e-5)


def test_rule_is_grid_size_free(fitted):
    """The same rule codes any grid: a 6 x 3 grid and a single cell round-trip."""
    from geocodec.format.context import CheckerboardContext

    _, em = fitted
    for h, w in ((6, 3), (1, 1), (1, 7)):
        ctx = CheckerboardContext.from_json(em.context.to_json(), (6, h, w))
        other = EntropyModel(em.tables, ctx)
        block = _codes(5, 6, 2 * h, 2 * w, seed=h * 10 + w)[:, :, :h, :w].reshape(5, 6, h * w)
        np.testing.assert_array_equal(other.decode(other.encode(block), 5, h * w), block)


def test_bad_streams_are_refused(fitted):
    q, em = fitted
    block = q[1000:1008].reshape(8, 6, 16)
    words = em.encode(block)
    with pytest.raises(BitstreamError):
        em.decode(words, 7, 16)                        # a block claiming fewer rows leaves data over
    with pytest.raises(GeocodecError):
        em.decode(words, 8, 15)                        # not the grid's positions
    far = block.copy()
    far[3, 2, 5] = 1 << 21
    with pytest.raises(GeocodecError, match="channel 2") as info:
        em.encode(far)
    assert info.value.row == 3


def test_metadata_is_checked(fitted):
    _, em = fitted
    ext, _ = _ext(em)
    assert ext["version"] == "0.3.0" and ext["entropy_model"]["symbol_order"] == "checkerboard-context"
    validate_extension(copy.deepcopy(ext), source="x.parquet")

    def broken(edit):
        e = copy.deepcopy(ext)
        edit(e)
        with pytest.raises(MetadataError) as info:
            validate_extension(e, source="x.parquet")
        assert "x.parquet" in str(info.value)
        return info.value

    n = len(ext["entropy_model"]["tables"])
    err = broken(lambda e: e["entropy_model"]["context"]["table_index"][1].__setitem__(0, n))
    assert "table" in err.message
    broken(lambda e: e["entropy_model"]["context"]["table_index"][0].pop())            # not M entries
    err = broken(lambda e: e["entropy_model"]["context"].update(channel_thresholds=[1, 4, 2]))
    assert "channel_thresholds" in str(err)
    broken(lambda e: e["entropy_model"].pop("context"))                                # order without context
    broken(lambda e: e["entropy_model"].update(symbol_order="channel-major"))          # context, wrong order
    broken(lambda e: e.update(version="0.2.0"))                                         # 0.2.0 has no context
    broken(lambda e: e["entropy_model"]["context"].update(type="hyperprior"))
    broken(lambda e: e["entropy_model"]["context"]["table_index"].pop())               # rows != channels
    broken(lambda e: e["latent"].update(layout="vector", shape=[6]) or
           e["quantization"].update(step=[0.5] * 6))                                   # a context needs a grid


def test_file_round_trip_serial_and_parallel(tmp_path, fitted, monkeypatch):
    """A written 0.3.0 file decodes to its codes, in-process and in worker processes alike."""
    from geocodec.format import blocks
    from geocodec.format.reader import GeocodecFile
    from geocodec.format.validate import validate_file
    from geocodec.format.writer import GeocodecWriter

    q, em = fitted
    rows = q.reshape(len(q), 6, 16)
    ext, dec = _ext(em, block_rows=4)
    path = str(tmp_path / "ctx.parquet")
    x = np.arange(len(q)) % 20 * 100.0
    y = np.arange(len(q)) // 20 * 100.0
    with GeocodecWriter(path, ext, dec, CRS.from_epsg(32633).to_json_dict()) as w:
        w.write(tile_id=[f"t{i}" for i in range(len(q))], geometry=shapely.box(x, y, x + 100, y + 100), q=rows)
    assert [f for f in validate_file(path) if f.level == "error"] == []
    monkeypatch.setattr(blocks, "PARALLEL_MIN_BLOCKS", 8)
    with GeocodecFile(path) as f:
        table = f.read_row_group(0)
        serial = blocks.decode_code_columns(table, f.spec, source=path, threads=1)
        parallel = blocks.decode_code_columns(table, f.spec, source=path, threads=2)
        np.testing.assert_array_equal(f.decode_codes(table), serial)
    np.testing.assert_array_equal(serial, rows[:len(serial)])
    np.testing.assert_array_equal(parallel, serial)
    with GeocodecFile(path) as f:
        assert f.ext["version"] == "0.3.0" and f.ext["entropy_model"]["symbol_order"] == "checkerboard-context"


def test_referenced_context_travels_with_its_tables():
    """A by-reference file of the default model (a context model) has neither tables nor context in its
    footer; both resolve from the package under one hash, and a file whose symbol order disagrees with what
    the reference resolves to is refused naming the field."""
    from geocodec.codecs.learned import LearnedModel
    from geocodec.format.metadata import CodecSpec

    model = LearnedModel.load()
    if "context" not in model.card["qualities"]["3"]:
        pytest.skip("the default model has no context model")
    ext, _ = model.extension(quality=3, latent_hw=(16, 16), grid={"type": "irregular", "crs": None}, embed=False)
    em = ext["entropy_model"]
    assert "tables" not in em and "context" not in em and em["symbol_order"] == "checkerboard-context"
    validate_extension(copy.deepcopy(ext), source="ref.parquet")
    spec = CodecSpec(ext, source="ref.parquet")
    assert spec.entropy.context is not None
    assert spec.entropy.context.to_json() == model.card["qualities"]["3"]["context"]
    bad = copy.deepcopy(ext)
    bad["entropy_model"]["symbol_order"] = "channel-major"
    with pytest.raises(MetadataError, match="context") as info:
        _ = CodecSpec(bad, source="bad.parquet").entropy
    assert info.value.field == "geocodec.entropy_model.tables_ref" and info.value.source == "bad.parquet"


def test_wrong_shapes_and_empty_fits_are_clear_errors(fitted):
    from geocodec.format.context import CheckerboardContext

    _, em = fitted
    for bad in (np.zeros((2, 5, 16), np.int32), np.zeros((2, 6, 15), np.int32)):
        for call in (em.cell_bits, em.cross_entropy_bits, em.encode):
            with pytest.raises(GeocodecError, match="expected codes of shape"):
                call(bad)
    with pytest.raises(GeocodecError, match="at least one value"):
        CheckerboardContext.fit(np.zeros((0, 6, 4, 4), np.int64))
    with pytest.raises(GeocodecError):
        CheckerboardContext.from_json({**em.context.to_json(), "channel_thresholds": [1, 2 ** 70]}, (6, 4, 4))


def test_fit_on_a_wide_spread_stays_bounded_and_round_trips():
    """Codes spread over +-2**18 (a tiny step on odd data): the fitting histograms are capped, every value
    still codes (escapes) and decodes exactly."""
    rng = np.random.default_rng(9)
    q = np.round(rng.laplace(0, 1, (40, 3, 4, 4)) * rng.choice([1, 60000], (40, 3, 4, 4))).astype(np.int64)
    em = EntropyModel.fit(q)
    block = q.reshape(40, 3, 16)
    np.testing.assert_array_equal(em.decode(em.encode(block), 40, 16), block)


def test_tables_only_refuses_another_models_folder():
    pytest.importorskip("torch")
    from geocodec.codecs.learned import model_dir
    from geocodec.errors import InputError
    from geocodec.training.presets import PRESETS
    from geocodec.training.train import refit_tables

    with pytest.raises(InputError, match="pass --model s2-5band-v2") as info:
        refit_tables(model_dir("s2-5band-v2"), config=PRESETS["s2-5band-v1"], progress=False)
    assert info.value.source.endswith("model.json")
