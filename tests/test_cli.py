"""The ``geocodec`` command line, run in-process through ``geocodec.cli.main.main``."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import (UTM18N, edit_ext, edit_geo, footer, grid_points, make_codec, random_codes, rewrite, set_column_value,
                      write_codes, write_input)
from geocodec.cli.main import main
from geocodec.format.embeddings_io import read_embeddings
from geocodec.format.dataset import open_dataset
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([os.fspath(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "geocodec 0.1.0" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_compress_decompress(tmp_path, capsys, input_file):
    out = tmp_path / "c.parquet"
    rc, stdout, err = run(capsys, "compress", input_file, "--column", "embedding", "-o", out, "--quality", "6",
                          "--block-rows", "32", "--row-group-rows", "128", "--model-name", "synthetic",
                          "--model-version", "1", "-q")
    assert rc == 0, err
    assert f"wrote {out}: 600 vectors of 16 floats, quality 6" in stdout and "bits/vector" in stdout
    with GeocodecFile(out) as f:
        assert f.ext["codec"]["quality"] == 6
        assert f.ext["model"]["name"] == "synthetic" and f.ext["model"]["version"] == "1"
        assert f.spec.block_rows == 32 and f.parquet.num_row_groups == 5
    plain = tmp_path / "plain.parquet"
    rc, stdout, err = run(capsys, "decompress", out, "-o", plain, "--bbox=-62.5,-11.5,-61,-10",
                          "--time", "2022-03-01/..", "--column", "vec", "-q")
    assert rc == 0, err
    got = read_embeddings(plain, "vec")
    table, emb = open_dataset(out).read(Query.make(bbox=(-62.5, -11.5, -61, -10), time=("2022-03-01", None)))
    assert 0 < len(got.vectors) == table.num_rows < 600
    np.testing.assert_array_equal(got.vectors, emb)
    assert f"wrote {plain}: {table.num_rows} vectors of 16 float32" in stdout


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d"])
def test_bad_bbox_argument(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as info:
        main(["decompress", "x.parquet", "-o", os.fspath(tmp_path / "o.parquet"), "--bbox", bad])
    assert info.value.code == 2
    assert "--bbox" in capsys.readouterr().err


def test_compress_error_exit_code_and_message(tmp_path, capsys, input_file):
    nocrs = rewrite(input_file, tmp_path / "nocrs.parquet",
                    meta=edit_geo(lambda g: g["columns"]["geometry"].pop("crs")))
    out = tmp_path / "c.parquet"
    rc, _, err = run(capsys, "compress", nocrs, "--column", "embedding", "-o", out, "-q")
    assert rc == 2
    assert err.startswith("geocodec compress: error: ") and nocrs in err and "--crs" in err
    assert not out.exists()
    rc, _, err = run(capsys, "compress", nocrs, "--column", "embedding", "-o", out, "--crs", "EPSG:32618", "-q")
    assert rc == 0, err
    with GeocodecFile(out) as f:
        assert f.crs["id"] == {"authority": "EPSG", "code": 32618}


def test_validate(tmp_path, capsys, compressed_file):
    rc, out, err = run(capsys, "validate", compressed_file)
    assert rc == 0, err
    assert f"valid: {compressed_file}" in out and err == ""


def _corrupt(tmp_path, src, row=17):
    data = bytearray(pq.read_table(src, columns=["code"]).column("code")[row].as_py())
    data[1] ^= 0x10
    return rewrite(src, tmp_path / "corrupt.parquet", table=set_column_value("code", row, bytes(data)))


@pytest.fixture
def block17(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=17)
    return write_codes(tmp_path / "b17.parquet", random_codes(60, 3), ext=ext, decoder=decoder, row_group_rows=34)


def test_validate_broken_code(tmp_path, capsys, block17):
    bad = _corrupt(tmp_path, block17)
    rc, out, err = run(capsys, "validate", block17, bad)
    assert rc == 1
    assert f"valid: {block17}" in out
    assert f"INVALID: {bad} (1 error(s))" in err
    assert f"error: {bad}, row 17, field 'code_crc32': checksum mismatch" in err
    # --quick checks metadata and the decoder only
    rc, out, _ = run(capsys, "validate", "--quick", bad)
    assert rc == 0 and f"valid: {bad}" in out


@pytest.mark.parametrize("meta, words", [
    (edit_ext(lambda e: e.update(version="0.4.0")), "newer than this geocodec knows"),
    (edit_ext(lambda e: e["entropy_model"].update(escape_bits=16)), "field 'geocodec.entropy_model.escape_bits'"),
    (edit_ext(lambda e: e["rate"].update(rows=61)), "field 'geocodec.rate.rows': says 61, the file has 60 rows"),
    (edit_geo(lambda g: g["columns"]["geometry"].update(crs=None)), "field 'geo.columns.geometry.crs': no CRS"),
    (edit_geo(lambda g: g["columns"]["geometry"]["covering"]["bbox"].update(ymax=["bbox", "y"])),
     "covering.bbox.ymax"),
    (edit_geo(lambda g: g["columns"]["geometry"].update(bbox=[0, 0, 0.1, 0.1])), "outside the file bbox"),
    (edit_geo(lambda g: g.update(version="0.4.0")), "field 'geo.version'"),
])
def test_validate_broken_metadata(tmp_path, capsys, block17, meta, words):
    bad = rewrite(block17, tmp_path / "bad.parquet", meta=meta)
    rc, _, err = run(capsys, "validate", bad)
    assert rc == 1
    assert f"INVALID: {bad}" in err and bad in err.splitlines()[0]
    assert words in err


def test_validate_bbox_column_mismatch(tmp_path, capsys, block17):
    def shift(t):
        import pyarrow as pa
        b = t.column("bbox").combine_chunks()
        xmin = b.field("xmin").to_numpy().copy()
        xmin[23] -= 0.5
        arr = pa.StructArray.from_arrays([pa.array(xmin), b.field("ymin"), b.field("xmax"), b.field("ymax")],
                                         names=["xmin", "ymin", "xmax", "ymax"])
        i = t.schema.get_field_index("bbox")
        return t.set_column(i, t.schema.field(i), arr)
    bad = rewrite(block17, tmp_path / "bad.parquet", table=shift)
    rc, _, err = run(capsys, "validate", bad)
    assert rc == 1 and "row 23: field 'bbox': does not match the geometry's bounds" in err


def test_validate_tampered_decoder(tmp_path, capsys, block17):
    import base64

    def tamper(kv):
        data = bytearray(base64.b64decode(kv[b"geocodec.decoder"]))
        data[-10] ^= 0xFF
        kv[b"geocodec.decoder"] = base64.b64encode(bytes(data))
        return kv
    bad = rewrite(block17, tmp_path / "bad.parquet", meta=tamper)
    for args in (["validate", bad], ["validate", "--quick", bad]):
        rc, _, err = run(capsys, *args)
        assert rc == 1 and "decoder sha256 mismatch" in err and bad in err


def test_validate_not_a_geocodec_file(tmp_path, capsys, input_file):
    rc, _, err = run(capsys, "validate", input_file)
    assert rc == 1 and "no 'geocodec' key" in err and input_file in err


def test_validate_warns_about_compression(tmp_path, capsys, block17):
    t = pq.read_table(block17).replace_schema_metadata(None)
    plain = tmp_path / "snappy.parquet"
    with pq.ParquetWriter(plain, t.schema, compression="snappy") as w:
        w.write_table(t, row_group_size=34)
        w.add_key_value_metadata(footer(block17))
    rc, out, err = run(capsys, "validate", plain)
    assert rc == 0, err
    assert "warning:" in out and "not ZSTD" in out


def test_info_text_and_json(capsys, compressed_file):
    rc, out, _ = run(capsys, "info", compressed_file)
    assert rc == 0
    assert "geocodec spec 0.2.0, codec geocodec-linear 0.1.0, quality 5" in out
    # a fitted codec is not published: its decoder and tables travel in the file
    assert "(embedded in the footer)" in out and "tables embedded in the footer" in out
    assert "rows: 600 in 6 row group(s), code blocks of 20 rows" in out
    assert "OGC:CRS84" in out and "extra columns: label" in out
    rc, out, _ = run(capsys, "info", "--json", compressed_file)
    assert rc == 0
    info = json.loads(out)
    assert info["rows"] == 600 and info["embedding"]["dimension"] == 16
    assert info["rate"]["code_bits"] > 0 and info["bytes"]["file"] == os.path.getsize(compressed_file)


def test_info_says_larger_or_smaller_the_right_way_round(capsys, compressed_file):
    from geocodec.format.info import size_vs_raw

    assert size_vs_raw(1000, 4000) == "4.0x larger"
    assert size_vs_raw(4000, 1000) == "4.0x smaller"
    assert size_vs_raw(64_000, 1000) == "64.0x smaller"
    assert size_vs_raw(1000, 1020) == size_vs_raw(1020, 1000) == "about the same size as raw float32"
    rc, out, _ = run(capsys, "info", "--json", compressed_file)
    b = json.loads(out)["bytes"]
    rc, out, _ = run(capsys, "info", compressed_file)
    ratio = b["raw_float32"] / b["file"]
    want = f"{ratio:.1f}x smaller" if ratio > 1 else f"{1 / ratio:.1f}x larger"
    assert f"raw float32 {b['raw_float32']} bytes -> {want}" in out
    assert "0." not in out.split("->")[1].split("x")[0]      # never "0.25x smaller"


def test_info_on_files_that_cannot_merge(tmp_path, capsys):
    e5, d5 = make_codec(channels=3, quality=5)
    e8, d8 = make_codec(channels=3, quality=8)
    a = write_codes(tmp_path / "a.parquet", random_codes(20, 3), ext=e5, decoder=d5)
    b = write_codes(tmp_path / "b.parquet", random_codes(20, 3), ext=e8, decoder=d8)
    c = write_codes(tmp_path / "c.parquet", random_codes(30, 3), ext=e5, decoder=d5)
    rc, out, _ = run(capsys, "info", "--json", a, b, c)
    assert rc == 0
    info = json.loads(out)
    assert info["mergeable"] is False and len(info["files"]) == 3
    assert info["merge_problems"] == [f"{a} and {b} cannot be merged without re-encoding: "
                                      "'codec' differs (codec.quality: 5 vs 8)"]
    rc, out, _ = run(capsys, "info", a, b)
    assert rc == 0 and "cannot be merged without re-encoding: 'codec' differs (codec.quality: 5 vs 8)" in out
    rc, out, _ = run(capsys, "info", a, c)
    assert "all 2 files share one codec: they merge without re-encoding" in out
    rc, out, _ = run(capsys, "info", "--json", a, c)
    assert json.loads(out)["mergeable"] is True


def test_info_on_a_crs_difference(tmp_path, capsys):
    e, d = make_codec(channels=3)
    a = write_codes(tmp_path / "a.parquet", random_codes(20, 3), ext=e, decoder=d)
    b = write_codes(tmp_path / "b.parquet", random_codes(20, 3), ext=e, decoder=d, crs=UTM18N,
                    geometry=grid_points(20, extent=(500000, 4000000, 510000, 4010000)))
    rc, out, _ = run(capsys, "info", a, b)
    assert "the geometry CRS differs" in out


def test_info_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.parquet"
    rc, _, err = run(capsys, "info", path)
    assert rc == 2 and f"geocodec info: error: {path}: no such file" in err


def test_merge(tmp_path, capsys):
    e, d = make_codec(channels=3, block_rows=8)
    a = write_codes(tmp_path / "a.parquet", random_codes(40, 3, seed=1), ext=e, decoder=d, tile_prefix="a",
                    geometry=grid_points(40, extent=(0, 0, 1, 1)))
    b = write_codes(tmp_path / "b.parquet", random_codes(25, 3, seed=2), ext=e, decoder=d, tile_prefix="b",
                    geometry=grid_points(25, extent=(3, 3, 4, 4)))
    out = tmp_path / "ab.parquet"
    rc, stdout, err = run(capsys, "merge", a, b, "-o", out, "-q")
    assert rc == 0, err
    assert f"wrote {out}: 65 rows from 2 files" in stdout
    rc, _, err = run(capsys, "validate", out)
    assert rc == 0, err
    e8, d8 = make_codec(channels=3, quality=8)
    c = write_codes(tmp_path / "c.parquet", random_codes(20, 3), ext=e8, decoder=d8)
    rc, _, err = run(capsys, "merge", a, c, "-o", tmp_path / "ac.parquet", "-q")
    assert rc == 2 and "codec.quality: 5 vs 8" in err
    assert not (tmp_path / "ac.parquet").exists()


def test_stac(tmp_path, capsys, compressed_file):
    src = shutil.copy(compressed_file, tmp_path / "tile.parquet")
    rc, out, err = run(capsys, "stac", src, "--href", "https://example.org/tile.parquet")
    assert rc == 0, err
    item = json.loads((tmp_path / "tile.stac.json").read_text())
    collection = json.loads((tmp_path / "tile.collection.json").read_text())
    assert item["id"] == "tile" and item["collection"] == collection["id"]
    assert collection["emb:dimensions"] == 16 and "emb:dimensions" not in item["properties"]
    assert item["properties"]["geocodec:rows"] == 600
    assert item["assets"]["embeddings"]["href"] == "https://example.org/tile.parquet"
    with GeocodecFile(src) as f:
        b = f.geo["columns"]["geometry"]["bbox"]
    np.testing.assert_allclose(item["bbox"], b)
    assert item["properties"]["start_datetime"].startswith("2022-01")
    assert any(link["rel"] == "emb:decoder" for link in item["links"])


def test_stac_bbox_is_wgs84(tmp_path, capsys):
    e, d = make_codec(channels=3)
    path = write_codes(tmp_path / "utm.parquet", random_codes(20, 3), ext=e, decoder=d, crs=UTM18N,
                       geometry=grid_points(20, extent=(500000, 4000000, 510000, 4010000)))
    out = tmp_path / "utm.json"
    rc, _, err = run(capsys, "stac", path, "-o", out)
    assert rc == 0, err
    bbox = json.loads(out.read_text())["bbox"]
    # UTM 18N, easting 500-510 km: about 75 degrees west, 36 degrees north
    assert -75.1 < bbox[0] < bbox[2] < -74.8 and 36.1 < bbox[1] < bbox[3] < 36.3


def test_compress_with_utm_input(tmp_path, capsys):
    src = write_input(tmp_path / "utm_in.parquet", n=200, crs=UTM18N,
                      geometry=grid_points(200, extent=(500000, 4000000, 510000, 4010000)))
    out = tmp_path / "utm.parquet"
    rc, _, err = run(capsys, "compress", src, "--column", "embedding", "-o", out, "-q")
    assert rc == 0, err
    with GeocodecFile(out) as f:
        assert f.crs["id"] == {"authority": "EPSG", "code": 32618}


# -- the parser: help on every option, -q/-v on every command ----------------------------------------
def _commands(parser, path=("geocodec",)):
    """(command path, parser) of the parser and every sub-command under it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, path + (name,))


def test_every_option_of_every_command_has_help():
    import argparse

    from geocodec.cli.main import build_parser

    missing = [f"{' '.join(path)} {a.option_strings[0] if a.option_strings else a.dest}"
               for path, p in _commands(build_parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]
    assert missing == []
    paths = [path for path, _ in _commands(build_parser())]
    assert ("geocodec", "train", "ships") in paths and ("geocodec", "stac") in paths and len(paths) >= 24


def test_every_command_takes_quiet_and_verbose():
    from geocodec.cli.main import build_parser

    for path, p in _commands(build_parser()):
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, path


def test_quiet_and_verbose(tmp_path, capsys, input_file):
    import logging

    from geocodec.verbosity import common_options, levels

    out = tmp_path / "c.parquet"
    rc, stdout, err = run(capsys, "compress", input_file, "--column", "embedding", "-o", out, "-v")
    assert rc == 0 and "geocodec compress took" in err and "compress:" in err      # timing + progress bar
    assert "fitted" in err                                                            # a step's detail
    rc, stdout, err = run(capsys, "-q", "merge", out, out, "-o", tmp_path / "m.parquet")
    assert rc == 0 and err == "" and "wrote" in stdout                           # no bar, no log; the result
    rc, _, err = run(capsys, "merge", out, out, "-o", tmp_path / "m2.parquet", "-vv")
    assert rc == 0 and "row group" in err                                         # -vv: per row group
    assert logging.getLogger("geocodec").handlers == []                           # restored after the command
    assert levels(common_options().parse_args([])) == (False, 0)
    assert levels(common_options().parse_args(["-vv"])) == (False, 2)
    with pytest.raises(SystemExit):
        common_options().parse_args(["-q", "-v"])
