"""Reading what a file names by href (a referenced decoder or entropy tables), under the security rules.

SPEC.md section 4.14. An href is either an ``https://`` URL or a *relative reference*
(no scheme, no leading ``/``, ``\\`` or ``~``, no ``..`` segment) resolved against the
file's own location: beside a local file, or at the file's URL for a remote one. Nothing
else is followed: no ``file://``, no absolute or home-relative path, no other scheme, and
a remote file never makes the reader touch the local disk. Every read is bounded by a
byte limit, HTTP reads by a timeout and a few retries, and redirects must stay on https.
"""

from __future__ import annotations

import http.client
import os
import re
import stat
import time
import urllib.error
import urllib.parse
import urllib.request

from geocodec.errors import MetadataError
from geocodec.format.sources import is_url

#: URL schemes an href (or a redirect) may use; only https. (Tests widen it to reach a local server.)
ALLOWED_SCHEMES = ("https",)
TIMEOUT_S = 30.0
RETRIES = 2            # tries after the first, on connection errors and 5xx answers
BACKOFF_S = 0.5
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def check_href(href: str, *, source: str, field: str) -> str:
    """Refuse an href the rules do not allow (before anything is read); return it unchanged."""
    if not isinstance(href, str) or not href or href.startswith("#"):
        raise MetadataError(f"href {href!r} names no fetchable resource", source=source, field=field)
    if _SCHEME.match(href):
        scheme = href.split(":", 1)[0].lower()
        if scheme not in ALLOWED_SCHEMES:
            raise MetadataError(f"href {href!r} uses the scheme '{scheme}'; only "
                                f"{', '.join(s + '://' for s in ALLOWED_SCHEMES)} URLs or paths relative to the "
                                "file are followed", source=source, field=field)
        return href
    parts = re.split(r"[\\/]", href)
    if href.startswith(("/", "\\", "~")) or ".." in parts or re.match(r"^[A-Za-z]:", href):
        raise MetadataError(f"href {href!r} is not a relative path inside the file's own folder: absolute, "
                            "home-relative and '..' paths are never followed", source=source, field=field)
    return href


def resolve_href(href: str, *, source: str, field: str) -> str:
    """The URL or local path ``href`` names, relative to the file ``source`` (a path or a URL)."""
    check_href(href, source=source, field=field)
    if _SCHEME.match(href):
        return href
    if is_url(source):
        url = urllib.parse.urljoin(source, urllib.parse.quote(href.replace("\\", "/")))
        if url.split(":", 1)[0].lower() not in ALLOWED_SCHEMES:
            raise MetadataError(f"href {href!r} is relative to {source}, which is not an https URL; only "
                                "https is followed", source=source, field=field)
        return url
    folder = os.path.realpath(os.path.dirname(os.path.abspath(source)))
    path = os.path.realpath(os.path.join(folder, href))
    if os.path.commonpath([folder, path]) != folder:
        raise MetadataError(f"href {href!r} leads outside the file's folder ({path})", source=source, field=field)
    return path


def read_href(href: str, *, source: str, field: str, limit: int) -> bytes:
    """The bytes ``href`` names (see :func:`resolve_href`), at most ``limit`` of them."""
    target = resolve_href(href, source=source, field=field)
    if _SCHEME.match(target):
        return fetch_url(target, limit=limit, source=source, field=field)
    return read_local(target, limit=limit, source=source, field=field)


def read_local(path: str, *, limit: int, source: str, field: str) -> bytes:
    """A regular file's bytes, refused when larger than ``limit`` (FIFOs, devices and folders are refused)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise MetadataError(f"{path} is not a regular file", source=source, field=field)
        if st.st_size > limit:
            raise MetadataError(f"{path} holds {st.st_size} bytes, more than the {limit} allowed",
                                source=source, field=field)
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise MetadataError(f"{path} could not be read: {exc.strerror or exc}", source=source, field=field) from exc
    if len(data) > limit:
        raise MetadataError(f"{path} holds more than the {limit} bytes allowed", source=source, field=field)
    return data


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if newurl.split(":", 1)[0].lower() not in ALLOWED_SCHEMES:
            raise urllib.error.URLError(f"redirect to {newurl} refused: only https is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, limit: int, source: str, field: str) -> bytes:
    """GET ``url`` (https only), at most ``limit`` bytes; bounded retries with backoff on errors and 5xx."""
    if url.split(":", 1)[0].lower() not in ALLOWED_SCHEMES:
        raise MetadataError(f"{url}: only https URLs are fetched", source=source, field=field)
    opener = urllib.request.build_opener(_HttpsOnlyRedirects)
    last = "no answer"
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "geocodec"}),
                             timeout=TIMEOUT_S) as resp:
                declared = resp.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise MetadataError(f"{url} announces {declared} bytes, more than the {limit} allowed",
                                        source=source, field=field)
                data = resp.read(limit + 1)
            if len(data) > limit:
                raise MetadataError(f"{url} sent more than the {limit} bytes allowed", source=source, field=field)
            return data
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
    raise MetadataError(f"{url} could not be fetched: {last}", source=source, field=field)
