"""Which Python packages the plugin needs, which are missing, and a pip install into the plugin folder."""

import importlib
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


def missing_packages() -> list[str]:
    """pip requirements of the packages that cannot be imported (geocodec itself last)."""
    out = []
    for name, req in REQUIRED.items():
        try:
            mod = importlib.import_module(name)
            if name == "numpy" and tuple(int(v) for v in mod.__version__.split(".")[:2]) < (1, 26):
                out.append(req)
        except Exception:  # noqa: BLE001 - a broken install counts as missing
            out.append(req)
    try:
        importlib.import_module("geocodec")
    except Exception:  # noqa: BLE001
        if not out:
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
