"""STAC Item for a compressed-embedding file (pystac), following the Embedding and MLM extensions.

Mapping (SPEC.md, "STAC"): the file is the asset ``embeddings``; ``emb:*``
fields describe the vectors; the model that made them is summarised under
``geocodec:model`` and, when it is published (``model.href``), described with
``mlm:*`` fields, an ``mlm:model`` asset and a link ``emb:model``; the decoder
is a link ``emb:decoder`` (to the data file when it sits in its footer); our codec
fields sit under the ``geocodec:`` prefix, since nothing in the Embedding
extension describes entropy coding yet.
"""

from __future__ import annotations

import datetime as dt
import json
import os

from geocodec.atomic import atomic_output
from geocodec.format.metadata import build_emb
from geocodec.format.reader import GeocodecFile

EMB_SCHEMA = "https://stac-extensions.github.io/embedding/v0.0.1/schema.json"
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def _wgs84_bbox(f: GeocodecFile) -> list[float]:
    from pyproj import CRS, Transformer

    b = f.geo["columns"][f.geo["primary_column"]]["bbox"]
    xmin, ymin, xmax, ymax = b[0], b[1], b[-2], b[-1]
    crs = CRS.from_user_input(f.crs)
    if crs.equals(CRS.from_user_input("OGC:CRS84")):
        return [xmin, ymin, xmax, ymax]
    t = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    return list(t.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21))


def _parse(t: str | None):
    if not t:
        return None
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))


def stac_item(f: GeocodecFile, *, href: str | None = None):
    """The :class:`pystac.Item` of an open file.

    WGS84 footprint and time, ``emb:`` and ``geocodec:`` fields (``mlm:`` too for a published model), the ``embeddings``
    asset and the ``emb:decoder`` link.
    """
    import pystac

    ext = f.ext
    bbox = _wgs84_bbox(f)
    x0, y0, x1, y1 = bbox
    geometry = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    start, end = (ext.get("temporal_extent") or [None, None])
    start, end = _parse(start), _parse(end)
    props = dict(build_emb(ext))
    model = ext["model"]
    props.update({
        "geocodec:version": ext["version"],
        "geocodec:codec": ext["codec"],
        "geocodec:latent": ext["latent"],
        "geocodec:decoder_sha256": ext["decoder"]["sha256"],
        "geocodec:model": {k: model.get(k) for k in ("name", "version", "sha256", "bands", "resolution_m")},
        "geocodec:rows": f.num_rows,
    })
    extensions = [EMB_SCHEMA, FILE_SCHEMA]
    if model.get("href"):  # the model itself is published: describe it with MLM
        extensions.append(MLM_SCHEMA)
        props.update({
            "mlm:name": model.get("name"),
            "mlm:architecture": model.get("architecture", ext["codec"]["name"]),
            "mlm:tasks": ["feature-extraction"],
            "mlm:input": [{"name": "bands", "bands": model.get("bands") or [],
                           "input": {"shape": [-1, len(model.get("bands") or []), -1, -1],
                                     "dim_order": ["batch", "bands", "height", "width"], "data_type": "float32"}}],
            "mlm:output": [{"name": "embedding", "tasks": ["feature-extraction"],
                            "result": {"shape": [-1, ext["embedding"]["dimension"]],
                                       "dim_order": ["batch", "embedding"], "data_type": "float32"}}],
        })
    if start and end and start != end:
        props["start_datetime"] = start.isoformat().replace("+00:00", "Z")
        props["end_datetime"] = end.isoformat().replace("+00:00", "Z")
        when = None
    elif start:
        when = start
    else:  # STAC needs a time; the file has none, so say when the item was made
        when = dt.datetime.now(dt.timezone.utc)
        props["geocodec:acquisition_time_unknown"] = True
    item = pystac.Item(
        id=os.path.splitext(os.path.basename(f.source))[0], geometry=geometry, bbox=bbox,
        datetime=when,
        properties=props, stac_extensions=extensions)
    item.add_asset("embeddings", pystac.Asset(
        href=href or os.path.basename(f.source), media_type=PARQUET_MEDIA_TYPE, roles=["data"],
        title="entropy-coded embeddings (GeoParquet + geocodec extension)",
        extra_fields={"file:size": os.path.getsize(f.source) if os.path.exists(f.source) else None}))
    if model.get("href"):
        item.add_asset("model", pystac.Asset(href=model["href"], roles=["mlm:model"], title=model.get("name"),
                                             extra_fields={"mlm:artifact_type": "onnx"}))
        item.add_link(pystac.Link(rel="emb:model", target=model["href"], title=model.get("name")))
    # the decoder sits in the data file's footer (key geocodec.decoder) unless its href is a URL
    decoder_href = ext["decoder"]["href"]
    target = decoder_href if not decoder_href.startswith("#") else (href or os.path.basename(f.source))
    item.add_link(pystac.Link(rel="emb:decoder", target=target, media_type="application/octet-stream",
                              title=f"ONNX decoder sha256 {ext['decoder']['sha256']}"
                                    + (f", in Parquet footer key '{decoder_href[1:]}'" if decoder_href.startswith("#")
                                       else ""),
                              extra_fields={"file:checksum": "1220" + ext["decoder"]["sha256"]}))
    return item


def write_stac_item(source: str, output: str, *, href: str | None = None) -> dict:
    """Write the STAC Item of the file ``source`` as JSON to ``output``; return it as a dict.

    ``href``: the asset href to record (default: the file name).
    """
    with GeocodecFile(source) as f:
        d = stac_item(f, href=href).to_dict(include_self_link=False)
    with atomic_output(output) as tmp:
        with open(tmp, "w") as fh:
            json.dump(d, fh, indent=2)
    return d
