#!/usr/bin/env bash
# The consumer tests in a venv pinned to the dependency floors of pyproject.toml (scripts/floors.py):
# proves every '>=' floor works, not just the newest releases. Slow (a fresh venv, ~13 packages).
#   scripts/check_floors.sh [VENV_DIR] [pytest args...]   (default VENV_DIR: a temporary folder)
# The checkout is used through PYTHONPATH (no install of geocodec itself, so nothing newer sneaks in).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${1:-$(mktemp -d)/floors-venv}; shift || true
py=${PYTHON:-.venv/bin/python}
start=$(date +%s)
"$py" -m venv "$venv"
mapfile -t pins < <("$py" scripts/floors.py)
echo "check_floors: ${pins[*]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}" pytest "hypothesis>=6.100"
echo "check_floors: venv ready in $(( $(date +%s) - start )) s"
"$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -iE "^($(IFS='|'; echo "${pins[*]%%==*}"))==" || true
# the consumer subset: format round trip, bad input, reader API, entropy coding, CLI decode/validate/info, search,
# HTTP range reads (fsspec + aiohttp), partitioned folders, parallel decoding
# (one deselected: it writes a GeoPackage, i.e. needs the gpkg extra's pyogrio, which the consumer install has not)
cd "$(mktemp -d)"
PYTHONPATH="$repo:$repo/tests" "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" \
  -o "filterwarnings=ignore::DeprecationWarning" \
  --rootdir "$repo" -c "$repo/pyproject.toml" \
  "$repo/tests/test_format_roundtrip.py" "$repo/tests/test_bad_input.py" "$repo/tests/test_reader_api.py" \
  "$repo/tests/test_entropy.py" "$repo/tests/test_cli.py" "$repo/tests/test_search.py" \
  "$repo/tests/test_http_reader.py" "$repo/tests/test_partitioned.py" "$repo/tests/test_parallel_decode.py" \
  -k "not test_polygon_over_every_tile_gives_an_empty_layer" "$@"
echo "check_floors: done in $(( $(date +%s) - start )) s"
