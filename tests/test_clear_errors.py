"""Errors that used to be unclear: gpkg streaming, malformed ``geo``, ``info DIR``, OS errors, index saves,
and what killed runs leave behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from helpers import edit_key, make_codec, random_codes, rewrite, set_column_value, write_codes
from geocodec import atomic
from geocodec.cli.main import main

N, BLOCK = 100, 17


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    ext, decoder = make_codec(channels=4, block_rows=BLOCK)
    return write_codes(d / "valid.parquet", random_codes(N, 4, seed=11), ext=ext, decoder=decoder,
                       row_group_rows=3 * BLOCK)


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def test_gpkg_keeps_the_location_of_a_bad_block_after_the_first_row_group(tmp_path, valid, capsys):
    pytest.importorskip("pyogrio")
    code = bytearray(pq.read_table(valid, columns=["code"]).column("code")[85].as_py())
    code[0] ^= 1
    bad = rewrite(valid, tmp_path / "bad.parquet", table=set_column_value("code", 85, bytes(code)))
    out = tmp_path / "out.gpkg"
    assert main(["decode", bad, "-o", str(out), "-q"]) == 2
    _one_line_error(capsys, bad, "row 85", "code")
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]


GEO_EDITS = {
    "not an object": lambda g: [1, 2],
    "primary_column missing": lambda g: {k: v for k, v in g.items() if k != "primary_column"},
    "columns a list": lambda g: {**g, "columns": []},
    "primary not in columns": lambda g: {**g, "primary_column": "nope"},
    "column a string": lambda g: {**g, "columns": {g["primary_column"]: "x"}},
    "bbox of strings": lambda g: {**g, "columns": {g["primary_column"]: {**g["columns"][g["primary_column"]],
                                                                          "bbox": ["a", "b", "c", "d"]}}},
    "crs a number": lambda g: {**g, "columns": {g["primary_column"]: {**g["columns"][g["primary_column"]],
                                                                       "crs": 4326}}},
    "geometry_types a dict": lambda g: {**g, "columns": {g["primary_column"]: {
        **g["columns"][g["primary_column"]], "geometry_types": {"a": 1}}}},
}


def _replace_geo(fn):
    def meta(kv):
        kv[b"geo"] = json.dumps(fn(json.loads(kv[b"geo"]))).encode()
        return kv
    return meta


@pytest.mark.parametrize("edit", list(GEO_EDITS), ids=list(GEO_EDITS))
@pytest.mark.parametrize("command", ["info", "decompress", "search"])
def test_malformed_geo_is_a_clear_error(tmp_path, valid, capsys, edit, command):
    bad = rewrite(valid, tmp_path / "geo.parquet", meta=_replace_geo(GEO_EDITS[edit]))
    out = str(tmp_path / "out.parquet")
    argv = {"info": ["info", bad], "decompress": ["decompress", bad, "-o", out, "-q"],
            "search": ["search", bad, "--point=-62,-10", "-o", out, "-q", "--no-save-index"]}[command]
    assert main(argv) == 2
    _one_line_error(capsys, bad, "malformed 'geo' metadata", "field 'geo")


def test_info_takes_a_folder(tmp_path, valid, capsys):
    folder = tmp_path / "part"
    (folder / "a").mkdir(parents=True)
    rewrite(valid, folder / "a" / "x.parquet")
    rewrite(valid, folder / "y.parquet")
    assert main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [os.path.basename(f["file"]) for f in out["files"]] == ["x.parquet", "y.parquet"] and out["mergeable"]


def test_os_errors_are_one_line_naming_the_path_and_leave_nothing(tmp_path, valid, capsys, monkeypatch):
    real_replace = os.replace

    def full_disk(src, dst, *a, **k):
        if os.path.basename(os.fspath(src)).startswith(".out.parquet."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "out.parquet"
    assert main(["decompress", valid, "-o", str(out), "-q"]) == 2
    line = _one_line_error(capsys, str(out), "No space left on device")
    assert ".tmp" not in line
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path, valid, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["decompress", valid, "-o", str(ro / "out.parquet"), "-q"]) == 2
        _one_line_error(capsys, "ro", "Permission denied")
    finally:
        ro.chmod(0o700)


def test_failed_index_save_is_a_warning(tmp_path, valid, capsys):
    index = tmp_path / "no-such-folder" / "idx"
    out = tmp_path / "hits.parquet"
    assert main(["search", valid, "--point=-62,-10", "-k", "3", "--method", "exact", "--index", str(index),
                 "-o", str(out), "-q"]) == 0
    assert pq.read_table(out).num_rows == 3
    err = capsys.readouterr().err
    assert "warning: the index could not be saved" in err and str(index) in err


def test_stale_temporaries_are_removed_by_the_next_write(tmp_path, valid):
    out = tmp_path / "out.parquet"
    old = tmp_path / f".out.parquet.{'a' * 32}.tmp"
    fresh = tmp_path / f".out.parquet.{'b' * 32}.tmp"
    other = tmp_path / f".other.parquet.{'c' * 32}.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"x" * 100)
    stale = time.time() - atomic.STALE_AFTER_S - 60
    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))
    assert main(["decompress", valid, "-o", str(out), "-q"]) == 0
    assert not old.exists() and fresh.exists() and other.exists()  # only NAME's own, only when stale


def test_work_dirs_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    gone = tmp_path / f"geocodec-encode-{dead}-abc"
    mine = tmp_path / f"geocodec-encode-{os.getpid()}-def"
    unrelated = tmp_path / f"tmp-{dead}"
    for p in (gone, mine, unrelated):
        (p / "inputs").mkdir(parents=True)
    new = atomic.work_dir("encode", root=str(tmp_path))
    assert not gone.exists() and mine.exists() and unrelated.exists()
    assert os.path.basename(new).startswith(f"geocodec-encode-{os.getpid()}-")


SLOW_WRITE = """
import contextlib, sys, time
import geocodec.codecs.compress as c
from geocodec.cli.main import main

real = c.atomic_output

@contextlib.contextmanager
def slow(path):
    with real(path) as tmp:
        open(tmp, "wb").write(b"x" * 1000)
        open(sys.argv[2] + ".started", "w").close()
        time.sleep(60)
        yield tmp

c.atomic_output = slow
sys.exit(main(["decompress", sys.argv[1], "-o", sys.argv[2], "-q"]))
"""


def test_sigterm_removes_the_temporary_file(tmp_path, valid):
    out = tmp_path / "out.parquet"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, valid, str(out)], cwd=os.getcwd(),
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if (tmp_path / "out.parquet.started").exists():
                break
            time.sleep(0.05)
        assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], "the write did not start"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, proc.stderr.read()
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
