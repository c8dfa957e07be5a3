"""The package's layers (geocodec/__init__.py): each imports only the layers before it, and the consumer
layers never import the producer's or training's heavy dependencies."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "geocodec"
FOUNDATION = {"errors", "atomic", "resources", "_lazy", "_optional", "threads", "verbosity"}
# layer -> the geocodec subpackages it may import (besides the foundation modules and itself)
ALLOWED = {
    "format": set(),
    "codecs": {"format"},
    "producer": {"format", "codecs"},
    "tasks": {"format", "codecs"},
    "training": {"format", "codecs", "producer", "tasks"},
    "cli": {"format", "codecs", "producer", "tasks", "training"},
}
HEAVY = ("torch", "openeo", "openeo_processes_dask", "openeo_pg_parser_networkx", "dask", "distributed", "qgis",
         "xarray", "rasterio")
CONSUMER = ("format", "codecs", "tasks")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module name ``path`` imports, at module level or inside functions, with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports absolutely")
            out += [(node.lineno, node.module or "")]
    return out


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    if rel == ("__main__.py",):
        return "cli"  # python -m geocodec is the command
    return rel[0] if len(rel) > 1 else "foundation"


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PKG).as_posix())
def test_layer_imports(path):
    layer = _layer(path)
    for line, name in _imports(path):
        where = f"{path.relative_to(PKG.parent)}:{line} imports {name}"
        top = name.split(".")[0]
        assert top not in ("openeo_udf", "qgis_plugin", "geocodec_qgis", "geoparquet_spec"), \
            f"{where}: the core reads the shells' files as data, it never imports them"
        if layer in CONSUMER:
            assert top not in HEAVY, f"{where}: the {layer} layer runs on a laptop without producer/training packages"
        if top != "geocodec" or name == "geocodec":
            continue
        sub = name.split(".")[1]
        if sub in FOUNDATION or sub == layer:
            continue
        assert layer != "foundation", f"{where}: the foundation modules import no layer"
        assert sub in ALLOWED[layer], f"{where}: the {layer} layer may import only {sorted(ALLOWED[layer])}"


def test_consumer_layers_import_without_heavy_packages():
    """Importing every module of format, codecs and tasks loads none of the producer's or training's packages."""
    mods = [".".join(p.relative_to(PKG.parent).with_suffix("").parts) for p in MODULES
            if _layer(p) in CONSUMER]
    mods = [m[: -len(".__init__")] if m.endswith(".__init__") else m for m in mods]
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_every_subpackage_declares_its_api():
    """Each subpackage's ``__init__`` lists its public names, and every listed name resolves."""
    import importlib

    for init in sorted(PKG.rglob("__init__.py")):
        name = ".".join(init.parent.relative_to(PKG.parent).parts)
        if name.startswith("geocodec.models"):
            continue
        mod = importlib.import_module(name)
        assert isinstance(getattr(mod, "__all__", None), list) and mod.__all__, f"{name} declares no __all__"
        for n in mod.__all__:
            assert getattr(mod, n) is not None, f"{name}.{n}"
