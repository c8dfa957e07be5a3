"""Hostile or failing HTTP servers (127.0.0.1 only): timeouts, retries, clear errors, no hangs."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pytest

from geocodec.cli.main import main
from geocodec.errors import GeocodecError
from geocodec.format import http_file
from geocodec.format.http_file import HttpError
from geocodec.format.dataset import open_dataset
from geocodec.format.reader import GeocodecFile


@pytest.fixture(autouse=True)
def fast_http(monkeypatch):
    """Short timeouts and pauses, so every failure below is reached in about a second."""
    monkeypatch.setenv("GEOCODEC_HTTP_TIMEOUT", "0.5")
    monkeypatch.setattr(http_file, "RETRIES", 2)
    monkeypatch.setattr(http_file, "BACKOFF_S", 0.01)


class Faulty(http.server.BaseHTTPRequestHandler):
    """Serves one file; ``mode`` picks the fault: ok, fail503 (first 2 answers), fail500, norange, truncate."""

    body = b""
    mode = "ok"
    count = 0
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        cls = type(self)
        cls.count += 1
        if self.mode == "fail500" or (self.mode == "fail503" and cls.count <= 2):
            self.send_error(500 if self.mode == "fail500" else 503)
            return
        body, status, extra = self.body, 200, {}
        rng = self.headers.get("Range")
        if rng and self.mode != "norange":
            a, b = rng.split("=", 1)[1].split("-")
            start, end = int(a), min(int(b), len(body) - 1)
            body, status = body[start:end + 1], 206
            extra["Content-Range"] = f"bytes {start}-{end}/{len(self.body)}"
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "truncate" and len(body) > 1:
            body = body[: len(body) // 2]
        self.wfile.write(body)


@pytest.fixture
def serve(compressed_file):
    """``serve(mode)`` -> URL of ``compressed_file`` behind a server with that fault; servers stop after the test."""
    started = []

    def start(mode: str) -> str:
        handler = type("H", (Faulty,), {"body": open(compressed_file, "rb").read(), "mode": mode, "count": 0})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/compressed.parquet"

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def silent_url():
    """A server that accepts connections and never answers; it stops by itself after the test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    stop, held = threading.Event(), []

    def loop():
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/x.parquet"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    sock.close()


def test_silent_server_times_out_quickly(silent_url, capsys):
    t0 = time.monotonic()
    assert main(["info", silent_url]) == 2
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err.strip()
    assert silent_url in err and "timeout" in err and len(err.splitlines()) == 1


def test_503_then_200_is_retried(serve, compressed_file):
    url = serve("fail503")
    table, emb = open_dataset(url).read()
    local_table, local_emb = open_dataset(compressed_file).read()
    assert table.equals(local_table) and (emb == local_emb).all()


def test_500_forever_names_the_url_and_status(serve):
    url = serve("fail500")
    with pytest.raises(HttpError) as exc:
        GeocodecFile(url)
    assert url in str(exc.value) and "HTTP 500" in str(exc.value) and "no such file" not in str(exc.value)
    assert isinstance(exc.value, GeocodecError)


def test_404_is_no_such_file():
    # a plain http.server folder server answers 404 for a missing file
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    srv.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(HttpError, match="no such file.*HTTP 404"):
            GeocodecFile(f"http://127.0.0.1:{srv.server_address[1]}/no-such-{os.getpid()}.parquet")
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_range_ignored_small_file_is_read_whole(serve, compressed_file):
    url = serve("norange")
    table, emb = open_dataset(url).read()
    local_table, local_emb = open_dataset(compressed_file).read()
    assert table.equals(local_table) and (emb == local_emb).all()


def test_range_ignored_large_file_is_refused(serve, monkeypatch):
    monkeypatch.setattr(http_file, "WHOLE_BODY_LIMIT", 1000)
    url = serve("norange")
    with pytest.raises(HttpError, match="ignores Range"):
        GeocodecFile(url)


def test_truncated_body_is_a_clear_error(serve, capsys):
    url = serve("truncate")
    assert main(["info", url]) == 2
    err = capsys.readouterr().err.strip()
    assert url in err and "truncated body" in err and "Traceback" not in err
