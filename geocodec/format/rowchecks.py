"""Checks of the columns outside the code columns: tile ids, geometries and times (SPEC.md 8).

The code columns carry CRCs; these do not, so a reader checks what it can afford:
:func:`check_text` (UTF-8 of string columns) on every read, :func:`check_rows` (also
WKB and plausible times) in ``validate`` and ``decompress``. Every error is a
:class:`~geocodec.errors.BitstreamError` naming the file, the row (``row_offset`` plus the
table row, or ``rows[i]`` for the rows a query kept) and the column.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from geocodec.errors import BitstreamError

#: datetimes outside these years are refused: no satellite image is older, none is from the far future
EARLIEST = np.datetime64("1950-01-01", "ms")
LATEST = np.datetime64("2100-01-01", "ms")
TIME_COLUMNS = ("datetime", "end_datetime")


def _row(i: int, row_offset: int, rows) -> int:
    """The file's row index of table row ``i``: ``rows[i]`` when given (the rows a query kept), else
    ``row_offset + i``."""
    return int(rows[i]) if rows is not None else row_offset + i


def _first_bad_utf8(column: pa.ChunkedArray) -> int:
    """Index of the first value of a string column that is not valid UTF-8 (-1 if none)."""
    base = 0
    for chunk in column.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid:
            for i, value in enumerate(chunk.cast(pa.binary()).to_pylist()):
                try:
                    None if value is None else value.decode("utf-8")
                except UnicodeDecodeError:
                    return base + i
        base += len(chunk)
    return -1


def check_text(table: pa.Table, *, source: str, row_offset: int = 0, rows=None) -> None:
    """Refuse a string column value that is not valid UTF-8 (a corrupted ``tile_id``)."""
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            bad = _first_bad_utf8(col)
            if bad >= 0:
                raise BitstreamError("not valid UTF-8 text (corrupted?)", source=source, row=_row(bad, row_offset, rows),
                                     field=name)


def check_times(table: pa.Table, *, source: str, row_offset: int = 0, rows=None) -> None:
    """Refuse a ``datetime``/``end_datetime`` before :data:`EARLIEST` or from :data:`LATEST` on."""
    for name in TIME_COLUMNS:
        if name not in table.column_names or not pa.types.is_timestamp(table.schema.field(name).type):
            continue
        t = table.column(name).cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isnat(t) & ((t < EARLIEST) | (t >= LATEST)))
        if bad.size:
            raise BitstreamError(f"{t[bad[0]]} is not a plausible time (before {EARLIEST.astype('datetime64[D]')} "
                                 f"or from {LATEST.astype('datetime64[D]')} on; corrupted?)", source=source,
                                 row=_row(int(bad[0]), row_offset, rows), field=name)


def check_geometry(table: pa.Table, column: str, *, source: str, row_offset: int = 0, rows=None) -> None:
    """Refuse a value of WKB column ``column`` that is not valid WKB."""
    import shapely

    if column not in table.column_names:
        return
    wkb = table.column(column).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(shapely.is_missing(shapely.from_wkb(wkb, on_invalid="ignore")))
    if bad.size:
        raise BitstreamError("not valid WKB", source=source, row=_row(int(bad[0]), row_offset, rows), field=column)


def check_rows(table: pa.Table, geometry: str, *, source: str, row_offset: int = 0, rows=None) -> None:
    """All of :func:`check_text`, :func:`check_geometry` and :func:`check_times` on one table."""
    check_text(table, source=source, row_offset=row_offset, rows=rows)
    check_geometry(table, geometry, source=source, row_offset=row_offset, rows=rows)
    check_times(table, source=source, row_offset=row_offset, rows=rows)
