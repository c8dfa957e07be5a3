"""Offline validation of STAC documents against the official schemas in tests/data/stac-schemas.

Each file there lies at its URL's path (``<host>/<path>``); :func:`registry` maps that URL and
the file's ``$id`` to it. :func:`stac_errors` validates a document against the core schema of
its ``type`` and ``stac_version`` and against every schema in its ``stac_extensions``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMA_DIR = Path(__file__).resolve().parent / "data" / "stac-schemas"
CORE = {"Feature": "item-spec/json-schema/item.json", "Collection": "collection-spec/json-schema/collection.json",
        "Catalog": "catalog-spec/json-schema/catalog.json"}


def _strip(url: str) -> str:
    return url[:-1] if url.endswith("#") else url


@lru_cache(maxsize=None)
def schemas() -> dict[str, dict]:
    """URL -> schema, for every kept file."""
    out = {}
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        out["https://" + path.relative_to(SCHEMA_DIR).as_posix()] = json.loads(path.read_text())
    return out


@lru_cache(maxsize=None)
def registry() -> Registry:
    pairs = []
    for url, schema in schemas().items():
        res = Resource.from_contents(schema, default_specification=DRAFT7)
        pairs.append((url, res))
        if schema.get("$id") and _strip(schema["$id"]) != url:
            pairs.append((_strip(schema["$id"]), res))
    return METASCHEMAS.with_resources(pairs).crawl()


def core_url(doc: dict) -> str:
    return f"https://schemas.stacspec.org/v{doc.get('stac_version')}/{CORE.get(doc.get('type'), 'unknown')}"


def stac_errors(doc: dict) -> list[str]:
    """``"<schema URL>: <path>: <message>"`` for each failure; a declared schema we lack is a failure."""
    errors = []
    for url in [core_url(doc), *doc.get("stac_extensions", [])]:
        if _strip(url) not in schemas():
            errors.append(f"{url}: schema not available offline")
            continue
        cls = jsonschema.validators.validator_for(schemas()[_strip(url)])
        validator = cls({"$ref": url}, registry=registry())
        for err in validator.iter_errors(doc):
            best = jsonschema.exceptions.best_match([err])
            where = "/".join(str(p) for p in best.absolute_path) or "(document)"
            errors.append(f"{url}: {where}: {best.message}")
    return errors
