"""Writer -> reader round trips, query push-down, datasets of many files, merge, and real data."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (CRS84, grid_points, make_codec, make_tables, random_codes, write_codes,
                      write_input)
from geocodec.codecs.compress import compress, decompress
from geocodec.format.embeddings_io import read_embeddings, write_geoparquet
from geocodec.errors import GeocodecError, MetadataError
from geocodec.format.info import merge_report, summarize
from geocodec.format.merge import merge
from geocodec.format.dataset import GeocodecDataset, open_dataset
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile


def read_all_codes(path) -> np.ndarray:
    with GeocodecFile(path) as f:
        parts = [f.decode_codes(t, off) for off, t in f.iter_tables()]
    return np.concatenate(parts)


def row_group_sizes(path) -> list[int]:
    md = pq.ParquetFile(path).metadata
    return [md.row_group(i).num_rows for i in range(md.num_row_groups)]


# -- bit-exact codes through the file -------------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 260), block_rows=st.integers(1, 40), rg_blocks=st.integers(1, 5),
       rg_extra=st.integers(0, 7), channels=st.integers(1, 4), hw=st.sampled_from([None, (1, 1), (2, 3)]),
       chunks=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_writer_reader_codes_are_bit_exact(n, block_rows, rg_blocks, rg_extra, channels, hw, chunks, seed):
    latent_shape = (channels,) if hw is None else (channels, *hw)
    positions = 1 if hw is None else hw[0] * hw[1]
    ext, decoder = make_codec(channels=channels, block_rows=block_rows, latent_shape=latent_shape, seed=seed % 7)
    q = random_codes(n, channels, positions, seed=seed)
    # row_group_rows need not be a multiple of block_rows: the writer rounds it down
    row_group_rows = rg_blocks * block_rows + (rg_extra % block_rows if block_rows > 1 else 0)
    with tempfile.TemporaryDirectory() as d:
        path = write_codes(os.path.join(d, "f.parquet"), q, ext=ext, decoder=decoder,
                           row_group_rows=row_group_rows, chunks=min(chunks, n))
        back = read_all_codes(path)
        np.testing.assert_array_equal(back, q)
        sizes = row_group_sizes(path)
        rg = rg_blocks * block_rows
        assert sum(sizes) == n
        assert sizes[:-1] == [rg] * (len(sizes) - 1)
        t = pq.read_table(path)
        index = t.column("code_index").to_numpy()
        # blocks restart at every row group and hold block_rows rows at most
        starts = np.cumsum([0] + sizes[:-1])
        assert (index[starts] == 0).all()
        assert index.max() < block_rows
        with GeocodecFile(path) as f:
            assert f.ext["rate"]["rows"] == n
            assert f.ext["rate"]["code_bits"] == pa.compute.sum(t.column("code_bits")).as_py()
            assert f.spec.latent_shape == latent_shape
            lat = f.latents(f.read_row_group(0))
            assert lat.shape == (sizes[0], *latent_shape)


@pytest.mark.parametrize("n, block_rows, row_group_rows", [(1000, 37, 150), (600, 256, 512), (130, 7, 70)])
def test_several_row_groups_and_partial_blocks(tmp_path, n, block_rows, row_group_rows):
    assert n % block_rows  # the last block of the file is partial
    ext, decoder = make_codec(channels=6, block_rows=block_rows)
    q = random_codes(n, 6, seed=n)
    path = write_codes(tmp_path / "f.parquet", q, ext=ext, decoder=decoder, row_group_rows=row_group_rows, chunks=3)
    sizes = row_group_sizes(path)
    assert len(sizes) > 1
    assert all(s % block_rows == 0 for s in sizes[:-1])
    np.testing.assert_array_equal(read_all_codes(path), q)
    # code_rows on block heads say how many rows each block holds
    t = pq.read_table(path, columns=["code_index", "code_rows"])
    heads = t.filter(pa.compute.equal(t.column("code_index"), 0))
    assert sum(heads.column("code_rows").to_pylist()) == n
    assert t.filter(pa.compute.not_equal(t.column("code_index"), 0)).column("code_rows").null_count == \
        n - heads.num_rows


def test_rows_and_columns_round_trip(tmp_path):
    n = 90
    ext, decoder = make_codec(channels=4, block_rows=8)
    q = random_codes(n, 4, seed=2, escapes=False)
    geoms = grid_points(n)
    start = np.datetime64("2022-03-01", "ms") + np.arange(n).astype("timedelta64[h]")
    label = pa.array(np.arange(n) % 3, pa.int16())
    path = write_codes(tmp_path / "f.parquet", q, ext=ext, decoder=decoder, geometry=geoms, datetime=start,
                       end_datetime=start + np.timedelta64(1, "D"), row_group_rows=32, chunks=4,
                       extra={"label": label}, extra_schema=pa.schema([("label", pa.int16())]))
    ds = open_dataset(path)
    table, emb = ds.read()
    assert table.num_rows == n
    assert "code" not in table.column_names and "label" in table.column_names
    assert table.column("tile_id").to_pylist() == [f"t{i:06d}" for i in range(n)]
    assert table.column("label").to_pylist() == label.to_pylist()
    assert shapely.equals(shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)), geoms).all()
    got_t = table.column("datetime").cast(pa.timestamp("ms")).to_numpy()
    np.testing.assert_array_equal(got_t, start)
    # embeddings = decoder(step * codes), here a linear map with the codec's components
    f = ds.files[0]
    lat = f.spec.dequantize(q)
    np.testing.assert_allclose(emb, f.decoder(lat), rtol=1e-6, atol=1e-6)
    assert f.ext["temporal_extent"] == ["2022-03-01T00:00:00Z", "2022-03-05T17:00:00Z"]
    bbox = f.geo["columns"]["geometry"]["bbox"]
    np.testing.assert_allclose(bbox, shapely.total_bounds(geoms))
    assert f.geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    ds.close()


def test_compress_round_trip_and_quality(tmp_path):
    src = write_input(tmp_path / "in.parquet", n=500, d=24)
    x = read_embeddings(src, "embedding").vectors
    errors = {}
    for quality in (2, 5, 8):
        out = tmp_path / f"q{quality}.parquet"
        r = compress(src, "embedding", out, quality=quality, block_rows=32, row_group_rows=128, progress=False)
        assert r["rows"] == 500 and r["quality"] == quality
        table, emb = open_dataset(out).read()
        # compress sorts rows spatially; tile ids bring them back
        order = np.argsort(table.column("tile_id").to_numpy(zero_copy_only=False))
        assert table.column("tile_id").to_pylist() != sorted(table.column("tile_id").to_pylist())
        emb = emb[order]
        errors[quality] = np.linalg.norm(emb - x) / np.linalg.norm(x - x.mean(axis=0))
        by_id = dict(zip(table.column("tile_id").to_pylist(), table.column("label").to_pylist()))
        src_t = pq.read_table(src)
        assert by_id == dict(zip(src_t.column("tile_id").to_pylist(), src_t.column("label").to_pylist()))
    assert errors[8] < errors[5] < errors[2]
    assert errors[5] < 0.05


def test_decompress_writes_plain_geoparquet(tmp_path, compressed_file):
    out = tmp_path / "plain.parquet"
    r = decompress(compressed_file, out, progress=False)
    assert r["rows"] == 600
    plain = read_embeddings(out, "embedding")
    table, emb = open_dataset(compressed_file).read()
    np.testing.assert_array_equal(plain.vectors, emb)
    assert plain.crs == CRS84 or plain.crs["id"] == {"authority": "OGC", "code": "CRS84"}
    assert not any(c in plain.table.column_names for c in ("code", "code_bits", "code_index"))


# -- query push-down -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sorted_file(tmp_path_factory):
    """1200 rows sorted into 64 spatial cells, in row groups of 40, time increasing with the row."""
    d = tmp_path_factory.mktemp("sorted")
    n = 1200
    ext, decoder = make_codec(channels=5, block_rows=10)
    q = random_codes(n, 5, seed=5)
    start = np.datetime64("2021-01-01", "ms") + (np.arange(n) * 6).astype("timedelta64[h]")
    path = write_codes(d / "sorted.parquet", q, ext=ext, decoder=decoder, row_group_rows=40, datetime=start,
                       end_datetime=start + np.timedelta64(3, "h"))
    return path, q


def brute_force(path, query: Query):
    t = pq.read_table(path)
    b = t.column("bbox").combine_chunks()
    x0, y0, x1, y1 = (b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
    keep = np.ones(t.num_rows, bool)
    if query.bbox is not None:
        qx0, qy0, qx1, qy1 = query.bbox
        keep &= (x0 <= qx1) & (x1 >= qx0) & (y0 <= qy1) & (y1 >= qy0)
    if query.time is not None:
        s = t.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        e = t.column("end_datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        e = np.where(np.isnat(e), s, e)  # no end: the row ends at its start
        t0, t1 = query.time
        if t0 is not None:
            keep &= ~np.isnat(e) & (e >= t0)
        if t1 is not None:
            keep &= ~np.isnat(s) & (s <= t1)
    return np.flatnonzero(keep)


@pytest.mark.parametrize("query", [
    Query.make(bbox=(-62.6, -11.7, -62.2, -11.2)),
    Query.make(bbox=(-60.5, -9.5, -60.4, -9.4)),
    Query.make(time=("2021-03-01", "2021-03-20")),
    Query.make(time=(None, "2021-01-15")),
    Query.make(bbox=(-63, -12, -60, -9), time=("2021-06-01", None)),
    Query.make(bbox=(-61.9, -10.9, -60.1, -10.1), time=("2021-02-01", "2021-07-01")),
])
def test_queries_push_down_to_row_groups(sorted_file, query):
    path, q = sorted_file
    expected = brute_force(path, query)
    assert expected.size > 0
    with GeocodecFile(path) as f:
        groups = f.row_groups(query)
        all_groups = list(range(f.parquet.num_row_groups))
        assert set(groups) < set(all_groups) or query.bbox == (-63, -12, -60, -9)
        # the kept row groups hold every matching row
        offsets = f._row_offsets
        kept_rows = np.concatenate([np.arange(offsets[g], offsets[g + 1]) for g in groups])
        assert np.isin(expected, kept_rows).all()
    ds = GeocodecDataset(path)
    table, emb = ds.read(query)
    ids = np.array([int(s[1:]) for s in table.column("tile_id").to_pylist()])
    np.testing.assert_array_equal(ids, expected)
    f = ds.files[0]
    np.testing.assert_allclose(emb, f.decoder(f.spec.dequantize(q[expected])), rtol=1e-6, atol=1e-6)
    ds.close()


def test_rows_without_end_datetime_are_not_pruned(tmp_path):
    """A row with no end_datetime lasts from its start to its start; push-down must keep it."""
    n = 40
    ext, decoder = make_codec(channels=2, block_rows=10)
    start = np.full(n, np.datetime64("2022-01-01", "ms"))
    start[-1] = np.datetime64("2022-12-10", "ms")
    end = start + np.timedelta64(1, "D")
    end[-1] = np.datetime64("NaT")
    path = write_codes(tmp_path / "f.parquet", random_codes(n, 2), ext=ext, decoder=decoder, row_group_rows=20,
                       datetime=start, end_datetime=end)
    query = Query.make(time=("2022-12-05", "2022-12-20"))
    with GeocodecFile(path) as f:
        assert f.row_groups(query) == [1]
    table, _ = open_dataset(path).read(query)
    assert table.column("tile_id").to_pylist() == [f"t{n - 1:06d}"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), rg=st.integers(1, 30), null_end=st.floats(0, 1),
       qx=st.floats(-63, -60), qy=st.floats(-12, -9), w=st.floats(0, 3), t0=st.integers(0, 400) | st.none(),
       span=st.integers(0, 200) | st.none())
def test_pushdown_equals_brute_force(seed, rg, null_end, qx, qy, w, t0, span):
    rng = np.random.default_rng(seed)
    n = 90
    ext, decoder = make_codec(channels=2, block_rows=5)
    start = np.datetime64("2021-01-01", "ms") + rng.integers(0, 365, n).astype("timedelta64[D]")
    end = start + rng.integers(0, 30, n).astype("timedelta64[D]")
    end[rng.uniform(size=n) < null_end] = np.datetime64("NaT")
    lo = None if t0 is None else np.datetime64("2021-01-01", "ms") + np.timedelta64(t0, "D")
    hi = None if span is None else (lo if lo is not None else np.datetime64("2021-01-01", "ms")) + \
        np.timedelta64(span, "D")
    query = Query.make(bbox=(qx, qy, qx + w, qy + w), time=(lo, hi))
    with tempfile.TemporaryDirectory() as d:
        path = write_codes(os.path.join(d, "f.parquet"), random_codes(n, 2, seed=seed), ext=ext, decoder=decoder,
                           row_group_rows=rg, datetime=start, end_datetime=end, geometry=grid_points(n, seed=seed))
        table, _ = open_dataset(path).read(query)
        got = [int(s[1:]) for s in table.column("tile_id").to_pylist()]
        np.testing.assert_array_equal(got, brute_force(path, query))


def test_small_bbox_reads_few_row_groups(sorted_file):
    path, _ = sorted_file
    with GeocodecFile(path) as f:
        n = f.parquet.num_row_groups
        assert n == 30
        assert len(f.row_groups(Query.make(bbox=(-62.6, -11.7, -62.5, -11.6)))) <= n // 5
        assert len(f.row_groups(Query.make(time=("2021-03-01", "2021-03-05")))) <= 2
        assert f.row_groups(Query.make(bbox=(10, 10, 11, 11))) == []
        assert f.row_groups(Query.make(time=("2030-01-01", None))) == []
        assert f.row_groups() == list(range(n))


def test_query_with_no_match_gives_empty_result(sorted_file):
    path, _ = sorted_file
    table, emb = open_dataset(path).read(Query.make(bbox=(10, 10, 11, 11)))
    assert table.num_rows == 0 and emb.shape == (0, 8)


def test_bad_bbox_query():
    with pytest.raises(GeocodecError, match="min <= max"):
        Query.make(bbox=(1, 1, 0, 0))


# -- datasets of many files -----------------------------------------------------------------------
def _partition(root, ext, decoder, parts):
    paths = []
    for i, (cell, year, n) in enumerate(parts):
        d = root / f"cell={cell}" / f"year={year}"
        d.mkdir(parents=True)
        q = random_codes(n, ext["latent"]["shape"][0], seed=i)
        extent = (-63 + 2 * i, -12, -62 + 2 * i, -11)
        paths.append((write_codes(d / "part.parquet", q, ext=ext, decoder=decoder, row_group_rows=30,
                                  geometry=grid_points(n, seed=i, extent=extent), tile_prefix=f"{cell}{year}-"), q))
    return paths


def test_hive_directory_opens_as_one_dataset(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=8)
    parts = _partition(tmp_path, ext, decoder, [("a", 2022, 50), ("a", 2023, 70), ("b", 2022, 41)])
    (tmp_path / "cell=a" / "year=2022" / ".part.parquet.0123.tmp").write_bytes(b"junk")  # a crashed write
    (tmp_path / "README.txt").write_text("not data")
    ds = open_dataset(tmp_path)
    assert len(ds.files) == 3
    assert ds.num_rows == 161
    table, emb = ds.read()
    assert table.num_rows == 161 and emb.shape == (161, 8)
    for path, q in parts:
        f = GeocodecFile(path)
        ids = table.column("tile_id").to_pylist()
        prefix = os.path.basename(os.path.dirname(os.path.dirname(path)))[5:] + \
            os.path.basename(os.path.dirname(path))[5:] + "-"
        rows = [i for i, s in enumerate(ids) if s.startswith(prefix)]
        assert len(rows) == len(q)
        np.testing.assert_allclose(emb[rows], f.decoder(f.spec.dequantize(q)), rtol=1e-6, atol=1e-6)
        f.close()
    # a bbox inside the second file's extent touches only that file
    query = Query.make(bbox=(-61, -12, -60, -11))
    assert [f.source for f in ds.files_for(query)] == [parts[1][0]]
    t2, _ = ds.read(query)
    assert t2.num_rows == 70
    ds.close()
    # the whole directory decompresses to one plain GeoParquet file
    out = tmp_path.parent / f"{tmp_path.name}-plain.parquet"
    assert decompress(tmp_path, out, progress=False)["rows"] == 161
    np.testing.assert_array_equal(read_embeddings(out, "embedding").vectors, emb)
    os.remove(out)


def test_directory_with_two_codecs_is_an_error(tmp_path):
    ext, decoder = make_codec(channels=3, block_rows=8)
    _partition(tmp_path, ext, decoder, [("a", 2022, 20)])
    ext2, decoder2 = make_codec(channels=3, block_rows=8, quality=7)
    (tmp_path / "cell=b" / "year=2022").mkdir(parents=True)
    other = write_codes(tmp_path / "cell=b" / "year=2022" / "part.parquet", random_codes(20, 3), ext=ext2,
                        decoder=decoder2)
    with pytest.raises(MetadataError) as info:
        open_dataset(tmp_path)
    msg = str(info.value)
    assert "share one codec" in msg
    assert other in msg
    assert "codec.quality: 5 vs 7" in msg


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(GeocodecError, match="no .parquet files"):
        open_dataset(tmp_path)


# -- merge ---------------------------------------------------------------------------------------
def test_merge_concatenates_without_reencoding(tmp_path):
    ext, decoder = make_codec(channels=4, block_rows=16)
    qa, qb = random_codes(100, 4, seed=1), random_codes(75, 4, seed=2)
    a = write_codes(tmp_path / "a.parquet", qa, ext=ext, decoder=decoder, row_group_rows=48, tile_prefix="a",
                    geometry=grid_points(100, extent=(0, 0, 1, 1)))
    b = write_codes(tmp_path / "b.parquet", qb, ext=ext, decoder=decoder, row_group_rows=48, tile_prefix="b",
                    geometry=grid_points(75, extent=(5, 5, 6, 6)))
    assert merge_report([GeocodecFile(a), GeocodecFile(b)]) == []
    out = tmp_path / "ab.parquet"
    r = merge([a, b], out, progress=False)
    assert r == {"rows": 175, "files": 2, "bytes": os.path.getsize(out)}
    merged = pq.read_table(out)
    cols = ["tile_id", "code_index", "code_rows", "code", "code_bits", "code_crc32"]
    inputs = pa.concat_tables([pq.read_table(p, columns=cols) for p in (a, b)])
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in cols)))  # noqa: E731
    assert key(merged.select(cols)) == key(inputs)  # the code bytes, byte for byte
    with GeocodecFile(out) as f:
        assert f.ext["codec"]["fingerprint"] == GeocodecFile(a).ext["codec"]["fingerprint"]
        assert f.ext["rate"]["rows"] == 175
        assert f.ext["rate"]["code_bits"] == GeocodecFile(a).ext["rate"]["code_bits"] + \
            GeocodecFile(b).ext["rate"]["code_bits"]
        assert f.geo["columns"]["geometry"]["bbox"][0] < 0.1 and f.geo["columns"]["geometry"]["bbox"][2] > 5.9
        codes = np.concatenate([f.decode_codes(t, o) for o, t in f.iter_tables()])
    ids = merged.column("tile_id").to_pylist()
    want = {f"a{i:06d}": qa[i] for i in range(100)} | {f"b{i:06d}": qb[i] for i in range(75)}
    np.testing.assert_array_equal(codes, np.stack([want[i] for i in ids]))


def test_files_of_different_quality_cannot_merge(tmp_path):
    e5, d5 = make_codec(channels=3, quality=5)
    e7, d7 = make_codec(channels=3, quality=7)
    a = write_codes(tmp_path / "a.parquet", random_codes(20, 3), ext=e5, decoder=d5)
    b = write_codes(tmp_path / "b.parquet", random_codes(20, 3), ext=e7, decoder=d7)
    problems = merge_report([GeocodecFile(a), GeocodecFile(b)])
    assert len(problems) == 1
    assert a in problems[0] and b in problems[0]
    assert "cannot be merged without re-encoding" in problems[0]
    assert "codec.quality: 5 vs 7" in problems[0]
    with pytest.raises(MetadataError, match="codec.quality: 5 vs 7"):
        merge([a, b], tmp_path / "ab.parquet", progress=False)
    assert not (tmp_path / "ab.parquet").exists()


def test_files_with_different_tables_cannot_merge(tmp_path):
    e1, d1 = make_codec(channels=3)
    e2, d2 = make_codec(channels=3, tables=make_tables(3, seed=9))
    a = write_codes(tmp_path / "a.parquet", random_codes(20, 3), ext=e1, decoder=d1)
    b = write_codes(tmp_path / "b.parquet", random_codes(20, 3), ext=e2, decoder=d2)
    problems = merge_report([GeocodecFile(a), GeocodecFile(b)])
    assert "'entropy_model' differs" in problems[0]


def test_summarize(compressed_file):
    with GeocodecFile(compressed_file) as f:
        s = summarize(f)
    assert s["rows"] == 600
    assert s["row_groups"] == 6
    assert s["block_rows"] == 20
    assert s["crs"].startswith("OGC:CRS84")
    assert s["bytes"]["file"] == os.path.getsize(compressed_file)
    assert s["extra_columns"] == ["label"]
    assert 0 <= s["rate"]["overhead_vs_cross_entropy_pct"] < 5
    json.dumps(s, default=str)


# -- real data -------------------------------------------------------------------------------------
def _rondonia_table():
    from geocodec.training.datasets import RONDONIA_FILE, data_root, rondonia_embedding_table

    root = data_root()
    if root is None or not (root / RONDONIA_FILE).exists():
        pytest.skip(f"real data {RONDONIA_FILE} not found under ../shared/data or $GEOCODEC_DATA")
    return rondonia_embedding_table()


def test_rondonia_rate_and_error(tmp_path):
    table = _rondonia_table()
    src = write_geoparquet(table, tmp_path / "rondonia.parquet")
    out = tmp_path / "rondonia.gc.parquet"
    r = compress(src, "embedding", out, quality=5, progress=False)
    assert r["rows"] == table.num_rows > 1000
    # the operational rate is within 2 % of the ideal code length under the file's tables
    assert abs(r["code_bits"] / r["cross_entropy_bits"] - 1) < 0.02
    with GeocodecFile(out) as f:
        assert f.ext["rate"]["code_bits"] == r["code_bits"]
        assert f.crs["id"] == {"authority": "OGC", "code": "CRS84"}
        coded_bits = sum(pq.read_table(out, columns=["code_bits"]).column("code_bits").drop_null().to_pylist())
        assert coded_bits == r["code_bits"]
    got, emb = open_dataset(out).read()
    x = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    index = {t: i for i, t in enumerate(table.column("tile_id").to_pylist())}
    order = np.array([index[t] for t in got.column("tile_id").to_pylist()])
    rel = np.linalg.norm(emb - x[order]) / np.linalg.norm(x)
    assert rel < 0.03
    # and the file is much smaller than the float32 vectors
    assert r["file_bytes"] < r["raw_float32_bytes"] / 2
    # the labels and the time span travel with the rows
    assert got.column("label").to_pylist() == table.column("label").take(pa.array(order)).to_pylist()
    assert got.column("datetime").null_count == 0
