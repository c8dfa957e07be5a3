"""Decoders and entropy tables of published models: written by reference, resolved on read.

SPEC.md sections 4.5, 4.6 and 4.14. A file may name its ONNX decoder and its integer
tables by reference instead of embedding them: ``decoder.published`` (model name and
version) with ``decoder.sha256`` and ``decoder.href``; ``entropy_model.tables_ref``
(name, version, quality, sha256 and an optional href). A reference resolves, in order:

1. from the **installed package**: ``geocodec/models/<name>/embedding_decoder.onnx``, or
   the tables of ``qualities[<quality>]`` in ``geocodec/models/<name>/model.json``;
2. from the **user cache** (:func:`cache_dir`): ``decoders/<sha256>.onnx``, ``tables/<sha256>.json``;
3. from the **href** (:mod:`.hrefs`: https or relative to the file, size-limited), once:
   bytes whose hash differs are refused, matching ones are stored in the cache.

Every candidate is hash-checked; one that does not match is passed over (the package
or cache holds another version) and only the href's is refused outright. When nothing
resolves, the error names the file, the field, every place tried and what to do.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from geocodec.errors import MetadataError
from geocodec.format.hrefs import read_href, read_local
from geocodec.format.metadata import DECODER_HREF, tables_sha256
from geocodec.format.onnx_model import sha256_hex

__all__ = ["CACHE_ENV", "cache_dir", "Resolved", "resolve_decoder", "resolve_tables", "decoder_embedded",
           "tables_embedded", "reference_form", "embedded_form", "storage_report", "split_entropy",
           "entropy_sha256"]

CACHE_ENV = "GEOCODEC_CACHE"
DECODER_FILE = "embedding_decoder.onnx"
CARD_FILE = "model.json"
MAX_DECODER_BYTES = 64 << 20
MAX_TABLES_BYTES = 4 << 20
#: a model name that is safe as one folder name (the JSON Schema says the same)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DECODER_FIELD = "geocodec.decoder"
TABLES_FIELD = "geocodec.entropy_model.tables_ref"


def cache_dir() -> Path:
    """The user cache of referenced decoders and tables: ``$GEOCODEC_CACHE``, else
    ``$XDG_CACHE_HOME/geocodec``, else ``~/.cache/geocodec``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "geocodec"


def package_models_dir() -> Path:
    """The installed package's model folders (``geocodec/models``)."""
    from geocodec import resources

    return resources.MODELS_DIR


@dataclass
class Resolved:
    """What a reference resolved to: ``data`` (decoder bytes or the list of table dicts),
    ``where`` (``"embedded"``, ``"package"``, ``"cache"`` or ``"href"``) and ``path`` (file or URL)."""

    data: object
    where: str
    path: str


def decoder_embedded(ext: dict) -> bool:
    """True when the decoder is in the footer (``decoder.href`` is ``"#geocodec.decoder"``)."""
    return ext["decoder"]["href"] == DECODER_HREF


def tables_embedded(ext: dict) -> bool:
    """True when the entropy tables are in the footer (``entropy_model.tables``)."""
    return "tables" in ext["entropy_model"]


# -- resolution ----------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_hex(Path(path).read_bytes())


def _package_file(name, filename: str) -> Path | None:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        return None
    p = package_models_dir() / name / filename
    return p if p.is_file() else None


def _store(kind: str, sha: str, data: bytes) -> None:
    """Put verified bytes in the cache, atomically; a cache that cannot be written is skipped."""
    folder = cache_dir() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".onnx" if kind == "decoders" else ".json"
        tmp = folder / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / f"{sha}{suffix}")
    except OSError:
        pass


def resolve_decoder(dec: dict, *, source: str, fetch: bool = True) -> Resolved | None:
    """The bytes of a referenced decoder (``dec``: the ``decoder`` dict), by the order of the module docstring.

    ``fetch`` False stops before the href and returns None instead of raising when
    neither the package nor the cache holds it (``geocodec info``).
    """
    sha = dec["sha256"]
    published = dec.get("published") or {}
    tried = []
    pkg = _package_file(published.get("name"), DECODER_FILE)
    if pkg is not None:
        st = pkg.stat()
        if _file_sha256(str(pkg), st.st_mtime_ns, st.st_size) == sha:
            return Resolved(pkg.read_bytes(), "package", str(pkg))
        tried.append(f"the installed {pkg} is another version")
    else:
        tried.append(f"the installed package has no model '{published.get('name')}'")
    cached = cache_dir() / "decoders" / f"{sha}.onnx"
    if cached.is_file():
        data = read_local(str(cached), limit=MAX_DECODER_BYTES, source=source, field=DECODER_FIELD)
        if sha256_hex(data) == sha:
            return Resolved(data, "cache", str(cached))
        tried.append(f"the cached {cached} is damaged (its sha256 differs)")
    else:
        tried.append(f"the cache has no {cached}")
    href = dec.get("href")
    if not fetch:
        return None
    if href:
        limit = min(int(dec.get("size_bytes") or MAX_DECODER_BYTES), MAX_DECODER_BYTES)
        data = _read_or_none(href, source, f"{DECODER_FIELD}.href", limit, tried)
        if data is not None:
            got = sha256_hex(data)
            if got != sha:
                raise MetadataError(f"the decoder fetched from {href} hashes to {got}, the file expects {sha}: "
                                    "refused", source=source, field=f"{DECODER_FIELD}.sha256")
            _store("decoders", sha, data)
            return Resolved(data, "href", href)
    name = f"model '{published.get('name')}' {published.get('version', '')}".rstrip()
    raise MetadataError(
        f"the decoder is stored by reference ({name}, sha256 {sha}) and did not resolve: {'; '.join(tried)}. "
        f"Install the geocodec release that ships {name}, put the decoder at {cached}, or ask for the file "
        "written with --embed-decoder", source=source, field=DECODER_FIELD)


def _read_or_none(href, source, field, limit, tried) -> bytes | None:
    """The href's bytes, or None after noting why not; a refused href (rules) raises."""
    from geocodec.format.hrefs import check_href

    check_href(href, source=source, field=field)  # a forbidden href is an error of the file, not a miss
    try:
        return read_href(href, source=source, field=field, limit=limit)
    except MetadataError as exc:
        tried.append(f"href: {exc.message}")
        return None


def _quality_tables(card: object, quality):
    """What a tables reference resolves to in a JSON document: a bare list of tables, ``{"tables",
    "context"}`` (a context model's entropy tables), or a model card's ``qualities[<quality>]`` tables
    (with its ``context`` where it has one, in the same ``{"tables", "context"}`` form)."""
    if isinstance(card, list):
        return card
    if isinstance(card, dict) and isinstance(card.get("tables"), list) and isinstance(card.get("context"), dict):
        return {"tables": card["tables"], "context": card["context"]}
    try:
        entry = card["qualities"][str(int(quality))]
        tables = entry["tables"]
    except (KeyError, TypeError, ValueError):
        return None
    return {"tables": tables, "context": entry["context"]} if isinstance(entry.get("context"), dict) else tables


def split_entropy(data) -> tuple[list, dict | None]:
    """(tables, context or None) of what :func:`resolve_tables` returned (or of such a pair)."""
    if isinstance(data, dict):
        return data.get("tables"), data.get("context")
    if isinstance(data, tuple):
        return data
    return data, None


def entropy_sha256(data) -> str | None:
    """The ``tables_ref.sha256`` of resolved tables (SPEC.md 4.5: the context, if any, hashed with them)."""
    tables, context = split_entropy(data)
    if not isinstance(tables, list) or not (context is None or isinstance(context, dict)):
        return None
    try:
        return tables_sha256(tables, context)
    except (KeyError, TypeError, ValueError):
        return None


def resolve_tables(ref: dict, *, source: str, fetch: bool = True) -> Resolved | None:
    """The tables (list of ``{"min", "freq"}``) a ``tables_ref`` names, by the order of the module docstring.

    The href, when given, holds a JSON list of tables or a model card (``model.json``)
    whose ``qualities[<quality>].tables`` they are. ``fetch`` as in :func:`resolve_decoder`.
    """
    sha, quality = ref["sha256"], ref["quality"]
    tried = []
    card = _package_file(ref.get("name"), CARD_FILE)
    if card is not None:
        tables = _quality_tables(_json_or_none(card.read_bytes()), quality)
        if tables is not None and entropy_sha256(tables) == sha:
            return Resolved(tables, "package", f"{card} (quality {quality})")
        tried.append(f"the installed {card} has other tables for quality {quality}")
    else:
        tried.append(f"the installed package has no model '{ref.get('name')}'")
    cached = cache_dir() / "tables" / f"{sha}.json"
    if cached.is_file():
        tables = _quality_tables(_json_or_none(read_local(str(cached), limit=MAX_TABLES_BYTES, source=source,
                                                          field=TABLES_FIELD)), quality)
        if tables is not None and entropy_sha256(tables) == sha:
            return Resolved(tables, "cache", str(cached))
        tried.append(f"the cached {cached} is damaged (its sha256 differs)")
    else:
        tried.append(f"the cache has no {cached}")
    if not fetch:
        return None
    href = ref.get("href")
    if href:
        data = _read_or_none(href, source, f"{TABLES_FIELD}.href", MAX_TABLES_BYTES, tried)
        if data is not None:
            tables = _quality_tables(_json_or_none(data), quality)
            if tables is None or entropy_sha256(tables) != sha:
                raise MetadataError(f"{href} holds no tables for quality {quality} with sha256 {sha}: refused",
                                    source=source, field=f"{TABLES_FIELD}.sha256")
            _store("tables", sha, json.dumps(tables, separators=(",", ":")).encode())
            return Resolved(tables, "href", href)
    name = f"model '{ref.get('name')}' {ref.get('version', '')}".rstrip()
    raise MetadataError(
        f"the entropy tables are stored by reference ({name}, quality {quality}, sha256 {sha}) and did not "
        f"resolve: {'; '.join(tried)}. Install the geocodec release that ships {name}, put the tables at "
        f"{cached}, or ask for the file written with --embed-decoder", source=source, field=TABLES_FIELD)


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


# -- the two forms of an extension dict ------------------------------------------------------------
def reference_form(ext: dict, *, name: str, version: str, quality: int, decoder_href: str,
                   model_tables, tables_href: str | None = None) -> dict:
    """``ext`` (decoder and tables embedded) with the decoder by reference to the published model
    ``name``/``version``, and the tables too when they equal ``model_tables`` exactly (a list of tables,
    or ``{"tables", "context"}`` of a context model, whose context is then referenced with them); the
    model's ``normalisation`` text is left to its card."""
    if not NAME.match(name):
        raise MetadataError(f"model name {name!r} cannot be referenced (letters, digits, '.', '_', '-')",
                            field="decoder.published.name")
    out = dict(ext, decoder=dict(ext["decoder"], href=decoder_href, published={"name": name, "version": version}))
    if isinstance(ext.get("model"), dict) and ext["model"].get("name") == name:
        # descriptive text the published model card carries (not in the fingerprint from 0.2.0 on)
        out["model"] = {k: v for k, v in ext["model"].items() if k != "normalisation"}
    if not decoder_href or decoder_href == DECODER_HREF:
        raise MetadataError("a referenced decoder needs the URI it is published at", field="decoder.href")
    tables = ext["entropy_model"].get("tables")
    digest = None if tables is None else tables_sha256(tables, ext["entropy_model"].get("context"))
    if digest is not None and model_tables is not None and digest == entropy_sha256(model_tables):
        em = {k: v for k, v in ext["entropy_model"].items() if k not in ("tables", "context")}
        em["tables_ref"] = {"name": name, "version": version, "quality": int(quality), "sha256": digest}
        if tables_href:
            em["tables_ref"]["href"] = tables_href
        out["entropy_model"] = em
    return out


def embedded_form(ext: dict, tables) -> dict:
    """``ext`` with the decoder embedded (``href`` ``"#geocodec.decoder"``) and ``tables`` inline (a list,
    or what :func:`resolve_tables` gives for a context model: its ``context`` goes inline too)."""
    dec = {k: v for k, v in ext["decoder"].items() if k != "published"}
    dec["href"] = DECODER_HREF
    em = {k: v for k, v in ext["entropy_model"].items() if k != "tables_ref"}
    em["tables"], context = split_entropy(tables)
    if context is not None:
        em["context"] = context
    return dict(ext, decoder=dec, entropy_model=em)


def storage_report(ext: dict, *, source: str, fetch: bool = False) -> dict:
    """How the decoder and tables are stored and whether they resolve:
    ``{"decoder": {"storage", "resolves", "where", "detail"}, "tables": {...}}``.

    ``fetch`` False looks only at the package and the cache (no network): an unresolved
    reference then reports ``resolves`` None (unknown) when it has an href to try.
    """
    out = {}
    for part, embedded, ref, resolve in (
            ("decoder", decoder_embedded(ext), ext["decoder"], resolve_decoder),
            ("tables", tables_embedded(ext), ext["entropy_model"].get("tables_ref"), resolve_tables)):
        if embedded:
            out[part] = {"storage": "embedded", "resolves": True, "where": "embedded", "detail": "in the footer"}
            continue
        try:
            got = resolve(ref, source=source, fetch=fetch)
        except MetadataError as exc:
            out[part] = {"storage": "reference", "resolves": False, "where": None, "detail": exc.message}
            continue
        if got is None:
            out[part] = {"storage": "reference", "resolves": None if ref.get("href") else False, "where": None,
                         "detail": f"not installed or cached; would fetch {ref.get('href')}" if ref.get("href")
                         else "not installed or cached, and no href"}
        else:
            out[part] = {"storage": "reference", "resolves": True, "where": got.where, "detail": got.path}
    return out
