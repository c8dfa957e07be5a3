"""Hostile ONNX models in files (issue 13, Security): external data, control flow, unbounded allocation, wrong
contracts and foreign operator domains are refused before onnxruntime runs them; the shipped models still load."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import REPO, make_codec, random_codes, rewrite, write_codes

from geocodec.codecs.linear import build_linear_decoder
from geocodec.errors import MetadataError
from geocodec.format.metadata import fingerprint
from geocodec.format.onnx_checks import ALLOWED_OPS, MAX_ROW_BYTES, UnsafeModelError, check_model
from geocodec.format.onnx_model import OnnxDecoder, load_decoder, sha256_hex
from geocodec.format.reader import GeocodecFile
from geocodec.tasks.heads import Head, add_head_metadata

K, D = 8, 8
SECRET = np.arange(1000, 1000 + K * D, dtype=np.float32)  # recognisable floats: never to come out decoded


def _model(nodes, *, inputs=None, outputs=None, initializer=(), opset=17, domains=()):
    graph = helper.make_graph(
        nodes, "hostile",
        inputs or [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", K])],
        outputs or [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", D])],
        initializer=list(initializer))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    *[helper.make_opsetid(d, 1) for d in domains]])
    model.ir_version = 8
    return model


def _external_data_decoder(location: str) -> bytes:
    """The linear decoder with its components stored as external data in ``location``."""
    model = _model([helper.make_node("MatMul", ["latent", "components"], ["embedding"])],
                   initializer=[numpy_helper.from_array(np.zeros((K, D), np.float32), "components")])
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(K * D * 4))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _file_with_decoder(tmp_path, decoder: bytes, name="hostile.parquet") -> str:
    """A valid file (linear codec, K channels, dimension D) whose embedded decoder is swapped for ``decoder``."""
    ext, dec = make_codec(dimension=D, channels=K)
    good = write_codes(tmp_path / "good.parquet", random_codes(40, K, escapes=False), ext=ext, decoder=dec)

    def swap(kv):
        kv[b"geocodec.decoder"] = base64.b64encode(decoder)
        e = json.loads(kv[b"geocodec"])
        e["decoder"]["sha256"], e["decoder"]["size_bytes"] = sha256_hex(decoder), len(decoder)
        e["codec"]["fingerprint"] = fingerprint(e)   # a forger keeps the footer consistent
        kv[b"geocodec"] = json.dumps(e).encode()
        return kv
    return rewrite(good, tmp_path / name, meta=swap)


def _cli(*args, cwd, timeout=60):
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO)}
    return subprocess.run([sys.executable, "-m", "geocodec", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


# -- external data ---------------------------------------------------------------------------------
def test_onnxruntime_would_read_external_data(tmp_path, monkeypatch):
    """The attack is real: onnxruntime itself reads the named file relative to the current directory."""
    import onnxruntime as ort

    (tmp_path / "secret.bin").write_bytes(SECRET.tobytes())
    monkeypatch.chdir(tmp_path)
    try:
        sess = ort.InferenceSession(_external_data_decoder("secret.bin"), providers=["CPUExecutionProvider"])
    except Exception:  # an onnxruntime that refuses external data from bytes on its own
        pytest.skip("this onnxruntime does not read external data of a model given as bytes")
    out = sess.run(None, {"latent": np.eye(K, dtype=np.float32)})[0]
    np.testing.assert_array_equal(out.ravel(), SECRET)


@pytest.mark.parametrize("location", ["secret.bin", "../outside/secret.bin"])
def test_external_data_decoder_refused(tmp_path, monkeypatch, location):
    target = tmp_path / "work" / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(SECRET.tobytes())
    (tmp_path / "work").mkdir(exist_ok=True)
    path = _file_with_decoder(tmp_path, _external_data_decoder(location))
    monkeypatch.chdir(tmp_path / "work")
    f = GeocodecFile(path)
    with pytest.raises(UnsafeModelError) as info:
        f.decoder
    msg = str(info.value)
    assert isinstance(info.value, MetadataError) and info.value.field == "decoder"
    assert path in msg and f"external file '{location}'" in msg and "components" in msg
    f.close()
    # the commands: refused with the file and field named, and the secret's floats never come out
    out_path = tmp_path / "work" / "out.parquet"
    for args in (["validate", path], ["decompress", path, "-o", os.fspath(out_path)]):
        r = _cli(*args, cwd=tmp_path / "work")
        text = r.stdout + r.stderr
        assert r.returncode != 0, text
        assert location in text and "decoder" in text, text
        assert "1000.0" not in text and "1063" not in text, text
    assert not out_path.exists()


def test_external_data_head_refused(tmp_path, monkeypatch):
    (tmp_path / "secret.bin").write_bytes(SECRET.tobytes())
    meta = {"task": "custom", "input": {"kind": "embedding", "shape": [K]}, "output": {"kind": "class_probabilities"}}
    path = tmp_path / "head.onnx"
    path.write_bytes(add_head_metadata(_external_data_decoder("secret.bin"), meta))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeModelError, match="external file 'secret.bin'") as info:
        Head.load(path)
    assert info.value.field == "head" and os.fspath(path) in str(info.value)


def test_external_data_in_a_constant_refused(tmp_path, monkeypatch):
    """Tensors in node attributes are checked too, not only initializers."""
    value = numpy_helper.from_array(np.zeros((K, D), np.float32), "w")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "/etc/hostname"
    model = _model([helper.make_node("Constant", [], ["w"], value=value),
                    helper.make_node("MatMul", ["latent", "w"], ["embedding"])])
    with pytest.raises(UnsafeModelError, match="external file '/etc/hostname'"):
        OnnxDecoder(model.SerializeToString(), source="x.parquet")  # even without the full check


# -- hostile graphs ----------------------------------------------------------------------------------
def _loop_decoder() -> bytes:
    """A decoder that loops 2**62 times with a condition that stays true."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, ["N", K])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["N", K])])
    model = _model([helper.make_node("Loop", ["trips", "cond", "latent"], ["embedding"], body=body)],
                   initializer=[numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
                                numpy_helper.from_array(np.array(True), "cond")])
    return model.SerializeToString()


def _huge_constant_of_shape() -> bytes:
    """3 GiB of zeros added to the latent (the output shape stays [N, D] only by broadcasting)."""
    model = _model([helper.make_node("ConstantOfShape", ["shape"], ["zeros"],
                                     value=numpy_helper.from_array(np.zeros(1, np.float32))),
                    helper.make_node("ReduceSum", ["zeros"], ["s"], keepdims=0),
                    helper.make_node("Add", ["latent", "s"], ["embedding"])],
                   initializer=[numpy_helper.from_array(np.array([3 * 2**28], np.int64), "shape")])
    return model.SerializeToString()


def _huge_conv_pads() -> bytes:
    """Only allowed operators, but a Conv padded by 2**15 a side: 16 GiB of output per row of a [1, 1, 1] latent."""
    model = _model([helper.make_node("Conv", ["latent", "w"], ["big"], pads=[2**15] * 4),
                    helper.make_node("ReduceMean", ["big"], ["embedding"], axes=[2, 3], keepdims=0)],
                   inputs=[helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", 1, 1, 1])],
                   outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 1])],
                   initializer=[numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")])
    return model.SerializeToString()


def _broadcast_blowup() -> bytes:
    """Only allowed operators: broadcasting [N, K] by [4096, 1, 1] and [4096, 1, 1, 1] gives 512 MiB per row."""
    a = np.ones((4096, 1, 1), np.float32)
    b = np.ones((4096, 1, 1, 1), np.float32)
    model = _model([helper.make_node("Mul", ["latent", "a"], ["wide"]),            # [4096, N, K]
                    helper.make_node("Mul", ["wide", "b"], ["huge"]),              # [4096, 4096, N, K]
                    helper.make_node("ReduceMean", ["huge"], ["embedding"], axes=[0, 1], keepdims=0)],
                   initializer=[numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b")])
    return model.SerializeToString()


@pytest.mark.parametrize("builder, expect", [
    (_loop_decoder, "operator 'Loop' (control flow) is not allowed"),
    (_huge_constant_of_shape, "operator 'ConstantOfShape' is not allowed"),
    (_huge_conv_pads, "bytes per input row, more than"),
    (_broadcast_blowup, "bytes per input row, more than"),
], ids=["loop", "constant_of_shape", "conv_pads", "broadcast"])
def test_hostile_decoder_refused_fast(tmp_path, builder, expect):
    data = builder()
    if builder is _huge_conv_pads:  # a grid latent [1, 1, 1] and D = 1: the check alone
        with pytest.raises(UnsafeModelError, match=re.escape(expect)) as info:
            check_model(data, source="x", input_shape=[1, 1, 1], output_shape=[1])
        assert "Conv" in str(info.value)
        return
    with pytest.raises(UnsafeModelError, match=re.escape(expect)):
        check_model(data, source="x", input_name="latent", input_shape=[K], output_name="embedding",
                    output_shape=[D], single_output=True)
    # through the commands, in a subprocess with a timeout: refused, never a hang or a 3 GiB allocation
    path = _file_with_decoder(tmp_path, data)
    for args in (["validate", path], ["decompress", path, "-o", os.fspath(tmp_path / "out.parquet")]):
        r = _cli(*args, cwd=tmp_path, timeout=60)
        assert r.returncode != 0 and expect in r.stdout + r.stderr, r.stdout + r.stderr
        assert path in r.stdout + r.stderr


def test_loop_decoder_hangs_without_the_check():
    """The loop really is endless: onnxruntime alone is still running after two seconds."""
    code = ("import numpy as np, onnxruntime as ort, sys; d = sys.stdin.buffer.read(); "
            "s = ort.InferenceSession(d, providers=['CPUExecutionProvider']); "
            "s.run(None, {'latent': np.zeros((1, 8), np.float32)})")
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], input=_loop_decoder(), capture_output=True, timeout=2)


@pytest.mark.parametrize("domain, op", [("com.microsoft", "EPContext"), ("ai.onnx.ml", "Normalizer"),
                                        ("evil.custom", "ReadFile")])
def test_foreign_operator_domains_refused(domain, op):
    model = _model([helper.make_node(op, ["latent"], ["embedding"], domain=domain)], domains=[domain])
    with pytest.raises(UnsafeModelError, match=f"domain '{domain}'"):
        check_model(model.SerializeToString(), source="x", input_shape=[K])
    # a node in a foreign domain whose opset the model does not even import
    model = _model([helper.make_node(op, ["latent"], ["embedding"], domain=domain)])
    with pytest.raises(UnsafeModelError, match=f"operator '{domain}.{op}' is not in the default ONNX domain"):
        check_model(model.SerializeToString(), source="x", input_shape=[K])


# -- the contract: input and output as the footer declares ------------------------------------------------
def _linear(k=K, d=D) -> bytes:
    rng = np.random.default_rng(0)
    return build_linear_decoder(rng.normal(size=(k, d)).astype(np.float32), np.zeros(d, np.float32), name="t")


def test_decoder_contract(tmp_path):
    data = _linear()
    kw = dict(source="f.parquet", input_name="latent", output_name="embedding", single_output=True)
    check_model(data, input_shape=[K], output_shape=[D], **kw)
    with pytest.raises(UnsafeModelError, match=r"output 'embedding' has shape \['N', 8\] on the declared input, "
                                               r"expected \['N', 9\]"):
        check_model(data, input_shape=[K], output_shape=[D + 1], **kw)
    with pytest.raises(UnsafeModelError, match="input 'latent' axis 1 is 8, the file declares 9"):
        check_model(data, input_shape=[K + 1], output_shape=[D], **kw)
    with pytest.raises(UnsafeModelError, match="rank 3"):
        check_model(data, input_shape=[K, 1], output_shape=[D], **kw)
    with pytest.raises(UnsafeModelError, match="expected exactly one, named 'codes'"):
        check_model(data, input_shape=[K], **{**kw, "input_name": "codes"})
    with pytest.raises(UnsafeModelError, match="named 'vector'"):
        check_model(data, input_shape=[K], **{**kw, "output_name": "vector"})
    # int64 input, a static batch axis, an extra output
    bad = _model([helper.make_node("Identity", ["latent"], ["embedding"])],
                 inputs=[helper.make_tensor_value_info("latent", TensorProto.INT64, ["N", K])],
                 outputs=[helper.make_tensor_value_info("embedding", TensorProto.INT64, ["N", K])])
    with pytest.raises(UnsafeModelError, match="input 'latent' must be float32"):
        check_model(bad.SerializeToString(), input_shape=[K], **kw)
    static = _model([helper.make_node("Identity", ["latent"], ["embedding"])],
                    inputs=[helper.make_tensor_value_info("latent", TensorProto.FLOAT, [4, K])])
    with pytest.raises(UnsafeModelError, match="static batch axis of 4"):
        check_model(static.SerializeToString(), input_shape=[K], **kw)
    two = _model([helper.make_node("Identity", ["latent"], ["embedding"]),
                  helper.make_node("Identity", ["latent"], ["extra"])],
                 outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", K]),
                          helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", K])])
    with pytest.raises(UnsafeModelError, match="expected exactly one"):
        check_model(two.SerializeToString(), input_shape=[K], **kw)
    # in a file: a decoder whose width is not the declared dimension is refused when it is loaded
    wide = _linear(K, D + 1)
    path = _file_with_decoder(tmp_path, wide)
    f = GeocodecFile(path)
    with pytest.raises(UnsafeModelError, match=r"expected \['N', 8\]") as info:
        f.decoder
    assert path in str(info.value) and info.value.field == "decoder"
    f.close()


def test_declared_output_shape_is_not_trusted():
    """The model's own output declaration is re-derived by shape inference."""
    import onnx

    model = onnx.load_from_string(_linear(K, D + 1))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = D  # claims D, computes D + 1
    with pytest.raises(UnsafeModelError, match=r"has shape \['N', 9\]"):
        check_model(model.SerializeToString(), source="x", input_shape=[K], output_shape=[D])


# -- what must still load ---------------------------------------------------------------------------------------
def test_allow_list_covers_the_shipped_models():
    import onnx

    used = set()
    for p in (REPO / "geocodec" / "models").rglob("*.onnx"):
        if p.parent.name == "heads" or p.name == "embedding_decoder.onnx":
            used |= {n.op_type for n in onnx.load(p).graph.node}
    assert used <= ALLOWED_OPS
    assert not ALLOWED_OPS & {"Loop", "If", "Scan", "ConstantOfShape", "Expand", "Tile", "Resize", "Range",
                              "NonZero", "Shape", "Reshape"}


@pytest.mark.parametrize("name", ["landcover", "monitor", "ships"])
def test_shipped_heads_load(name):
    head = Head.load(name)
    x = np.zeros((3, *[d or 4 for d in head.meta["input"]["shape"]]), np.float32)
    assert head.run(x).shape[0] == 3


def test_learned_embedding_decoder_loads():
    data = (REPO / "geocodec" / "models" / "s2-5band-v1" / "embedding_decoder.onnx").read_bytes()
    dec = load_decoder(data, sha256_hex(data), source="x", latent_shape=(24, 16, 16), dimension=128)
    assert dec(np.zeros((2, 24, 16, 16), np.float32)).shape == (2, 128)
    with pytest.raises(UnsafeModelError, match="expected"):
        load_decoder(data, sha256_hex(data), source="x", latent_shape=(24, 16, 16), dimension=64)


def test_batches_are_sliced_to_the_call_bound():
    data = _linear()
    dec = load_decoder(data, sha256_hex(data), source="x", latent_shape=(K,), dimension=D)
    x = np.random.default_rng(1).normal(size=(1000, K)).astype(np.float32)
    whole = dec(x)
    dec.max_rows = 7
    np.testing.assert_allclose(dec(x), whole, rtol=1e-6, atol=1e-6)
    assert dec(x).shape == (1000, D)


def test_row_bound_is_a_real_limit():
    """A model just over the per-row bound is refused, one well under it passes."""
    def relu(n):
        return _model([helper.make_node("Relu", ["latent"], ["embedding"])],
                      inputs=[helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", n])],
                      outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", n])]
                      ).SerializeToString()
    n = MAX_ROW_BYTES // 4 // 2 + 1  # two [N, n] float tensors: input and output
    with pytest.raises(UnsafeModelError, match="bytes per input row"):
        check_model(relu(n), source="x", input_shape=[n])
    check_model(relu(n - 1), source="x", input_shape=[n - 1])


def test_junk_is_not_a_model():
    with pytest.raises(UnsafeModelError, match="not a loadable ONNX model"):
        check_model(b"\xff\x00junk", source="x")
    assert issubclass(UnsafeModelError, MetadataError)
