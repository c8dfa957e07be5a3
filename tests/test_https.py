"""Reading a file over https: a server on 127.0.0.1 with a certificate made for the test.

Trusted (``SSL_CERT_FILE`` names the certificate) the file reads and decodes exactly as the local
copy; untrusted, the command fails with one line naming the URL, never a traceback.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading

import numpy as np
import pytest

from geocodec.cli.main import main
from geocodec.format.dataset import open_dataset
from helpers import make_codec, random_codes, write_codes
from test_http_reader import RangeHandler

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def https_served(tmp_path_factory):
    root = tmp_path_factory.mktemp("www_tls")
    key, cert = root / "key.pem", root / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    ext, decoder = make_codec(channels=8, block_rows=50)
    path = write_codes(root / "tls.parquet", random_codes(600, 8, seed=7), ext=ext, decoder=decoder,
                       row_group_rows=200)
    handler = type("Handler", (RangeHandler,), {"root": os.fspath(root)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/tls.parquet", path, cert
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_trusted_https_file_reads_as_the_local_copy(https_served, monkeypatch):
    url, path, cert = https_served
    monkeypatch.setenv("SSL_CERT_FILE", os.fspath(cert))
    remote_table, remote = open_dataset(url).read()
    local_table, local = open_dataset(path).read()
    assert remote.tobytes() == local.tobytes()
    assert remote_table.column("tile_id").equals(local_table.column("tile_id"))
    assert main(["validate", url]) == 0


def test_an_untrusted_certificate_is_one_clear_line(https_served, monkeypatch, capsys, tmp_path):
    url, _, _ = https_served
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("GEOCODEC_HTTP_TIMEOUT", "5")
    assert main(["decompress", url, "-o", str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert url in err and "certificate" in err.lower(), err
    assert not (tmp_path / "out.parquet").exists()
    np.testing.assert_equal(os.listdir(tmp_path), [])
