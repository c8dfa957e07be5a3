"""``geocodec validate``: GeoParquet 1.1 core + covering rules and the geocodec extension.

Every check that fails becomes a :class:`Finding` naming the file, field and
row; errors make the file invalid, warnings are distribution advice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import shapely

from geocodec.errors import GeocodecError
from geocodec.format.metadata import fingerprint
from geocodec.format.quality import quality_findings
from geocodec.format.reader import GeocodecFile, check_embeddings
from geocodec.format.rowchecks import check_times
from geocodec.format.rewritten import diagnose_footer, rewrite_diagnosis
from geocodec.format.writer import CORE_FIELDS


@dataclass
class Finding:
    """One validation result: ``level`` (``error`` makes the file invalid; ``warning``; ``info`` says how the
    decoder and tables are stored) and ``message``."""

    level: str  # "error" | "warning" | "info"
    message: str

    def __str__(self):
        return f"{self.level}: {self.message}"


def _geo_findings(f: GeocodecFile) -> list[Finding]:
    out: list[Finding] = []
    geo = f.geo
    src = f.source
    if geo.get("version") not in ("1.0.0", "1.1.0"):
        out.append(Finding("error", f"{src}: field 'geo.version': {geo.get('version')!r} is not 1.1.0"))
    primary = geo.get("primary_column")
    cols = geo.get("columns") or {}
    if primary not in cols:
        return out + [Finding("error", f"{src}: field 'geo.primary_column': {primary!r} is not in geo.columns")]
    col = cols[primary]
    schema = f.parquet.schema_arrow
    if primary not in schema.names or not pa.types.is_binary(schema.field(primary).type):
        out.append(Finding("error", f"{src}: column '{primary}' must be WKB binary"))
    if col.get("encoding") != "WKB":
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.encoding' must be WKB"))
    if not isinstance(col.get("geometry_types"), list):
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.geometry_types' must be a list"))
    crs = col.get("crs")
    if crs is None:
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.crs': no CRS"))
    elif not isinstance(crs, dict):
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.crs': GeoParquet needs a PROJJSON "
                                    f"object, not {type(crs).__name__} {crs!r}"))
    else:
        try:
            from pyproj import CRS

            CRS.from_user_input(crs)
        except Exception as exc:
            out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.crs': not a valid PROJJSON CRS ({exc})"))
    bbox = col.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) in (4, 6)):
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.bbox' must hold 4 numbers"))
    cov = (col.get("covering") or {}).get("bbox")
    if not cov:
        out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.covering.bbox' is missing"))
    else:
        for key in ("xmin", "ymin", "xmax", "ymax"):
            path = cov.get(key)
            if path != ["bbox", key]:
                out.append(Finding("error", f"{src}: field 'geo.columns.{primary}.covering.bbox.{key}' "
                                            f"should be ['bbox', '{key}'], is {path!r}"))
    return out


def _schema_findings(f: GeocodecFile) -> list[Finding]:
    out = []
    schema = f.parquet.schema_arrow
    for field in CORE_FIELDS:
        if field.name not in schema.names:
            out.append(Finding("error", f"{f.source}: column '{field.name}' is missing"))
        elif not schema.field(field.name).type.equals(field.type):
            out.append(Finding("error", f"{f.source}: column '{field.name}' has type "
                                        f"{schema.field(field.name).type}, the spec says {field.type}"))
    meta = f.parquet.metadata
    for rg in range(meta.num_row_groups):
        for j in range(meta.num_columns):
            comp = meta.row_group(rg).column(j).compression
            if comp != "ZSTD":
                out.append(Finding("warning", f"{f.source}: row group {rg} column "
                                              f"'{meta.row_group(rg).column(j).path_in_schema}' uses {comp}, not ZSTD"))
                return out
    return out


def _storage_findings(f: GeocodecFile, storage: dict) -> list[Finding]:
    """One ``info`` line each for the decoder and the tables: embedded, or by reference and where from."""
    out = []
    for part in ("decoder", "tables"):
        st = storage[part]
        if st["storage"] == "embedded":
            text = "embedded in the footer"
        elif st["resolves"]:
            text = f"by reference, resolves from the {st['where']} ({st['detail']})"
        else:
            text = f"by reference, not installed or cached: {st['detail']}"
        out.append(Finding("info", f"{f.source}: {part}: {text}"))
    return out


def validate_file(source: str, *, deep: bool = True, storage: bool = False) -> list[Finding]:
    """All findings for one file; no ``error`` finding means valid, an empty list means no remark.

    ``storage`` adds an ``info`` finding each for the decoder and the tables: embedded, or
    by reference and where they resolve from (referenced ones are resolved and hash-checked
    in any case; an unresolvable reference is an error)."""
    try:
        f = GeocodecFile(source)
    except GeocodecError as exc:
        lost = rewrite_diagnosis(source)  # a clearer error for a file a rewriting tool stripped
        return [Finding("error", lost or str(exc))]
    findings = _geo_findings(f) + _schema_findings(f)
    if any(x.level == "error" for x in findings):
        return findings
    stored = f.ext["codec"].get("fingerprint")
    if stored is not None and stored != fingerprint(f.ext):
        findings.append(Finding("error", f"{f.source}: field 'geocodec.codec.fingerprint': stored {stored} but the "
                                         f"metadata hashes to {fingerprint(f.ext)} (edited metadata?)"))
    before = f.storage(fetch=False) if storage else None
    try:
        _ = f.spec.tables  # referenced tables: resolved and hash-checked
        _ = f.decoder  # hash check and ONNX load (a referenced decoder: package, cache, then its href)
    except GeocodecError as exc:
        lost = diagnose_footer(f.parquet.metadata.metadata, f.parquet.schema_arrow.names, f.source)
        return findings + (_storage_findings(f, before) if storage else []) + [Finding("error", lost or str(exc))]
    if storage:
        findings += _storage_findings(f, f.storage(fetch=False))
    if not deep:
        return findings
    geo_bbox = f.geo["columns"][f.geo["primary_column"]]["bbox"]
    try:
        for offset, table in f.iter_tables():
            codes = f.decode_codes(table, offset)
            if offset == 0 and table.num_rows:
                latent = f.spec.dequantize(codes[:1])
                emb = f.decoder(latent).reshape(1, -1)
                if emb.shape[1] != f.spec.dimension:
                    findings.append(Finding("error", f"{f.source}: field 'geocodec.embedding.dimension': says "
                                                     f"{f.spec.dimension}, the decoder gives {emb.shape[1]}"))
                else:
                    check_embeddings(emb, f.spec.dimension, np.zeros(1, np.int64), source=f.source)
            geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False), on_invalid="ignore")
            bad = np.flatnonzero(shapely.is_missing(geoms))
            if bad.size:
                findings.append(Finding("error", f"{f.source}: row {offset + int(bad[0])}: field 'geometry': "
                                                 "not valid WKB"))
                continue
            check_times(table, source=f.source, row_offset=offset)
            b = table.column("bbox").combine_chunks()
            got = np.stack([b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax")], axis=1)
            want = shapely.bounds(geoms)
            off = np.flatnonzero(~np.isclose(got, want, rtol=1e-9, atol=1e-9).all(axis=1))
            if off.size:
                findings.append(Finding("error", f"{f.source}: row {offset + int(off[0])}: field 'bbox': "
                                                 "does not match the geometry's bounds"))
            outside = np.flatnonzero((want[:, 0] < geo_bbox[0] - 1e-9) | (want[:, 1] < geo_bbox[1] - 1e-9) |
                                     (want[:, 2] > geo_bbox[-2] + 1e-9) | (want[:, 3] > geo_bbox[-1] + 1e-9))
            if outside.size:
                findings.append(Finding("error", f"{f.source}: row {offset + int(outside[0])}: geometry lies "
                                                 "outside the file bbox in 'geo'"))
    except GeocodecError as exc:
        findings.append(Finding("error", str(exc)))
    findings += [Finding("error", m) for m in quality_findings(f)]
    rate = f.ext.get("rate") or {}
    if rate.get("rows") not in (None, f.num_rows):
        findings.append(Finding("error", f"{f.source}: field 'geocodec.rate.rows': says {rate['rows']}, "
                                         f"the file has {f.num_rows} rows"))
    f.close()
    return findings
