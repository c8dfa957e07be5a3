#!/usr/bin/env bash
# Set up and run the test suite. Real-data tests read ../shared/data (or $GEOCODEC_DATA) and skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,demo,producer,train,gpkg
.venv/bin/python -m pytest -q "$@"
# the QGIS plugin in a real, headless QGIS (Debian's python3-qgis; installs it when missing)
if ! scripts/setup_qgis.sh; then
  echo "WARNING: Debian's QGIS could not be installed (apt); the QGIS plugin tests are skipped" >&2
fi
scripts/test_qgis.sh
