"""Which Python packages the plugin needs, which are missing, and a pip install into the plugin folder."""

import importlib
import importlib.util
import os
import subprocess
import sys

from . import deps_dir

# import name -> pip requirement
REQUIRED = {
    "numpy": "numpy>=1.26",
    "pyarrow": "pyarrow>=15",
    "onnxruntime": "onnxruntime",
    "constriction": "constriction",
    "shapely": "shapely>=2",
    "pyproj": "pyproj",
    "jsonschema": "jsonschema>=4.19",
    "tqdm": "tqdm",
    "usearch": "usearch>=2.26,<3",
}


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
    return "shapely>=2.0,<2.1" if qgis_geos_version() < (3, 12) else "shapely>=2"


def _installed_version(name: str) -> tuple[int, ...] | None:
    """(major, minor) of an importable distribution, found without importing it: importing pyarrow or
    onnxruntime at QGIS start costs time and, in qgis_process 3.22, a crash at exit."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return None
    try:
        v = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    return tuple(int(p) for p in v.split(".")[:2] if p.isdigit())


def missing_packages() -> list[str]:
    """pip requirements of the packages that are not installed, or too old or too new for this QGIS
    (geocodec itself last)."""
    out = []
    for name, req in REQUIRED.items():
        if name == "shapely":
            req = shapely_requirement()
        v = _installed_version(name)
        if v is None:
            out.append(req)
        elif name == "numpy" and v < (1, 26):
            out.append(req)
        elif name == "shapely" and (v < (2, 0) or ("<2.1" in req and v >= (2, 1))):
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
    return [python_executable(), "-m", "pip", "install", "-U", f"--target={deps_dir()}", *packages]


def install(packages: list[str]) -> tuple[bool, str]:
    """Run pip; (ok, output). The packages are importable after a QGIS restart."""
    os.makedirs(deps_dir(), exist_ok=True)
    try:
        r = subprocess.run(pip_command(packages), capture_output=True, text=True, timeout=1800)
    except Exception as exc:  # noqa: BLE001
        return False, f"could not run pip: {exc}"
    return r.returncode == 0, (r.stdout or "") + (r.stderr or "")
