"""Where the package's own files are: shipped models, heads, the spec's JSON Schema, a source checkout.

One place for every path the library derives from its own location, so moving a module
never moves a model. Nothing here imports a package: the JSON Schema belongs to
``geoparquet_spec`` and is read as data (found with :func:`importlib.util.find_spec`,
which locates a package without running it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["PACKAGE_DIR", "MODELS_DIR", "HEADS_DIR", "DEFAULT_MODEL", "source_checkout", "package_data_dir", "schema_path", "data_dir"]

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / "models"
HEADS_DIR = MODELS_DIR / "heads"
#: the shipped model ``geocodec encode`` and the heads use unless told otherwise (a folder of MODELS_DIR)
DEFAULT_MODEL = "s2-5band-v2u"


def source_checkout() -> Path | None:
    """The repository root when this package runs from a source checkout (editable install), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "geoparquet_spec").is_dir() else None


def package_data_dir(name: str) -> Path:
    """The folder of the top-level package ``name`` installed beside geocodec (``geoparquet_spec``,
    ``openeo_udf``), found without importing it; the source checkout's folder when it is not installed."""
    spec = importlib.util.find_spec(name)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        return Path(folder)
    return PACKAGE_DIR.parent / name


def schema_path(version: str) -> Path:
    """The JSON Schema of spec ``version`` of the ``geocodec`` footer key (``geoparquet_spec/schema/``)."""
    path = package_data_dir("geoparquet_spec") / "schema" / f"geocodec-{version}.schema.json"
    if not path.is_file():
        raise FileNotFoundError(f"the JSON Schema of spec version {version} is not installed: {path}")
    return path


def data_dir() -> Path:
    """Real data for training, benchmarks and tests: ``$GEOCODEC_DATA``, else ``../shared/data`` beside the
    source checkout (never copied into the repository). The folder may not exist: callers say what is missing."""
    env = os.environ.get("GEOCODEC_DATA")
    if env:
        return Path(env)
    root = source_checkout() or PACKAGE_DIR.parent
    return root.parent / "shared" / "data"
