"""A geocodec dataset: the files of a source (a file, a directory walked recursively or a URL)
or of a list of sources, read as one through the reader API of :mod:`.reader`.

Global row indices count the rows of the files in order (:attr:`GeocodecDataset.row_offsets`).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pyarrow as pa

from geocodec.errors import InputError, MetadataError
from geocodec.format.compat import merge_incompatibility
from geocodec.format.metadata import CodecSpec
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile, Rows, as_row_indices, check_what, gather
from geocodec.format.sources import expand_sources
from geocodec.format.writer import CODE_COLUMNS


class GeocodecDataset:
    """A file, a directory of files (e.g. partitioned by grid cell and date), a URL, or a list of them.

    The files are found by :func:`~geocodec.format.sources.expand_sources`. With
    ``same_codec`` (the default) they must share one codec, CRS and extra columns
    (:func:`~geocodec.format.compat.merge_incompatibility`); without, only their order
    and row numbering are shared (e.g. per-date files of several qualities of one model).
    """

    def __init__(self, source, *, same_codec: bool = True):
        self.source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else \
            ", ".join(os.fspath(s) for s in source)
        self.files: list[GeocodecFile] = []
        try:
            for p in expand_sources(source):
                self.files.append(GeocodecFile(p))
            first = self.files[0]
            for f in self.files[1:] if same_codec else []:
                reason = merge_incompatibility(first, f)
                if reason:
                    raise MetadataError(f"files in one dataset must share one codec: {reason}", source=f.source)
        except BaseException:
            self.close()
            raise
        #: first global row of each file, and the total: ``len(files) + 1`` int64
        self.row_offsets = np.concatenate([[0], np.cumsum([f.num_rows for f in self.files])]).astype(np.int64)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close every file."""
        for f in self.files:
            f.close()

    # -- metadata ------------------------------------------------------------------------
    @property
    def spec(self) -> CodecSpec:
        """The codec of the (first) file."""
        return self.files[0].spec

    @property
    def num_rows(self) -> int:
        """Rows over all files."""
        return int(self.row_offsets[-1])

    @property
    def crs(self):
        """The CRS of the (first) file's geometry column."""
        return self.files[0].crs

    @property
    def bbox(self) -> list[float] | None:
        """``[xmin, ymin, xmax, ymax]`` over every file's bbox (None if a file records none)."""
        boxes = [f.bbox for f in self.files]
        if any(b is None for b in boxes):
            return None
        return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                max(b[3] for b in boxes)]

    def files_for(self, query: Query | None) -> list[GeocodecFile]:
        """The files whose footer bbox can hold rows matching ``query``."""
        if query is None or query.bbox is None:
            return self.files
        out = []
        qx0, qy0, qx1, qy1 = query.bbox
        for f in self.files:
            b = f.bbox
            if b and (b[0] > qx1 or b[1] > qy1 or b[2] < qx0 or b[3] < qy0):
                continue
            out.append(f)
        return out

    # -- the reader API --------------------------------------------------------------------
    def iter_rows(self, query: Query | None = None, columns: list[str] | None = None, *, what: str | None = None,
                  threads: int | None = None) -> Iterator[Rows]:
        """:meth:`GeocodecFile.iter_rows` over the files in order; ``rows`` are global row indices."""
        check_what(what)
        for f in self.files_for(query):
            yield from f._iter_rows(query, columns, what=what, threads=threads,
                                    base=int(self.row_offsets[self.files.index(f)]))

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None, *,
                     threads: int | None = None) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(table, embeddings) per row group of every file: :meth:`iter_rows` with ``what="embeddings"``."""
        for r in self.iter_rows(query, columns, what="embeddings", threads=threads):
            yield r.table, r.values

    def iter_take(self, rows, columns: list[str] | None = None, *, what: str | None = None,
                  threads: int | None = 1) -> Iterator[Rows]:
        """The rows at global indices ``rows``, per file and row group, ascending, each once."""
        check_what(what)
        rows = np.unique(as_row_indices(rows))
        if rows.size and (rows[0] < 0 or rows[-1] >= self.num_rows):
            bad = int(rows[0] if rows[0] < 0 else rows[-1])
            raise InputError(f"row {bad} is out of range: the dataset has {self.num_rows} rows", source=self.source,
                             row=bad, field="row")
        for fi, f in enumerate(self.files):
            lo, hi = self.row_offsets[fi], self.row_offsets[fi + 1]
            mine = rows[(rows >= lo) & (rows < hi)] - lo
            if mine.size:
                yield from f._iter_take(mine, columns, what=what, threads=threads, base=int(lo))

    def take(self, rows, columns: list[str] | None = None, *, what: str | None = None,
             threads: int | None = 1) -> tuple[pa.Table, np.ndarray | None]:
        """(columns, values by ``what``) of the rows at global indices ``rows``, in the order given
        (see :meth:`GeocodecFile.take`)."""
        return gather(self.iter_take(rows, columns, what=what, threads=threads), rows, self.files[0], columns, what)

    def read(self, query: Query | None = None, columns: list[str] | None = None, *,
             threads: int | None = None) -> tuple[pa.Table, np.ndarray]:
        """Every matching row at once: (table without code columns, embeddings ``(N, D)``)."""
        tables, embs = [], []
        for t, e in self.iter_decoded(query, columns, threads=threads):
            tables.append(t)
            embs.append(e)
        if not tables:
            empty = self.files[0].parquet.schema_arrow.empty_table()
            return empty.drop_columns(list(CODE_COLUMNS)), np.zeros((0, self.spec.dimension), np.float32)
        return pa.concat_tables(tables), np.concatenate(embs)


def open_dataset(source, **kwargs) -> GeocodecDataset:
    """:class:`GeocodecDataset` of a file, directory, URL or list of them."""
    return GeocodecDataset(source, **kwargs)
