"""STAC 1.0.0 Collection and Item for a compressed-embedding file (SPEC.md section 13).

The Embedding extension v0.0.1 (``emb``) validates against STAC 1.0.0 only, puts what all
vectors of a product share (``emb:type``, ``emb:dimensions``, ``data_type``, ``gsd``,
``emb:chip_layout``) on the Collection, together with the required links ``emb:model`` and
``emb:source-data``; the Item carries ``emb:quantization`` and the asset ``embeddings``.
One Collection per codec fingerprint: files that can be merged share it.

Our codec fields go into Item properties under the ``geocodec:`` prefix without a declared
schema (we publish none), which core STAC and every declared extension allow. The model is
described with MLM fields (:mod:`geocodec.format.stac_mlm`) only when it is published.
Documents are plain dicts, written as JSON atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from urllib.parse import quote

from geocodec.atomic import atomic_output
from geocodec.format.metadata import EXT_KEY, build_emb
from geocodec.format.reader import GeocodecFile
from geocodec.format.stac_mlm import mlm_extensions, mlm_properties, model_asset
from geocodec.format.onnx_model import file_sha256

STAC_VERSION = "1.0.0"
EMB_SCHEMA = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
ONNX_MEDIA_TYPE = "application/octet-stream"
COLLECTION_FIELDS = ("emb:type", "emb:dimensions", "data_type", "gsd", "emb:chip_layout", "emb:temporal_resolution")
DEFAULT_LICENSE = "proprietary"


def multihash_sha256(hex_digest: str) -> str:
    """``file:checksum`` value: a multihash (0x12 = sha2-256, 0x20 = 32 bytes) in hex."""
    return "1220" + hex_digest


def _wgs84_bbox(f: GeocodecFile) -> list[float]:
    from pyproj import CRS, Transformer

    b = f.geo["columns"][f.geo["primary_column"]]["bbox"]
    xmin, ymin, xmax, ymax = b[0], b[1], b[-2], b[-1]
    crs = CRS.from_user_input(f.crs)
    if crs.equals(CRS.from_user_input("OGC:CRS84")):
        return [xmin, ymin, xmax, ymax]
    t = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    return list(t.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))


def _time(t: str | None) -> str | None:
    """An RFC 3339 UTC time, or None."""
    if not t:
        return None
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")).isoformat().replace("+00:00", "Z")


def collection_id(ext: dict) -> str:
    """Files with one codec fingerprint (the ones that merge) share a Collection."""
    name = ext["codec"]["name"]
    name = name if name.startswith("geocodec") else "geocodec-" + name
    return f"{name}-q{ext['codec']['quality']}-{ext['codec']['fingerprint'][:12]}"


def _href_from(doc_path: str, target_path: str) -> str:
    """``target_path`` relative to the folder of the document at ``doc_path``."""
    return os.path.relpath(os.path.abspath(target_path), os.path.dirname(os.path.abspath(doc_path)))


def _local_href(doc_path: str, href: str) -> str:
    """An existing local path relative to the document's folder; anything else (a URL) as given."""
    return _href_from(doc_path, href) if os.path.exists(href) else href


def _data_href(f: GeocodecFile, href: str | None) -> str:
    return href or os.path.basename(f.source)


def decoder_link(ext: dict, data_href: str) -> dict:
    """``emb:decoder``: the decoder file (with its checksum) or, when embedded, the data file."""
    dec = ext["decoder"]
    if dec["href"].startswith("#"):
        # embedded: the link points at the Parquet file, so it carries no file:checksum (that
        # would describe the Parquet file); the decoder's own hash is geocodec:decoder_sha256
        return {"rel": "emb:decoder", "href": data_href, "type": PARQUET_MEDIA_TYPE,
                "title": f"ONNX decoder, base64 in Parquet footer key '{dec['href'][1:]}' of this file "
                         f"(sha256 {dec['sha256']})"}
    link = {"rel": "emb:decoder", "href": dec["href"], "type": ONNX_MEDIA_TYPE, "title": "ONNX decoder",
            "file:checksum": multihash_sha256(dec["sha256"])}
    if dec.get("size_bytes"):
        link["file:size"] = int(dec["size_bytes"])
    return link


def _model_link(ext: dict, model_href: str | None) -> dict:
    model = ext["model"]
    title = f"model {model.get('name')} {model.get('version') or ''}".strip()
    if model.get("sha256"):
        title += f" (sha256 {model['sha256']})"
    if model_href:
        return {"rel": "emb:model", "href": model_href, "title": title}
    # unpublished: name the model without a location (a URN is an IRI that does not dereference)
    parts = [quote(str(model.get(k) or ""), safe="") for k in ("name", "version")]
    urn = ":".join(["urn:geocodec:model", parts[0] or "unknown", parts[1]])
    return {"rel": "emb:model", "href": urn.rstrip(":"), "title": title + ", not published"}


def _source_links(sources: list[str], *, required: bool) -> list[dict]:
    links = [{"rel": "emb:source-data", "href": s} for s in sources]
    if not links and required:
        links = [{"rel": "emb:source-data", "href": "urn:geocodec:source-data:unknown",
                  "title": "source imagery not recorded in the file"}]
    return links


def stac_collection(f: GeocodecFile, *, item_href: str, model_href: str | None = None,
                    sources: list[str] | None = None, license: str = DEFAULT_LICENSE) -> dict:
    """The STAC 1.0.0 Collection of a file: the Embedding extension's collection fields and links."""
    ext = f.ext
    emb = build_emb(ext)
    model_href = model_href or ext["model"].get("href")
    start, end = (ext.get("temporal_extent") or [None, None])
    desc = (f"Entropy-coded {ext['embedding']['dimension']}-dimensional embeddings "
            f"({ext['embedding'].get('semantics') or ext['embedding']['type']}), "
            f"codec {ext['codec']['name']} {ext['codec']['version']} at quality {ext['codec']['quality']}; "
            "read with a geocodec reader (SPEC.md).")
    coll = {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [EMB_SCHEMA],
        "id": collection_id(ext), "title": f"{ext['model'].get('name')} embeddings ({ext['codec']['name']})",
        "description": desc, "license": license,
        "extent": {"spatial": {"bbox": [_wgs84_bbox(f)]}, "temporal": {"interval": [[_time(start), _time(end)]]}},
        **{k: emb[k] for k in COLLECTION_FIELDS if k in emb},
        "links": [{"rel": "item", "href": item_href, "type": "application/geo+json"},
                  _model_link(ext, model_href), *_source_links(list(sources or []), required=True)],
    }
    return coll


def stac_item(f: GeocodecFile, *, href: str | None = None, collection_href: str | None = None,
              model_href: str | None = None, sources: list[str] | None = None) -> dict:
    """The STAC 1.0.0 Item of a file: asset ``embeddings``, ``emb:quantization``, ``geocodec:*``.

    ``href`` is the data asset's href (default: the file name), ``collection_href`` the
    Collection's (adds ``collection`` and its link), ``model_href`` the published model
    (adds MLM fields, an ``mlm:model`` asset and an ``emb:model`` link; default
    ``model.href`` of the file), ``sources`` the source scenes (``emb:source-data`` links).
    """
    ext = f.ext
    model = ext["model"]
    model_href = model_href or model.get("href")
    data_href = _data_href(f, href)
    x0, y0, x1, y1 = bbox = _wgs84_bbox(f)
    quant = dict(build_emb(ext)["emb:quantization"])
    quant["link"] = {"rel": "describedby", "href": data_href, "type": PARQUET_MEDIA_TYPE,
                     "title": f"quantization and entropy coding: footer key '{EXT_KEY}' of this file (SPEC.md 4)"}
    props = {
        "emb:quantization": quant,
        "geocodec:version": ext["version"],
        "geocodec:codec": ext["codec"],
        "geocodec:latent": ext["latent"],
        "geocodec:decoder_sha256": ext["decoder"]["sha256"],
        "geocodec:model": {k: model.get(k) for k in ("name", "version", "sha256", "bands", "resolution_m")},
        "geocodec:rows": f.num_rows,
    }
    start, end = (_time(t) for t in (ext.get("temporal_extent") or [None, None]))
    if start and end and start != end:
        props.update({"datetime": None, "start_datetime": start, "end_datetime": end})
    elif start:
        props["datetime"] = start
    else:  # STAC needs a time; the file has none, so say when the Item was made
        props["datetime"] = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        props["geocodec:acquisition_time_unknown"] = True
    extensions = [EMB_SCHEMA, FILE_SCHEMA]
    asset = {"href": data_href, "type": PARQUET_MEDIA_TYPE, "roles": ["data"],
             "title": "entropy-coded embeddings (GeoParquet + geocodec extension)"}
    if os.path.isfile(f.source):
        asset["file:size"] = os.path.getsize(f.source)
        asset["file:checksum"] = multihash_sha256(file_sha256(f.source))
    assets = {"embeddings": asset}
    links = [decoder_link(ext, data_href), *_source_links(list(sources or []), required=False)]
    if model_href:
        props.update(mlm_properties(ext, source=f.source))
        extensions += mlm_extensions(ext)
        assets["model"] = model_asset(ext, model_href)
        links.append(_model_link(ext, model_href))
    item = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": extensions,
            "id": os.path.splitext(os.path.basename(f.source))[0],
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "bbox": bbox, "properties": props, "links": links, "assets": assets}
    if collection_href:
        item["collection"] = collection_id(ext)
        item["links"].insert(0, {"rel": "collection", "href": collection_href, "type": "application/json"})
    return item


def default_collection_path(item_path: str) -> str:
    """``x.stac.json`` -> ``x.collection.json`` (else ``<item stem>.collection.json``), beside the Item."""
    base = item_path[:-len(".stac.json")] if item_path.endswith(".stac.json") else os.path.splitext(item_path)[0]
    return base + ".collection.json"


def _write_json(path: str, doc: dict) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")


def write_stac(source: str, item_path: str, collection_path: str | None = None, *, href: str | None = None,
               model_href: str | None = None, sources: list[str] | None = None,
               license: str = DEFAULT_LICENSE) -> dict:
    """Write the Item of ``source`` to ``item_path`` and its Collection (default beside it).

    Returns ``{"item": path, "collection": path}``; the two link to each other by relative
    hrefs. Arguments as in :func:`stac_item` and :func:`stac_collection`.
    """
    collection_path = collection_path or default_collection_path(item_path)
    sources = list(sources or [])
    with GeocodecFile(source) as f:
        item = stac_item(f, href=href, collection_href=_href_from(item_path, collection_path),
                         model_href=model_href, sources=[_local_href(item_path, s) for s in sources])
        coll = stac_collection(f, item_href=_href_from(collection_path, item_path), model_href=model_href,
                               sources=[_local_href(collection_path, s) for s in sources], license=license)
    _write_json(collection_path, coll)
    _write_json(item_path, item)
    return {"item": item_path, "collection": collection_path}


def write_stac_item(source: str, output: str, *, href: str | None = None, collection: str | None = None,
                    model_href: str | None = None, sources: list[str] | None = None) -> dict:
    """Write the Item (and its Collection, beside it unless ``collection`` is given); return the Item."""
    write_stac(source, output, collection, href=href, model_href=model_href, sources=sources)
    with open(output) as fh:
        return json.load(fh)
