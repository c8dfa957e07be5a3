#!/usr/bin/env bash
# Install Debian 12's QGIS 3.22 Python bindings, providers and Xvfb (headless QGIS for the plugin tests and the
# screenshot). Idempotent and quiet; needs root (or sudo) on Debian/Ubuntu. Then: scripts/test_qgis.sh
set -euo pipefail
pkgs=(python3-qgis qgis-providers qgis xvfb xauth)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -c "import qgis.core" 2>/dev/null || /usr/bin/python3 -c "import qgis.core"
