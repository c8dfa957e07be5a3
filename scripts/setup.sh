#!/usr/bin/env bash
# Create .venv (if needed) and install geocodec with the given extras, e.g. `scripts/setup.sh dev,demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]"
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
