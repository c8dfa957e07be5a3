"""plugins.qgis.org's own upload validator on the plugin zip, offline.

``tests/data/qgis_django/validator.py`` is ``qgis-app/plugins/validator.py`` of github
qgis/QGIS-Django, kept as test data (not in the repository until someone fetches it; the test skips
without it). It is plain Python over Django: Django's pieces are stubbed here when Django is not
installed (``settings`` without overrides, so the validator's own defaults apply), and the URL checks
(``requests.head``) answer 200 without touching the network, recording what was checked.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import sys
import types
import zipfile
from pathlib import Path

import pytest

from geocodec.cli.packaging import PLUGIN, build_plugin_zip

VALIDATOR = Path(__file__).resolve().parent / "data" / "qgis_django" / "validator.py"
pytestmark = [pytest.mark.filterwarnings("ignore:.*placeholder contact:UserWarning"), pytest.mark.skipif(
    not VALIDATOR.is_file(),
    reason=f"{VALIDATOR} absent: copy qgis-app/plugins/validator.py of github qgis/QGIS-Django there to run "
           "plugins.qgis.org's upload validator on the plugin zip")]


class StubValidationError(Exception):
    """django.forms.ValidationError as the validator uses it: a message, ``.messages``."""

    def __init__(self, message, *args, **kwargs):
        super().__init__(message)
        self.messages = [str(message)]


def _django_stubs() -> dict[str, types.ModuleType]:
    """The Django modules validator.py imports, reduced to what it calls."""
    mods = {n: types.ModuleType(n) for n in ("django", "django.conf", "django.core", "django.core.files",
                                             "django.core.files.uploadedfile", "django.forms", "django.utils",
                                             "django.utils.translation")}
    mods["django.conf"].settings = types.SimpleNamespace()  # no overrides: the validator's defaults
    mods["django.core.files.uploadedfile"].SimpleUploadedFile = lambda name, content, content_type=None: (
        types.SimpleNamespace(name=name, content=content, content_type=content_type))
    mods["django.forms"].ValidationError = StubValidationError
    mods["django.utils.translation"].gettext_lazy = lambda s: s
    return mods


class Upload(io.BytesIO):
    """The uploaded file as Django hands it to the validator: a file object with ``size`` and ``name``."""

    def __init__(self, path: Path):
        super().__init__(path.read_bytes())
        self.size = path.stat().st_size
        self.name = path.name


@pytest.fixture
def validate(monkeypatch):
    """``validate(zip_path) -> metadata`` through the official validator; ``validate.urls``: URLs it checked."""
    try:
        import django  # noqa: F401
        from django.conf import settings

        if not settings.configured:
            settings.configure(USE_I18N=False)
        error = __import__("django.forms", fromlist=["ValidationError"]).ValidationError
    except ImportError:
        for name, mod in _django_stubs().items():
            monkeypatch.setitem(sys.modules, name, mod)
        error = StubValidationError
    import requests

    urls = []

    def head(url, *args, **kwargs):
        urls.append(url)
        return types.SimpleNamespace(status_code=200, url=url)

    monkeypatch.setattr(requests, "head", head)
    spec = importlib.util.spec_from_file_location("qgis_django_plugin_validator", VALIDATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    # a first upload (is_new, in validators that have it) is held to the stricter PEP 8 folder-name rule
    new = {"is_new": True} if "is_new" in inspect.signature(module.validator).parameters else {}

    def run(path):
        return dict(module.validator(Upload(Path(path)), **new))

    run.urls, run.error = urls, error
    return run


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    return Path(build_plugin_zip(tmp_path_factory.mktemp("plugin"))["path"])


def test_official_validator_accepts_the_plugin_zip(validate, plugin_zip):
    meta = validate(plugin_zip)
    assert meta["package_name"] == PLUGIN and "multiple_parent_folders" not in meta
    assert meta["name"] == "geocodec" and meta["qgisMinimumVersion"] == "3.22"
    assert meta["icon_file"] is not None  # the icon was found in the zip
    assert sorted(validate.urls) == sorted(meta[k] for k in ("tracker", "repository", "homepage"))


def _without(src: Path, dst: Path, member: str) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != member:
                zout.writestr(info, zin.read(info.filename))
    return dst


def test_official_validator_refuses_a_zip_without_license(validate, plugin_zip, tmp_path):
    """The stubs leave the validator able to fail: the error plugins.qgis.org gave before LICENSE shipped."""
    bad = _without(plugin_zip, tmp_path / "nolicense.zip", f"{PLUGIN}/LICENSE")
    with pytest.raises(validate.error, match="Cannot find LICENSE"):
        validate(bad)
