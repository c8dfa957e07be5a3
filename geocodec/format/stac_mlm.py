"""MLM (Machine Learning Model) v1.4.0 and EO v1.1.0 fields for the model that made a file's vectors.

Used by :mod:`geocodec.format.stac` only when the model is published (an href to its
artifact is known): MLM asks for an asset with the role ``mlm:model``, so without a place
to point at there is no MLM description. STAC 1.0.0 (which the Embedding extension v0.0.1
requires) has no core ``bands``, so the input bands named in ``mlm:input`` are described by
``eo:bands`` (EO extension v1.1.0) on the model asset, one of the band references MLM accepts.
"""

from __future__ import annotations

import re

from geocodec.errors import MetadataError

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
#: MLM 1.4 has no "feature-extraction" task; the vectors serve search and classification heads
MLM_TASKS = ["similarity-search"]
#: the MLM v1.4.0 pattern for ``mlm:name``
_MLM_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
#: Sentinel-2 MSI band names -> EO v1.1.0 ``common_name`` (bands without one carry their name only)
S2_COMMON_NAMES = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
    "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
    "B12": "swir22",
}


def eo_bands(bands: list[str]) -> list[dict]:
    """EO v1.1.0 Band Objects for band names (``common_name`` for the Sentinel-2 names we know)."""
    out = []
    for b in bands:
        band = {"name": b}
        if b in S2_COMMON_NAMES:
            band["common_name"] = S2_COMMON_NAMES[b]
        out.append(band)
    return out


def mlm_properties(ext: dict, *, source: str) -> dict:
    """Item properties describing the model (``mlm:*``); its bands are described on its asset."""
    model = ext["model"]
    name = str(model.get("name") or "")
    if not _MLM_NAME.match(name):
        raise MetadataError(f"model name {name!r} is not a valid mlm:name (letters, digits, '_.-' and spaces, "
                            "starting with a letter, at least 3 characters)", source=source, field="geocodec.model.name")
    bands = list(model.get("bands") or [])
    props = {
        "mlm:name": name,
        "mlm:architecture": model.get("architecture") or ext["codec"]["name"],
        "mlm:tasks": list(MLM_TASKS),
        "mlm:framework": "ONNX",
        "mlm:input": [{
            "name": "bands" if bands else "input",
            "bands": bands,
            "input": {"shape": [-1, len(bands), -1, -1] if bands else [-1],
                      "dim_order": ["batch", "channel", "height", "width"] if bands else ["batch"],
                      "data_type": "float32"},
        }],
        "mlm:output": [{
            "name": "embedding", "tasks": list(MLM_TASKS),
            "result": {"shape": [-1, int(ext["embedding"]["dimension"])], "dim_order": ["batch", "embedding"],
                       "data_type": "float32"},
        }],
    }
    if model.get("normalisation"):
        props["mlm:input"][0]["description"] = str(model["normalisation"])
    return props


def mlm_extensions(ext: dict) -> list[str]:
    """The schema URLs that :func:`mlm_properties` needs declared."""
    return [MLM_SCHEMA] + ([EO_SCHEMA] if ext["model"].get("bands") else [])


def model_asset(ext: dict, href: str) -> dict:
    """The ``mlm:model`` asset: the published model artifact, with ``eo:bands`` for the bands it reads.

    EO 1.1.0 allows ``eo:bands`` in Item properties only as a summary of asset bands, and
    MLM accepts bands described on the ``mlm:model`` asset, so they go here.
    """
    model = ext["model"]
    asset = {"href": href, "type": "application/octet-stream", "roles": ["mlm:model"],
             "title": f"model {model.get('name')} {model.get('version') or ''}".strip(),
             "mlm:artifact_type": "onnx"}
    if model.get("bands"):
        asset["eo:bands"] = eo_bands(list(model["bands"]))
    return asset
