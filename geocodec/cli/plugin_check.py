"""What plugins.qgis.org checks on upload, applied to a built plugin zip: no Django, no network.

Mirrors ``qgis-app/plugins/validator.py`` of github qgis/QGIS-Django (the upload validator) and
is stricter where it only warns or only checks presence: one top-level folder, named as expected;
every required ``metadata.txt`` field non-empty; ``homepage`` present (the validator's URL check
fails on a missing one). ``tests/test_qgis_validator.py`` runs the validator itself when a copy is
present. URLs are checked for form only: whether they answer is for a release check with network.
"""

from __future__ import annotations

import configparser
import os
import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["MAX_BYTES", "REQUIRED_METADATA", "URL_METADATA", "PLACEHOLDER_DOMAINS", "check_plugin_zip",
           "placeholder_contacts"]

MAX_BYTES = 25_000_000  # the validator's PLUGIN_MAX_UPLOAD_SIZE default
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
                     "tracker", "repository")
# metadata key -> the placeholder URL the validator refuses
URL_METADATA = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}
FORBIDDEN_PARTS = ("__MACOSX", ".git", "__pycache__")
BOOLEANS = ("experimental", "deprecated", "server", "supportsQt6")
# RFC 2606 / 6761 names: fine for tests, never a contact users can reach
PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net", ".example", ".invalid", ".test", ".localhost")


def _version(text: str) -> tuple[int, ...] | None:
    return tuple(int(p) for p in text.split(".")) if re.fullmatch(r"\d+(\.\d+)*", text or "") else None


def _names(path: str, z: zipfile.ZipFile, package: str | None) -> tuple[list[str], str | None]:
    """Problems with the member names and the top-level folder (None when there is none)."""
    problems = []
    names = z.namelist()
    for n in names:
        if ".." in n or n.startswith("/") or n.startswith(os.path.sep):
            problems.append(f"{path}: member {n!r} carries path information ('..' or a leading '/')")
        if ".pyc" in n:
            problems.append(f"{path}: member {n!r} is a .pyc file")
        bad = [p for p in FORBIDDEN_PARTS if p in n.split("/")]
        if bad:
            problems.append(f"{path}: member {n!r} is inside a {bad[0]!r} folder")
    tops = sorted({n.split("/")[0] for n in names})
    if not names or "/" not in names[0]:
        problems.append(f"{path}: the first member is not inside a folder (the validator takes the plugin "
                        "folder from it)")
        return problems, None
    top = names[0].split("/")[0]
    if len(tops) > 1:
        problems.append(f"{path}: {len(tops)} top-level entries {tops}: one plugin folder expected")
    if package is not None and top != package:
        problems.append(f"{path}: top-level folder {top!r}, expected {package!r}")
    if not re.match(r"^[a-z_][a-z0-9_]*$", top):  # the rule for a plugin's first upload (PEP 8)
        problems.append(f"{path}: top-level folder {top!r} must be lowercase letters, digits and '_', "
                        "starting with a letter or '_' (PEP 8, required of new plugins)")
    for member in ("__init__.py", "metadata.txt", "LICENSE"):
        if f"{top}/{member}" not in names:
            problems.append(f"{path}: {top}/{member} is missing (plugins.qgis.org requires it)")
    return problems, top


def _metadata(path: str, z: zipfile.ZipFile, top: str) -> tuple[list[str], dict]:
    """Problems with ``top/metadata.txt`` [general], and its fields."""
    where = f"{path}: {top}/metadata.txt"
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(z.read(f"{top}/metadata.txt").decode("utf-8"))
    except (KeyError, UnicodeDecodeError, configparser.Error) as exc:
        return [f"{where}: cannot be parsed: {exc}"], {}
    if not parser.has_section("general"):
        return [f"{where}: has no [general] section"], {}
    meta = {k: v.strip() for k, v in parser.items("general")}
    problems = [f"{where} [general] {k}: missing or empty" for k in REQUIRED_METADATA if not meta.get(k)]
    for key, forbidden in URL_METADATA.items():
        url = meta.get(key, "")
        u = urlparse(url)
        if not url or url == forbidden or u.scheme not in ("http", "https") or not u.netloc:
            problems.append(f"{where} [general] {key}: {url!r} is not an http(s) URL")
    if "/" in meta.get("author", ""):
        problems.append(f"{where} [general] author: {meta['author']!r} contains a slash")
    if meta.get("email") and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", meta["email"]):
        problems.append(f"{where} [general] email: {meta['email']!r} is not an e-mail address")
    lo, hi = _version(meta.get("qgisMinimumVersion", "")), _version(meta.get("qgisMaximumVersion", "99.99"))
    if meta.get("qgisMinimumVersion") and lo is None:
        problems.append(f"{where} [general] qgisMinimumVersion: {meta['qgisMinimumVersion']!r} is not a version")
    if hi is None:
        problems.append(f"{where} [general] qgisMaximumVersion: {meta['qgisMaximumVersion']!r} is not a version")
    elif lo is not None and hi < lo:
        problems.append(f"{where} [general] qgisMaximumVersion {meta['qgisMaximumVersion']} is below "
                        f"qgisMinimumVersion {meta['qgisMinimumVersion']}")
    for key in BOOLEANS:
        if key in meta and meta[key].lower() not in ("true", "false", "1", "0"):
            problems.append(f"{where} [general] {key}: {meta[key]!r} is not True/False")
    icon = meta.get("icon", "").removeprefix("./")
    if icon and f"{top}/{icon}" not in z.namelist():
        problems.append(f"{where} [general] icon: {top}/{icon} is not in the zip")
    return problems, meta


def check_plugin_zip(path: str | os.PathLike, package: str | None = None) -> list[str]:
    """Every reason plugins.qgis.org would refuse the plugin zip at ``path`` (empty: it would take it),
    each naming the zip, member or metadata field; ``package``: the plugin folder name expected."""
    path = os.fspath(path)
    problems = []
    size = Path(path).stat().st_size
    if size > MAX_BYTES:
        problems.append(f"{path}: {size:,} bytes, over the upload limit of {MAX_BYTES:,}")
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        return problems + [f"{path}: not a zip file ({exc})"]
    with z:
        bad = z.testzip()
        if bad:
            problems.append(f"{path}: member {bad!r} fails its CRC check")
        name_problems, top = _names(path, z, package)
        problems += name_problems
        if top is not None and f"{top}/metadata.txt" in z.namelist():
            problems += _metadata(path, z, top)[0]
    return problems


def placeholder_contacts(path: str | os.PathLike) -> list[str]:
    """The contact fields of the zip's metadata.txt that use a reserved example domain (accepted by the
    validator, but nobody can be reached there): what to replace before uploading."""
    with zipfile.ZipFile(path) as z:
        top = z.namelist()[0].split("/")[0]
        meta = _metadata(os.fspath(path), z, top)[1]
    out = []
    for key in ("email", *URL_METADATA):
        host = (meta.get(key, "").rsplit("@", 1)[-1] if key == "email" else urlparse(meta.get(key, "")).hostname) or ""
        if any(host == d or host.endswith(d if d.startswith(".") else "." + d) for d in PLACEHOLDER_DOMAINS):
            out.append(f"{key}={meta[key]}")
    return out
