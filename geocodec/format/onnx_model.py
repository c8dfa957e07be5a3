"""ONNX models a file names: hash, load and run them (the embedded decoder, heads, model files).

A file names its decoder by sha256; :func:`load_decoder` refuses bytes whose
hash differs, then checks the graph (:mod:`.onnx_checks`: no external data or other
file access, allowed operators only, input and output as the footer declares, bounded
allocation) before onnxruntime sees it. Every :class:`OnnxDecoder` refuses external
data. Running uses onnxruntime only (no torch on the consumer side).
"""

from __future__ import annotations

import hashlib

import numpy as np

from geocodec.errors import MetadataError
from geocodec.format.onnx_checks import ModelCheck, check_model, check_no_external_data, parse_model
from geocodec.threads import onnx_threads

DECODER_INPUT = "latent"
DECODER_OUTPUT = "embedding"


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    """Hex sha256 of the file at ``path``, read in 8 MiB pieces (a large file is never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OnnxDecoder:
    """An onnxruntime session over verified decoder bytes.

    ``threads``: intra-op threads (default :func:`geocodec.threads.onnx_threads`: ``$GEOCODEC_THREADS``,
    else onnxruntime's default). ``check``: the :class:`~geocodec.format.onnx_checks.ModelCheck` of ``data``
    (from :func:`~geocodec.format.onnx_checks.check_model`): then onnxruntime gets the checked model and a call
    runs in slices of at most ``check.max_rows`` rows. Without it, only external data is refused
    (:class:`~geocodec.format.onnx_checks.UnsafeModelError`): use that for the package's own models.
    """

    def __init__(self, data: bytes, *, source: str = "decoder", input_name: str | None = None,
                 output_name: str | None = None, threads: int | None = None, check: ModelCheck | None = None):
        import onnxruntime as ort

        if check is None:
            check_no_external_data(parse_model(data, source=source, field="decoder"), source=source, field="decoder")
        else:
            data = check.data
        self.max_rows = check.max_rows if check is not None else None
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.load_model_format", "ONNX")  # never the ORT flatbuffer format
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
        x = latent.astype(np.float32, copy=False)
        step = self.max_rows
        if step is None or x.ndim == 0 or x.shape[0] <= step:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        parts = [self.session.run([self.output_name], {self.input_name: x[i:i + step]})[0]
                 for i in range(0, x.shape[0], step)]
        return np.concatenate(parts)


def load_decoder(data: bytes, expected_sha256: str, *, source: str, input_name: str | None = None,
                 output_name: str | None = None, latent_shape=None, dimension: int | None = None) -> OnnxDecoder:
    """An :class:`OnnxDecoder` over ``data``, checked before it runs.

    Raises :class:`~geocodec.errors.MetadataError` if the sha256 of ``data`` is not ``expected_sha256``, and
    :class:`~geocodec.format.onnx_checks.UnsafeModelError` if the graph fails
    :func:`~geocodec.format.onnx_checks.check_model`: input ``input_name`` shaped ``[N, *latent_shape]``, one
    output ``output_name`` shaped ``[N, dimension]`` (None: that part is not checked).
    """
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise MetadataError(
            f"decoder sha256 mismatch: the file expects {expected_sha256}, the decoder bytes hash to {actual}",
            source=source, field="decoder.sha256")
    check = check_model(data, source=source, field="decoder", input_name=input_name or DECODER_INPUT,
                        input_shape=None if latent_shape is None else [int(d) for d in latent_shape],
                        output_name=output_name or DECODER_OUTPUT,
                        output_shape=None if dimension is None else [int(dimension)], single_output=True)
    return OnnxDecoder(data, source=source, input_name=input_name, output_name=output_name, check=check)
