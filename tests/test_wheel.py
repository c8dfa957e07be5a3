"""The package as a user installs it: ``python -m build``, then the wheel in a fresh venv outside the checkout.

Slow (a build, a venv, the consumer install from the pip cache or PyPI, then the ``producer`` extra).
Prints how long each step took (``pytest -s``). Real data: ``sen2ships/algiers`` of ``../shared/data``
(or ``$GEOCODEC_DATA``); the test skips without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geocodec.resources import data_dir

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SCENE = data_dir() / "sen2ships" / "algiers"      # one date, five 10 m band files, EPSG:3857
BBOX = ["--bbox", "340000,4404000,342560,4406560", "--bbox-crs", "EPSG:3857"]   # 2.56 km square: 9 tiles
# what the commands read from the installed package (paths inside the wheel)
PACKAGE_DATA = ["geocodec/models/s2-5band-v1/model.json", "geocodec/models/s2-5band-v1/encoder.onnx",
                "geocodec/models/s2-5band-v1/embedding_decoder.onnx", "geocodec/models/s2-5band-v1/preview_decoder.onnx",
                "geocodec/models/heads/landcover.onnx", "geocodec/models/heads/monitor.onnx",
                "geocodec/models/heads/ships.onnx", "geocodec/models/heads/s2-5band-v2/ships.onnx",
                "geocodec/models/heads/s2-5band-v2/landcover.onnx", "geoparquet_spec/schema/geocodec-0.1.0.schema.json",
                "geoparquet_spec/SPEC.md", "openeo_udf/udf.py"]


def _timed(what: str, cmd, **kw) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = subprocess.run([os.fspath(c) for c in cmd], capture_output=True, text=True, **kw)
    print(f"[test_wheel] {what}: {time.monotonic() - t0:.1f} s (rc {r.returncode})")
    assert r.returncode == 0, f"{what} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel of the checkout (``python -m build``: the wheel is built from the sdist)."""
    pytest.importorskip("build", reason="python -m build needs the build package (the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    _timed("python -m build", [sys.executable, "-m", "build", "--outdir", out, REPO], timeout=1200)
    return {"wheel": next(out.glob("geocodec-*.whl")), "sdist": next(out.glob("geocodec-*.tar.gz"))}


@pytest.fixture(scope="module")
def venv(tmp_path_factory, dist) -> dict:
    """A fresh venv outside the checkout with the wheel installed (consumer install), and how to run in it."""
    root = tmp_path_factory.mktemp("venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["GEOCODEC_THREADS"] = "2"
    _timed("python -m venv", [sys.executable, "-m", "venv", root / "venv"], env=env, timeout=300)
    py = root / "venv" / "bin" / "python"
    _timed("pip install geocodec.whl (consumer)", [py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                                   dist["wheel"]], env=env, timeout=1800)
    work = root / "work"
    work.mkdir()
    return {"python": py, "geocodec": root / "venv" / "bin" / "geocodec", "env": env, "cwd": work,
            "wheel": dist["wheel"]}


def _run(v, what, *args, timeout=900):
    return _timed(what, [v["geocodec"], *args], env=v["env"], cwd=v["cwd"], timeout=timeout)


def test_wheel_and_sdist_carry_license_models_and_spec(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    missing = [n for n in PACKAGE_DATA if n not in names]
    assert missing == [], f"{dist['wheel'].name} lacks {missing}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    with tarfile.open(dist["sdist"]) as t:
        top = t.getnames()[0].split("/")[0]
        snames = set(t.getnames())
    missing = [n for n in ["LICENSE", "pyproject.toml", *PACKAGE_DATA] if f"{top}/{n}" not in snames]
    assert missing == [], f"{dist['sdist'].name} lacks {missing}"


def test_installed_package_reads_nothing_from_the_checkout(venv):
    r = _timed("import from the venv", [venv["python"], "-c", (
        "import json, geocodec; from geocodec.resources import MODELS_DIR, package_data_dir, schema_path, "
        "source_checkout; print(json.dumps({'pkg': geocodec.__file__, 'models': str(MODELS_DIR), "
        "'udf': str(package_data_dir('openeo_udf') / 'udf.py'), 'schema': str(schema_path('0.1.0')), "
        "'checkout': str(source_checkout())}))")], env=venv["env"], cwd=venv["cwd"], timeout=120)
    where = json.loads(r.stdout)
    site = str(venv["python"].parent.parent)
    assert where["checkout"] == "None"
    for key in ("pkg", "models", "udf", "schema"):
        assert where[key].startswith(site) and not where[key].startswith(str(REPO)), (key, where[key])
        assert Path(where[key]).exists(), (key, where[key])


@pytest.mark.skipif(not SCENE.is_dir(), reason=f"real data {SCENE} not present")
def test_installed_wheel_classifies_and_encodes_real_data(venv, tmp_path):
    # 1. consumer install: classify a learned-codec file of real data (made by the checkout's encoder)
    made = tmp_path / "algiers_checkout.geocodec.parquet"
    _timed("checkout: geocodec encode", [sys.executable, "-m", "geocodec", "encode", SCENE, "-o", made,
                                         "--scheduler", "sync", *BBOX], cwd=REPO, timeout=900)
    out = tmp_path / "classes.parquet"
    r = _run(venv, "wheel: geocodec classify", "classify", made, "-o", out, "-q")
    assert "9 tiles classified by landcover head" in r.stdout
    assert pq.read_table(out).num_rows == 9
    _run(venv, "wheel: geocodec validate", "validate", made)

    # 2. the producer extra in the same venv: encode real data, classify the result, build the UDF archive
    _timed("pip install geocodec.whl[producer]", [venv["python"], "-m", "pip", "install", "-q",
                                                  "--disable-pip-version-check", f"{venv['wheel']}[producer]"],
           env=venv["env"], timeout=3600)
    enc = tmp_path / "algiers_wheel.geocodec.parquet"
    r = _run(venv, "wheel: geocodec encode", "encode", SCENE, "-o", enc, "--scheduler", "sync", *BBOX)
    assert "9 tiles" in r.stdout and enc.stat().st_size > 0
    r = _run(venv, "wheel: geocodec classify (own file)", "classify", enc, "-o", tmp_path / "c2.parquet", "-q")
    assert "9 tiles classified" in r.stdout
    archive = tmp_path / "udf.zip"
    _run(venv, "wheel: geocodec udf-archive", "udf-archive", "-o", archive)
    names = set(zipfile.ZipFile(archive).namelist())
    from geocodec.resources import DEFAULT_MODEL

    assert f"models/{DEFAULT_MODEL}/encoder.onnx" in names and "geocodec/format/writer.py" in names
