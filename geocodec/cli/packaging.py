"""What ships where, read from the package layout: the UDF dependency archive and the QGIS plugin zip.

Each distribution is a list of the library's layers (subpackages of ``geocodec``) plus the
package's own top-level modules; no hand-kept skip list decides it:

* ``udf`` (``geocodec udf-archive``): what an openEO worker runs: ``format``, ``codecs`` and
  the producer core (the modules of ``geocodec/producer`` itself; its ``local`` and
  ``backend`` subpackages run on the client), plus the model folder and the spec's JSON Schema.
* ``qgis`` (``geocodec qgis-plugin``): what a laptop runs: ``format``, ``codecs`` and ``tasks``,
  the shipped models and heads, and ``geoparquet_spec`` (the JSON Schema and SPEC.md).

Neither ships training code or a model folder's training-only files (:data:`TRAINING_ONLY`).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

from geocodec.errors import GeocodecError, InputError
from geocodec.resources import MODELS_DIR, PACKAGE_DIR, package_data_dir, source_checkout

__all__ = ["DISTRIBUTIONS", "TRAINING_ONLY", "WORKER_PLATFORMS", "PLUGIN", "package_files",
           "build_udf_archive", "build_plugin_zip"]

# layer -> whether its own subpackages ship too
DISTRIBUTIONS = {
    "udf": {"format": True, "codecs": True, "producer": False},
    "qgis": {"format": True, "codecs": True, "tasks": True},
}
# files of the model folders that only training reads or writes: the torch checkpoint (the ONNX files are what
# a consumer runs) and the heads' training reports (each head's ONNX carries its own scores in its metadata)
TRAINING_ONLY = {"weights.safetensors", "checkpoint.pt", "scores.json", "ships_scores.json"}
WORKER_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PLUGIN = "geocodec_qgis"


def _walk(root: Path, *, recursive: bool = True):
    """Source and data files under ``root`` in a stable order (no caches, no hidden files)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if recursive and d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")) and not name.startswith(".") and name not in TRAINING_ONLY:
                yield Path(dirpath) / name


def package_files(distribution: str):
    """``(path, name inside geocodec/)`` of every library file ``distribution`` ships (models excluded)."""
    layers = DISTRIBUTIONS[distribution]
    for p in sorted(PACKAGE_DIR.glob("*.py")):
        yield p, p.name
    for layer, with_subpackages in layers.items():
        root = PACKAGE_DIR / layer
        for p in _walk(root, recursive=with_subpackages):
            yield p, p.relative_to(PACKAGE_DIR).as_posix()


def _schema_files():
    spec = package_data_dir("geoparquet_spec")
    for p in _walk(spec / "schema"):
        yield p, "geoparquet_spec/" + p.relative_to(spec).as_posix()


def build_udf_archive(out_path, *, model: str | None = None, packages: list[str] | None = None,
                      platform=WORKER_PLATFORMS, python_version: str = "3.11") -> dict:
    """Zip for ``udf-dependency-archives``: the ``udf`` distribution under ``geocodec/``, ``models/<name>/``,
    the JSON Schema, and, with ``packages``, those packages' wheels for the workers' platform, unpacked (a
    backend puts the folder on ``sys.path``; native extensions cannot be imported from a zipped wheel)."""
    from geocodec.codecs.learned import DEFAULT_MODEL, model_dir
    from geocodec.producer.backend.graph import DEPS_DIR

    mdir = model_dir(model or DEFAULT_MODEL).resolve()
    sizes: dict[str, int] = {"geocodec": 0, "model": 0}
    out_path = os.fspath(out_path)
    tmp = out_path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for p, name in package_files("udf"):
            z.write(p, "geocodec/" + name)
            sizes["geocodec"] += p.stat().st_size
        for p, name in _schema_files():
            z.write(p, name)
        for p in _walk(mdir):
            z.write(p, f"models/{mdir.name}/" + p.relative_to(mdir).as_posix())
            sizes["model"] += p.stat().st_size
        if packages:
            sizes.update(_add_wheels(z, packages, platform, python_version))
    os.replace(tmp, out_path)
    return {"path": out_path, "zip_bytes": os.path.getsize(out_path), "unpacked_bytes": sizes,
            "model": mdir.name, "job_option": f"<URL of {os.path.basename(out_path)}>#{DEPS_DIR}"}


def _add_wheels(z: zipfile.ZipFile, packages, platform, python_version) -> dict[str, int]:
    sizes = {}
    with tempfile.TemporaryDirectory() as wd:
        plats = [platform] if isinstance(platform, str) else list(platform)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               *[a for p in plats for a in ("--platform", p)], "--python-version", python_version,
               "-d", wd, *packages]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise InputError(f"pip download failed: {r.stderr.strip()[-500:]}", field="packages")
        for whl in sorted(Path(wd).glob("*.whl")):
            n = 0
            with zipfile.ZipFile(whl) as wz:
                for info in wz.infolist():
                    if info.is_dir():
                        continue
                    z.writestr(info.filename, wz.read(info.filename))
                    n += info.file_size
            sizes[whl.name.split("-")[0] + "==" + whl.name.split("-")[1]] = n
    return sizes


def plugin_source() -> Path:
    """``qgis_plugin/geocodec_qgis`` of the source checkout (the plugin is not installed with the wheel)."""
    root = source_checkout()
    here = (root or PACKAGE_DIR.parent) / "qgis_plugin" / PLUGIN
    if root is None or not (here / "metadata.txt").is_file():
        raise GeocodecError("the QGIS plugin sources (qgis_plugin/geocodec_qgis) are not beside this geocodec "
                            "install: build the zip from a source checkout (pip install -e .)", source=str(here))
    return here


def build_plugin_zip(out_dir: str | os.PathLike) -> dict:
    """The installable plugin zip: the plugin folder at the zip root with the repository's LICENSE, the ``qgis``
    distribution, the shipped models and heads vendored under ``geocodec_qgis/vendor/``. Refuses to build
    with a ``requirements.txt`` that pyproject.toml no longer gives, or a zip plugins.qgis.org would refuse
    (:func:`geocodec.cli.plugin_check.check_plugin_zip`)."""
    from geocodec.cli.plugin_check import check_plugin_zip, placeholder_contacts
    from geocodec.cli.plugin_requirements import stale_requirements

    src = plugin_source()
    root = src.parents[1]
    stale = stale_requirements(src, root / "pyproject.toml")
    if stale:
        raise GeocodecError(f"{stale}: run `python -m geocodec.cli.plugin_requirements`",
                            source=str(src / "requirements.txt"))
    meta = configparser.ConfigParser()
    meta.read(src / "metadata.txt")
    version = meta["general"]["version"]
    os.makedirs(out_dir, exist_ok=True)
    path = Path(out_dir) / f"{PLUGIN}-{version}.zip"
    tmp = path.with_suffix(".zip.tmp")
    vendor = f"{PLUGIN}/vendor"
    n = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(root / "LICENSE", f"{PLUGIN}/LICENSE")  # plugins.qgis.org requires one
        n += 1
        for f in _walk(src):
            if f.relative_to(src).parts[0] != "vendor":
                z.write(f, f"{PLUGIN}/{f.relative_to(src).as_posix()}")
                n += 1
        for f, name in package_files("qgis"):
            z.write(f, f"{vendor}/geocodec/{name}")
            n += 1
        for f in _walk(MODELS_DIR):
            z.write(f, f"{vendor}/geocodec/models/{f.relative_to(MODELS_DIR).as_posix()}")
            n += 1
        # the spec package carries the JSON Schema every file's metadata is validated against
        spec = package_data_dir("geoparquet_spec")
        for f in _walk(spec):
            if f.relative_to(spec).parts[0] != "examples":
                z.write(f, f"{vendor}/geoparquet_spec/{f.relative_to(spec).as_posix()}")
                n += 1
    problems = check_plugin_zip(tmp, PLUGIN)
    if problems:
        tmp.unlink()
        raise GeocodecError("the plugin zip would be refused by plugins.qgis.org:\n  " + "\n  ".join(problems),
                            source=str(path))
    os.replace(tmp, path)
    placeholders = placeholder_contacts(path)
    if placeholders:
        warnings.warn(f"{src / 'metadata.txt'}: placeholder contact {', '.join(placeholders)}: "
                      "set a real one before uploading to plugins.qgis.org", stacklevel=2)
    return {"path": str(path), "files": n, "bytes": path.stat().st_size, "version": version,
            "placeholder_contacts": placeholders}
