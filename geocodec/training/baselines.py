"""Storage baselines for rate–utility figures: other ways to ship a float embedding.

Each baseline takes float vectors ``x`` of shape (n, d), stores them the way a user
would without geocodec, and returns a :class:`Stored`: the bits that storage costs
(zstd of the stored arrays, as a Parquet column chunk would hold them) and the float32
vectors a consumer gets back. Task heads then run on ``decoded`` so the score can be
drawn against ``bits``. The list follows the consumer issue's figure spec:

``float32``, ``float16``
    the vectors as they are, or rounded to half precision;
``int8/vector``
    int8 codes with one float16 scale per vector (max |x| / 127), as WorldCereal-style
    embedding products ship them;
``pca{k}+int8``
    k principal components fitted on training vectors, one int8 scale per component;
``pq{m}x{nbits}``
    product quantization with faiss (``m`` sub-quantizers of ``nbits`` bits, k-means
    codebooks fitted on training vectors): the standard compact code of vector search.

Shared parameters (PCA basis, PQ codebooks) are sent once per file, not per vector; they
are reported in ``side_bits`` and left out of ``bits`` (a large file amortises them).
faiss is needed only for PQ and only in benchmarks/training (``pip install faiss-cpu``);
nothing in the consumer path imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZSTD_LEVEL = 19


@dataclass
class Stored:
    """One baseline applied to a set of vectors."""

    name: str
    bits: float            # zstd-compressed bits of everything stored per vector, summed over all vectors
    decoded: np.ndarray    # float32 (n, d): what the consumer reads back
    side_bits: float = 0.0  # shared parameters sent once (PCA basis, PQ codebooks), float32

    def bits_per(self, n_items: int) -> float:
        """``bits`` divided by ``n_items``: the mean stored bits per vector (or per tile, point, ...)."""
        return self.bits / n_items


def zstd_bits(*arrays: np.ndarray, level: int = ZSTD_LEVEL) -> float:
    """Bits of the arrays' bytes after zstd (one frame per array, as one column chunk each)."""
    import pyarrow as pa

    codec = pa.Codec("zstd", compression_level=level)
    return 8.0 * sum(len(codec.compress(np.ascontiguousarray(a).tobytes(), asbytes=True)) for a in arrays)


def _as2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"baselines take (n, d) vectors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("baselines take finite vectors (NaN or inf found)")
    return x


def float32(x: np.ndarray) -> Stored:
    """The baseline ``float32``: the vectors stored as they are (zstd)."""
    x = _as2d(x)
    return Stored("float32", zstd_bits(x), x.copy())


def float16(x: np.ndarray) -> Stored:
    """The baseline ``float16``: the vectors rounded to half precision (zstd); decoded back to float32."""
    x = _as2d(x)
    h = x.astype(np.float16)
    return Stored("float16", zstd_bits(h), h.astype(np.float32))


def int8_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and one float16 scale per vector (max |x| / 127; 1 for all-zero vectors)."""
    x = _as2d(x)
    scale = np.abs(x).max(axis=1, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float16)
    q = np.clip(np.round(x / scale.astype(np.float32)), -127, 127).astype(np.int8)
    return q, scale


def int8_per_vector(x: np.ndarray) -> Stored:
    """The baseline ``int8/vector``: :func:`int8_codes` (int8 codes plus one float16 scale per vector), zstd."""
    q, scale = int8_codes(x)
    return Stored("int8/vector", zstd_bits(q, scale), q.astype(np.float32) * scale.astype(np.float32))


@dataclass
class PCAInt8:
    """k principal components (fitted on training vectors) stored as int8, one scale per component."""

    mean: np.ndarray
    components: np.ndarray  # (k, d)
    scale: np.ndarray       # (k,)

    @classmethod
    def fit(cls, train: np.ndarray, k: int) -> "PCAInt8":
        """Fit ``k`` principal components on ``train`` (n, d) and one int8 scale per component (max |z| / 127)."""
        train = _as2d(train)
        if not 1 <= k <= train.shape[1]:
            raise ValueError(f"PCA k={k} must be in 1..{train.shape[1]}")
        mean = train.mean(axis=0)
        _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
        comps = vt[:k].astype(np.float32)
        z = (train - mean) @ comps.T
        scale = np.abs(z).max(axis=0) / 127.0
        return cls(mean.astype(np.float32), comps, np.where(scale > 0, scale, 1.0).astype(np.float32))

    @property
    def name(self) -> str:
        """The baseline's name, ``pca{k}+int8``."""
        return f"pca{len(self.components)}+int8"

    def apply(self, x: np.ndarray) -> Stored:
        """Store ``x`` (n, d) as int8 component codes; the :class:`Stored` holds their zstd bits and the reconstruction.

        ``side_bits`` counts the mean, components and scales as float32. Raises ValueError for another d than fitted.
        """
        x = _as2d(x)
        if x.shape[1] != self.components.shape[1]:
            raise ValueError(f"{self.name}: fitted on d={self.components.shape[1]}, got d={x.shape[1]}")
        q = np.clip(np.round(((x - self.mean) @ self.components.T) / self.scale), -127, 127).astype(np.int8)
        rec = (q.astype(np.float32) * self.scale) @ self.components + self.mean
        side = 32.0 * (self.mean.size + self.components.size + self.scale.size)
        return Stored(self.name, zstd_bits(q), rec.astype(np.float32), side)


def _pad_sub(x: np.ndarray, m: int, pad: int) -> np.ndarray:
    """(n, d) -> (n, d + m * pad): ``pad`` zeros after each of the ``m`` sub-vectors."""
    if not pad:
        return np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    out = np.zeros((n, m, d // m + pad), np.float32)
    out[:, :, :d // m] = x.reshape(n, m, d // m)
    return out.reshape(n, -1)


@dataclass
class ProductQuantizer:
    """faiss product quantization: ``m`` sub-vectors, each one of 2**nbits k-means centroids."""

    pq: object
    m: int
    nbits: int
    d: int
    pad: int = 0  # zero dimensions appended to each sub-vector inside faiss (see fit); codes and decoding unchanged

    @classmethod
    def fit(cls, train: np.ndarray, m: int, nbits: int = 8, seed: int = 0) -> "ProductQuantizer":
        """Train faiss product quantization on ``train`` (n, d): ``m`` sub-quantizers of 2**``nbits`` centroids.

        Raises ValueError if ``m`` does not divide d, and :class:`~geocodec._optional.MissingDependencyError` without
        faiss.
        """
        from geocodec._optional import import_optional

        faiss = import_optional("faiss", extra="train", purpose="product quantization")
        train = _as2d(train)
        d = train.shape[1]
        if m < 1 or d % m:
            raise ValueError(f"PQ m={m} must divide the dimension d={d}")
        # faiss's k-means runs ~10x slower on sub-vectors of fewer than 4 dimensions (24-d, m=8: 9 s instead of
        # 0.5 s per fit); zero dimensions appended to each sub-vector leave the centroids' real part unchanged
        pad = max(0, 4 - d // m)
        pq = faiss.ProductQuantizer(d + m * pad, m, nbits)
        pq.cp.seed = seed
        pq.cp.min_points_per_centroid = 1   # small training sets: no faiss warning, codebooks still fitted
        pq.cp.max_points_per_centroid = 256
        pq.verbose = False
        pq.train(_pad_sub(train, m, pad))
        return cls(pq, m, nbits, d, pad)

    @property
    def name(self) -> str:
        """The baseline's name, ``pq{m}x{nbits}``."""
        return f"pq{self.m}x{self.nbits}"

    def apply(self, x: np.ndarray) -> Stored:
        """Store ``x`` (n, d) as PQ codes; the :class:`Stored` holds their zstd bits and the decoded vectors.

        ``side_bits`` counts the codebooks as float32. Raises ValueError for another d than fitted.
        """
        x = _as2d(x)
        if x.shape[1] != self.d:
            raise ValueError(f"{self.name}: fitted on d={self.d}, got d={x.shape[1]}")
        codes = self.pq.compute_codes(_pad_sub(x, self.m, self.pad))
        rec = np.asarray(self.pq.decode(codes)).reshape(len(x), self.m, -1)[:, :, :self.d // self.m]
        rec = rec.reshape(len(x), self.d)
        side = 32.0 * self.d * (1 << self.nbits)
        return Stored(self.name, zstd_bits(codes), np.asarray(rec, np.float32), side)


def sweep(train: np.ndarray, test: np.ndarray, *, pca_ks=(), pq_ms=(), pq_nbits: int = 8,
          seed: int = 0) -> list[Stored]:
    """Every baseline on ``test``: float32, float16, int8/vector, then PCA and PQ (fitted on ``train``)
    at each k / m given, so the baselines span the rates a codec is compared at."""
    out = [float32(test), float16(test), int8_per_vector(test)]
    d = np.asarray(test).shape[1]
    out += [PCAInt8.fit(train, k).apply(test) for k in pca_ks if k <= d]
    out += [ProductQuantizer.fit(train, m, pq_nbits, seed).apply(test) for m in pq_ms if d % m == 0]
    return out


def raw_dn(tiles: np.ndarray, scale: float = 1e4) -> np.ndarray:
    """Reflectance tiles back to the uint16 digital numbers Sentinel-2 products store (DN = reflectance * 1e4)."""
    return np.clip(np.round(np.asarray(tiles, np.float32) * scale), 0, 65535).astype(np.uint16)


def raw_tile_bits(tiles: np.ndarray, level: int = ZSTD_LEVEL) -> np.ndarray:
    """Bits per tile of the raw-pixel baseline: each tile's uint16 DN bands, zstd-compressed on its own."""
    return np.array([zstd_bits(t, level=level) for t in raw_dn(tiles)])


# -- JPEG 2000 pixels: what a user could ship instead of codes ---------------------------------------------
J2K_MAX_RESOLUTIONS = 6      # OpenJPEG's default: 5 wavelet decomposition levels
J2K_THREADS = 2              # OpenJPEG code-block threads (the bytes do not depend on it)


def j2k_encode(img: np.ndarray, level: float | None) -> bytes:
    """One raw J2K codestream of a (bands, h, w) uint16 image, all bands as components of one image.

    ``level``: OpenJPEG's fixed-quality PSNR target in dB (``tcp_distoratio``, against the 16-bit peak
    65535), irreversible 9/7 wavelet, one quality layer; ``None``: lossless (reversible 5/3).
    """
    import imagecodecs
    import math

    _, h, w = img.shape
    if min(h, w) <= 4:
        raise ValueError(f"tile {h} x {w} too small for imagecodecs' band layout")
    res = min(J2K_MAX_RESOLUTIONS, int(math.floor(math.log2(min(h, w)))) + 1)
    x = np.ascontiguousarray(np.moveaxis(img, 0, -1))
    if level is None:
        return imagecodecs.jpeg2k_encode(x, level=None, codecformat="J2K", reversible=True, resolutions=res,
                                         numthreads=J2K_THREADS)
    return imagecodecs.jpeg2k_encode(x, level=float(level), codecformat="J2K", reversible=False,
                                     resolutions=res, numthreads=J2K_THREADS)


def j2k_decode(data: bytes) -> np.ndarray:
    """A J2K codestream -> (bands, h, w) array."""
    import imagecodecs

    d = imagecodecs.jpeg2k_decode(data)
    return np.moveaxis(d, -1, 0) if d.ndim == 3 else d[None]


def j2k_at_bytes(img: np.ndarray, max_bytes: float, *, lo: float = 20.0, hi: float = 110.0,
                 iterations: int = 16) -> tuple[np.ndarray, int, float]:
    """JPEG 2000 of ``img`` (bands, h, w) uint16 at the highest PSNR target whose codestream holds at most
    ``max_bytes`` (bisection on the target; bytes grow with it): (decoded uint16 image, bytes, target dB).

    Raises ValueError when even the lowest target ``lo`` needs more than ``max_bytes`` (the budget is below
    what JPEG 2000 can reach: no point is made up).
    """
    best = None
    data = j2k_encode(img, lo)
    if len(data) > max_bytes:
        raise ValueError(f"JPEG 2000 needs {len(data)} bytes at its lowest target {lo} dB, over the "
                         f"budget of {max_bytes:.0f}")
    best = (data, lo)
    a, b = lo, hi
    for _ in range(iterations):
        mid = 0.5 * (a + b)
        data = j2k_encode(img, mid)
        if len(data) <= max_bytes:
            best, a = (data, mid), mid
        else:
            b = mid
    data, level = best
    return j2k_decode(data).astype(np.uint16), len(data), float(level)


def j2k_scene_at_bytes(scene, max_bytes: float, *, iterations: int = 10):
    """A whole :class:`geocodec.training.data.Scene` as JPEG 2000 at <= ``max_bytes``, decoded: what a user who
    ships JPEG 2000 instead of codes gets back. Returns (Scene of the decoded reflectance, bytes, target dB).

    Invalid pixels are filled with the band's valid mean before coding (so JPEG 2000 pays nothing for nodata)
    and are 0 again afterwards, with the scene's validity. Raises ValueError as :func:`j2k_at_bytes` does
    when the budget is below what JPEG 2000 can reach.
    """
    from geocodec.training.data import Scene

    ok = scene.valid.all(axis=0)
    mean = np.array([scene.data[b][ok].mean() if ok.any() else 0.0 for b in range(scene.data.shape[0])])
    filled = np.where(ok, scene.data, mean[:, None, None].astype(np.float32))
    dec, size, level = j2k_at_bytes(raw_dn(filled), max_bytes, iterations=iterations)
    rec = np.where(scene.valid, dec.astype(np.float32) * np.float32(1e-4), 0).astype(np.float32)
    return Scene(scene.name, scene.source, rec, scene.valid), size, level
