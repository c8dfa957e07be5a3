"""QGIS plugin entry point. Everything heavy is imported lazily, after the dependency check."""

import os
import sys

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def deps_dir() -> str:
    """Where missing Python packages are installed (Deepness-style): <plugin dir>/python3.X."""
    return os.path.join(PLUGIN_DIR, f"python{sys.version_info.major}.{sys.version_info.minor}")


def setup_paths() -> None:
    """Put the vendored geocodec package and the installed dependencies on sys.path."""
    for p in (os.path.join(PLUGIN_DIR, "vendor"), deps_dir()):
        if os.path.isdir(p) and p not in sys.path:
            sys.path.insert(0, p)


setup_paths()


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import GeocodecPlugin

    return GeocodecPlugin(iface)
