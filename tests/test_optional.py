"""geocodec._optional: a missing optional package is an ImportError that says what to install."""

from __future__ import annotations

import sys

import pytest

from geocodec._optional import MissingDependencyError, import_optional
from geocodec.errors import GeocodecError


def test_an_installed_module_is_returned():
    import json

    assert import_optional("json") is json


def test_a_missing_module_names_the_extra():
    with pytest.raises(MissingDependencyError) as info:
        import_optional("geocodec_no_such_package.sub", extra="gpkg", purpose="writing a GeoPackage")
    err = info.value
    assert isinstance(err, ImportError) and isinstance(err, GeocodecError)
    assert err.name == "geocodec_no_such_package.sub"
    assert str(err) == ("writing a GeoPackage needs geocodec_no_such_package "
                        "(pip install 'geocodec[gpkg]')")
    assert isinstance(err.__cause__, ImportError)


def test_without_an_extra_the_pip_name_is_given():
    with pytest.raises(ImportError, match=r"pip install faiss-cpu\)"):
        import_optional("geocodec_no_such_faiss", pip="faiss-cpu", purpose="product quantization")
    with pytest.raises(ImportError, match=r"^geocodec needs geocodec_no_such_x \(pip install geocodec_no_such_x\)$"):
        import_optional("geocodec_no_such_x")


def test_a_broken_installed_package_keeps_its_own_error(tmp_path, monkeypatch):
    (tmp_path / "geocodec_broken_pkg.py").write_text("import geocodec_missing_inner\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as info:
        import_optional("geocodec_broken_pkg", extra="producer")
    assert not isinstance(info.value, MissingDependencyError)
    assert info.value.name == "geocodec_missing_inner"
    sys.modules.pop("geocodec_broken_pkg", None)


def test_the_cli_reports_it_as_one_line(tmp_path, monkeypatch, capsys):
    """``geocodec decode -o OUT.gpkg`` without pyogrio: one line naming the extra, exit status 2."""
    from helpers import write_input

    from geocodec.cli.main import main
    from geocodec.codecs.compress import compress

    src = write_input(tmp_path / "in.parquet", n=64, d=8)
    compress(src, "embedding", tmp_path / "c.parquet", quality=4, progress=False)
    monkeypatch.setitem(sys.modules, "pyogrio", None)   # "not installed"
    assert main(["decode", str(tmp_path / "c.parquet"), "-o", str(tmp_path / "out.gpkg")]) == 2
    err = capsys.readouterr().err
    assert "writing a GeoPackage needs pyogrio (pip install 'geocodec[gpkg]')" in err
    assert "Traceback" not in err and not (tmp_path / "out.gpkg").exists()
