"""What the bench scripts share: the machine line of every page, peak memory, fresh-interpreter runs and
the atomic page writer.

The scripts run as ``python bench/<script>.py``, so this folder is first on ``sys.path`` and they
``import common``. Importing it puts the checkout that holds this folder first on ``sys.path`` as
well, so a benchmark measures this checkout's ``geocodec``, not another installed copy.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# -- the machine ---------------------------------------------------------------------------------
def cpu_count() -> int:
    """CPUs this process may run on (its affinity where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_description(extra: str = "") -> str:
    """One line for a page: CPUs and model, RAM, OS, and the versions of Python and the core packages
    (``extra``, e.g. ``"usearch 2.1"``, appended)."""
    import constriction
    import numpy as np
    import onnxruntime
    import pyarrow as pa

    import geocodec

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
        mem_s = f", {mem:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        mem_s = ""
    line = (f"{cpu_count()} vCPU ({model}){mem_s}, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}, "
            f"constriction {constriction.__version__ if hasattr(constriction, '__version__') else '0.5.0'}, "
            f"onnxruntime {onnxruntime.__version__}, geocodec {geocodec.__version__}")
    return f"{line}, {extra}" if extra else line


# -- memory --------------------------------------------------------------------------------------
def proc_status_bytes(key: str, pid: int | str = "self") -> int:
    """A ``/proc/PID/status`` memory field (``VmHWM``, ``VmRSS``, ...) in bytes; 0 where there is none."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss(pid: int | str = "self") -> int:
    """Peak resident memory of one process in bytes: its ``VmHWM`` (``getrusage``'s maxrss is not used: on
    Linux a child's carries over the forking parent's peak). In a child run by :func:`run_child`:
    ``from common import peak_rss``."""
    return proc_status_bytes("VmHWM", pid)


def tree_peak_rss(cmd: list[str], *, cwd: str | os.PathLike | None = None,
                  interval_s: float = 0.2) -> tuple[float, int, int, str]:
    """Run ``cmd`` (in ``cwd``); (wall seconds, the largest summed RSS of its process tree in bytes, sampled every
    ``interval_s``, return code, its output): the peak of a command that starts workers of its own."""
    import psutil

    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(interval_s)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    return time.time() - t0, peak, proc.returncode, out


# -- fresh interpreters ----------------------------------------------------------------------------
def run_child(code: str, *, cwd: str | os.PathLike, timeout: float = 900) -> dict:
    """Run ``code`` in a fresh interpreter in ``cwd``, with this folder importable (``import common``);
    it prints one JSON line last, returned parsed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(cwd), timeout=timeout,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- pages -----------------------------------------------------------------------------------------
def write_page(path: str | os.PathLike, text: str) -> None:
    """Write a generated page atomically (:func:`geocodec.atomic.atomic_output`): a run that fails leaves the
    committed page as it was."""
    from geocodec.atomic import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)
