"""Queries on a geocodec file: a bbox and a time range, pushed down to row groups.

:func:`matching_row_groups` keeps the row groups whose Parquet statistics (of the
``bbox`` covering columns and ``datetime``/``end_datetime``) say they may hold
matching rows; :func:`row_mask` then picks the matching rows of a row group's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geocodec.errors import InputError

#: the columns :func:`row_mask` reads
QUERY_COLUMNS = ("bbox", "datetime", "end_datetime")


@dataclass(frozen=True)
class Query:
    """A bbox (``xmin, ymin, xmax, ymax`` in the file's CRS) and/or a time range (start, end; None: open)."""

    bbox: tuple[float, float, float, float] | None = None   # in the file's CRS
    time: tuple[np.datetime64 | None, np.datetime64 | None] | None = None

    @staticmethod
    def make(bbox=None, time=None) -> "Query":
        """A checked query from any numbers and date strings (InputError for a bad bbox)."""
        if bbox is not None:
            bbox = tuple(float(v) for v in bbox)
            if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
                raise InputError(f"bbox must be xmin,ymin,xmax,ymax with min <= max, got {bbox}", field="bbox")
        if time is not None:
            start, end = time
            time = (None if start is None else np.datetime64(start, "ms"),
                    None if end is None else np.datetime64(end, "ms"))
        return Query(bbox=bbox, time=time)

    @property
    def columns(self) -> list[str]:
        """The columns :func:`row_mask` needs for this query."""
        out = []
        if self.bbox is not None:
            out.append("bbox")
        if self.time is not None:
            out += ["datetime", "end_datetime"]
        return out


def _stat(meta: pq.FileMetaData, rg: int, path: str):
    group = meta.row_group(rg)
    for j in range(group.num_columns):
        col = group.column(j)
        if col.path_in_schema == path:
            st = col.statistics
            if st is not None and st.has_min_max:
                return st.min, st.max
            return None
    return None


def matching_row_groups(meta: pq.FileMetaData, query: Query | None = None) -> list[int]:
    """Row groups whose statistics say they may hold rows matching ``query`` (all for None)."""
    query = query or Query()
    keep = []
    for rg in range(meta.num_row_groups):
        if query.bbox is not None:
            s = [_stat(meta, rg, f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
            if all(v is not None for v in s):
                qx0, qy0, qx1, qy1 = query.bbox
                if s[0][0] > qx1 or s[1][0] > qy1 or s[2][1] < qx0 or s[3][1] < qy0:
                    continue
        if query.time is not None:
            t0, t1 = query.time
            st = _stat(meta, rg, "datetime")
            se = _stat(meta, rg, "end_datetime") or st
            if st is not None:
                lo = np.datetime64(st[0].replace(tzinfo=None), "ms")
                # a row without end_datetime ends at its start (see row_mask): take the later max
                hi = max(np.datetime64(se[1].replace(tzinfo=None), "ms"),
                         np.datetime64(st[1].replace(tzinfo=None), "ms"))
                if (t1 is not None and lo > t1) or (t0 is not None and hi < t0):
                    continue
        keep.append(rg)
    return keep


def row_mask(table: pa.Table, query: Query | None) -> np.ndarray:
    """Bool mask of the rows of ``table`` matching ``query`` (bbox overlap, time overlap)."""
    n = table.num_rows
    mask = np.ones(n, dtype=bool)
    if query is None:
        return mask
    if query.bbox is not None:
        b = table.column("bbox").combine_chunks()
        x0, y0, x1, y1 = (b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
        qx0, qy0, qx1, qy1 = query.bbox
        mask &= (x0 <= qx1) & (x1 >= qx0) & (y0 <= qy1) & (y1 >= qy0)
    if query.time is not None:
        t0, t1 = query.time
        start = table.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        end = table.column("end_datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        end = np.where(np.isnat(end), start, end)
        if t0 is not None:
            mask &= ~np.isnat(end) & (end >= t0)
        if t1 is not None:
            mask &= ~np.isnat(start) & (start <= t1)
    return mask
