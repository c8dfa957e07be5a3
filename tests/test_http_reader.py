"""Reading over HTTP with Range requests: only the footer and the matching row groups travel."""

from __future__ import annotations

import http.server
import os
import re
import threading

import numpy as np
import pytest

from helpers import make_codec, random_codes, write_codes
from geocodec.cli.main import main
from geocodec.format.embeddings_io import read_embeddings
from geocodec.errors import GeocodecError
from geocodec.format.dataset import GeocodecDataset, open_dataset
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile

pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files of ``root`` with HEAD and single-range GET; counts the body bytes it sends."""

    root: str = "."
    lock = threading.Lock()
    bytes_served = 0
    requests: list[tuple[str, str | None, int]] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _path(self) -> str | None:
        path = os.path.join(self.root, self.path.split("?", 1)[0].lstrip("/"))
        return path if os.path.isfile(path) else None

    def do_HEAD(self):
        path = self._path()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        path = self._path()
        if path is None:
            self.send_error(404)
            return
        size = os.path.getsize(path)
        header = self.headers.get("Range")
        start, end, status = 0, size - 1, 200
        if header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
            if not m or m.groups() == ("", ""):
                self.send_error(416)
                return
            a, b = m.groups()
            if a == "":
                start, end = max(size - int(b), 0), size - 1
            else:
                start, end = int(a), min(int(b), size - 1) if b else size - 1
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            status = 206
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.lock:
            RangeHandler.bytes_served += len(body)
            RangeHandler.requests.append((self.path, header, len(body)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 20 000-row file in 40 spatially sorted row groups, served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("www")
    n = 20_000
    ext, decoder = make_codec(channels=8, block_rows=100)
    start = np.datetime64("2020-01-01", "ms") + (np.arange(n) // 10).astype("timedelta64[h]")
    path = write_codes(root / "big.parquet", random_codes(n, 8, seed=4), ext=ext, decoder=decoder,
                       row_group_rows=500, datetime=start)
    handler = type("Handler", (RangeHandler,), {"root": os.fspath(root)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, path
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def reset_counter():
    with RangeHandler.lock:
        RangeHandler.bytes_served = 0
        RangeHandler.requests.clear()


@pytest.mark.parametrize("query", [
    Query.make(bbox=(-62.9, -11.9, -62.7, -11.7)),
    Query.make(bbox=(-61.2, -9.6, -61.1, -9.5), time=("2020-01-01", "2021-01-01")),
    Query.make(time=("2020-01-20", "2020-01-25")),
])
def test_url_query_reads_a_fraction_of_the_file(served, query):
    base, path = served
    size = os.path.getsize(path)
    local_table, local_emb = open_dataset(path).read(query)
    assert local_table.num_rows > 0
    reset_counter()
    ds = GeocodecDataset(f"{base}/big.parquet")
    assert ds.num_rows == 20_000
    with GeocodecFile(path) as f:
        groups = f.row_groups(query)
    assert 0 < len(groups) <= 4
    table, emb = ds.read(query)
    ds.close()
    assert table.equals(local_table)
    np.testing.assert_array_equal(emb, local_emb)
    # only byte ranges were asked for, and far less than the file
    assert RangeHandler.requests and all(r[1] is not None for r in RangeHandler.requests)
    assert RangeHandler.bytes_served < 0.25 * size, (RangeHandler.bytes_served, size, RangeHandler.requests)


def test_url_full_read_equals_local(served):
    base, path = served
    reset_counter()
    t_url, e_url = open_dataset(f"{base}/big.parquet").read()
    t_loc, e_loc = open_dataset(path).read()
    assert t_url.equals(t_loc)
    np.testing.assert_array_equal(e_url, e_loc)
    assert RangeHandler.bytes_served >= 0.9 * os.path.getsize(path)


def test_url_metadata_only_reads_the_footer(served):
    base, path = served
    reset_counter()
    with GeocodecFile(f"{base}/big.parquet") as f:
        assert f.num_rows == 20_000 and f.parquet.num_row_groups == 40
        assert f.decoder is not None  # embedded in the footer: no extra request
        assert f.crs["id"]["code"] == "CRS84"
    footer_len = int.from_bytes(open(path, "rb").read()[-8:-4], "little")
    # pyarrow reads the last 64 KiB, then the whole footer if it is longer: no row group data
    assert RangeHandler.bytes_served <= footer_len + 8 + 64 * 1024
    assert RangeHandler.bytes_served < 0.25 * os.path.getsize(path)


def test_url_that_does_not_exist(served):
    base, _ = served
    url = f"{base}/missing.parquet"
    with pytest.raises(GeocodecError) as info:
        GeocodecFile(url)
    assert url in str(info.value)


def test_cli_decompress_from_url(served, tmp_path, capsys):
    base, path = served
    out = tmp_path / "part.parquet"
    reset_counter()
    rc = main(["decompress", f"{base}/big.parquet", "-o", os.fspath(out), "--bbox=-62.9,-11.9,-62.7,-11.7",
               "-q"])
    assert rc == 0, capsys.readouterr().err
    got = read_embeddings(out, "embedding")
    _, local_emb = open_dataset(path).read(Query.make(bbox=(-62.9, -11.9, -62.7, -11.7)))
    np.testing.assert_array_equal(got.vectors, local_emb)
    assert RangeHandler.bytes_served < 0.25 * os.path.getsize(path)
