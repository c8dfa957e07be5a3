"""``geocodec qgis-plugin -o DIR``: the installable QGIS plugin zip (plugin folder at the zip root).

The zip vendors the ``geocodec`` package itself (pure Python, with the shipped model and
heads folders, about 3 MB) under ``geocodec_qgis/vendor/geocodec``, so QGIS needs only the
third-party packages (numpy, pyarrow, onnxruntime, constriction, shapely, pyproj), which
the plugin offers to pip-install into its own folder on first start.
"""

from __future__ import annotations

import configparser
import os
import zipfile
from pathlib import Path

PLUGIN = "geocodec_qgis"
SKIP_DIRS = {"__pycache__", "training"}
# files of the model folders that only training reads or writes: the torch checkpoint (the ONNX files are what a
# consumer runs) and the heads' training reports (each head's ONNX carries its own scores in its metadata)
TRAINING_ONLY = {"weights.safetensors", "scores.json", "ships_scores.json"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def plugin_source() -> Path:
    here = Path(__file__).resolve().parent.parent / "qgis_plugin" / PLUGIN
    if not (here / "metadata.txt").is_file():
        from .errors import GeocodecError

        raise GeocodecError("the QGIS plugin sources (qgis_plugin/geocodec_qgis) are not beside this geocodec "
                            "install: build the zip from a source checkout (pip install -e .)", source=str(here))
    return here


def _files(root: Path, skip_dirs=SKIP_DIRS):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith(("python3", ".")))
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def build_plugin_zip(out_dir: str | os.PathLike) -> dict:
    src = plugin_source()
    pkg = Path(__file__).resolve().parent
    meta = configparser.ConfigParser()
    meta.read(src / "metadata.txt")
    version = meta["general"]["version"]
    os.makedirs(out_dir, exist_ok=True)
    path = Path(out_dir) / f"{PLUGIN}-{version}.zip"
    tmp = path.with_suffix(".zip.tmp")
    n = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in _files(src, SKIP_DIRS | {"vendor"}):
            z.write(f, f"{PLUGIN}/{f.relative_to(src).as_posix()}")
            n += 1
        for f in _files(pkg):
            if f.name in TRAINING_ONLY:
                continue
            z.write(f, f"{PLUGIN}/vendor/geocodec/{f.relative_to(pkg).as_posix()}")
            n += 1
        # the spec package carries the JSON Schema every file's metadata is validated against
        spec = pkg.parent / "geoparquet_spec"
        for f in _files(spec, SKIP_DIRS | {"examples"}):
            z.write(f, f"{PLUGIN}/vendor/geoparquet_spec/{f.relative_to(spec).as_posix()}")
            n += 1
    os.replace(tmp, path)
    return {"path": str(path), "files": n, "bytes": path.stat().st_size, "version": version}
