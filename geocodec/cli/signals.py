"""What the command line does when a run is stopped or the system refuses a file.

SIGTERM is turned into the same :class:`KeyboardInterrupt` as Ctrl-C (:func:`terminate_as_interrupt`),
so every ``finally`` runs: the atomic writes remove their ``.NAME.<uuid>.tmp`` files and the work
folders are removed. An :class:`OSError` becomes one line naming the path (:func:`os_error_line`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading

_TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{32}\.tmp(\.gpkg)?$")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def terminate_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt in the main thread (as SIGINT does); restored after.

    Does nothing outside the main thread (Python only lets the main thread set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def os_error_line(exc: OSError, output: str | None = None, inputs=None) -> str:
    """``PATH: reason`` for an OSError: its own file name; else, for a system error (errno set: full disk,
    no permission) ``output``, the file being written; else (a library's read error, e.g. pyarrow's
    "Deserializing page header failed") ``inputs``, what the command reads."""
    if isinstance(inputs, (list, tuple)):
        inputs = ", ".join(map(str, inputs))
    path = exc.filename2 or exc.filename or (output if exc.errno is not None else (inputs or output))
    if path is not None:
        path = os.fspath(path)
        m = _TEMP.match(os.path.basename(path))
        if m:  # an atomic write's hidden temporary: name the file it was to become
            path = os.path.join(os.path.dirname(path), m.group(1))
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {reason}" if path else reason


def one_line(message: str) -> str:
    """``message`` on one line: the line breaks of a library's message (pyarrow's, GDAL's) become spaces."""
    return re.sub(r"\s*\n\s*", " ", message.strip())
