"""A saved search index is checked against what it was saved with (issue 13): a replaced vectors.npy or
hnsw.usearch, or an edited index.json, is refused with the index path named; --rebuild-index rebuilds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from geocodec.tasks.search import (INDEX_META, INDEX_VECTORS, IndexIntegrityError, SearchIndex, Searcher,
                                   StaleIndexError, open_index)

from helpers import REPO, compressed_input


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> str:
    return compressed_input(tmp_path_factory.mktemp("index"), "f", n=300, d=16, seed=3, block_rows=32,
                            row_group_rows=128)


def _indexed(small_file, tmp_path, method="exact") -> tuple[str, str]:
    path = str(tmp_path / "f.parquet")
    shutil.copy(small_file, path)
    s = Searcher(path, method=method, progress=False)
    assert s.index_status.startswith("built and saved")
    return path, path + ".geocodec-index"


def test_replaced_vectors_refused(small_file, tmp_path):
    path, index = _indexed(small_file, tmp_path)
    vec = os.path.join(index, INDEX_VECTORS)
    good = np.load(vec)
    np.save(vec, good[::-1].copy())   # same shape, same dtype, same size: only the hash tells
    assert os.path.getsize(vec) == json.load(open(os.path.join(index, INDEX_META)))["files"][INDEX_VECTORS]["bytes"]
    for load in (lambda: SearchIndex.load(index), lambda: open_index(path), lambda: Searcher(path, progress=False)):
        with pytest.raises(IndexIntegrityError) as info:
            load()
        msg = str(info.value)
        assert index in msg and "vectors.npy is not the file the index was saved with" in msg
        assert "--rebuild-index" in msg and info.value.field == INDEX_VECTORS
    assert isinstance(info.value, StaleIndexError)
    # the CLI: refused, exit non-zero, the path named; --rebuild-index rebuilds and searches
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO)}
    base = [sys.executable, "-m", "geocodec", "search", path, "--tile-id", "p00001", "-k", "3", "-o", str(tmp_path / "hits.parquet")]
    r = subprocess.run(base, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0 and index in r.stderr + r.stdout, r.stderr
    r = subprocess.run(base + ["--method", "exact", "--rebuild-index"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert SearchIndex.load(index).rows == 300
    np.testing.assert_array_equal(np.load(vec), good)


def test_edited_metadata_refused(small_file, tmp_path):
    path, index = _indexed(small_file, tmp_path)
    meta_path = os.path.join(index, INDEX_META)
    meta = json.load(open(meta_path))
    # record the hash of replaced vectors, without recomputing the digest: refused as an edited index.json
    vec = os.path.join(index, INDEX_VECTORS)
    np.save(vec, np.load(vec)[::-1].copy())
    import hashlib

    meta["files"][INDEX_VECTORS]["sha256"] = hashlib.sha256(open(vec, "rb").read()).hexdigest()
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(IndexIntegrityError, match="index.json was modified after the index was saved") as info:
        open_index(path)
    assert index in str(info.value) and info.value.field == "digest"
    # an edited row count or source signature: the same
    for edit in (lambda m: m.update(rows=299), lambda m: m["source"]["files"][0].update(rows=1)):
        meta = json.load(open(meta_path))
        edit(meta)
        json.dump(meta, open(meta_path, "w"))
        with pytest.raises(IndexIntegrityError, match="modified"):
            SearchIndex.load(index)


def test_replaced_hnsw_refused(small_file, tmp_path):
    path, index = _indexed(small_file, tmp_path, method="ann")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(path, other / "f.parquet")
    # an index of the same file built again with other vectors would match in shape only: flip one byte
    hnsw = os.path.join(index, "hnsw.usearch")
    data = bytearray(open(hnsw, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(hnsw, "wb").write(bytes(data))
    with pytest.raises(IndexIntegrityError, match="hnsw.usearch is not the file"):
        open_index(path)
    Searcher(path, method="ann", rebuild=True, progress=False)
    assert open_index(path).rows == 300


def test_index_of_an_older_version_refused(small_file, tmp_path):
    path, index = _indexed(small_file, tmp_path)
    meta_path = os.path.join(index, INDEX_META)
    meta = json.load(open(meta_path))
    meta["version"] = 1
    for key in ("files", "digest"):
        meta.pop(key)
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(IndexIntegrityError, match="older geocodec without the hashes") as info:
        open_index(path)
    assert index in str(info.value)


def test_saved_index_loads_untouched(small_file, tmp_path):
    path, index = _indexed(small_file, tmp_path)
    again = Searcher(path, progress=False)
    assert again.index_status.startswith("loaded")
    meta = json.load(open(os.path.join(index, INDEX_META)))
    assert set(meta["files"]) == {INDEX_VECTORS} and len(meta["digest"]) == 64
