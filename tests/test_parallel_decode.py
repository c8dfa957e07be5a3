"""Parallel entropy decoding: bit-exact with the serial decoder, same errors, bounded streaming."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pyarrow as pa
import pytest

from geocodec.format import blocks
from geocodec.errors import BitstreamError, InputError
from geocodec.format.blocks import decode_code_columns
from geocodec.threads import decode_workers, usable_cores
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile

from helpers import REPO, compressed_input, rewrite


@pytest.fixture(scope="module")
def many_blocks(tmp_path_factory) -> str:
    """3000 rows, 16 rows per block, 1000 per row group: 63 blocks per row group (> PARALLEL_MIN_BLOCKS)."""
    return compressed_input(tmp_path_factory.mktemp("parallel"), "many", n=3000, d=24, seed=3, block_rows=16,
                            row_group_rows=1000)


def test_file_takes_the_parallel_path(many_blocks):
    f = GeocodecFile(many_blocks)
    table = f.read_row_group(0)
    found, _, error = blocks._scan_blocks(table, f.spec, source=f.source, row_offset=0, needed=None)
    assert error is None and len(found) >= blocks.PARALLEL_MIN_BLOCKS
    job = blocks.start_decode(table, f.spec, source=f.source, threads=2)
    assert job.futures is not None and len(job.futures) >= 2   # really sent to worker processes
    job.result()


def test_parallel_codes_equal_serial_bit_exactly(many_blocks):
    f = GeocodecFile(many_blocks)
    for offset, table in f.iter_tables():
        serial = decode_code_columns(table, f.spec, source=f.source, row_offset=offset, threads=1)
        parallel = decode_code_columns(table, f.spec, source=f.source, row_offset=offset, threads=2)
        assert parallel.dtype == serial.dtype == np.int32
        np.testing.assert_array_equal(parallel, serial)


@pytest.mark.parametrize("query", [None, Query.make(bbox=(-62.5, -11.5, -61.0, -10.0))])
def test_parallel_iter_decoded_equals_serial(many_blocks, query):
    f = GeocodecFile(many_blocks)
    serial = list(f.iter_decoded(query, threads=1))
    parallel = list(f.iter_decoded(query, threads=2))
    assert len(serial) == len(parallel) >= 1
    for (ts, es), (tp, ep) in zip(serial, parallel):
        assert ts.equals(tp)
        assert es.tobytes() == ep.tobytes()          # bit-exact float32
    if query is not None:
        assert sum(len(e) for _, e in parallel) < f.num_rows


def test_env_variable_sets_the_workers(monkeypatch):
    monkeypatch.setenv("GEOCODEC_THREADS", "1")
    assert decode_workers() == 1
    monkeypatch.setenv("GEOCODEC_THREADS", "3")
    assert decode_workers() == 3
    assert decode_workers(2) == 2                    # an explicit argument wins
    monkeypatch.setenv("GEOCODEC_THREADS", "0")
    assert decode_workers() == usable_cores()
    monkeypatch.delenv("GEOCODEC_THREADS")
    assert decode_workers() == usable_cores()
    monkeypatch.setenv("GEOCODEC_THREADS", "many")
    with pytest.raises(InputError, match="GEOCODEC_THREADS"):
        decode_workers()


def test_env_one_decodes_in_process(many_blocks, monkeypatch):
    monkeypatch.setenv("GEOCODEC_THREADS", "1")
    f = GeocodecFile(many_blocks)
    job = blocks.start_decode(f.read_row_group(0), f.spec, source=f.source)
    assert job.futures is None
    job.result()


def _corrupt_block(tmp_path, src, row: int, *, keep_crc: bool) -> str:
    """Rewrite ``src`` with the code of the block starting at ``row`` cut by one word;
    with ``keep_crc`` the checksum and bit count are fixed up, so only decoding notices."""
    def edit(t):
        codes = t.column("code").to_pylist()
        bits = t.column("code_bits").to_pylist()
        crcs = t.column("code_crc32").to_pylist()
        codes[row] = codes[row][:-4]
        if keep_crc:
            bits[row] = 8 * len(codes[row])
            crcs[row] = zlib.crc32(codes[row])
        for name, values in (("code", codes), ("code_bits", bits), ("code_crc32", crcs)):
            i = t.schema.get_field_index(name)
            t = t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))
        return t
    return rewrite(src, tmp_path / f"bad_{row}_{keep_crc}.parquet", table=edit)


@pytest.mark.parametrize("keep_crc", [True, False])
def test_bad_block_gives_the_same_error_in_parallel(tmp_path, many_blocks, keep_crc):
    bad = _corrupt_block(tmp_path, many_blocks, 16 * 40, keep_crc=keep_crc)   # block 40 of row group 0
    f = GeocodecFile(bad)
    table = f.read_row_group(0)
    errors = []
    for threads in (1, 2):
        with pytest.raises(BitstreamError) as info:
            decode_code_columns(table, f.spec, source=f.source, threads=threads)
        errors.append(info.value)
    assert type(errors[0]) is type(errors[1])
    assert str(errors[0]) == str(errors[1])
    assert errors[0].row == 16 * 40
    with pytest.raises(BitstreamError, match="row 640"):
        list(f.iter_decoded(threads=2))


def test_stream_yields_row_groups_and_stops_early(many_blocks):
    f = GeocodecFile(many_blocks)
    gen = f.iter_decoded(threads=2)
    table, emb = next(gen)
    first = f.parquet.metadata.row_group(0).num_rows
    assert table.num_rows == emb.shape[0] == first
    gen.close()                                       # pending work is cancelled, nothing hangs
    sizes = [len(e) for _, e in f.iter_decoded(threads=2)]
    assert sizes == [f.parquet.metadata.row_group(i).num_rows for i in range(f.parquet.num_row_groups)]
    assert len(sizes) >= 3 and sum(sizes) == 3000


def test_script_without_main_guard_is_not_rerun_in_workers(tmp_path, many_blocks):
    """multiprocessing's spawn re-imports __main__ in workers; ours must not re-run a script."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from geocodec.format.reader import GeocodecFile
        n = sum(len(e) for _, e in GeocodecFile({many_blocks!r}).iter_decoded(threads=2))
        print("decoded", n, flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("decoded 3000") == 1, out.stdout
    assert "RuntimeWarning" not in out.stderr


def test_worker_failure_falls_back_to_in_process(many_blocks, monkeypatch):
    f = GeocodecFile(many_blocks)
    table = f.read_row_group(0)
    expected = decode_code_columns(table, f.spec, source=f.source, threads=1)

    class Broken:
        def submit(self, *a, **k):
            raise blocks._BrokenPool("workers died")

    monkeypatch.setattr(blocks, "_pool", lambda workers: Broken())
    with pytest.warns(RuntimeWarning, match="in-process"):
        got = decode_code_columns(table, f.spec, source=f.source, threads=2)
    np.testing.assert_array_equal(got, expected)


def test_dataset_read_accepts_threads(many_blocks):
    from geocodec.format.dataset import GeocodecDataset

    t1, e1 = GeocodecDataset(many_blocks).read(threads=1)
    t2, e2 = GeocodecDataset(many_blocks).read(threads=2)
    assert t1.equals(t2) and e1.tobytes() == e2.tobytes()
