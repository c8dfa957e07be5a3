"""Shared fixtures; the helpers they use live in tests/helpers.py."""

from __future__ import annotations

import os

import pytest

from geocodec.codecs.compress import compress
from helpers import write_input


@pytest.fixture
def input_file(tmp_path) -> str:
    return write_input(tmp_path / "input.parquet")


@pytest.fixture(scope="session")
def compressed_file(tmp_path_factory) -> str:
    """A compressed file of 600 rows in several row groups (read-only: copy before modifying)."""
    d = tmp_path_factory.mktemp("compressed")
    src = write_input(d / "input.parquet")
    out = d / "compressed.parquet"
    compress(src, "embedding", out, quality=5, block_rows=20, row_group_rows=100, progress=False)
    return os.fspath(out)
