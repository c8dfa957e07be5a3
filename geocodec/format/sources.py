"""Where geocodec data comes from: a file, a directory of files or an HTTP(S) URL.

The one rule every reader and task follows (:func:`expand_sources`): a URL is one
file; a directory is every ``.parquet``/``.geoparquet`` file under it, walked
recursively (so hive-style partitions such as ``date=2024-01-01/part-0.parquet`` are
found), sorted by path, hidden files (``.name``) left out; anything else is a file.
Also: opening a source for reading (:func:`open_binary`). What a file names by href (a
referenced decoder or tables) is read by :mod:`.hrefs`, under its security rules.
"""

from __future__ import annotations

import os
import stat
from typing import Iterable

from geocodec.errors import InputError

#: file names a directory walk picks up
PARQUET_SUFFIXES = (".parquet", ".geoparquet")


def is_url(source) -> bool:
    """True for an ``http://`` or ``https://`` source."""
    return str(source).startswith(("http://", "https://"))


def expand_sources(sources) -> list[str]:
    """The files of a source or a list of sources, by the one rule (see the module docstring).

    Raises :class:`~geocodec.errors.InputError` for an empty list or a directory without data files.
    """
    items: Iterable = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    paths: list[str] = []
    for item in items:
        src = os.fspath(item)
        if not is_url(src) and os.path.isdir(src):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(src) for name in names
                           if name.endswith(PARQUET_SUFFIXES) and not name.startswith("."))
            if not found:
                raise InputError("directory holds no .parquet files", source=src)
            paths += found
        else:
            paths.append(src)
    if not paths:
        raise InputError("no geocodec file given")
    return paths


def open_binary(source: str):
    """A seekable binary file object: a local regular file (:func:`check_regular_file`), or ranged HTTP reads
    without read-ahead.

    URLs are read by :class:`~geocodec.format.http_file.HttpFile` (timeouts, retries, clear errors
    naming the URL and HTTP status); pyarrow asks for exactly the byte ranges it needs.
    """
    if is_url(source):
        from geocodec.format.http_file import HttpFile

        return HttpFile(source)
    return open(check_regular_file(source), "rb")


def check_regular_file(path: str) -> str:
    """``path``, if it is a regular file (or a link to one): a FIFO, device or socket would block a reader
    or never end, so it is an :class:`~geocodec.errors.InputError`; a missing path raises FileNotFoundError."""
    mode = os.stat(path).st_mode  # stat does not open: a FIFO does not block here
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise InputError(f"not a regular file ({kind}): refused, reading it could block or never end", source=path)
    return path
