"""Atomic file output: write beside the target, rename into place when done; and what crashed runs left.

A write goes to a hidden sibling ``.NAME.<uuid>.tmp`` that replaces ``NAME`` when complete and is
removed on error (and, through the CLI's signal handlers, on SIGTERM/SIGINT). A run killed outright
(``kill -9``, power loss) cannot clean up: the next write of ``NAME`` removes the stale siblings
(:func:`remove_stale_temps`, older than :data:`STALE_AFTER_S`). Work folders (:func:`work_dir`) are
named ``geocodec-KIND-PID-…`` in the system temp folder; one whose process is gone is removed by the
next :func:`work_dir` call (:func:`remove_stale_work_dirs`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid

from geocodec.errors import GeocodecError

#: a temporary sibling untouched this long (seconds) belongs to a dead run
STALE_AFTER_S = 3600.0
_WORK_PREFIX = "geocodec-"
_WORK_NAME = re.compile(r"^geocodec-[a-z-]+?-(\d+)-[^/]+$")


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(r"^\." + re.escape(name) + r"\.[0-9a-f]{32}\.tmp(\.gpkg(-journal|-wal|-shm)?)?$")


def remove_stale_temps(path: str | os.PathLike, *, older_than_s: float | None = None) -> list[str]:
    """Remove the ``.NAME.<uuid>.tmp`` siblings of ``path`` (files or folders) untouched for
    ``older_than_s`` seconds (default :data:`STALE_AFTER_S`): what killed runs left. Returns their paths."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    limit = STALE_AFTER_S if older_than_s is None else older_than_s
    pattern, now, removed = _temp_pattern(name), time.time(), []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if not pattern.match(entry):
            continue
        full = os.path.join(directory, entry)
        try:
            if now - os.lstat(full).st_mtime < limit:
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)
            removed.append(full)
        except OSError:
            pass  # another run removed it, or it is not ours to remove
    return removed


def temp_path_for(path: str) -> str:
    """A hidden, unique temporary path beside ``path`` (``.NAME.<uuid>.tmp`` in its directory).

    Stale temporaries of earlier, killed runs are removed first (:func:`remove_stale_temps`). Raises
    :class:`~geocodec.errors.GeocodecError` if the directory does not exist or ``path`` is a directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise GeocodecError(f"output directory {directory} does not exist", source=path)
    if os.path.isdir(path):
        raise GeocodecError("output path is a directory", source=path)
    remove_stale_temps(path)
    return os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path; on success it replaces ``path``, on error (or interruption) it is removed."""
    path = os.fspath(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_work_dirs(root: str | None = None) -> list[str]:
    """Remove ``geocodec-KIND-PID-…`` work folders under ``root`` (default the system temp folder) whose
    process ``PID`` is no longer running. Returns their paths."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = os.listdir(root)
    except OSError:
        return removed
    for entry in entries:
        m = _WORK_NAME.match(entry)
        full = os.path.join(root, entry)
        if not m or _alive(int(m.group(1))) or not os.path.isdir(full) or os.path.islink(full):
            continue
        shutil.rmtree(full, ignore_errors=True)
        if not os.path.exists(full):
            removed.append(full)
    return removed


def work_dir(kind: str, root: str | None = None) -> str:
    """A new work folder ``geocodec-KIND-PID-XXXX`` under ``root`` (default the system temp folder), after
    removing those of dead runs. The caller removes it when done."""
    if not re.fullmatch(r"[a-z]+(-[a-z]+)*", kind):
        raise ValueError(f"work folder kind must be lowercase words, got {kind!r}")
    remove_stale_work_dirs(root)
    return tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{kind}-{os.getpid()}-", dir=root)
