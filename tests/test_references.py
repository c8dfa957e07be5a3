"""Decoders and entropy tables by reference (SPEC.md 4.14): small files, the same vectors, safe resolution.

Real files: a crop of the sen2ships Casablanca scene encoded with the shipped model, once by
reference (the default) and once with ``--embed-decoder``. Synthetic files for the resolver's
rules: hash mismatches, unresolvable references, hrefs a remote file must not make us follow,
and the user cache.
"""

from __future__ import annotations

import http.server
import json
import os
import struct
import threading

import numpy as np
import pytest

from helpers import edit_ext, footer, make_codec, random_codes, rewrite, write_codes
from geocodec.cli.main import main
from geocodec.errors import MetadataError
from geocodec.format import hrefs
from geocodec.format.metadata import DECODER_KEY
from geocodec.format.published import reference_form
from geocodec.format.reader import GeocodecFile
from geocodec.resources import data_dir

SCENE = data_dir() / "sen2ships" / "casablanca"
#: a 2.5 x 2.5 km box of the scene (EPSG:3857 metres)
CROP = "-848600,3975800,-846100,3978300"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test gets its own empty user cache."""
    monkeypatch.setenv("GEOCODEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def real_pair(tmp_path_factory):
    """(by-reference file, embedded file) of one real crop, written by ``geocodec encode``."""
    if not SCENE.is_dir():
        pytest.skip(f"real data not found: {SCENE}")
    pytest.importorskip("openeo_pg_parser_networkx")
    d = tmp_path_factory.mktemp("real")
    out = []
    for name, extra in (("ref", []), ("embedded", ["--embed-decoder"])):
        path = str(d / f"{name}.parquet")
        rc = main(["encode", str(SCENE), "-o", path, f"--bbox={CROP}", "--bbox-crs", "EPSG:3857",
                   "--scheduler", "sync", "--quality", "5", *extra])
        assert rc == 0
        out.append(path)
    return tuple(out)


def footer_bytes(path) -> int:
    """Bytes of the Parquet footer (FileMetaData with every key/value, its length and the magic)."""
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0] + 8


# -- real files ------------------------------------------------------------------------------------
def test_by_reference_decodes_bit_identically(real_pair):
    ref, emb = real_pair
    with GeocodecFile(ref) as a, GeocodecFile(emb) as b:
        assert not a.decoder_embedded and not a.tables_embedded
        assert b.decoder_embedded and b.tables_embedded
        assert DECODER_KEY.encode() not in footer(ref) and DECODER_KEY.encode() in footer(emb)
        assert a.num_rows == b.num_rows > 0
        assert a.ext["codec"]["fingerprint"] == b.ext["codec"]["fingerprint"]
        rows = np.arange(a.num_rows)
        ta, ca = a.take(rows, what="codes")
        tb, cb = b.take(rows, what="codes")
        np.testing.assert_array_equal(ca, cb)
        _, ea = a.take(rows, what="embeddings")
        _, eb = b.take(rows, what="embeddings")
        assert ea.tobytes() == eb.tobytes()
        assert ta.column("tile_id").to_pylist() == tb.column("tile_id").to_pylist()


def test_fixed_overhead_under_8_kb(real_pair):
    ref, emb = real_pair
    assert footer_bytes(ref) < 8 * 1024, footer_bytes(ref)
    # the embedded twin carries the ~212 KB decoder as base64 plus the tables
    assert os.path.getsize(emb) - os.path.getsize(ref) > 280_000


def test_validate_and_info_say_how_parts_are_stored(real_pair, capsys):
    ref, emb = real_pair
    assert main(["validate", ref]) == 0
    out = capsys.readouterr().out
    assert "decoder: by reference, resolves from the package" in out
    assert "tables: by reference, resolves from the package" in out
    assert main(["info", ref]) == 0
    out = capsys.readouterr().out
    assert "tables by reference, resolves from the package" in out
    assert main(["info", "--json", emb]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["storage"]["decoder"]["storage"] == "embedded" and info["storage"]["tables"]["resolves"] is True


def test_merge_keeps_references_or_embeds_them(real_pair, tmp_path):
    from geocodec.format.merge import merge

    ref, emb = real_pair
    kept = str(tmp_path / "kept.parquet")
    merge([ref, ref], kept, progress=False)
    both = str(tmp_path / "embedded.parquet")
    merge([ref, ref], both, progress=False, embed_decoder=True)
    with GeocodecFile(kept) as k, GeocodecFile(both) as e, GeocodecFile(emb) as orig:
        assert not k.decoder_embedded and e.decoder_embedded and e.tables_embedded
        assert k.ext["codec"]["fingerprint"] == e.ext["codec"]["fingerprint"] == orig.ext["codec"]["fingerprint"]
        np.testing.assert_array_equal(k.take(np.arange(k.num_rows), what="codes")[1],
                                      e.take(np.arange(e.num_rows), what="codes")[1])
    assert os.path.getsize(both) - os.path.getsize(kept) > 280_000


def test_tables_are_referenced_only_when_they_are_the_models():
    from geocodec.codecs.learned import LearnedModel

    model = LearnedModel.load()
    ext, _ = model.extension(quality=5, latent_hw=(16, 16), grid={"type": "irregular", "crs": None}, embed=False)
    ref = ext["entropy_model"]["tables_ref"]
    assert ref["name"] == model.card["name"] and ref["quality"] == 5 and "tables" not in ext["entropy_model"]
    full, _ = model.extension(quality=5, latent_hw=(16, 16), grid={"type": "irregular", "crs": None})
    other = [dict(t) for t in full["entropy_model"]["tables"]]
    other[0] = {"min": other[0]["min"] - 1, "freq": other[0]["freq"]}   # one table differs
    kept = reference_form(full, name=model.card["name"], version="1.0.0", quality=5, decoder_href="d.onnx",
                          model_tables=other)
    assert kept["entropy_model"]["tables"] == full["entropy_model"]["tables"] and "tables_ref" not in kept["entropy_model"]
    assert kept["decoder"]["published"]["name"] == model.card["name"]


# -- synthetic files: the resolver's rules -----------------------------------------------------------
def by_reference_file(path, *, href="missing.onnx", name="no-such-model", version=None):
    """A synthetic file whose decoder is by reference (``href``, ``name``); returns (path, decoder bytes, q)."""
    ext, decoder = make_codec(channels=3, block_rows=8)
    ref = reference_form(ext, name=name, version="0", quality=5, decoder_href="missing.onnx" if version else href,
                         model_tables=None)
    q = random_codes(40, 3)
    write_codes(path, q, ext=ref, decoder=None, row_group_rows=16)
    if version is not None:  # the same footer under another spec version (0.1.0 takes any href)
        rewrite(path, path, meta=edit_ext(lambda e: (e.update(version=version), e["decoder"].update(href=href))))
    return os.fspath(path), decoder, q


def test_relative_href_beside_the_file_resolves_and_a_mismatch_is_refused(tmp_path):
    path, decoder, q = by_reference_file(tmp_path / "f.parquet", href="dec.onnx")
    (tmp_path / "dec.onnx").write_bytes(decoder)
    with GeocodecFile(path) as f:
        assert f.storage(fetch=False)["decoder"]["resolves"] is None     # not installed or cached yet
        _, codes = f.take(np.arange(40), what="codes")
        np.testing.assert_array_equal(codes, q)
        assert f.take([0], what="embeddings")[1].shape == (1, 8)
    (tmp_path / "dec.onnx").write_bytes(decoder[:-1] + bytes([decoder[-1] ^ 1]))
    os.remove(tmp_path / "cache" / "decoders" / f"{json.loads(footer(path)[b'geocodec'])['decoder']['sha256']}.onnx")
    with GeocodecFile(path) as f:
        with pytest.raises(MetadataError, match="refused") as info:
            _ = f.decoder
    assert info.value.field == "geocodec.decoder.sha256" and path in str(info.value)


def test_unresolvable_reference_names_file_field_and_remedy(tmp_path, empty_cache):
    path, _, _ = by_reference_file(tmp_path / "f.parquet")
    with GeocodecFile(path) as f:
        with pytest.raises(MetadataError) as info:
            _ = f.decoder_bytes
    msg = str(info.value)
    assert info.value.field == "geocodec.decoder" and path in msg
    assert "model 'no-such-model' 0" in msg and "--embed-decoder" in msg and str(empty_cache / "decoders") in msg
    assert "missing.onnx" in msg and "no model 'no-such-model'" in msg
    rc = main(["validate", path])
    assert rc == 1


def test_an_installed_model_of_another_version_is_passed_over(tmp_path, monkeypatch):
    from geocodec.format import published

    models = tmp_path / "models"
    (models / "pub").mkdir(parents=True)
    path, decoder, _ = by_reference_file(tmp_path / "f.parquet", name="pub")
    (models / "pub" / "embedding_decoder.onnx").write_bytes(decoder + b"\0")   # another version
    monkeypatch.setattr(published, "package_models_dir", lambda: models)
    with GeocodecFile(path) as f, pytest.raises(MetadataError, match="is another version"):
        _ = f.decoder_bytes
    (models / "pub" / "embedding_decoder.onnx").write_bytes(decoder)
    with GeocodecFile(path) as f:
        assert f.storage()["decoder"]["where"] == "package"
        assert f.decoder_bytes == decoder


@pytest.mark.parametrize("href", ["../dec.onnx", "/etc/hostname", "file:///etc/hostname", "http://example.org/d"])
def test_forbidden_hrefs_are_refused_in_a_local_file(tmp_path, href):
    # as 0.1.0 (whose schema takes any href), so that the resolver's own rules are what refuses
    path, _, _ = by_reference_file(tmp_path / "f.parquet", href=href, version="0.1.0")
    with GeocodecFile(path) as f, pytest.raises(MetadataError) as info:
        _ = f.decoder_bytes
    assert info.value.field == "geocodec.decoder.href" and path in str(info.value)
    # the 0.2.0 schema refuses them when the file is opened
    path2, _, _ = by_reference_file(tmp_path / "g.parquet")
    rewrite(path2, path2, meta=edit_ext(lambda e: e["decoder"].update(href=href)))
    with pytest.raises(MetadataError) as info:
        GeocodecFile(path2)
    assert info.value.field.startswith("geocodec.decoder")


@pytest.fixture
def serve(tmp_path):
    """Serve ``tmp_path / 'www'`` on 127.0.0.1 with Range support (test_http_reader's handler); yields
    (base URL, folder) and counts the GETs per path in ``RangeHandler.requests``."""
    from test_http_reader import RangeHandler

    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (RangeHandler,), {"root": os.fspath(root)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with RangeHandler.lock:
        RangeHandler.requests.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def gets(path: str) -> int:
    from test_http_reader import RangeHandler

    with RangeHandler.lock:
        return sum(1 for p, *_ in RangeHandler.requests if p == path)


@pytest.mark.parametrize("kind", ["file-url", "absolute-path", "home-path"])
def test_a_remote_file_never_makes_us_read_a_local_path(tmp_path, serve, kind):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    base, root = serve
    target = tmp_path / "local-decoder.onnx"
    href = {"file-url": f"file://{target}", "absolute-path": str(target), "home-path": "~/local-decoder.onnx"}[kind]
    path, decoder, _ = by_reference_file(root / "f.parquet", href=href, version="0.1.0")
    target.write_bytes(decoder)   # the right bytes: following the href would succeed, so refusing is the rule
    with GeocodecFile(f"{base}/f.parquet") as f:
        with pytest.raises(MetadataError) as info:
            _ = f.decoder_bytes
    assert info.value.field == "geocodec.decoder.href" and f"{base}/f.parquet" in str(info.value)
    assert not (tmp_path / "cache" / "decoders").exists()


def test_the_href_is_fetched_once_then_the_cache_is_used(tmp_path, serve, monkeypatch, empty_cache):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    base, root = serve
    monkeypatch.setattr(hrefs, "ALLOWED_SCHEMES", ("https", "http"))   # the test server speaks plain http
    path, decoder, q = by_reference_file(root / "f.parquet", href="dec.onnx")  # relative to the file URL
    (root / "dec.onnx").write_bytes(decoder)
    for expect in ("href", "cache"):
        with GeocodecFile(f"{base}/f.parquet") as f:
            assert f.take([0, 5], what="embeddings")[1].shape == (2, 8)
            assert f.storage()["decoder"]["where"] == "cache"
    assert gets("/dec.onnx") == 1
    sha = json.loads(footer(path)[b"geocodec"])["decoder"]["sha256"]
    assert (empty_cache / "decoders" / f"{sha}.onnx").read_bytes() == decoder


def test_https_only_and_size_limited(tmp_path, serve, monkeypatch):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    base, root = serve
    path, decoder, _ = by_reference_file(root / "f.parquet", href=f"{base}/dec.onnx", version="0.1.0")
    (root / "dec.onnx").write_bytes(decoder)
    with GeocodecFile(path) as f, pytest.raises(MetadataError, match="only https"):
        _ = f.decoder_bytes
    assert gets("/dec.onnx") == 0
    monkeypatch.setattr(hrefs, "ALLOWED_SCHEMES", ("https", "http"))
    (root / "dec.onnx").write_bytes(decoder + b"\0" * 4096)   # more than size_bytes says
    with GeocodecFile(path) as f, pytest.raises(MetadataError, match="allowed"):
        _ = f.decoder_bytes


def test_a_0_1_0_file_still_reads():
    from test_spec_reference_decoder import EXAMPLE

    if not os.path.exists(EXAMPLE):
        pytest.skip("example file not built")
    with GeocodecFile(EXAMPLE) as f:
        assert f.ext["version"] == "0.1.0" and f.decoder_embedded
        assert f.take([0, 1], what="embeddings")[1].shape == (2, f.spec.dimension)


def test_spec_example_is_what_the_writer_writes():
    """SPEC.md 4.14's by-reference example is the reference writer's output for the default model at q5."""
    import re

    from geocodec.codecs.learned import LearnedModel
    from geocodec.resources import package_data_dir

    text = (package_data_dir("geoparquet_spec") / "SPEC.md").read_text()
    section = text[text.index("### 4.14"):]
    block = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    example = json.loads("{" + block.strip() + "}")
    model = LearnedModel.load()
    ext, _ = model.extension(quality=5, latent_hw=(16, 16), grid={"crs": "EPSG:32632"}, embed=False)
    assert example["decoder"] == ext["decoder"]
    assert example["entropy_model"] == {k: v for k, v in ext["entropy_model"].items() if k != "context"}
    assert "context" not in ext["entropy_model"] and "tables" not in ext["entropy_model"]
