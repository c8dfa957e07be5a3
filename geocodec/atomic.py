"""Atomic file output: write beside the target, rename into place when done."""

from __future__ import annotations

import contextlib
import os
import uuid

from geocodec.errors import GeocodecError


def temp_path_for(path: str) -> str:
    """A hidden, unique temporary path beside ``path`` (``.NAME.<uuid>.tmp`` in its directory).

    Raises :class:`~geocodec.errors.GeocodecError` if the directory does not exist or ``path`` is a directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise GeocodecError(f"output directory {directory} does not exist", source=path)
    if os.path.isdir(path):
        raise GeocodecError("output path is a directory", source=path)
    return os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = os.fspath(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
