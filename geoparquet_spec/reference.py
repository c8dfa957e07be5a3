"""Reference reader, writer and validator of the geocodec GeoParquet extension (SPEC.md).

A thin shell over :mod:`geocodec`: every function here delegates to the library and
adds no format logic of its own, so the reference and the tools can never disagree.

* :func:`read` -- rows and decoded float32 embeddings of a file, a directory of files or
  an ``http(s)://`` URL, optionally filtered by bbox and time (row groups are pruned
  through the ``bbox`` covering column and ``datetime`` statistics).
* :func:`write` -- fit the codec on float embeddings in a GeoParquet file and write an
  extension file (:func:`geocodec.codecs.compress.compress`).
* :func:`open_writer` -- stream already-quantized codes with a given ``geocodec``
  description and decoder (:class:`geocodec.format.writer.GeocodecWriter`).
* :func:`validate` -- GeoParquet 1.1 + extension checks, as a list of findings
  (:func:`geocodec.format.validate.validate_file`).

A decoder written only from SPEC.md, in pure Python, lives in
``tests/test_spec_reference_decoder.py``; it checks that SPEC.md determines decoding.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from geocodec.codecs.compress import compress
from geocodec.format.dataset import GeocodecDataset
from geocodec.format.query import Query
from geocodec.format.validate import Finding, validate_file
from geocodec.format.writer import GeocodecWriter

__all__ = ["read", "write", "open_writer", "validate", "Finding"]


def read(path_or_url: str | os.PathLike, bbox=None, time=None, *,
         columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
    """Rows matching ``bbox`` / ``time`` and their decoded embeddings.

    ``bbox``: ``(xmin, ymin, xmax, ymax)`` in the file's CRS; ``time``: ``(start, end)``
    (ISO strings, ``numpy.datetime64`` or ``None`` for open ends). Returns the rows
    without the code columns and a float32 array ``(rows, embedding.dimension)``.
    """
    ds = GeocodecDataset(path_or_url)
    try:
        return ds.read(Query.make(bbox, time), columns)
    finally:
        ds.close()


def write(input_path: str | os.PathLike, output_path: str | os.PathLike, *, column: str = "embedding",
          **options) -> dict:
    """Compress the float vectors in ``column`` of a GeoParquet file into an extension file.

    ``options`` go to :func:`geocodec.codecs.compress.compress` (``quality``, ``crs``, ``model``,
    ``block_rows``, ``row_group_rows``, ``progress``). Returns its rate summary.
    """
    return compress(input_path, column, output_path, **options)


def open_writer(path: str | os.PathLike, ext: dict, decoder: bytes, crs: dict, **options) -> GeocodecWriter:
    """A streaming writer for integer codes under a ready ``geocodec`` description.

    Use as a context manager and call ``write(tile_id=..., geometry=..., q=...)``; see
    :class:`geocodec.format.writer.GeocodecWriter` (``options``: ``extra_schema``, ``row_group_rows``).
    """
    return GeocodecWriter(path, ext, decoder, crs, **options)


def validate(path: str | os.PathLike, *, deep: bool = True) -> list[Finding]:
    """Every finding for one file (errors and distribution warnings); empty means valid.

    ``deep`` also entropy-decodes every block and checks geometries against ``bbox``.
    """
    return validate_file(os.fspath(path), deep=deep)
