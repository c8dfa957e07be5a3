"""The QGIS plugin's dependency list, generated from pyproject.toml's ``[project].dependencies``.

The plugin (``qgis_plugin/geocodec_qgis/deps.py``) reads ``requirements.txt`` beside itself; that
file is written by :func:`write_requirements` (``python -m geocodec.cli.plugin_requirements``) and
checked by :func:`stale_requirements` when the plugin zip is built, so the plugin asks for exactly the
consumer install's pins (``constriction==0.5.0``, the floors) minus what it never runs
(:data:`NOT_IN_PLUGIN`). Needs a source checkout (pyproject.toml is not installed with the wheel).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from geocodec.errors import GeocodecError

__all__ = ["NOT_IN_PLUGIN", "REQUIREMENTS_NAME", "plugin_requirements", "render_requirements",
           "stale_requirements", "write_requirements"]

# consumer dependencies the plugin's code paths never import, with the reason
NOT_IN_PLUGIN = {
    "fsspec": "remote (http/s3) sources: the plugin opens local files",
    "aiohttp": "fsspec's HTTP backend",
    "pystac": "STAC Items are written by geocodec encode/stac, not in QGIS",
}
REQUIREMENTS_NAME = "requirements.txt"
HEADER = ("# Generated from pyproject.toml [project].dependencies by geocodec/cli/plugin_requirements.py:\n"
          "# edit pyproject.toml, then run `python -m geocodec.cli.plugin_requirements`. Read by deps.py.\n")


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise GeocodecError("reading pyproject.toml on Python 3.10 needs the tomli package",
                                source=str(path)) from exc
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GeocodecError(f"cannot read {path}: {exc}", source=str(path)) from exc


def _dist_name(requirement: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", requirement)
    if m is None:
        raise GeocodecError(f"not a requirement: {requirement!r}", field="project.dependencies")
    return m.group(1).lower().replace("_", "-")


def plugin_requirements(pyproject: str | Path) -> list[str]:
    """The requirements of ``pyproject``'s ``[project].dependencies`` the plugin needs, as written there
    (comments and environment markers dropped), in pyproject's order."""
    pyproject = Path(pyproject)
    try:
        deps = _load_toml(pyproject)["project"]["dependencies"]
    except KeyError as exc:
        raise GeocodecError(f"{pyproject} has no [project].dependencies", source=str(pyproject),
                            field="project.dependencies") from exc
    out = []
    for req in deps:
        if _dist_name(req) not in NOT_IN_PLUGIN:
            out.append(req.split(";")[0].replace(" ", ""))
    return out


def render_requirements(pyproject: str | Path) -> str:
    """The text of the plugin's ``requirements.txt`` for ``pyproject``."""
    return HEADER + "".join(r + "\n" for r in plugin_requirements(pyproject))


def stale_requirements(plugin_dir: str | Path, pyproject: str | Path) -> str | None:
    """None when ``plugin_dir/requirements.txt`` equals what ``pyproject`` gives, else what differs."""
    path = Path(plugin_dir) / REQUIREMENTS_NAME
    want = render_requirements(pyproject)
    have = path.read_text(encoding="utf-8") if path.is_file() else None
    if have == want:
        return None
    if have is None:
        return f"{path} is missing"
    return (f"{path} does not match {pyproject} [project].dependencies: has "
            f"{[ln for ln in have.splitlines() if ln and not ln.startswith('#')]}, pyproject gives "
            f"{plugin_requirements(pyproject)}")


def write_requirements(plugin_dir: str | Path, pyproject: str | Path) -> Path:
    """(Re)write ``plugin_dir/requirements.txt`` from ``pyproject``; returns its path."""
    path = Path(plugin_dir) / REQUIREMENTS_NAME
    path.write_text(render_requirements(pyproject), encoding="utf-8")
    return path


if __name__ == "__main__":
    from geocodec.cli.packaging import plugin_source

    src = plugin_source()
    print(f"wrote {write_requirements(src, src.parents[1] / 'pyproject.toml')}", file=sys.stderr)
