"""Errors that name what is wrong: the file, the row and the field."""

from __future__ import annotations


class GeocodecError(Exception):
    """A problem with user input or a file, reported with where it is.

    ``source`` is the file or URL, ``row`` the row index in the file (or row
    group/block where that is all we know) and ``field`` the metadata field or
    column at fault.
    """

    def __init__(self, message: str, *, source: str | None = None,
                 row: int | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.row = row
        self.field = field
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(prefix + message)

    def at(self, *, source: str | None = None, row: int | None = None,
           field: str | None = None) -> "GeocodecError":
        """The same error (same class) with missing location details filled in."""
        return type(self)(
            self.message,
            source=self.source if self.source is not None else source,
            row=self.row if self.row is not None else row,
            field=self.field if self.field is not None else field,
        )


class BitstreamError(GeocodecError):
    """Code bytes that are truncated, corrupted or fail their checksum."""


class MetadataError(GeocodecError):
    """Missing, malformed or unsupported extension metadata."""


class InputError(GeocodecError):
    """Input data a codec cannot take: NaN/inf, empty, no CRS, ragged vectors."""
