"""The proposed GeoParquet extension for compressed embeddings.

``SPEC.md`` is the normative text, ``schema/`` the JSON Schema of the footer
key. The reference reader/writer/validator is :mod:`geoparquet_spec.reference`,
a thin shell over :mod:`geocodec`.
"""

from importlib import resources


def schema_text(version: str = "0.1.0") -> str:
    return resources.files(__name__).joinpath("schema", f"geocodec-{version}.schema.json").read_text()
