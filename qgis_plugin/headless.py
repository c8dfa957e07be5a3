"""Headless QGIS for the plugin's tests, benchmark and screenshot: the one bootstrap they share.

Debian's QGIS 3.22 Python bindings live outside the venv: :func:`add_qgis_paths` appends them
(``$GEOCODEC_QGIS_PATHS``, default Debian's folders) to ``sys.path`` so the venv's numpy and pyarrow
still win, puts this folder first (so ``import geocodec_qgis`` finds the plugin source) and selects
Qt's offscreen platform. :func:`start` then starts QGIS and Processing and loads the plugin the way
QGIS does (``GeocodecPlugin.initProcessing``). Not part of the plugin zip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEBIAN_PATHS = "/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins"
HERE = Path(__file__).resolve().parent


def add_qgis_paths(plugin_dir: str | os.PathLike | None = None, *, debian_default: bool = True) -> None:
    """Make ``qgis``, ``processing`` and the plugin importable without a display (idempotent).

    Without ``$GEOCODEC_QGIS_PATHS`` Debian's folders are used, unless ``debian_default`` is False (the
    test suite: its QGIS tests run only under ``scripts/test_qgis.sh``, which sets the variable)."""
    for p in os.environ.get("GEOCODEC_QGIS_PATHS", DEBIAN_PATHS if debian_default else "").split(os.pathsep):
        if p and p not in sys.path:
            sys.path.append(p)
    first = str(plugin_dir or HERE)
    if first not in sys.path:
        sys.path.insert(0, first)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def start(plugin_dir: str | os.PathLike | None = None):
    """``(app, plugin)``: a started ``QgsApplication`` with Processing and the geocodec plugin's provider
    registered. Call ``plugin.unload()`` when done. Raises ImportError where QGIS is not installed."""
    add_qgis_paths(plugin_dir)
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    import processing  # noqa: F401  (registers the processing module QGIS plugins use)
    from processing.core.Processing import Processing

    Processing.initialize()
    from geocodec_qgis.plugin import GeocodecPlugin

    plugin = GeocodecPlugin(None)
    plugin.initProcessing()
    return app, plugin
