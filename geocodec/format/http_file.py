"""A seekable, read-only file over HTTP(S) Range requests, with timeouts, retries and clear errors.

What a reader of a remote file meets and how it is answered:

* a server that never answers: every connect and every read waits at most :func:`timeout_s`
  seconds (``$GEOCODEC_HTTP_TIMEOUT``, default 30);
* 5xx answers, refused or dropped connections and truncated bodies: retried :data:`RETRIES`
  times with exponential backoff from :data:`BACKOFF_S`, then a :class:`HttpError` naming the URL
  and the last HTTP status or failure;
* 4xx answers: no retry; 404/410 say "no such file";
* a server that ignores ``Range`` (answers 200 with the whole body): a file of at most
  :data:`WHOLE_BODY_LIMIT` bytes is read once, whole, and served from memory; a larger one is
  refused with a clear error (reading it in full for every range would be unbounded).

Only the standard library is used (``urllib``), so no event loop or connection pool outlives a read.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import time
import urllib.error
import urllib.request

from geocodec.errors import GeocodecError

RETRIES = 3                   # tries after the first
BACKOFF_S = 0.5               # first pause between tries; doubled after each
WHOLE_BODY_LIMIT = 64 << 20   # bytes read whole from a server that ignores Range
_TIMEOUT_ENV = "GEOCODEC_HTTP_TIMEOUT"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class HttpError(GeocodecError):
    """An HTTP source that could not be read: the URL, the HTTP status or failure, after the retries."""


def timeout_s() -> float:
    """Seconds a connect or a read may wait: ``$GEOCODEC_HTTP_TIMEOUT``, else 30."""
    raw = os.environ.get(_TIMEOUT_ENV)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise GeocodecError(f"${_TIMEOUT_ENV} wants seconds, got {raw!r}", field=_TIMEOUT_ENV) from None
        if value > 0:
            return value
    return 30.0


class _Retry(Exception):
    """A failure worth another try (5xx, connection error, timeout, truncated body)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout_s():g} s (timeout)"
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated body: {len(exc.partial)} bytes received, {exc.expected} more expected"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _describe(reason)
    return str(reason or exc) or type(exc).__name__


def _status_text(exc: urllib.error.HTTPError) -> str:
    return f"HTTP {exc.code} {exc.reason}".rstrip()


def _with_retries(url: str, attempt):
    """``attempt()``, retried on :class:`_Retry` and transport errors; HttpError after the last try."""
    last = "no answer"
    for i in range(RETRIES + 1):
        if i:
            time.sleep(BACKOFF_S * 2 ** (i - 1))
        try:
            return attempt()
        except HttpError:
            raise
        except urllib.error.HTTPError as exc:
            last = _status_text(exc)
            if exc.code < 500:
                what = "no such file" if exc.code in (404, 410) else "refused"
                raise HttpError(f"{what} ({last})", source=url) from None
        except _Retry as exc:
            last = str(exc)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last = _describe(exc)
    tries = RETRIES + 1
    raise HttpError(f"could not be read after {tries} tr{'y' if tries == 1 else 'ies'}: {last}", source=url)


def _read_exact(resp, expected: int | None, url: str) -> bytes:
    """The body of ``resp``; a body shorter than its Content-Length (or ``expected``) is a retryable failure."""
    try:
        data = resp.read() if expected is None else resp.read(expected)
    except http.client.IncompleteRead as exc:
        raise _Retry(_describe(exc)) from None
    declared = resp.headers.get("Content-Length")
    want = expected if expected is not None else (int(declared) if declared and declared.isdigit() else None)
    if want is not None and len(data) < want:
        raise _Retry(f"truncated body: {len(data)} of {want} bytes received")
    return data


class HttpFile(io.RawIOBase):
    """``open(url, "rb")`` for an HTTP(S) URL: ``seek``/``tell``/``read`` as ranged GETs, nothing read ahead."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self._pos = 0
        self._whole: bytes | None = None   # the body, when the server ignores Range
        self.size = self._probe()

    # -- requests ----------------------------------------------------------------------
    def _open(self, method: str = "GET", headers: dict | None = None):
        req = urllib.request.Request(self.url, method=method,
                                     headers={"User-Agent": "geocodec", "Accept-Encoding": "identity",
                                              **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=timeout_s())
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Retry(_status_text(exc)) from None
            raise

    def _probe(self) -> int:
        """The file's size, from a one-byte ranged GET (Content-Range), or the whole body if Range is ignored."""
        def attempt():
            with self._open(headers={"Range": "bytes=0-0"}) as resp:
                if resp.status == 206:
                    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    if m and m.group(3) != "*":
                        _read_exact(resp, None, self.url)
                        return int(m.group(3))
                    raise HttpError("the server answered a Range request without the file's size "
                                    "(Content-Range bytes START-END/SIZE)", source=self.url)
                return self._take_whole(resp)
        try:
            return _with_retries(self.url, attempt)
        except urllib.error.HTTPError as exc:   # 416: an empty file
            if exc.code == 416:
                self._whole = b""
                return 0
            raise

    def _take_whole(self, resp) -> int:
        """Keep the body of a 200 answer (the server ignored Range) if it is small enough."""
        declared = resp.headers.get("Content-Length")
        if declared is None or not declared.isdigit():
            raise HttpError("the server ignores Range requests and gives no Content-Length: the file cannot be "
                            "read in parts", source=self.url)
        if int(declared) > WHOLE_BODY_LIMIT:
            raise HttpError(f"the server ignores Range requests and the file holds {int(declared)} bytes, more than "
                            f"the {WHOLE_BODY_LIMIT} read whole; serve it from a server that supports Range",
                            source=self.url)
        self._whole = _read_exact(resp, int(declared), self.url)
        return len(self._whole)

    def _get_range(self, start: int, length: int) -> bytes:
        def attempt():
            with self._open(headers={"Range": f"bytes={start}-{start + length - 1}"}) as resp:
                if resp.status != 206:   # the server stopped honouring Range
                    self._take_whole(resp)
                    return self._whole[start:start + length]
                return _read_exact(resp, length, self.url)
        return _with_retries(self.url, attempt)

    # -- the file interface ------------------------------------------------------------
    def readable(self) -> bool:
        """True: the file can be read."""
        return True

    def seekable(self) -> bool:
        """True: reads can start anywhere."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (``whence`` as for any file); returns the new position."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the position (all the rest for -1): one ranged GET."""
        if self.closed:
            raise ValueError("read of a closed file")
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        if self._whole is not None:
            data = self._whole[self._pos:end]
        else:
            data = self._get_range(self._pos, end - self._pos)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        """Read into a writable buffer; returns the bytes read."""
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        """Everything from the position to the end."""
        return self.read(-1)
