"""GeoPackage output for desktop GIS (GDAL through pyogrio, no pandas): decoded embeddings
(:func:`decode_to_gpkg`) and the layer writer the task results use
(:func:`geocodec.tasks.results.write_result`).

GeoPackage has no list type, so an embedding of D floats becomes D float columns
``emb_000 .. emb_{D-1}`` (GeoPackage stores REAL as 8-byte floats: the float32 values
round-trip exactly). The ``bbox`` covering struct is left out (GeoPackage keeps its own
R-tree); other nested columns are written as JSON text.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from geocodec.atomic import atomic_output
from geocodec.errors import InputError


def _pyogrio():
    from geocodec._optional import import_optional

    return import_optional("pyogrio", extra="gpkg", purpose="writing a GeoPackage")


def embedding_column_names(dimension: int) -> list[str]:
    """``emb_000 .. emb_{D-1}``: the float column of each embedding dimension (zero-padded)."""
    width = max(3, len(str(dimension - 1)))
    return [f"emb_{i:0{width}d}" for i in range(dimension)]


def flat_table(table: pa.Table, emb: np.ndarray | None = None, *, geometry_column: str = "geometry") -> pa.Table:
    """A table GeoPackage can hold: no bbox struct, nested columns as JSON, embedding as floats."""
    cols, names = [], []
    for name in table.column_names:
        col = table.column(name)
        if name == "bbox":
            continue
        t = col.type
        if pa.types.is_nested(t):
            col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
        elif pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
        cols.append(col)
        names.append(name)
    if emb is not None:
        emb = np.asarray(emb, dtype=np.float32)
        for i, name in enumerate(embedding_column_names(emb.shape[1])):
            cols.append(pa.array(emb[:, i]))
            names.append(name)
    return pa.table(cols, names=names)


def _geometry_type(types: list[str]) -> str:
    types = sorted({t.replace(" Z", "") for t in types or []})
    return types[0] if len(types) == 1 else "Unknown"


def write_batches(batches, path: str, *, crs, geometry_types: list[str], layer: str | None = None,
                  metadata: dict | None = None, geometry_column: str = "geometry") -> None:
    """Stream record batches into a new GeoPackage layer, atomically.

    An error raised while producing the batches (e.g. a corrupted block's
    :class:`~geocodec.errors.BitstreamError`, with its file, row and field) is re-raised as it is,
    not as GDAL's "Error while accessing batch from stream"."""
    pyogrio = _pyogrio()
    from pyproj import CRS

    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise InputError("nothing to write", source=path)
    failures: list[BaseException] = []
    reader = pa.RecordBatchReader.from_batches(first.schema, _chain(first, batches, failures))
    layer = layer or os.path.splitext(os.path.basename(path))[0]
    with atomic_output(path) as tmp:
        tmp_gpkg = tmp + ".gpkg"  # GDAL wants the .gpkg extension
        try:
            pyogrio.write_arrow(reader, tmp_gpkg, layer=layer, driver="GPKG", geometry_name=geometry_column,
                                geometry_type=_geometry_type(geometry_types),
                                crs=CRS.from_user_input(crs).to_wkt() if crs is not None else None,
                                dataset_metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None)
            os.replace(tmp_gpkg, tmp)
        except Exception:
            if failures:
                raise failures[0] from None
            raise
        finally:
            for leftover in (tmp_gpkg, tmp_gpkg + "-journal", tmp_gpkg + "-wal", tmp_gpkg + "-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)


def _chain(first, rest, failures: list):
    """``first`` then ``rest``; an exception ``rest`` raises is kept in ``failures`` before it propagates."""
    yield first
    try:
        yield from rest
    except BaseException as exc:
        failures.append(exc)
        raise


def decode_to_gpkg(input_path, output_path, *, bbox=None, time=None, layer: str | None = None,
                   threads: int | None = None, progress: bool = True) -> dict:
    """Decode a geocodec file (or directory) into one GeoPackage layer, row group by row group."""
    from tqdm.auto import tqdm

    from geocodec.format.dataset import GeocodecDataset
    from geocodec.format.query import Query

    output_path = os.fspath(output_path)
    ds = GeocodecDataset(input_path)
    query = Query.make(bbox, time)
    first = ds.files[0]
    gcol = first.geo["columns"][first.geometry_column]
    geom = first.geometry_column
    counts = {"rows": 0}
    bar = tqdm(total=ds.num_rows, unit="vec", desc="decode", disable=not progress)

    def batches():
        for part in ds.iter_rows(query, what="embeddings", threads=threads):
            table, emb = part.table, part.values
            if geom != "geometry":
                table = table.rename_columns(["geometry" if c == geom else c for c in table.column_names])
            flat = flat_table(table, emb)
            counts["rows"] += flat.num_rows
            bar.update(flat.num_rows)
            yield from flat.to_batches()

    ext = first.ext
    meta = {"geocodec_source": os.path.basename(os.fspath(input_path).rstrip("/")),
            "geocodec_codec": ext["codec"]["name"], "geocodec_quality": ext["codec"].get("quality", ""),
            "geocodec_fingerprint": first.spec.fingerprint,
            "geocodec_embedding_columns": f"emb_000..{embedding_column_names(ds.spec.dimension)[-1]}",
            "geocodec_dimension": ds.spec.dimension}
    try:
        write_batches(batches(), output_path, crs=gcol.get("crs"), geometry_types=gcol.get("geometry_types", []),
                      layer=layer, metadata=meta)
    except InputError as exc:
        if counts["rows"] == 0:
            raise InputError("no row group matches the query", source=ds.source) from exc
        raise
    finally:
        bar.close()
        ds.close()
    return {"rows": counts["rows"], "dimension": ds.spec.dimension}
