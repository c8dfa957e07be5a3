"""The footer metadata: GeoParquet ``geo``, STAC-style ``emb`` and our ``geocodec`` key.

Spec-driven, in the manner of geopandas' ``io/arrow.py``: build the dicts on
write, and on read parse, validate against the JSON Schema in
``geoparquet_spec/schema`` and turn them into typed objects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from geocodec.format.entropy import ESCAPE_BITS, PRECISION, IntegerTable
from geocodec.format.entropy_model import EntropyModel
from geocodec.errors import GeocodecError, MetadataError

#: the version the writer writes when a file needs nothing newer (a factorized entropy model);
#: a file with a context model (``entropy_model.context``) is written as :data:`CONTEXT_VERSION`
SPEC_VERSION = "0.2.0"
CONTEXT_VERSION = "0.3.0"
KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0")
GEO_KEY = "geo"
EMB_KEY = "emb"
EXT_KEY = "geocodec"
DECODER_KEY = "geocodec.decoder"
DECODER_HREF = "#" + DECODER_KEY  # the decoder is embedded in the footer under this key (else: by reference)
GEOPARQUET_VERSION = "1.1.0"
CODER = "rans-u32-u64"
CODER_LIBRARY = "constriction==0.5.0"

#: bounds on declared sizes (the JSON Schemas say the same), checked before anything is allocated
MAX_DIMENSION = 1 << 16          # embedding.dimension
MAX_LATENT_VALUES = 1 << 20      # product of latent.shape: values per row
MAX_DECODE_BYTES = 8 << 30       # the int32 codes of one row group, decoded
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: the fields whose values determine how codes decode: files that agree on them concatenate
FINGERPRINT_FIELDS = ("codec", "latent", "quantization", "entropy_model", "decoder", "embedding", "model")


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(v).split("."))
    except ValueError:
        return (0,)


@lru_cache(maxsize=None)
def _validator(version: str):
    import jsonschema

    from geocodec.resources import schema_path

    schema = json.loads(schema_path(version).read_text())
    return jsonschema.Draft202012Validator(schema)


def tables_sha256(tables: list, context: dict | None = None) -> str:
    """sha256 of the canonical JSON of entropy tables (a list of ``{"min", "freq"}``; SPEC.md 4.5); with a
    ``context`` (spec 0.3.0) of the object ``{"context": context, "tables": tables}``, so one hash names both."""
    canon = [{"min": int(t["min"]), "freq": [int(f) for f in t["freq"]]} for t in tables]
    obj = canon if context is None else {"context": context, "tables": canon}
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fingerprint(ext: dict) -> str:
    """sha256 over the canonical JSON of what decoding depends on (SPEC.md 4.2).

    From spec 0.2.0 on, the tables enter as their sha256 (``tables_sha256``) whether they are
    embedded or referenced, and ``model.normalisation`` (descriptive text, left out of by-reference
    files: the model card has it) does not enter, so a file and its by-reference twin share one
    fingerprint.
    """
    core = {k: ext.get(k) for k in FINGERPRINT_FIELDS}
    core["codec"] = {k: v for k, v in (core["codec"] or {}).items() if k != "fingerprint"}
    core["decoder"] = {k: v for k, v in (core["decoder"] or {}).items() if k in ("format", "sha256", "input", "output")}
    if ext.get("version") != "0.1.0" and isinstance(core["entropy_model"], dict):
        em = core["entropy_model"]
        ref = em.get("tables_ref") if isinstance(em.get("tables_ref"), dict) else {}
        digest = tables_sha256(em["tables"], em.get("context")) if isinstance(em.get("tables"), list) \
            else ref.get("sha256")
        core["entropy_model"] = {**{k: v for k, v in em.items() if k not in ("tables", "tables_ref", "context")},
                                 "tables_sha256": digest}
    # descriptive text does not change how codes decode
    if isinstance(core["embedding"], dict):
        core["embedding"] = {k: v for k, v in core["embedding"].items() if k != "semantics"}
    if isinstance(core["model"], dict):
        descriptive = ("href",) if ext.get("version") == "0.1.0" else ("href", "normalisation")
        core["model"] = {k: v for k, v in core["model"].items() if k not in descriptive}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def validate_extension(ext: object, *, source: str) -> dict:
    """Check the ``geocodec`` dict: version first, then the JSON Schema."""
    if not isinstance(ext, dict):
        raise MetadataError("the 'geocodec' footer value is not a JSON object", source=source, field=EXT_KEY)
    version = ext.get("version")
    if version is None:
        raise MetadataError("no spec version", source=source, field="geocodec.version")
    if version not in KNOWN_VERSIONS:
        newest = KNOWN_VERSIONS[-1]
        if _version_tuple(version) > _version_tuple(newest):
            raise MetadataError(
                f"the file uses spec version {version}, newer than this geocodec knows ({newest}); "
                "upgrade geocodec to read it", source=source, field="geocodec.version")
        raise MetadataError(f"unknown spec version {version!r}; known: {', '.join(KNOWN_VERSIONS)}",
                            source=source, field="geocodec.version")
    errors = sorted(_validator(version).iter_errors(ext), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        path = ".".join(["geocodec", *[str(p) for p in err.path]])
        raise MetadataError(f"invalid extension metadata: {err.message}", source=source, field=path)
    _check_consistency(ext, source)
    _check_sizes(ext, source)
    return ext


def check_fingerprint(ext: dict, *, source: str) -> None:
    """Refuse an extension whose stored ``codec.fingerprint`` is not the hash of its fields (SPEC.md 4.2, 8):
    edited metadata would decode every row differently. :class:`~geocodec.errors.MetadataError`, field
    ``geocodec.codec.fingerprint``."""
    stored = (ext.get("codec") or {}).get("fingerprint")
    if stored is None:
        raise MetadataError("no codec fingerprint: writers must write it", source=source,
                            field="geocodec.codec.fingerprint")
    got = fingerprint(ext)
    if stored != got:
        raise MetadataError(f"stored {stored} but the metadata hashes to {got}: the metadata was edited, "
                            "the codes would not decode to what was written", source=source,
                            field="geocodec.codec.fingerprint")


def _check_sizes(ext: dict, source: str) -> None:
    values = 1
    for s in ext["latent"]["shape"]:
        values *= int(s)
    if values > MAX_LATENT_VALUES:
        raise MetadataError(f"latent of {values} values per row, more than {MAX_LATENT_VALUES}", source=source,
                            field="geocodec.latent.shape")
    if int(ext["embedding"]["dimension"]) > MAX_DIMENSION:
        raise MetadataError(f"embedding dimension {ext['embedding']['dimension']}, more than {MAX_DIMENSION}",
                            source=source, field="geocodec.embedding.dimension")


def _check_consistency(ext: dict, source: str) -> None:
    shape = ext["latent"]["shape"]
    channels = shape[0]
    if ext["latent"]["layout"] == "vector" and len(shape) != 1:
        raise MetadataError("a 'vector' latent has a shape of one number", source=source, field="geocodec.latent.shape")
    if ext["latent"]["layout"] == "grid" and len(shape) != 3:
        raise MetadataError("a 'grid' latent has shape [channels, height, width]", source=source,
                            field="geocodec.latent.shape")
    if len(ext["quantization"]["step"]) != channels:
        raise MetadataError(f"{len(ext['quantization']['step'])} entries for {channels} latent channels",
                            source=source, field="geocodec.quantization.step")
    for i, step in enumerate(ext["quantization"]["step"]):
        if not (isinstance(step, (int, float)) and math.isfinite(step) and 0 < step <= FLOAT32_MAX):
            raise MetadataError(f"step {step!r} is not a finite float32 > 0", source=source,
                                field=f"geocodec.quantization.step.{i}")
    em = ext["entropy_model"]
    context = em.get("context")
    if context is not None:
        _check_context(context, shape, source)
    if em.get("symbol_order") == "checkerboard-context" and ext["latent"]["layout"] != "grid":
        raise MetadataError("a checkerboard context model needs a 'grid' latent", source=source,
                            field="geocodec.latent.layout")
    if "tables" in em:
        check_tables(em["tables"], channels, source=source, field="geocodec.entropy_model.tables", context=context)


def _check_context(context: dict, shape: list, source: str) -> None:
    from geocodec.format.context import CheckerboardContext

    try:
        CheckerboardContext.from_json(context, shape)
    except GeocodecError as exc:
        raise MetadataError(exc.message, source=source, field="geocodec." + (exc.field or "entropy_model.context"))


def check_tables(tables: list, channels: int, *, source: str, field: str, context: dict | None = None) -> None:
    """Embedded or resolved tables: one per latent channel (factorized) or, with a ``context``, as many as
    its ``table_index`` names (every index < the number of tables); each summing to ``2**PRECISION``."""
    if context is None and (not isinstance(tables, list) or len(tables) != channels):
        n = len(tables) if isinstance(tables, list) else "no list of"
        raise MetadataError(f"{n} entries for {channels} latent channels", source=source, field=field)
    if context is not None:
        if not isinstance(tables, list) or not tables:
            raise MetadataError("a context model needs a non-empty list of tables", source=source, field=field)
        top = max((max(row) for row in context["table_index"] if row), default=-1)
        if top >= len(tables):
            raise MetadataError(f"entropy_model.context.table_index names table {top} but there are "
                                f"{len(tables)} tables", source=source, field=field)
    for i, t in enumerate(tables):
        freq = t.get("freq") if isinstance(t, dict) else None
        if not isinstance(freq, list) or not all(isinstance(f, int) and f >= 1 for f in freq) or \
                not isinstance(t.get("min"), int) or len(freq) < 2:
            raise MetadataError("a table is {\"min\": integer, \"freq\": [integers >= 1, ...]}", source=source,
                                field=f"{field}.{i}")
        total = sum(freq)
        if total != 1 << PRECISION:
            raise MetadataError(f"table frequencies sum to {total}, not 2**{PRECISION}", source=source,
                                field=f"{field}.{i}.freq")


@dataclass
class CodecSpec:
    """What the reader needs to turn code bytes into latents: decoded from ``geocodec``."""

    ext: dict
    #: the file the metadata belongs to, for errors and for resolving referenced tables
    source: str | None = None

    @cached_property
    def entropy_json(self) -> tuple[list[dict], dict | None]:
        """(tables, context) as JSON: embedded, or resolved from ``entropy_model.tables_ref``
        (:func:`geocodec.format.published.resolve_tables`: package, cache, href; hash-checked; a
        context model's ``context`` travels with its tables)."""
        em = self.ext["entropy_model"]
        if "tables" in em:
            return em["tables"], em.get("context")
        from geocodec.format.published import TABLES_FIELD, resolve_tables, split_entropy

        tables, context = split_entropy(resolve_tables(em["tables_ref"], source=self.source).data)
        if (context is None) != (em.get("symbol_order", "channel-major") == "channel-major"):
            raise MetadataError(f"the referenced tables {'have no' if context is None else 'have a'} context, "
                                f"the file's symbol_order is {em.get('symbol_order')!r}", source=self.source,
                                field=TABLES_FIELD)
        if context is not None:
            _check_context(context, list(self.latent_shape), self.source)
        check_tables(tables, self.channels, source=self.source, field=TABLES_FIELD, context=context)
        return tables, context

    @property
    def tables_json(self) -> list[dict]:
        """The entropy tables as JSON dicts (:attr:`entropy_json`)."""
        return self.entropy_json[0]

    @cached_property
    def tables(self) -> list[IntegerTable]:
        """The :class:`IntegerTable` list: one per latent channel, or the shared tables of a context model."""
        return [IntegerTable.from_json(t) for t in self.tables_json]

    @cached_property
    def entropy(self) -> EntropyModel:
        """The :class:`~geocodec.format.entropy_model.EntropyModel` that codes and decodes the blocks."""
        tables, ctx = self.entropy_json
        try:
            return EntropyModel.from_json(tables, ctx, self.latent_shape)
        except GeocodecError as exc:
            raise MetadataError(exc.message, source=self.source, field="geocodec." + (exc.field or "entropy_model"))

    @cached_property
    def step(self) -> np.ndarray:
        """Quantization step per latent channel, float32 (C,)."""
        return np.asarray(self.ext["quantization"]["step"], dtype=np.float32)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The latent of one row: (C,) for a vector, (C, H, W) for a grid."""
        return tuple(self.ext["latent"]["shape"])

    @property
    def channels(self) -> int:
        """C, the number of latent channels."""
        return self.latent_shape[0]

    @property
    def positions(self) -> int:
        """S, the latent positions per channel (H * W for a grid, 1 for a vector)."""
        return int(np.prod(self.latent_shape[1:], dtype=np.int64)) if len(self.latent_shape) > 1 else 1

    @property
    def block_rows(self) -> int:
        """Rows per entropy-coded block."""
        return int(self.ext["entropy_model"]["block_rows"])

    @property
    def dimension(self) -> int:
        """Length of the decoded embedding vectors."""
        return int(self.ext["embedding"]["dimension"])

    @property
    def fingerprint(self) -> str:
        """The :func:`fingerprint` of the extension, recomputed from its fields."""
        return fingerprint(self.ext)

    @cached_property
    def min_bits_per_row(self) -> float:
        """The fewest bits the entropy coder can spend on one row: every value its channel's most probable
        symbol. A block of ``m`` rows holds at least ``m`` times this, less 64 bits (the coder's state)."""
        return self.entropy.min_bits_per_row(self.channels, self.positions)

    def check_decode(self, rows: int, code_bits: int, blocks: int = 1, *, source: str | None = None,
                     row: int | None = None) -> None:
        """Refuse, before allocating, to decode ``rows`` rows from ``code_bits`` bits of code: more than
        :data:`MAX_DECODE_BYTES` of codes, or more rows than the bits can hold under the tables
        in ``blocks`` blocks (a footer declaring a huge latent). :class:`~geocodec.errors.MetadataError`."""
        need = rows * self.channels * self.positions * 4
        if need > MAX_DECODE_BYTES:
            raise MetadataError(f"{rows} rows of {self.channels * self.positions} latent values would take "
                                f"{need / 2**30:.1f} GiB to decode, more than {MAX_DECODE_BYTES >> 30} GiB",
                                source=source or self.source, row=row, field="geocodec.latent.shape")
        least = rows * self.min_bits_per_row - 64 * blocks
        if least > code_bits:
            raise MetadataError(f"{rows} rows of latent {list(self.latent_shape)} need at least {least:.0f} bits "
                                f"under the entropy tables, the code holds {code_bits}", source=source or self.source,
                                row=row, field="geocodec.latent.shape")

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """int codes (N, C, S) -> float32 latents shaped (N, *latent_shape)."""
        y = q.astype(np.float32) * self.step[None, :, None]
        return y.reshape((q.shape[0],) + self.latent_shape)


def build_extension(*, codec_name: str, codec_version: str, quality: int, latent_shape: tuple[int, ...],
                    step: np.ndarray, tables: "list[IntegerTable] | EntropyModel", block_rows: int,
                    decoder_sha256: str,
                    decoder_size: int, decoder_input: str, decoder_output: str, dimension: int,
                    embedding_type: str, semantics: str, model: dict, grid: dict) -> dict:
    """The ``geocodec`` footer dict of a codec (``temporal_extent`` still None), with its fingerprint.

    ``tables``: one :class:`IntegerTable` per channel, or an :class:`EntropyModel` (with a context
    model the file is spec :data:`CONTEXT_VERSION`, else :data:`SPEC_VERSION`).
    """
    entropy = tables if isinstance(tables, EntropyModel) else EntropyModel(tuple(tables))
    members = entropy.json_members()
    ext = {
        "version": CONTEXT_VERSION if entropy.context is not None else SPEC_VERSION,
        "codec": {"name": codec_name, "version": codec_version, "quality": int(quality)},
        "latent": {"layout": "vector" if len(latent_shape) == 1 else "grid", "shape": [int(s) for s in latent_shape]},
        "quantization": {"method": "uniform-round", "step": [float(s) for s in np.asarray(step, dtype=np.float32)]},
        "entropy_model": {
            "coder": CODER, "library": CODER_LIBRARY, "precision": PRECISION, "block_rows": int(block_rows),
            "symbol_order": members["symbol_order"], "escape_bits": ESCAPE_BITS,
            "tables": members["tables"],
            **({"context": members["context"]} if "context" in members else {}),
        },
        "decoder": {"format": "onnx", "sha256": decoder_sha256, "href": DECODER_HREF, "input": decoder_input,
                    "output": decoder_output, "size_bytes": int(decoder_size)},
        "embedding": {"dimension": int(dimension), "type": embedding_type, "dtype": "float32", "semantics": semantics},
        "model": model,
        "grid": grid,
        "temporal_extent": None,
    }
    ext["codec"]["fingerprint"] = fingerprint(ext)
    return ext


def build_geo(*, crs: dict | None, bbox: list[float] | None, geometry_types: list[str],
              column: str = "geometry", covering: bool = True) -> dict:
    """GeoParquet 1.1 ``geo`` metadata of one WKB geometry column.

    ``bbox`` None (an empty layer) leaves the optional ``bbox`` out; ``covering`` declares
    the ``bbox`` struct column (``xmin`` .. ``ymax``) as the geometry's bbox covering, so
    pass False for a table without that column.
    """
    col = {"encoding": "WKB", "geometry_types": sorted(set(geometry_types)), "crs": crs}
    if bbox is not None:
        col["bbox"] = [float(v) for v in bbox]
    if covering:
        col["covering"] = {"bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                                    "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}}
    return {"version": GEOPARQUET_VERSION, "primary_column": column, "columns": {column: col}}


def build_emb(ext: dict) -> dict:
    """STAC Embedding extension fields (community footer key ``emb``)."""
    grid = ext.get("grid") or {}
    emb_type = ext["embedding"]["type"]
    emb = {
        "emb:type": "pixel" if emb_type == "pixel" else "chip",
        "emb:dimensions": ext["embedding"]["dimension"],
        "data_type": "float32",
        "emb:quantization": {
            "method": "geocodec",
            "original_dtype": "float32",
            "quantized_dtype": "entropy-coded",
            # a Link object, as the extension asks; "#geocodec" = this file's footer key geocodec
            "link": {"rel": "describedby", "href": "#" + EXT_KEY,
                     "title": "quantization and entropy coding: the footer key 'geocodec'"},
        },
    }
    if grid.get("tile_size_px"):
        emb["emb:chip_layout"] = {"layout_type": "regular_grid", "chip_size": grid["tile_size_px"],
                                  "stride": grid["tile_size_px"]}
        if grid.get("id"):  # the extension wants a string or nothing
            emb["emb:chip_layout"]["grid_id"] = str(grid["id"])
    if ext["model"].get("resolution_m"):
        emb["gsd"] = ext["model"]["resolution_m"]
    return emb


def encode_decoder(data: bytes) -> bytes:
    """Decoder bytes as base64, the form stored under the footer key ``geocodec.decoder``."""
    return base64.b64encode(data)


def decode_decoder(value: bytes, *, source: str) -> bytes:
    """Inverse of :func:`encode_decoder`; :class:`~geocodec.errors.MetadataError` if not valid base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise MetadataError("the embedded decoder is not valid base64", source=source, field=DECODER_KEY) from exc


def parse_json_key(kv: dict, key: str, *, source: str, required: bool = True):
    """The JSON value of footer key ``key`` in key-value metadata ``kv``.

    Missing: :class:`~geocodec.errors.MetadataError` if ``required``, else None; invalid JSON: MetadataError.
    """
    raw = kv.get(key.encode()) if kv else None
    if raw is None:
        if required:
            raise MetadataError(f"no '{key}' key in the Parquet footer: not a geocodec file", source=source, field=key)
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetadataError(f"footer key '{key}' is not valid JSON: {exc}", source=source, field=key) from exc
    except ValueError as exc:  # NaN, Infinity: Python's json reads them, JSON has no such numbers
        raise MetadataError(f"footer key '{key}' is not valid JSON: {exc}", source=source, field=key) from exc


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def check_geo(geo, *, source: str) -> dict:
    """``geo`` (the parsed GeoParquet key) if its shape is what every reader relies on; else MetadataError.

    An object with a string ``primary_column`` naming an object in ``columns``; of that column, an
    ``encoding`` string, ``geometry_types`` a list of strings, ``bbox`` 4 or 6 finite numbers and ``crs``
    an object, a string or null, where present. The one check of ``geo`` every command goes through.
    """
    def bad(what: str, field: str):
        raise MetadataError(f"malformed 'geo' metadata: {what}", source=source, field=field)

    if not isinstance(geo, dict):
        bad(f"not a JSON object but {type(geo).__name__}", "geo")
    primary = geo.get("primary_column")
    if not isinstance(primary, str):
        bad(f"primary_column must be a string, got {primary!r}", "geo.primary_column")
    columns = geo.get("columns")
    if not isinstance(columns, dict):
        bad(f"columns must be an object, got {type(columns).__name__}", "geo.columns")
    col = columns.get(primary)
    field = f"geo.columns.{primary}"
    if not isinstance(col, dict):
        bad(f"primary_column '{primary}' has no object in columns", field)
    if "encoding" in col and not isinstance(col["encoding"], str):
        bad(f"encoding must be a string, got {col['encoding']!r}", field + ".encoding")
    types = col.get("geometry_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        bad(f"geometry_types must be a list of strings, got {types!r}", field + ".geometry_types")
    bbox = col.get("bbox")
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) in (4, 6)
                                 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and np.isfinite(v) for v in bbox)):
        bad(f"bbox must be 4 or 6 finite numbers, got {bbox!r}", field + ".bbox")
    crs = col.get("crs")
    if crs is not None and not isinstance(crs, (dict, str)):
        bad(f"crs must be a PROJJSON object, a string or null, got {crs!r}", field + ".crs")
    if isinstance(crs, dict) and "id" in crs and not isinstance(crs["id"], dict):
        bad(f"crs.id must be an object, got {crs['id']!r}", field + ".crs.id")
    return geo
