"""ONNX models a file names: hash, load and run them (the embedded decoder, heads, model files).

A file names its decoder by sha256; :func:`load_decoder` refuses bytes whose
hash differs. Running uses onnxruntime only (no torch on the consumer side).
"""

from __future__ import annotations

import hashlib

import numpy as np

from geocodec.errors import MetadataError
from geocodec.threads import onnx_threads

DECODER_INPUT = "latent"
DECODER_OUTPUT = "embedding"


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


class OnnxDecoder:
    """An onnxruntime session over verified decoder bytes.

    ``threads``: intra-op threads (default :func:`geocodec.threads.onnx_threads`: ``$GEOCODEC_THREADS``,
    else onnxruntime's default).
    """

    def __init__(self, data: bytes, *, source: str = "decoder", input_name: str | None = None,
                 output_name: str | None = None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = onnx_threads(threads)
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
    """An :class:`OnnxDecoder` over ``data``.

    Raises :class:`~geocodec.errors.MetadataError` if the sha256 of ``data`` is not ``expected_sha256``.
    """
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise MetadataError(
            f"decoder sha256 mismatch: the file expects {expected_sha256}, the decoder bytes hash to {actual}",
            source=source, field="decoder.sha256")
    return OnnxDecoder(data, source=source, input_name=input_name, output_name=output_name)
