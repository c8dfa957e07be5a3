"""What rewriting tools keep of a geocodec file (SPEC.md, "Rewriting tools"), measured, and what
``geocodec validate`` says of a file that lost its extension."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from geocodec.format.reader import GeocodecFile
from geocodec.format.validate import validate_file
from geocodec.format.writer import CORE_FIELDS

FOOTER_KEYS = {"geo", "emb", "geocodec", "geocodec.decoder"}
DROPPED_EXT = "rewritten by a tool that dropped the `geocodec` footer key"


def _kv_keys(path) -> set[str]:
    return {k.decode() for k in (pq.ParquetFile(path).metadata.metadata or {})}


def _schema_keys(path) -> set[str]:
    return {k.decode() for k in (pq.read_schema(path).metadata or {})}


def _errors(path) -> list[str]:
    return [f.message for f in validate_file(str(path)) if f.level == "error"]


def test_footer_keys_are_the_arrow_schema_metadata(compressed_file):
    """No ARROW:schema: pyarrow takes the schema metadata from the footer, and the core column types
    come back exactly from the Parquet logical types."""
    assert _kv_keys(compressed_file) == FOOTER_KEYS
    assert _schema_keys(compressed_file) == FOOTER_KEYS
    meta = pq.read_schema(compressed_file).metadata
    assert meta[b"geo"] == pq.ParquetFile(compressed_file).metadata.metadata[b"geo"]
    schema = pq.read_schema(compressed_file)
    for field in CORE_FIELDS:
        assert schema.field(field.name).type.equals(field.type), field.name


def test_merge_output_keeps_keys_in_the_arrow_schema(compressed_file, tmp_path):
    from geocodec.format.merge import merge

    out = tmp_path / "merged.parquet"
    merge([compressed_file, compressed_file], str(out), progress=False)
    assert _schema_keys(out) == _kv_keys(out) == FOOTER_KEYS


def test_decompressed_geoparquet_has_geo_in_the_arrow_schema(compressed_file, tmp_path):
    from geocodec.codecs.compress import decompress

    out = tmp_path / "plain.parquet"
    decompress(compressed_file, out, progress=False)
    schema = pq.read_schema(out)
    assert json.loads(schema.metadata[b"geo"])["version"] == "1.1.0"
    assert schema.metadata[b"geo"] == pq.ParquetFile(out).metadata.metadata[b"geo"]
    assert str(schema.field("embedding").type).startswith("fixed_size_list")  # exact Arrow types kept


def test_pyarrow_read_write_keeps_every_key_and_the_file_decodes(compressed_file, tmp_path):
    out = tmp_path / "pyarrow.parquet"
    pq.write_table(pq.read_table(compressed_file), out)
    assert _kv_keys(out) == FOOTER_KEYS | {"ARROW:schema"}
    findings = validate_file(str(out))
    assert not [f for f in findings if f.level == "error"], findings
    assert any("SNAPPY" in f.message for f in findings)  # pyarrow's default codec: a warning only
    with GeocodecFile(compressed_file) as a, GeocodecFile(str(out)) as b:
        emb_a = np.concatenate([e for _, e in a.iter_decoded()])
        emb_b = np.concatenate([e for _, e in b.iter_decoded()])
    np.testing.assert_array_equal(emb_a, emb_b)


def test_duckdb_copy_keeps_only_a_new_geo(compressed_file, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "duckdb.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM '{compressed_file}') TO '{out}' (FORMAT parquet)")
    con.close()
    assert _kv_keys(out) == {"geo"}
    col = json.loads(pq.ParquetFile(out).metadata.metadata[b"geo"])["columns"]["geometry"]
    assert "covering" not in col                       # the bbox column is kept, its declaration is not
    assert "bbox" in pq.read_schema(out).names
    errors = _errors(out)
    assert len(errors) == 1 and DROPPED_EXT in errors[0] and "`geo` and the code columns" in errors[0]


def test_geopandas_round_trip_keeps_only_its_own_geo(compressed_file, tmp_path):
    gpd = pytest.importorskip("geopandas")
    out = tmp_path / "geopandas.parquet"
    gpd.read_parquet(compressed_file).to_parquet(out)
    assert _kv_keys(out) == {"geo", "pandas", "ARROW:schema"}
    schema = pq.read_schema(out)
    assert "bbox" not in schema.names                  # the covering column is dropped on read
    assert str(schema.field("code_rows").type) == "double"   # nullable ints become floats
    errors = _errors(out)
    assert len(errors) == 1 and DROPPED_EXT in errors[0] and "`bbox` covering column is gone" in errors[0]


def test_validate_names_a_dropped_decoder_and_a_dropped_geo(compressed_file, tmp_path):
    t = pq.read_table(compressed_file)
    for key, words in (("geocodec.decoder", "dropped the `geocodec.decoder` footer key"),
                       ("geo", "dropped the `geo` footer key")):
        meta = {k: v for k, v in t.schema.metadata.items() if k.decode() != key}
        out = tmp_path / f"no-{key}.parquet"
        pq.write_table(t.replace_schema_metadata(meta), out)
        errors = _errors(out)
        assert len(errors) == 1 and words in errors[0], errors


def test_validate_cli_says_the_extension_was_lost(compressed_file, tmp_path):
    out = tmp_path / "plain-copy.parquet"
    t = pq.read_table(compressed_file)
    pq.write_table(t.replace_schema_metadata({b"geo": t.schema.metadata[b"geo"]}), out)
    r = subprocess.run([sys.executable, "-m", "geocodec", "validate", str(out)], capture_output=True, text=True)
    assert r.returncode == 1
    assert DROPPED_EXT in r.stderr and str(out) in r.stderr


def test_a_plain_geoparquet_file_is_not_called_rewritten(input_file):
    errors = _errors(input_file)
    assert errors and not any("rewritten" in e for e in errors)
