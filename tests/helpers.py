"""Test helpers (imported as ``from helpers import ...``; fixtures are in conftest.py): synthetic
extension files built with the real writer, a way to rewrite a valid file with pyarrow to make broken ones,
and :func:`load_bench` for the scripts under bench/."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from geocodec.format.embeddings_io import embeddings_table, write_geoparquet
from geocodec.format.entropy import IntegerTable
from geocodec.format.metadata import build_extension, fingerprint
from geocodec.codecs.linear import build_linear_decoder
from geocodec.format.onnx_model import DECODER_INPUT, DECODER_OUTPUT, sha256_hex
from geocodec.format.writer import GeocodecWriter

CRS84 = CRS.from_user_input("OGC:CRS84").to_json_dict()
UTM18N = CRS.from_epsg(32618).to_json_dict()
REPO = Path(__file__).resolve().parent.parent


# -- the codec for direct writer tests ------------------------------------------------------
def make_tables(channels: int, lo: int = -4, hi: int = 4, seed: int = 0) -> list[IntegerTable]:
    """Tables over ``lo..hi``, roughly Laplacian, different per channel."""
    rng = np.random.default_rng(seed)
    tables = []
    for c in range(channels):
        scale = 1.0 + c % 3 + rng.uniform(0, 1)
        vals = np.clip(np.round(rng.laplace(0, scale, 4000)), lo, hi).astype(np.int64)
        vals = np.concatenate([vals, [lo, hi]])  # the whole range appears
        tables.append(IntegerTable.fit(vals))
    return tables


def make_codec(dimension: int = 8, channels: int = 8, *, block_rows: int = 16, quality: int = 5,
               tables: list[IntegerTable] | None = None, seed: int = 0, latent_shape=None,
               codec_name: str = "test-linear"):
    """(ext, decoder bytes) for a linear decoder: orthonormal components, unit step."""
    rng = np.random.default_rng(seed)
    latent_shape = tuple(latent_shape or (channels,))
    channels = latent_shape[0]
    q, _ = np.linalg.qr(rng.normal(size=(dimension, dimension)))
    components = q[:channels].astype(np.float32) if channels <= dimension else \
        rng.normal(size=(channels, dimension)).astype(np.float32)
    mean = rng.normal(size=dimension).astype(np.float32)
    decoder = build_linear_decoder(components, mean, name="test_decoder")
    tables = tables or make_tables(channels, seed=seed)
    ext = build_extension(
        codec_name=codec_name, codec_version="0.1.0", quality=quality, latent_shape=latent_shape,
        step=np.full(channels, 0.5, np.float32), tables=tables, block_rows=block_rows,
        decoder_sha256=sha256_hex(decoder), decoder_size=len(decoder), decoder_input=DECODER_INPUT,
        decoder_output=DECODER_OUTPUT, dimension=dimension, embedding_type="chip", semantics="synthetic test vectors",
        model={"name": "synthetic", "version": "0", "sha256": None}, grid={"type": "irregular", "crs": None})
    return ext, decoder


def grid_points(n: int, *, seed: int = 0, extent=(-63.0, -12.0, -60.0, -9.0)) -> np.ndarray:
    """``n`` points sorted into a row-major order of coarse cells (a spatially sorted layout)."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = extent
    x = rng.uniform(x0, x1, n)
    y = rng.uniform(y0, y1, n)
    cell = (np.floor((y - y0) / (y1 - y0) * 8) * 8 + np.floor((x - x0) / (x1 - x0) * 8)).astype(int)
    order = np.lexsort((x, cell))
    return shapely.points(x[order], y[order])


def random_codes(n: int, channels: int, positions: int = 1, *, seed: int = 0, escapes: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = np.round(rng.laplace(0, 1.5, (n, channels, positions))).astype(np.int32)
    if escapes and n:
        k = max(1, n // 50)
        rows = rng.integers(0, n, k)
        q[rows, rng.integers(0, channels, k), rng.integers(0, positions, k)] = rng.integers(-(1 << 19), 1 << 19, k)
    return q


def write_codes(path, q: np.ndarray, *, ext=None, decoder=None, geometry=None, crs=CRS84, row_group_rows=64,
                datetime=None, end_datetime=None, chunks: int = 1, extra=None, extra_schema=None,
                tile_prefix: str = "t") -> str:
    """Write codes ``q`` with the real writer, in ``chunks`` calls of write()."""
    if ext is None:
        ext, decoder = make_codec(channels=q.shape[1])
    n = q.shape[0]
    geometry = grid_points(n) if geometry is None else geometry
    tile_id = np.array([f"{tile_prefix}{i:06d}" for i in range(n)])
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    with GeocodecWriter(path, ext, decoder, crs, row_group_rows=row_group_rows, extra_schema=extra_schema) as w:
        for a, b in zip(bounds[:-1], bounds[1:]):
            kw = {}
            if datetime is not None:
                kw["datetime"] = datetime[a:b]
            if end_datetime is not None:
                kw["end_datetime"] = end_datetime[a:b]
            if extra is not None:
                kw["extra"] = {k: v[a:b] for k, v in extra.items()}
            w.write(tile_id=tile_id[a:b], geometry=geometry[a:b], q=q[a:b], **kw)
    return os.fspath(path)


# -- float-embedding inputs and compressed files ----------------------------------------------
def synthetic_vectors(n: int, d: int = 16, *, seed: int = 0) -> np.ndarray:
    """Correlated float vectors with a decaying spectrum, like real embeddings."""
    rng = np.random.default_rng(seed)
    scales = 2.0 ** -np.arange(d, dtype=np.float64) * 4
    z = rng.normal(size=(n, d)) * scales
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (z @ basis.T + rng.normal(size=d)).astype(np.float32)


def write_input(path, n: int = 600, d: int = 16, *, seed: int = 0, crs=CRS84, vectors=None, geometry=None,
                times: bool = True) -> str:
    vectors = synthetic_vectors(n, d, seed=seed) if vectors is None else vectors
    n = len(vectors)
    geometry = grid_points(n, seed=seed) if geometry is None else geometry
    rng = np.random.default_rng(seed)
    cols = {"tile_id": pa.array([f"p{i:05d}" for i in range(n)]),
            "label": pa.array(rng.integers(0, 5, n))}
    if times:
        t = np.datetime64("2022-01-01", "ms") + rng.integers(0, 365, n).astype("timedelta64[D]")
        cols["datetime"] = pa.array(t, pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC"))
    table = embeddings_table(vectors, geometry, crs, cols)
    return write_geoparquet(table, path)


# -- rewriting a file with pyarrow ---------------------------------------------------------
def footer(path) -> dict[bytes, bytes]:
    kv = dict(pq.ParquetFile(path).metadata.metadata)
    kv.pop(b"ARROW:schema", None)
    return kv


def rewrite(src, dst, *, table=None, meta=None) -> str:
    """Copy ``src`` to ``dst`` through pyarrow, keeping row-group boundaries.

    ``table(t) -> t`` modifies the whole table, ``meta(kv) -> kv`` the footer key/values
    (bytes -> bytes, without ARROW:schema).
    """
    pf = pq.ParquetFile(src)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    t = pf.read().replace_schema_metadata(None)
    kv = footer(src)
    if table is not None:
        t = table(t)
    if meta is not None:
        kv = meta(kv)
    with pq.ParquetWriter(dst, t.schema, compression="zstd") as w:
        off = 0
        for s in sizes:
            w.write_table(t.slice(off, s), row_group_size=max(s, 1))
            off += s
        w.add_key_value_metadata(kv)
    return os.fspath(dst)


def edit_key(key: bytes, fn):
    """A ``meta`` function for :func:`rewrite` that edits the parsed JSON footer key ``key`` in place."""
    def meta(kv):
        value = json.loads(kv[key])
        fn(value)
        kv[key] = json.dumps(value).encode()
        return kv
    return meta


def edit_ext(fn, *, refingerprint: bool = True):
    """:func:`edit_key` of the ``geocodec`` key; ``refingerprint`` rewrites ``codec.fingerprint`` to match the
    edit (as a deliberate forger would), so the checks behind the fingerprint check are reached."""
    def edit(ext):
        fn(ext)
        codec = ext.get("codec")
        if refingerprint and isinstance(codec, dict) and "fingerprint" in codec:
            try:
                codec["fingerprint"] = fingerprint(ext)
            except (KeyError, TypeError, AttributeError, ValueError):
                pass  # too broken to hash: the schema refuses it first
    return edit_key(b"geocodec", edit)


def edit_geo(fn):
    """:func:`edit_key` of the ``geo`` key."""
    return edit_key(b"geo", fn)


def set_column_value(name: str, row: int, value):
    """A ``table`` function for :func:`rewrite` that sets one cell."""
    def table(t):
        i = t.schema.get_field_index(name)
        values = t.column(name).to_pylist()
        values[row] = value
        return t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))
    return table


def leftovers(directory) -> list[str]:
    """Temporary files a failed write might have left behind."""
    return sorted(f for f in os.listdir(directory) if f.endswith(".tmp") or f.startswith("."))


def compressed_input(folder, name: str, *, n: int, d: int, seed: int, block_rows: int, row_group_rows: int,
                     quality: int = 6) -> str:
    """A geocodec file of ``n`` synthetic ``d``-float vectors in ``folder``, compressed with the given blocking."""
    from geocodec.codecs.compress import compress

    src = write_input(Path(folder) / f"{name}.input.parquet", n=n, d=d, seed=seed)
    out = Path(folder) / f"{name}.parquet"
    compress(src, "embedding", out, quality=quality, block_rows=block_rows, row_group_rows=row_group_rows,
             progress=False)
    return str(out)


BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """``bench/<name>.py`` as a module, registered in ``sys.modules`` (dataclasses look their module up there),
    with bench/ on ``sys.path`` while it loads (the scripts import their sibling ``common``)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))
