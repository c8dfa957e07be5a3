"""ONNX decoders: build the linear one, hash, load and run any of them.

A file names its decoder by sha256; :func:`load_decoder` refuses bytes whose
hash differs. Running uses onnxruntime only (no torch on the consumer side).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from .errors import MetadataError

DECODER_INPUT = "latent"
DECODER_OUTPUT = "embedding"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_linear_decoder(components: np.ndarray, mean: np.ndarray, *, name: str,
                         metadata: dict[str, str] | None = None) -> bytes:
    """ONNX graph ``embedding = latent @ components + mean`` (float32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    components = np.ascontiguousarray(components, dtype=np.float32)
    mean = np.ascontiguousarray(mean, dtype=np.float32)
    k, d = components.shape
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", [DECODER_INPUT, "components"], ["projected"]),
            helper.make_node("Add", ["projected", "mean"], [DECODER_OUTPUT]),
        ],
        name=name,
        inputs=[helper.make_tensor_value_info(DECODER_INPUT, TensorProto.FLOAT, ["N", k])],
        outputs=[helper.make_tensor_value_info(DECODER_OUTPUT, TensorProto.FLOAT, ["N", d])],
        initializer=[numpy_helper.from_array(components, "components"),
                     numpy_helper.from_array(mean, "mean")],
    )
    model = helper.make_model(graph, producer_name="geocodec",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxDecoder:
    """An onnxruntime session over verified decoder bytes."""

    def __init__(self, data: bytes, *, source: str = "decoder", input_name: str | None = None,
                 output_name: str | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = int(os.environ.get("GEOCODEC_THREADS", "0"))
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types
            raise MetadataError(f"the decoder is not a loadable ONNX model: {exc}", source=source,
                                field="decoder") from exc
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = input_name or inputs[0]
        self.output_name = output_name or outputs[0]
        if self.input_name not in inputs or self.output_name not in outputs:
            raise MetadataError(f"the ONNX model has inputs {inputs} and outputs {outputs}; expected input "
                                f"'{self.input_name}' and output '{self.output_name}'", source=source, field="decoder")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: latent.astype(np.float32, copy=False)})[0]


def load_decoder(data: bytes, expected_sha256: str, *, source: str, input_name: str | None = None,
                 output_name: str | None = None) -> OnnxDecoder:
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise MetadataError(
            f"decoder sha256 mismatch: the file expects {expected_sha256}, the decoder bytes hash to {actual}",
            source=source, field="decoder.sha256")
    return OnnxDecoder(data, source=source, input_name=input_name, output_name=output_name)
