"""The installable QGIS plugin zip (needs no QGIS): what it vendors and what it leaves out."""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pytest

from geocodec.cli.main import main

REPO = Path(__file__).resolve().parents[1]
# metadata.txt's e-mail is a placeholder until the project has a contact: build_plugin_zip warns about it
pytestmark = pytest.mark.filterwarnings("ignore:.*placeholder contact:UserWarning")


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
    assert "qgisMaximumVersion=4.99" in meta and "supportsQt6=True" in meta
    # the dependency list the plugin's installer reads travels with it
    assert "geocodec_qgis/requirements.txt" in names


# -- what plugins.qgis.org checks -------------------------------------------------------------------
def test_plugin_zip_passes_the_upload_checks(tmp_path):
    from geocodec.cli.packaging import PLUGIN, build_plugin_zip
    from geocodec.cli.plugin_check import check_plugin_zip

    r = build_plugin_zip(tmp_path)
    assert check_plugin_zip(r["path"], PLUGIN) == []
    assert r["bytes"] < 25_000_000


def _rezip(src, dst, *, drop=(), add=None, meta=None):
    """A copy of the plugin zip ``src`` without the members ``drop``, with ``add`` {name: bytes} and
    ``meta(text) -> text`` applied to metadata.txt."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if meta is not None and info.filename.endswith("/metadata.txt"):
                data = meta(data.decode()).encode()
            zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


@pytest.mark.parametrize("case,expect", [
    ({"drop": ["geocodec_qgis/LICENSE"]}, "geocodec_qgis/LICENSE is missing"),
    ({"add": {"geocodec_qgis/__pycache__/plugin.cpython-311.pyc": b"x"}}, "'__pycache__' folder"),
    ({"add": {"other/readme.txt": b"x"}}, "2 top-level entries"),
    ({"meta": lambda t: t.replace("email=", "contact=")}, "[general] email: missing or empty"),
    ({"meta": lambda t: t.replace("about=", "about=\n#")}, "[general] about: missing or empty"),
    ({"meta": lambda t: t.replace("homepage=https://", "homepage=")}, "[general] homepage:"),
    ({"meta": lambda t: t.replace("tracker=", "tracker=http://bugs\n#")}, "[general] tracker: 'http://bugs'"),
    ({"meta": lambda t: t.replace("author=", "author=a/b ")}, "author: 'a/b"),
    ({"meta": lambda t: t.replace("qgisMaximumVersion=4.99", "qgisMaximumVersion=3.10")}, "is below"),
    ({"meta": lambda t: t.replace("supportsQt6=True", "supportsQt6=yes")}, "supportsQt6: 'yes'"),
])
def test_upload_checks_name_what_is_wrong(tmp_path, case, expect):
    from geocodec.cli.packaging import PLUGIN, build_plugin_zip
    from geocodec.cli.plugin_check import check_plugin_zip

    good = build_plugin_zip(tmp_path / "good")["path"]
    problems = check_plugin_zip(_rezip(good, tmp_path / "bad.zip", **case), PLUGIN)
    assert any(expect in p for p in problems), problems
    assert all(str(tmp_path / "bad.zip") in p for p in problems)


def test_upload_checks_the_folder_name(tmp_path):
    from geocodec.cli.plugin_check import check_plugin_zip

    with zipfile.ZipFile(tmp_path / "p.zip", "w") as z:
        for m in ("__init__.py", "metadata.txt", "LICENSE"):
            z.writestr(f"GeocodecQgis/{m}", "[general]\n" if m == "metadata.txt" else "")
    problems = check_plugin_zip(tmp_path / "p.zip", "geocodec_qgis")
    assert any("top-level folder 'GeocodecQgis', expected 'geocodec_qgis'" in p for p in problems)
    assert any("PEP 8" in p for p in problems)
    assert any("[general] name: missing" in p for p in problems)


def test_placeholder_contacts_are_reported(tmp_path):
    from geocodec.cli.packaging import build_plugin_zip
    from geocodec.cli.plugin_check import placeholder_contacts

    good = build_plugin_zip(tmp_path / "good")["path"]
    bad = _rezip(good, tmp_path / "x.zip", meta=lambda t: t.replace("email=", "email=someone@example.com\n#"))
    assert "email=someone@example.com" in placeholder_contacts(bad)
    real = _rezip(good, tmp_path / "y.zip", meta=lambda t: t.replace("email=", "email=maintainers@geocodec.dev\n#"))
    assert not any(p.startswith("email=") for p in placeholder_contacts(real))


# -- the plugin's dependency list ---------------------------------------------------------------------
def test_plugin_requirements_are_generated_from_pyproject():
    from geocodec.cli.packaging import plugin_source
    from geocodec.cli.plugin_requirements import NOT_IN_PLUGIN, plugin_requirements, stale_requirements

    src = plugin_source()
    pyproject = src.parents[1] / "pyproject.toml"
    assert stale_requirements(src, pyproject) is None, "run `python -m geocodec.cli.plugin_requirements`"
    reqs = plugin_requirements(pyproject)
    names = {r.split("=")[0].split(">")[0].split("<")[0] for r in reqs}
    assert "onnx" in names  # few-shot training writes ONNX heads
    assert "constriction==0.5.0" in reqs  # files record the coder's version: pinned as pyproject pins it
    assert not names & set(NOT_IN_PLUGIN)
    with open(pyproject, "rb") as f:
        import tomllib

        consumer = tomllib.load(f)["project"]["dependencies"]
    assert len(reqs) == len(consumer) - len(NOT_IN_PLUGIN)


def test_stale_requirements_are_refused(tmp_path, monkeypatch):
    import shutil

    from geocodec.cli import packaging
    from geocodec.errors import GeocodecError

    src = packaging.plugin_source()
    fake = tmp_path / "repo" / "qgis_plugin" / "geocodec_qgis"
    shutil.copytree(src, fake, ignore=shutil.ignore_patterns("__pycache__", "vendor", "python3*"))
    shutil.copy(src.parents[1] / "LICENSE", tmp_path / "repo" / "LICENSE")
    text = (src.parents[1] / "pyproject.toml").read_text().replace('"onnx>=1.15",', '"onnx>=1.16",')
    (tmp_path / "repo" / "pyproject.toml").write_text(text)
    monkeypatch.setattr(packaging, "plugin_source", lambda: fake)
    with pytest.raises(GeocodecError, match="requirements.txt does not match"):
        packaging.build_plugin_zip(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_plugin_dependency_check_reads_the_generated_list(monkeypatch):
    sys.path.insert(0, str(REPO / "qgis_plugin"))
    try:
        from geocodec_qgis import deps
    finally:
        sys.path.remove(str(REPO / "qgis_plugin"))
    assert deps.requirements() == [ln for ln in (REPO / "qgis_plugin/geocodec_qgis/requirements.txt")
                                   .read_text().splitlines() if ln and not ln.startswith("#")]
    assert deps.satisfies((2, 0, 7), "shapely>=2.0,<2.1") and not deps.satisfies((2, 1, 0), "shapely>=2.0,<2.1")
    assert deps.satisfies((0, 5, 0), "constriction==0.5.0") and not deps.satisfies((0, 5, 1), "constriction==0.5.0")
    assert not deps.satisfies((3, 0), "usearch>=2.26,<3") and not deps.satisfies((1, 25, 2), "numpy>=1.26")
    # too old, missing and pinned-elsewhere packages are all asked for
    versions = {"numpy": (1, 25, 0), "onnx": None, "constriction": (0, 4, 1)}
    monkeypatch.setattr(deps, "_installed_version", lambda name: versions.get(name, (99,)))
    monkeypatch.setattr(deps, "qgis_geos_version", lambda: (3, 11))
    missing = deps.missing_packages()
    assert {"numpy>=1.26", "onnx>=1.15", "constriction==0.5.0"} <= set(missing)
    assert "shapely>=2.0,<2.1" in missing  # (99,) is too new for QGIS's GEOS 3.11


# -- Qt6 (QGIS 4) --------------------------------------------------------------------------------------
ENUM_OWNERS = {"Qt", "QMessageBox", "QVariant", "QMetaType", "QgsWkbTypes", "QgsProcessing", "Qgis", "QgsFeatureSink",
               "QgsProcessingParameterFile", "QgsProcessingParameterNumber", "QgsProcessingParameterDefinition"}


def unscoped_enums(source: str) -> list[str]:
    """``Owner.Member`` enum uses without the enum's name (``Qt.RightButton``, ``QMessageBox.Yes``,
    ``QVariant.Int``), which Qt6 / QGIS 4 removed; strings and calls are not looked at."""
    import ast

    tree = ast.parse(source)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return [f"{n.lineno}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ENUM_OWNERS
            and n.attr[:1].isupper() and id(n) not in inner and id(n) not in calls]


def test_plugin_sources_use_scoped_enums():
    """Every enum member is reached through its enum (``Qt.MouseButton.RightButton``), as Qt6 needs;
    the plugin's compat module is the one place that picks between API generations."""
    found = [f"{f.name}:{hit}" for f in sorted((REPO / "qgis_plugin" / "geocodec_qgis").glob("*.py"))
             for hit in unscoped_enums(f.read_text())]
    assert found == []
    assert sorted(unscoped_enums("if b == Qt.RightButton and r != QMessageBox.Yes: t = QVariant.Int")) == [
        "1: QMessageBox.Yes", "1: QVariant.Int", "1: Qt.RightButton"]
    assert unscoped_enums("b == Qt.MouseButton.RightButton; QMessageBox.question(p, 'Qt.RightButton')") == []
