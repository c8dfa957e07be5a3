"""Every bad input gets a clear error naming the file and the row or field; failed writes leave nothing."""

from __future__ import annotations

import base64
import json
import os
import shutil
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from helpers import (CRS84, edit_ext, edit_geo, footer, grid_points, leftovers, make_codec, random_codes,
                      rewrite, set_column_value, synthetic_vectors, write_codes, write_input)
from geocodec.codecs.linear import LinearCodec
from geocodec.codecs.compress import compress, decompress
from geocodec.format.embeddings_io import embeddings_table, read_embeddings, write_geoparquet
from geocodec.errors import BitstreamError, GeocodecError, InputError, MetadataError
from geocodec.format.dataset import open_dataset
from geocodec.format.metadata import fingerprint
from geocodec.format.reader import GeocodecFile
from geocodec.format.validate import validate_file
from geocodec.format.writer import GeocodecWriter

N = 100
BLOCK = 17  # block heads at rows 0, 17, 34, 51 (a row group starts there), 68, 85


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    ext, decoder = make_codec(channels=4, block_rows=BLOCK)
    q = random_codes(N, 4, seed=11)
    return write_codes(d / "valid.parquet", q, ext=ext, decoder=decoder, row_group_rows=3 * BLOCK), q


def broken(tmp_path, valid_file, name="broken.parquet", **kw) -> str:
    return rewrite(valid_file[0], tmp_path / name, **kw)


def read_error(path, exc_type=GeocodecError) -> str:
    """Open and fully decode ``path``; return the message of the error that must come."""
    with pytest.raises(exc_type) as info:
        ds = open_dataset(path)
        ds.read()
    return str(info.value)


def code_at(valid_file, row) -> bytes:
    return pq.read_table(valid_file[0], columns=["code"]).column("code")[row].as_py()


def test_valid_file_reads(valid_file):
    path, q = valid_file
    with GeocodecFile(path) as f:
        np.testing.assert_array_equal(np.concatenate([f.decode_codes(t, o) for o, t in f.iter_tables()]), q)
    assert code_at(valid_file, 17) is not None and code_at(valid_file, 18) is None
    assert validate_file(path) == []


def test_rewrite_helper_keeps_the_file_valid(tmp_path, valid_file):
    path = broken(tmp_path, valid_file)
    assert validate_file(path) == []
    table, _ = open_dataset(path).read()
    assert table.num_rows == N


# -- code bytes --------------------------------------------------------------------------------
def test_truncated_code_bytes(tmp_path, valid_file):
    data = code_at(valid_file, 17)
    path = broken(tmp_path, valid_file, table=set_column_value("code", 17, data[:-4]))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 17" in msg
    assert "truncated" in msg and f"code_bits says {8 * len(data)}" in msg


def test_truncated_code_bytes_with_consistent_header(tmp_path, valid_file):
    """Whole words cut off and code_bits/crc32 rewritten to match: the decoder itself notices."""
    data = code_at(valid_file, 17)[:-4]
    path = broken(tmp_path, valid_file, table=lambda t: set_column_value("code_crc32", 17, zlib.crc32(data))(
        set_column_value("code_bits", 17, 8 * len(data))(set_column_value("code", 17, data)(t))))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 17" in msg and "field 'code'" in msg


def test_code_bytes_not_whole_words(tmp_path, valid_file):
    data = code_at(valid_file, 17)[:-1]
    path = broken(tmp_path, valid_file, table=lambda t: set_column_value("code_crc32", 17, zlib.crc32(data))(
        set_column_value("code_bits", 17, 8 * len(data))(set_column_value("code", 17, data)(t))))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 17" in msg and "not a whole number of 32-bit words" in msg


def test_corrupted_code_bytes_fail_the_checksum(tmp_path, valid_file):
    data = bytearray(code_at(valid_file, 17))
    data[len(data) // 2] ^= 0x5A
    path = broken(tmp_path, valid_file, table=set_column_value("code", 17, bytes(data)))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 17" in msg and "checksum mismatch" in msg and "code_crc32" in msg


def test_code_bits_mismatch(tmp_path, valid_file):
    bits = 8 * len(code_at(valid_file, 68))
    path = broken(tmp_path, valid_file, table=set_column_value("code_bits", 68, bits + 32))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 68" in msg and f"code_bits says {bits + 32}" in msg


def test_missing_code_bits(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, table=set_column_value("code_bits", 85, None))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 85" in msg and "without code_bits" in msg


def test_broken_code_index(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, table=set_column_value("code_index", 20, 9))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 17" in msg and "code_index" in msg


def test_block_claiming_too_many_rows(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, table=set_column_value("code_rows", 34, 40))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 34" in msg and "claims 40 rows" in msg and "code_rows" in msg


def test_error_names_the_row_in_a_later_row_group(tmp_path, valid_file):
    data = bytearray(code_at(valid_file, 85))
    data[0] ^= 1
    path = broken(tmp_path, valid_file, table=set_column_value("code", 85, bytes(data)))
    assert "row 85" in read_error(path, BitstreamError)


# -- extension metadata ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "0.3.1"])
def test_newer_spec_version(tmp_path, valid_file, version):
    path = broken(tmp_path, valid_file, meta=edit_ext(lambda e: e.update(version=version)))
    with pytest.raises(MetadataError) as info:
        GeocodecFile(path)
    msg = str(info.value)
    assert path in msg and f"spec version {version}, newer than this geocodec knows (0.3.0)" in msg
    assert "upgrade geocodec" in msg and info.value.field == "geocodec.version"


def test_unknown_older_spec_version(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, meta=edit_ext(lambda e: e.update(version="0.0.9")))
    with pytest.raises(MetadataError, match="unknown spec version '0.0.9'"):
        GeocodecFile(path)


def test_missing_spec_version(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, meta=edit_ext(lambda e: e.pop("version")))
    with pytest.raises(MetadataError, match="field 'geocodec.version': no spec version"):
        GeocodecFile(path)


def test_missing_geocodec_key(tmp_path, valid_file):
    def drop(kv):
        kv.pop(b"geocodec")
        return kv
    path = broken(tmp_path, valid_file, meta=drop)
    with pytest.raises(MetadataError) as info:
        GeocodecFile(path)
    msg = str(info.value)
    assert path in msg and "no 'geocodec' key in the Parquet footer: not a geocodec file" in msg


def test_plain_geoparquet_is_not_a_geocodec_file(tmp_path):
    path = write_input(tmp_path / "plain.parquet", n=20)
    with pytest.raises(MetadataError, match="no 'geocodec' key"):
        GeocodecFile(path)


@pytest.mark.parametrize("edit, field, words", [
    (lambda e: e["entropy_model"].update(precision=16), "geocodec.entropy_model.precision", "24 was expected"),
    (lambda e: e["codec"].pop("quality"), "geocodec.codec", "'quality' is a required property"),
    (lambda e: e["quantization"]["step"].__setitem__(2, -1.0), "geocodec.quantization.step.2", "-1.0"),
    (lambda e: e["decoder"].update(sha256="not-a-hash"), "geocodec.decoder.sha256", "does not match"),
    (lambda e: e["latent"].update(layout="cube"), "geocodec.latent.layout", "'cube' is not one of"),
    (lambda e: e["entropy_model"].update(block_rows=0), "geocodec.entropy_model.block_rows", "0 is less than"),
    (lambda e: e.pop("embedding"), "geocodec", "'embedding' is a required property"),
    (lambda e: e["quantization"]["step"].pop(), "geocodec.quantization.step", "3 entries for 4 latent channels"),
    (lambda e: e["entropy_model"]["tables"][1]["freq"].__setitem__(0, 3), "geocodec.entropy_model.tables.1.freq",
     "not 2**24"),
    (lambda e: e["latent"].update(shape=[4, 2]), "geocodec.latent.shape", "a 'vector' latent"),
])
def test_malformed_extension_metadata_names_the_field(tmp_path, valid_file, edit, field, words):
    path = broken(tmp_path, valid_file, meta=edit_ext(edit))
    with pytest.raises(MetadataError) as info:
        GeocodecFile(path)
    assert info.value.field == field
    msg = str(info.value)
    assert path in msg and f"field '{field}'" in msg and words in msg


def test_extension_metadata_not_json(tmp_path, valid_file):
    def garble(kv):
        kv[b"geocodec"] = b"{not json"
        return kv
    path = broken(tmp_path, valid_file, meta=garble)
    with pytest.raises(MetadataError, match="footer key 'geocodec' is not valid JSON") as info:
        GeocodecFile(path)
    assert path in str(info.value)


def test_extension_metadata_not_an_object(tmp_path, valid_file):
    def arr(kv):
        kv[b"geocodec"] = b"[1, 2]"
        return kv
    path = broken(tmp_path, valid_file, meta=arr)
    with pytest.raises(MetadataError, match="not a JSON object"):
        GeocodecFile(path)


def test_missing_core_column(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, table=lambda t: t.drop_columns(["code_crc32"]))
    with pytest.raises(MetadataError) as info:
        GeocodecFile(path)
    assert path in str(info.value) and "missing column(s) ['code_crc32']" in str(info.value)


# -- the decoder -------------------------------------------------------------------------------
def _tamper_decoder(kv):
    onnx_bytes = bytearray(base64.b64decode(kv[b"geocodec.decoder"]))
    # change one float of the weights: still a loadable model, but not the one the file names
    i = len(onnx_bytes) // 2
    onnx_bytes[i] ^= 0x01
    kv[b"geocodec.decoder"] = base64.b64encode(bytes(onnx_bytes))
    return kv


def test_decoder_sha256_mismatch(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, meta=_tamper_decoder)
    expected = json.loads(footer(path)[b"geocodec"])["decoder"]["sha256"]
    f = GeocodecFile(path)  # the footer itself is fine; the check comes when the decoder is needed
    with pytest.raises(MetadataError) as info:
        f.decoder
    msg = str(info.value)
    assert path in msg and "decoder sha256 mismatch" in msg and expected in msg
    assert info.value.field == "decoder.sha256"
    assert "decoder sha256 mismatch" in read_error(path, MetadataError)
    # codes still decode: only the synthesis step is refused
    np.testing.assert_array_equal(f.decode_codes(f.read_row_group(0)), valid_file[1][:51])
    f.close()


def test_decoder_not_base64(tmp_path, valid_file):
    def garble(kv):
        kv[b"geocodec.decoder"] = b"@@@ not base64 @@@"
        return kv
    path = broken(tmp_path, valid_file, meta=garble)
    msg = read_error(path, MetadataError)
    assert path in msg and "not valid base64" in msg


def test_decoder_key_missing(tmp_path, valid_file):
    def drop(kv):
        kv.pop(b"geocodec.decoder")
        return kv
    path = broken(tmp_path, valid_file, meta=drop)
    msg = read_error(path, MetadataError)
    assert path in msg and "should be embedded under footer key 'geocodec.decoder'" in msg


def test_decoder_that_is_not_onnx(tmp_path, valid_file):
    from geocodec.format.onnx_model import sha256_hex

    junk = b"this is not an onnx model"

    def swap(kv):
        kv[b"geocodec.decoder"] = base64.b64encode(junk)
        ext = json.loads(kv[b"geocodec"])
        ext["decoder"]["sha256"] = sha256_hex(junk)
        ext["codec"]["fingerprint"] = fingerprint(ext)  # a consistent forgery: the ONNX load must refuse it
        kv[b"geocodec"] = json.dumps(ext).encode()
        return kv
    path = broken(tmp_path, valid_file, meta=swap)
    msg = read_error(path, MetadataError)
    assert path in msg and "not a loadable ONNX model" in msg


# -- files that are not files ------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = os.fspath(tmp_path / "nope.parquet")
    with pytest.raises(GeocodecError, match="no such file") as info:
        GeocodecFile(path)
    assert path in str(info.value)


def test_not_parquet(tmp_path):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1 but not really" * 10)
    with pytest.raises(GeocodecError, match="not a readable Parquet file") as info:
        GeocodecFile(path)
    assert os.fspath(path) in str(info.value)


def test_truncated_parquet_file(tmp_path, valid_file):
    data = open(valid_file[0], "rb").read()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GeocodecError, match="not a readable Parquet file"):
        GeocodecFile(path)


# -- float embeddings in ------------------------------------------------------------------------
def _input_with(tmp_path, vectors, name="in.parquet") -> str:
    return write_input(tmp_path / name, vectors=vectors)


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_embedding_names_the_row(tmp_path, value, word):
    x = synthetic_vectors(60, 8)
    x[17, 3] = value
    x[40, 1] = value
    src = _input_with(tmp_path, x)
    with pytest.raises(InputError) as info:
        compress(src, "embedding", tmp_path / "out.parquet", progress=False)
    msg = str(info.value)
    assert src in msg and "row 17" in msg and word in msg and "field 'embedding'" in msg
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_codec_names_the_row_of_non_finite_values(value, word):
    x = synthetic_vectors(60, 8)
    codec = LinearCodec.fit(x)
    x[7, 0] = value
    with pytest.raises(InputError, match=f"src.parquet, row 107: embedding has a {word} value"):
        codec.quantize(x, source="src.parquet", row_offset=100)
    with pytest.raises(InputError, match="row 7"):
        LinearCodec.fit(x, source="src.parquet")


def test_empty_input(tmp_path):
    src = _input_with(tmp_path, np.zeros((0, 8), np.float32))
    with pytest.raises(InputError) as info:
        compress(src, "embedding", tmp_path / "out.parquet", progress=False)
    assert src in str(info.value) and "empty input" in str(info.value)
    with pytest.raises(InputError, match="empty input"):
        LinearCodec.fit(np.zeros((0, 8)))


def _list_input(tmp_path, vectors: list, name="ragged.parquet") -> str:
    n = len(vectors)
    table = embeddings_table(np.zeros((n, 1), np.float32), grid_points(n), CRS84)
    table = table.drop_columns(["embedding"]).append_column("emb", pa.array(vectors, pa.list_(pa.float32())))
    table = table.replace_schema_metadata(embeddings_table(np.zeros((n, 1)), grid_points(n), CRS84).schema.metadata)
    return write_geoparquet(table, tmp_path / name)


def test_ragged_list_vectors(tmp_path):
    vectors = [list(map(float, range(8))) for _ in range(30)]
    vectors[17] = vectors[17][:5]
    src = _list_input(tmp_path, vectors)
    with pytest.raises(InputError) as info:
        compress(src, "emb", tmp_path / "out.parquet", progress=False)
    msg = str(info.value)
    assert src in msg and "row 17" in msg and "ragged" in msg and "5 values" in msg and "field 'emb'" in msg


def test_null_vector(tmp_path):
    vectors = [list(map(float, range(8))) for _ in range(30)]
    vectors[17] = None
    src = _list_input(tmp_path, vectors)
    with pytest.raises(InputError, match="row 17, field 'emb': embedding is null"):
        read_embeddings(src, "emb")


def test_variable_list_vectors_of_equal_length_are_fine(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 6)).tolist()
    src = _list_input(tmp_path, vectors)
    np.testing.assert_allclose(read_embeddings(src, "emb").vectors, np.array(vectors, np.float32))
    compress(src, "emb", tmp_path / "out.parquet", progress=False)


def test_unknown_column_lists_candidates(tmp_path, input_file):
    with pytest.raises(InputError) as info:
        compress(input_file, "vec", tmp_path / "out.parquet", progress=False)
    assert "no column 'vec'" in str(info.value) and "['embedding']" in str(info.value)


def test_not_a_list_column(tmp_path, input_file):
    with pytest.raises(InputError, match="field 'label': column type int64 is not a list of floats"):
        compress(input_file, "label", tmp_path / "out.parquet", progress=False)


def test_constant_vectors(tmp_path):
    src = _input_with(tmp_path, np.ones((20, 4), np.float32))
    with pytest.raises(InputError, match="no variance"):
        compress(src, "embedding", tmp_path / "out.parquet", progress=False)


@pytest.mark.parametrize("quality", [0, 11])
def test_quality_out_of_range(tmp_path, input_file, quality):
    with pytest.raises(InputError, match="quality must be an integer in 1..10") as info:
        compress(input_file, "embedding", tmp_path / "out.parquet", quality=quality, progress=False)
    assert info.value.field == "quality"


def test_output_over_input(input_file):
    with pytest.raises(InputError, match="overwrite the input"):
        compress(input_file, "embedding", input_file, progress=False)


def test_input_without_geo_metadata(tmp_path, input_file):
    path = rewrite(input_file, tmp_path / "nogeo.parquet", meta=lambda kv: {})
    with pytest.raises(MetadataError) as info:
        compress(path, "embedding", tmp_path / "out.parquet", progress=False)
    assert path in str(info.value) and "not a GeoParquet file" in str(info.value)


# -- the CRS --------------------------------------------------------------------------------------
def test_geometry_without_crs_key(tmp_path, input_file):
    path = rewrite(input_file, tmp_path / "nocrs.parquet", meta=edit_geo(lambda g: g["columns"]["geometry"].pop("crs")))
    with pytest.raises(InputError) as info:
        compress(path, "embedding", tmp_path / "out.parquet", progress=False)
    msg = str(info.value)
    assert path in msg and "field 'geo.columns.geometry.crs'" in msg
    assert "has no 'crs'" in msg and "--crs" in msg
    assert not (tmp_path / "out.parquet").exists()


def test_geometry_with_null_crs(tmp_path, input_file):
    path = rewrite(input_file, tmp_path / "nullcrs.parquet",
                   meta=edit_geo(lambda g: g["columns"]["geometry"].update(crs=None)))
    with pytest.raises(InputError) as info:
        compress(path, "embedding", tmp_path / "out.parquet", progress=False)
    msg = str(info.value)
    assert path in msg and "crs null" in msg and "--crs" in msg and "field 'geo.columns.geometry.crs'" in msg


@pytest.mark.parametrize("how", ["missing", "null"])
@pytest.mark.parametrize("override, code", [("OGC:CRS84", ("OGC", "CRS84")), ("EPSG:32618", ("EPSG", 32618))])
def test_crs_override(tmp_path, input_file, how, override, code):
    def edit(g):
        if how == "missing":
            g["columns"]["geometry"].pop("crs")
        else:
            g["columns"]["geometry"]["crs"] = None
    path = rewrite(input_file, tmp_path / "nocrs.parquet", meta=edit_geo(edit))
    out = tmp_path / "out.parquet"
    compress(path, "embedding", out, crs=override, progress=False)
    with GeocodecFile(out) as f:
        assert (f.crs["id"]["authority"], f.crs["id"]["code"]) == code


def test_unreadable_crs(tmp_path, input_file):
    path = rewrite(input_file, tmp_path / "badcrs.parquet",
                   meta=edit_geo(lambda g: g["columns"]["geometry"].update(crs={"type": "nonsense"})))
    with pytest.raises(InputError, match="unreadable CRS") as info:
        compress(path, "embedding", tmp_path / "out.parquet", progress=False)
    assert info.value.field == "geo.columns.geometry.crs"


def test_writer_requires_a_crs(tmp_path):
    ext, decoder = make_codec(channels=2)
    for crs in (None, {}):
        with pytest.raises(InputError, match="a CRS is required") as info:
            GeocodecWriter(tmp_path / "x.parquet", ext, decoder, crs)
        assert info.value.field == "crs"
    assert leftovers(tmp_path) == []


# -- writer input ---------------------------------------------------------------------------------
def test_writer_names_the_row_of_an_empty_geometry(tmp_path):
    ext, decoder = make_codec(channels=2, block_rows=8)
    path = tmp_path / "x.parquet"
    geoms = grid_points(40)
    geoms[37] = shapely.Point()
    with pytest.raises(InputError) as info:
        with GeocodecWriter(path, ext, decoder, CRS84, row_group_rows=16) as w:
            q = random_codes(40, 2)
            w.write(tile_id=[str(i) for i in range(20)], geometry=geoms[:20], q=q[:20])
            w.write(tile_id=[str(i) for i in range(20, 40)], geometry=geoms[20:], q=q[20:])
    assert "row 37" in str(info.value) and os.fspath(path) in str(info.value) and "empty geometry" in str(info.value)
    assert not path.exists() and leftovers(tmp_path) == []


def test_writer_rejects_codes_of_the_wrong_shape(tmp_path):
    ext, decoder = make_codec(channels=3)
    with pytest.raises(InputError, match=r"the codec expects \(rows, 3, 1\)"):
        with GeocodecWriter(tmp_path / "x.parquet", ext, decoder, CRS84) as w:
            w.write(tile_id=["a"], geometry=grid_points(1), q=np.zeros((1, 2, 1), np.int32))
    assert leftovers(tmp_path) == []


def test_writer_rejects_reserved_extra_columns(tmp_path):
    ext, decoder = make_codec(channels=3)
    with pytest.raises(InputError, match="reserved") as info:
        GeocodecWriter(tmp_path / "x.parquet", ext, decoder, CRS84, extra_schema=pa.schema([("code", pa.int8())]))
    assert info.value.field == "code"


def test_writer_rejects_invalid_extension(tmp_path):
    ext, decoder = make_codec(channels=3)
    ext["entropy_model"]["coder"] = "huffman"
    with pytest.raises(MetadataError) as info:
        GeocodecWriter(tmp_path / "x.parquet", ext, decoder, CRS84)
    assert info.value.field == "geocodec.entropy_model.coder"
    assert os.fspath(tmp_path / "x.parquet") in str(info.value)


def test_writer_with_no_rows(tmp_path):
    ext, decoder = make_codec(channels=3)
    path = tmp_path / "x.parquet"
    with pytest.raises(InputError, match="no rows were written"):
        with GeocodecWriter(path, ext, decoder, CRS84):
            pass
    assert not path.exists() and leftovers(tmp_path) == []


def test_escape_out_of_range_in_writer(tmp_path):
    ext, decoder = make_codec(channels=2, block_rows=4)
    q = random_codes(10, 2)
    q[6, 1, 0] = 1 << 20
    path = tmp_path / "x.parquet"
    with pytest.raises(GeocodecError, match="outside the codable range") as info:
        write_codes(path, q, ext=ext, decoder=decoder, row_group_rows=4)
    assert f"{path}, row 6:" in str(info.value)
    assert not path.exists() and leftovers(tmp_path) == []


# -- failed writes leave nothing behind ---------------------------------------------------------
ORIGINAL = b"an existing file that must survive a failed write"


def test_exception_mid_write_leaves_no_partial_file(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=8)
    path = tmp_path / "out.parquet"
    path.write_bytes(ORIGINAL)
    q = random_codes(200, 3)
    with pytest.raises(RuntimeError, match="boom"):
        with GeocodecWriter(path, ext, decoder, CRS84, row_group_rows=16) as w:
            w.write(tile_id=[str(i) for i in range(100)], geometry=grid_points(100), q=q[:100])
            # several row groups are already in the temporary file
            assert os.path.getsize(w.tmp_path) > 0 and w.rows >= 96
            raise RuntimeError("boom")
    assert path.read_bytes() == ORIGINAL
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["out.parquet"]


def test_successful_write_replaces_the_file(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=8)
    path = tmp_path / "out.parquet"
    path.write_bytes(ORIGINAL)
    write_codes(path, random_codes(30, 3), ext=ext, decoder=decoder)
    assert path.read_bytes() != ORIGINAL
    assert GeocodecFile(path).num_rows == 30
    assert leftovers(tmp_path) == []


def test_compress_on_bad_input_leaves_existing_output(tmp_path):
    x = synthetic_vectors(80, 8)
    x[17] = np.nan
    src = _input_with(tmp_path, x)
    out = tmp_path / "out.parquet"
    out.write_bytes(ORIGINAL)
    with pytest.raises(InputError, match="row 17"):
        compress(src, "embedding", out, progress=False)
    assert out.read_bytes() == ORIGINAL
    assert leftovers(tmp_path) == []


def test_compress_failing_mid_write_leaves_existing_output(tmp_path, monkeypatch, input_file):
    out = tmp_path / "out.parquet"
    out.write_bytes(ORIGINAL)
    real = LinearCodec.quantize
    calls = []

    def failing(self, x, **kw):
        calls.append(len(x))
        if len(calls) == 3:
            raise InputError("simulated failure in the third row group", source=input_file)
        return real(self, x, **kw)

    monkeypatch.setattr(LinearCodec, "quantize", failing)
    with pytest.raises(InputError, match="simulated failure"):
        compress(input_file, "embedding", out, block_rows=16, row_group_rows=64, progress=False)
    assert len(calls) == 3
    assert out.read_bytes() == ORIGINAL
    assert leftovers(tmp_path) == []


def test_decompress_of_a_corrupted_file_leaves_existing_output(tmp_path, valid_file):
    data = bytearray(code_at(valid_file, 68))
    data[3] ^= 0xFF
    bad = broken(tmp_path, valid_file, table=set_column_value("code", 68, bytes(data)))
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "plain.parquet"
    out.write_bytes(ORIGINAL)
    with pytest.raises(BitstreamError, match="row 68"):
        decompress(bad, out, progress=False)
    assert out.read_bytes() == ORIGINAL
    assert leftovers(outdir) == []


def test_output_directory_missing(tmp_path, input_file):
    with pytest.raises(GeocodecError, match="does not exist"):
        compress(input_file, "embedding", tmp_path / "no" / "such" / "out.parquet", progress=False)


def test_copy_of_valid_file_is_valid(tmp_path, valid_file):
    """Control for the rewrites above: a byte copy decodes and validates."""
    path = shutil.copy(valid_file[0], tmp_path / "copy.parquet")
    assert validate_file(path) == []


# -- stricter checks added with the spec review -------------------------------------------------------
def test_writer_turns_a_crs_string_into_projjson(tmp_path):
    path = tmp_path / "x.parquet"
    write_codes(path, random_codes(10, 8, escapes=False), crs="EPSG:32618",
                geometry=shapely.points(np.arange(10) * 100.0 + 400000, np.full(10, 4.1e6)))
    geo = json.loads(footer(path)[b"geo"])
    crs = geo["columns"]["geometry"]["crs"]
    assert isinstance(crs, dict) and crs["id"] == {"authority": "EPSG", "code": 32618}


def test_writer_rejects_an_unknown_crs(tmp_path):
    ext, decoder = make_codec(channels=2)
    with pytest.raises(InputError, match="not a CRS") as info:
        GeocodecWriter(tmp_path / "x.parquet", ext, decoder, "EPSG:999999999")
    assert info.value.field == "crs"


def test_validate_rejects_a_crs_string(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, meta=edit_geo(lambda g: g["columns"]["geometry"].update(crs="EPSG:4326")))
    errors = [str(f) for f in validate_file(path) if f.level == "error"]
    assert any("PROJJSON" in e and "geo.columns.geometry.crs" in e for e in errors)


def test_validate_reports_an_edited_fingerprint(tmp_path, valid_file):
    def edit(ext):
        ext["quantization"]["step"][0] *= 2  # decoding changes, stored fingerprint no longer matches
    path = broken(tmp_path, valid_file, meta=edit_ext(edit, refingerprint=False))
    errors = [str(f) for f in validate_file(path) if f.level == "error"]
    assert any("geocodec.codec.fingerprint" in e and path in e for e in errors)


def test_fingerprint_ignores_descriptive_text(valid_file):
    from geocodec.format.metadata import fingerprint

    ext = json.loads(footer(valid_file[0])[b"geocodec"])
    a = fingerprint(ext)
    ext["embedding"]["semantics"] = "something else"
    ext["model"]["href"] = "https://example.org/model.json"
    assert fingerprint(ext) == a
    ext["model"]["name"] = "another model"
    assert fingerprint(ext) != a


def test_decoder_input_name_must_exist(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, meta=edit_ext(lambda e: e["decoder"].update(input="nope")))
    msg = read_error(path, MetadataError)
    assert "nope" in msg and "latent" in msg


def test_row_inside_a_block_with_code_bytes(tmp_path, valid_file):
    path = broken(tmp_path, valid_file, table=set_column_value("code", 21, b"\x00\x00\x00\x00"))
    msg = read_error(path, BitstreamError)
    assert path in msg and "row 21" in msg and "must be null" in msg
