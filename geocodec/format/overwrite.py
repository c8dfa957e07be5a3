"""The one rule for outputs: a command never writes over one of its inputs.

:func:`refuse_overwrite` is called by every command that reads files and writes one
(compress, decompress/decode, merge, classify, search, stac, ships, monitor,
train-head): the output is refused when it is an input, by resolved path (symbolic
links followed) or, when both exist, by :func:`os.path.samefile` (hard links), or
when it is one of the data files of an input directory.
"""

from __future__ import annotations

import os
from typing import Iterable

from geocodec.errors import InputError
from geocodec.format.sources import PARQUET_SUFFIXES, is_url


def same_file(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` name one file: equal resolved paths, or (both existing) one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _in_directory(output: str, directory: str) -> bool:
    """True when ``output`` exists and is a data file that a walk of ``directory`` reads (sources.py)."""
    if not os.path.exists(output) or not os.path.basename(output).endswith(PARQUET_SUFFIXES):
        return False
    root = os.path.realpath(directory)
    return os.path.commonpath([root, os.path.realpath(output)]) == root


def refuse_overwrite(output, inputs: Iterable, *, field: str = "output") -> None:
    """Raise :class:`~geocodec.errors.InputError` (naming ``output`` and ``field``) if ``output`` is one of
    ``inputs`` (paths, directories or URLs; None entries are skipped)."""
    if output is None or is_url(output):
        return
    output = os.fspath(output)
    for item in inputs:
        if item is None or is_url(item):
            continue
        src = os.fspath(item)
        if same_file(output, src):
            raise InputError(f"the output would overwrite the input {src}", source=output, field=field)
        if os.path.isdir(src) and _in_directory(output, src):
            raise InputError(f"the output is one of the files of the input directory {src}: it would be "
                             "overwritten while read", source=output, field=field)
