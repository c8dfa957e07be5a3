"""Which Python packages the plugin needs, which are missing, and a pip install into the plugin folder."""

import importlib
import importlib.util
import os
import re
import subprocess
import sys

from . import deps_dir

REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")
_SPEC = re.compile(r"(==|!=|>=|<=|>|<)\s*([0-9][0-9.]*)")


def requirements(path: str = REQUIREMENTS_FILE) -> list[str]:
    """The pip requirements the plugin needs: ``requirements.txt`` beside this file, generated from geocodec's
    pyproject.toml (geocodec/cli/plugin_requirements.py), one a line, ``#`` comments ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as exc:
        raise RuntimeError(f"{path}: the plugin's dependency list cannot be read ({exc})") from exc
    return [ln for ln in lines if ln]


def requirement_name(req: str) -> str:
    """The distribution name of a requirement (``usearch>=2.26,<3`` -> ``usearch``)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", req)
    if m is None:
        raise ValueError(f"{REQUIREMENTS_FILE}: not a requirement: {req!r}")
    return m.group(1)


def _as_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def satisfies(version: tuple[int, ...], req: str) -> bool:
    """Whether an installed ``version`` (numeric parts) meets every ``>=``/``<``/``==``... clause of ``req``."""
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
           "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for op, bound in _SPEC.findall(req[len(requirement_name(req)):]):
        b = _as_tuple(bound)
        n = max(len(b), len(version))
        if not ops[op](tuple(version) + (0,) * (n - len(version)), b + (0,) * (n - len(b))):
            return False
    return True


def qgis_geos_version() -> tuple[int, int]:
    """GEOS (major, minor) that QGIS itself links; (99, 0) when unknown (outside QGIS)."""
    try:
        from qgis.core import Qgis

        return int(Qgis.geosVersionMajor()), int(Qgis.geosVersionMinor())
    except Exception:  # noqa: BLE001
        return (99, 0)


def shapely_requirement() -> str:
    """shapely wheels bundle GEOS, but inside QGIS their GEOS calls resolve to the GEOS QGIS already
    loaded: a wheel built for a newer GEOS then fails (e.g. 'WKB output dimension must be 2 or 3'
    with QGIS 3.22 on Debian 12, GEOS 3.11). shapely 2.0.x is built for GEOS 3.11."""
    base = next((r for r in requirements() if requirement_name(r).lower() == "shapely"), "shapely>=2.0")
    return base + ",<2.1" if qgis_geos_version() < (3, 12) and "<" not in base else base


def _installed_version(name: str) -> tuple[int, ...] | None:
    """Numeric version of an importable distribution, found without importing it: importing pyarrow or
    onnxruntime at QGIS start costs time and, in qgis_process 3.22, a crash at exit."""
    import importlib.metadata

    if importlib.util.find_spec(name.replace("-", "_")) is None:
        return None
    try:
        return _as_tuple(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return (0,)


def missing_packages() -> list[str]:
    """pip requirements of the packages that are not installed, or too old or too new for this QGIS
    (geocodec itself last)."""
    out = []
    for req in requirements():
        name = requirement_name(req)
        if name.lower() == "shapely":
            req = shapely_requirement()
        v = _installed_version(name)
        if v is None or not satisfies(v, req):
            out.append(req)
    if importlib.util.find_spec("geocodec") is None and not out:
        out.append("geocodec")
    return out


def python_executable() -> str:
    """QGIS's own interpreter (sys.executable is qgis itself inside QGIS on some platforms)."""
    exe = sys.executable
    if os.path.basename(exe).lower().startswith("qgis"):
        cand = os.path.join(sys.exec_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
        if os.name == "nt":
            cand = os.path.join(sys.exec_prefix, "python.exe")
        if os.path.exists(cand):
            return cand
        return "python3"
    return exe


def pip_command(packages: list[str]) -> list[str]:
    """The pip command that installs ``packages`` into the plugin's own folder with QGIS's Python."""
    return [python_executable(), "-m", "pip", "install", "-U", f"--target={deps_dir()}", *packages]


def install(packages: list[str]) -> tuple[bool, str]:
    """Run pip; (ok, output). The packages are importable after a QGIS restart."""
    os.makedirs(deps_dir(), exist_ok=True)
    try:
        r = subprocess.run(pip_command(packages), capture_output=True, text=True, timeout=1800)
    except Exception as exc:  # noqa: BLE001
        return False, f"could not run pip: {exc}"
    return r.returncode == 0, (r.stdout or "") + (r.stderr or "")
