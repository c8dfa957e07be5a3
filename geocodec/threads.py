"""How many CPU threads and processes geocodec uses: one environment variable, one meaning.

``GEOCODEC_THREADS`` is the size of each of geocodec's CPU pools: the entropy-decoding worker
processes of the reader (:func:`decode_workers`), the usearch threads of ``geocodec search``
(:func:`search_threads`) and the onnxruntime intra-op threads of every ONNX session
(:func:`onnx_threads`). An explicit argument (``--threads``, ``threads=``, the UDF context's
``threads``) wins over it. Unset or ``0`` leaves each pool at its own default: every usable core
for decoding and search, onnxruntime's default for a session, and 1 for the encoder inside the
openEO UDF (:func:`udf_threads`; a backend runs several UDF calls on one node).
"""

from __future__ import annotations

import os

from geocodec.errors import InputError

THREADS_ENV = "GEOCODEC_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says, else every core)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def env_threads() -> int | None:
    """``$GEOCODEC_THREADS`` as a number, or None when it is unset or empty."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{THREADS_ENV} must be an integer, got {text!r}", field=THREADS_ENV) from None


def _pool(threads, default: int) -> int:
    """``threads``, else ``$GEOCODEC_THREADS``; a missing or non-positive count means ``default``."""
    if threads is None or threads == "":
        threads = env_threads()
    threads = None if threads is None else int(threads)
    return default if threads is None or threads <= 0 else threads


def decode_workers(threads: int | None = None) -> int:
    """Entropy-decoding worker processes (1: decode in-process); default every usable core."""
    return max(1, _pool(threads, usable_cores()))


def search_threads(threads: int | None = None) -> int:
    """usearch threads for building and querying an index; default every usable core."""
    return max(1, _pool(threads, usable_cores()))


def onnx_threads(threads: int | None = None) -> int:
    """onnxruntime intra-op threads of one session; ``0`` means onnxruntime's own default."""
    return _pool(threads, 0)


def udf_threads(threads: int | None = None) -> int:
    """onnxruntime threads of the encoder in the openEO UDF and the local runner; default 1.

    A context ``threads`` of 0 defers to ``$GEOCODEC_THREADS`` like a missing one.
    """
    return _pool(threads or None, 1)
