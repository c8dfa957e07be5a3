#!/usr/bin/env bash
# The QGIS plugin tests in a real, headless QGIS 3.22 (Debian's), run with the main venv's Python:
# Debian's QGIS bindings are appended to sys.path (the venv's numpy 2 / pyarrow still win).
# Needs scripts/setup_qgis.sh (apt, root); skips cleanly where QGIS is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/lib/python3/dist-packages/qgis ]; then
  echo "test_qgis.sh: QGIS Python bindings not installed (scripts/setup_qgis.sh); skipping" >&2
  exit 0
fi
export GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins
export QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# the packages the plugin's dependency check asks for inside QGIS 3.22 (shapely built for its GEOS 3.11)
if [ ! -d .qgis-deps ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target .qgis-deps "shapely>=2.0,<2.1" \
    || echo "test_qgis.sh: could not prepare .qgis-deps; the qgis_process test is skipped" >&2
fi
# run the plugin on what it installs inside this QGIS (shapely 2.0.x first on the path)
[ -d .qgis-deps ] && export PYTHONPATH="$PWD/.qgis-deps${PYTHONPATH:+:$PYTHONPATH}"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_qgis_plugin.py "$@"
