"""The installable QGIS plugin zip (needs no QGIS): what it vendors and what it leaves out."""

from __future__ import annotations

import zipfile

from geocodec.cli.main import main


def test_plugin_zip(tmp_path):
    assert main(["qgis-plugin", "-o", str(tmp_path)]) == 0
    z = zipfile.ZipFile(next(tmp_path.glob("geocodec_qgis-*.zip")))
    names = set(z.namelist())
    assert {"geocodec_qgis/metadata.txt", "geocodec_qgis/__init__.py", "geocodec_qgis/icon.png",
            "geocodec_qgis/vendor/geocodec/format/reader.py",
            "geocodec_qgis/vendor/geocodec/tasks/ships.py", "geocodec_qgis/vendor/geocodec/models/heads/landcover.onnx",
            "geocodec_qgis/vendor/geocodec/models/s2-5band-v1/model.json",
            # every file's metadata is validated against the spec's JSON Schema
            "geocodec_qgis/LICENSE", "geocodec_qgis/vendor/geoparquet_spec/__init__.py",
            "geocodec_qgis/vendor/geoparquet_spec/schema/geocodec-0.1.0.schema.json"} <= names
    assert not any("__pycache__" in n for n in names)
    # what ships comes from the layout: format, codecs and tasks, not the producer nor the CLI
    assert not any(n.startswith(("geocodec_qgis/vendor/geocodec/producer/", "geocodec_qgis/vendor/geocodec/cli/"))
                   for n in names)
    # the consumer never needs torch: no training code, no torch checkpoint
    assert not any("/training/" in n or n.endswith(".safetensors") for n in names)
    # nor the heads' training reports (their scores are in each head's ONNX metadata)
    assert "geocodec_qgis/vendor/geocodec/models/heads/ships.onnx" in names
    assert not any(n.endswith("scores.json") for n in names)
    meta = z.read("geocodec_qgis/metadata.txt").decode()
    assert "hasProcessingProvider=yes" in meta and "qgisMinimumVersion=3.22" in meta
