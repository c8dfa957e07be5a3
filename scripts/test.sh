#!/usr/bin/env bash
# Set up and run the test suite. Real-data tests read ../shared/data (or $GEOCODEC_DATA) and skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,demo,producer,train,gpkg
.venv/bin/python -m pytest -q "$@"
# the QGIS plugin in a real, headless QGIS (Debian's python3-qgis; installs it when missing)
scripts/setup_qgis.sh
scripts/test_qgis.sh
