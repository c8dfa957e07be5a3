"""Plain GeoParquet files of float embeddings: the input of ``compress``, the output of ``decompress``.

Embeddings come as a fixed-size list or list of floats (as Major TOM, Clay or
openeo-processes-dask-ml write them), one vector per row, geometry as WKB.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geocodec.atomic import atomic_output
from geocodec.errors import InputError, MetadataError
from geocodec.format.metadata import GEO_KEY, build_geo, check_geo
from geocodec.format.sources import check_regular_file

ZSTD_LEVEL = 15


@dataclass
class EmbeddingTable:
    """A GeoParquet file of float embeddings as read by :func:`read_embeddings`.

    ``table`` holds every column of the input, ``vectors`` the (N, D) float32 embeddings of ``column``, ``geometry`` the
    shapely geometries of ``geometry_column`` and ``crs`` its CRS as PROJJSON.
    """

    table: pa.Table          # every column of the input
    vectors: np.ndarray      # (N, D) float32
    geometry: np.ndarray     # shapely geometries
    geometry_column: str
    crs: dict | str
    column: str


def read_geo_metadata(kv: dict | None, *, source: str) -> dict:
    """The parsed ``geo`` footer key of Parquet key-value metadata ``kv``.

    Raises :class:`~geocodec.errors.MetadataError` if it is absent or malformed.
    """
    raw = (kv or {}).get(GEO_KEY.encode())
    if raw is None:
        raise MetadataError("no 'geo' key in the Parquet footer: not a GeoParquet file", source=source, field="geo")
    try:
        geo = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetadataError(f"malformed 'geo' metadata: {exc}", source=source, field="geo") from exc
    return check_geo(geo, source=source)


def resolve_crs(geo: dict, *, source: str, crs_override=None):
    """PROJJSON of the primary geometry column, or an error when the file gives none."""
    from pyproj import CRS

    col = geo["columns"][geo["primary_column"]]
    if crs_override is not None:
        return CRS.from_user_input(crs_override).to_json_dict()
    if "crs" not in col or col["crs"] is None:
        what = "has no 'crs' (GeoParquet would then assume OGC:CRS84)" if "crs" not in col else "has crs null (unknown)"
        raise InputError(f"geometry column '{geo['primary_column']}' {what}; geocodec needs an explicit CRS: "
                         "pass --crs (e.g. --crs OGC:CRS84) if you know it", source=source,
                         field=f"geo.columns.{geo['primary_column']}.crs")
    try:
        return CRS.from_user_input(col["crs"]).to_json_dict()
    except Exception as exc:
        raise InputError(f"unreadable CRS: {exc}", source=source,
                         field=f"geo.columns.{geo['primary_column']}.crs") from exc


def vectors_from_column(arr: pa.ChunkedArray | pa.Array, *, source: str, column: str) -> np.ndarray:
    """(N, D) float32 from a (fixed-size) list column, naming the row of any bad vector."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"column type {t} is not a list of floats", source=source, field=column)
    if not pa.types.is_floating(t.value_type):
        raise InputError(f"list items are {t.value_type}, not floats", source=source, field=column)
    n = len(arr)
    if n == 0:
        raise InputError("the input has no rows (empty input)", source=source, field=column)
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError("embedding is null", source=source, row=row, field=column)
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
    else:
        lengths = pa.compute.list_value_length(arr).to_numpy(zero_copy_only=False)
        d = int(lengths[0])
        bad = np.flatnonzero(lengths != d)
        if bad.size:
            raise InputError(f"embedding has {int(lengths[bad[0]])} values, row 0 has {d} (ragged vectors)",
                             source=source, row=int(bad[0]), field=column)
    if d == 0:
        raise InputError("embeddings have zero length", source=source, field=column)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    x = values.reshape(n, d)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        kind = "NaN" if np.isnan(x[row]).any() else "an infinite value"
        raise InputError(f"embedding contains {kind}", source=source, row=row, field=column)
    return x


def read_embeddings(path: str | os.PathLike, column: str, *, crs=None) -> EmbeddingTable:
    """Read a GeoParquet file of float embeddings in ``column`` (``crs`` overrides or supplies its CRS).

    Raises :class:`~geocodec.errors.InputError` for an unreadable file, a non-WKB geometry, a missing column, bad
    vectors or missing geometries, and :class:`~geocodec.errors.MetadataError` without ``geo`` metadata.
    """
    path = os.fspath(path)
    try:
        pf = pq.ParquetFile(check_regular_file(path), page_checksum_verification=True)
    except FileNotFoundError as exc:
        raise InputError("no such file", source=path) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", source=path) from exc
    geo = read_geo_metadata(pf.metadata.metadata, source=path)
    gcol = geo["primary_column"]
    enc = geo["columns"][gcol].get("encoding", "WKB")
    if enc != "WKB":
        raise InputError(f"geometry encoding {enc} is not supported yet; write WKB", source=path,
                         field=f"geo.columns.{gcol}.encoding")
    resolved = resolve_crs(geo, source=path, crs_override=crs)
    if column not in pf.schema_arrow.names:
        candidates = [f.name for f in pf.schema_arrow if pa.types.is_list(f.type) or
                      pa.types.is_fixed_size_list(f.type) or pa.types.is_large_list(f.type)]
        raise InputError(f"no column '{column}'; list columns here: {candidates or 'none'}", source=path,
                         field=column)
    table = pf.read()
    vectors = vectors_from_column(table.column(column), source=path, column=column)
    geoms = shapely.from_wkb(table.column(gcol).to_numpy(zero_copy_only=False))
    bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if bad.size:
        raise InputError("missing or empty geometry", source=path, row=int(bad[0]), field=gcol)
    return EmbeddingTable(table=table, vectors=vectors, geometry=geoms, geometry_column=gcol, crs=resolved,
                          column=column)


def embeddings_table(vectors: np.ndarray, geometry, crs: dict, columns: dict | None = None,
                     column: str = "embedding") -> pa.Table:
    """A GeoParquet 1.1 table (geometry WKB + bbox covering + vectors) with its ``geo`` metadata."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    geoms = np.asarray(geometry, dtype=object)
    bounds = shapely.bounds(geoms)
    arrays = dict(columns or {})
    arrays["geometry"] = pa.array(shapely.to_wkb(geoms), pa.binary())
    arrays["bbox"] = pa.StructArray.from_arrays([pa.array(bounds[:, i]) for i in range(4)],
                                                names=["xmin", "ymin", "xmax", "ymax"])
    arrays[column] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d)
    table = pa.table(arrays)
    types = {"Point": "Point", "Polygon": "Polygon", "MultiPolygon": "MultiPolygon", "LineString": "LineString"}
    gtypes = sorted({types.get(g.geom_type, g.geom_type) for g in geoms[: min(n, 10_000)]})
    bbox = [float(bounds[:, 0].min()), float(bounds[:, 1].min()), float(bounds[:, 2].max()),
            float(bounds[:, 3].max())] if n else [0.0, 0.0, 0.0, 0.0]
    geo = build_geo(crs=crs, bbox=bbox, geometry_types=gtypes)
    return table.replace_schema_metadata({GEO_KEY: json.dumps(geo)})


def arrow_schema_entry(schema: pa.Schema, metadata: dict) -> dict[str, str]:
    """The ``ARROW:schema`` footer entry pyarrow would write, with ``metadata`` as the schema metadata.

    For a streaming writer opened with ``store_schema=False`` whose ``geo`` is known only
    when it closes: adding this entry with the final ``geo`` makes the key visible through
    the Arrow schema (``pq.read_schema(f).metadata``) as geopandas-written files have it,
    and pyarrow keeps exact Arrow types (fixed-size lists) on read.
    """
    import base64

    meta = {k if isinstance(k, str) else k.decode(): v for k, v in metadata.items()}
    return {"ARROW:schema": base64.b64encode(schema.with_metadata(meta).serialize().to_pybytes()).decode()}


def write_geoparquet(table: pa.Table, path: str | os.PathLike, *, row_group_rows: int = 65_536) -> str:
    """Atomic GeoParquet write with distribution settings (zstd 15, no dictionary on floats)."""
    path = os.fspath(path)
    dict_cols = [f.name for f in table.schema if pa.types.is_string(f.type)]
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=ZSTD_LEVEL,
                       use_dictionary=dict_cols, row_group_size=row_group_rows, write_statistics=True,
                       write_page_checksum=True)
    return path
