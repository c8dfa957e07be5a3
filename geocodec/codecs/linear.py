"""The transform codec fitted on float embeddings (``geocodec compress``).

Analysis: centre, rotate onto principal axes (KLT/PCA), divide by one step
size and round. Synthesis: multiply by the step and rotate back, shipped as an
ONNX decoder. One step for every component is the rate-distortion optimal
allocation for a Gaussian source under MSE (reverse water-filling): components
whose spread is below the step quantize to zero and cost almost no bits.

``quality`` is an integer 1..10: the step halves with each level, about one
more bit per significant component (measured rate and error per level on real
Sentinel-2 time series: docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geocodec.format.entropy import ESCAPE_OFFSET, IntegerTable
from geocodec.errors import InputError
from geocodec.format.onnx_model import DECODER_INPUT, DECODER_OUTPUT

QUALITY_LEVELS = range(1, 11)
DEFAULT_QUALITY = 5
FIT_SAMPLE_ROWS = 200_000
#: the fit leaves out rows farther from the median vector than this many MADs of the distances ...
OUTLIER_MADS = 10.0
#: ... but never more than this fraction of the rows; left-out rows are coded through the escape symbol
MAX_OUTLIER_FRACTION = 0.01
#: the largest code magnitude the escape symbol carries (entropy.py: +-2**19)
MAX_CODE = ESCAPE_OFFSET - 1


def step_for_quality(quality: int, component_std: np.ndarray) -> float:
    """Step size: the RMS spread of the components times 2**(2 - quality)."""
    if int(quality) not in QUALITY_LEVELS:
        raise InputError(f"quality must be an integer in 1..10, got {quality!r}", field="quality")
    rms = float(np.sqrt(np.mean(np.square(component_std))))
    if not np.isfinite(rms) or rms <= 0:
        raise InputError("the embeddings have no variance: every vector is the same")
    return rms * 2.0 ** (2 - int(quality)) / 4.0


def check_finite(x: np.ndarray, *, source: str | None = None, row_offset: int = 0) -> None:
    """Raise :class:`~geocodec.errors.InputError` if ``x`` holds a NaN or infinite value.

    The error names the first such row, counting from ``row_offset``.
    """
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad.any(axis=tuple(range(1, x.ndim))))[0, 0])
        kind = "NaN" if np.isnan(x[row]).any() else "infinite"
        raise InputError(f"embedding has a {kind} value", source=source, row=row_offset + row)


def inlier_rows(x: np.ndarray) -> np.ndarray:
    """Bool mask of the rows of ``x`` (N, D) to fit on: those within :data:`OUTLIER_MADS` median absolute
    deviations of the median distance to the coordinate-wise median (at least all but
    :data:`MAX_OUTLIER_FRACTION` of the rows). One wild row then cannot set the step of all the others."""
    r = np.sqrt(np.square(x - np.median(x, axis=0)).sum(axis=1))
    mid = float(np.median(r))
    mad = float(np.median(np.abs(r - mid)))
    cut = max(mid + OUTLIER_MADS * 1.4826 * mad, float(np.quantile(r, 1.0 - MAX_OUTLIER_FRACTION)))
    return r <= cut


@dataclass
class LinearCodec:
    """A fitted transform codec: ``codes = round((x - mean) @ components.T / step)``.

    ``mean`` (D,), ``components`` (K, D) orthonormal principal axes ordered by variance, ``step`` (K,) (one value
    repeated), one entropy table per component and the ``quality`` it was fitted at.
    """

    mean: np.ndarray          # (D,)
    components: np.ndarray    # (K, D), orthonormal rows
    step: np.ndarray          # (K,)
    tables: list[IntegerTable]
    quality: int

    @property
    def dimension(self) -> int:
        """D, the length of the input embeddings."""
        return self.components.shape[1]

    @property
    def latent_channels(self) -> int:
        """K, the number of components kept (latent channels)."""
        return self.components.shape[0]

    @classmethod
    def fit(cls, x: np.ndarray, quality: int = DEFAULT_QUALITY, *, source: str | None = None,
            seed: int = 0) -> "LinearCodec":
        """Fit the codec to embeddings ``x`` (N, D) at ``quality`` (1..10).

        Fits on a random sample of :data:`FIT_SAMPLE_ROWS` rows (``seed``) when there are more, leaving out outlier
        rows (:func:`inlier_rows`: they are coded through the escape symbol); keeps the components up
        to the last one that quantizes to anything but zero. Raises :class:`~geocodec.errors.InputError` for empty,
        non-finite or constant input or a bad quality.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError("no embeddings to fit the codec on (empty input)", source=source)
        check_finite(x, source=source)
        if x.shape[0] > FIT_SAMPLE_ROWS:
            pick = np.random.default_rng(seed).choice(x.shape[0], FIT_SAMPLE_ROWS, replace=False)
            x = x[np.sort(pick)]
        x = x[inlier_rows(x)]
        mean = x.mean(axis=0)
        centred = x - mean
        # principal axes; sign fixed so the fit is deterministic
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
        vt = vt * signs[:, None]
        std = s / np.sqrt(max(x.shape[0] - 1, 1))
        step = step_for_quality(quality, std if len(std) else np.zeros(1))
        y = centred @ vt.T
        q = np.round(y / step).astype(np.int64)
        # components that never leave zero carry nothing: drop them (keep at least one)
        keep = np.flatnonzero((q != 0).any(axis=0))
        if keep.size == 0:
            keep = np.array([0])
        keep = np.arange(int(keep.max()) + 1)  # components are ordered by variance
        tables = [IntegerTable.fit(q[:, k]) for k in keep]
        return cls(mean=mean.astype(np.float32), components=vt[keep].astype(np.float32),
                   step=np.full(len(keep), step, dtype=np.float32), tables=tables, quality=int(quality))

    def quantize(self, x: np.ndarray, *, source: str | None = None, row_offset: int = 0) -> np.ndarray:
        """Float embeddings (N, D) -> int32 codes (N, K, 1), clipped to what the escape symbol carries
        (+-:data:`MAX_CODE`; :meth:`reconstruct` shows the error that leaves)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise InputError(f"expected embeddings of dimension {self.dimension}, got shape {x.shape}",
                             source=source)
        check_finite(x, source=source, row_offset=row_offset)
        y = (x - self.mean) @ self.components.T
        return np.clip(np.round(y / self.step), -MAX_CODE, MAX_CODE).astype(np.int32)[:, :, None]

    def reconstruct(self, q: np.ndarray) -> np.ndarray:
        """Codes (N, K, 1) -> the float32 vectors (N, D) the decoder gives for them."""
        y = q[:, :, 0].astype(np.float32) * self.step
        return (y @ self.components + self.mean).astype(np.float32)

    def decoder_onnx(self, metadata: dict[str, str] | None = None) -> bytes:
        """The ONNX decoder ``latent @ components + mean`` (see :func:`build_linear_decoder`), serialized."""
        return build_linear_decoder(self.components, self.mean, name="geocodec_linear_decoder",
                                    metadata=metadata)


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
