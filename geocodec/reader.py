"""Reading compressed-embedding GeoParquet: a file, a directory of files or an HTTP(S) URL.

Queries (bbox, time) are pushed down to row groups through the Parquet
statistics of the ``bbox`` covering column and ``datetime``; only the row groups
that can match are fetched. Code bytes are entropy-decoded and run through the
ONNX decoder only when asked for (:meth:`GeocodecFile.decode`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .entropy import bytes_to_words, decode_block
from .errors import BitstreamError, GeocodecError, InputError, MetadataError
from .metadata import (DECODER_KEY, EMB_KEY, EXT_KEY, GEO_KEY, CodecSpec, decode_decoder,
                       parse_json_key, validate_extension)
from .onnx_model import OnnxDecoder, load_decoder
from .writer import CODE_COLUMNS, CORE_NAMES


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


@dataclass(frozen=True)
class Query:
    bbox: tuple[float, float, float, float] | None = None   # in the file's CRS
    time: tuple[np.datetime64 | None, np.datetime64 | None] | None = None

    @staticmethod
    def make(bbox=None, time=None) -> "Query":
        if bbox is not None:
            bbox = tuple(float(v) for v in bbox)
            if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
                raise InputError(f"bbox must be xmin,ymin,xmax,ymax with min <= max, got {bbox}", field="bbox")
        if time is not None:
            start, end = time
            time = (None if start is None else np.datetime64(start, "ms"),
                    None if end is None else np.datetime64(end, "ms"))
        return Query(bbox=bbox, time=time)


def _open_binary(source: str):
    if is_url(source):
        import fsspec

        fs = fsspec.filesystem("http")
        # no read-ahead: pyarrow asks for exactly the byte ranges it needs. block_size must be
        # non-zero (fsspec gives an unseekable streaming file for 0); cache_type "none" then
        # fetches exactly the requested ranges, whatever the block size.
        return fs.open(source, "rb", block_size=1 << 20, cache_type="none")
    return open(source, "rb")


class GeocodecFile:
    """One file of the extension, opened lazily: only the footer is read at first."""

    def __init__(self, source: str | os.PathLike):
        self.source = os.fspath(source)
        try:
            self._handle = _open_binary(self.source)
            self.parquet = pq.ParquetFile(self._handle)
        except FileNotFoundError as exc:
            raise GeocodecError("no such file", source=self.source) from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"not a readable Parquet file: {exc}", source=self.source) from exc
        kv = self.parquet.metadata.metadata or {}
        self.geo = parse_json_key(kv, GEO_KEY, source=self.source)
        self.emb = parse_json_key(kv, EMB_KEY, source=self.source, required=False)
        self.ext = validate_extension(parse_json_key(kv, EXT_KEY, source=self.source), source=self.source)
        self.spec = CodecSpec(self.ext)
        self._decoder_b64 = kv.get(DECODER_KEY.encode())
        names = self.parquet.schema_arrow.names
        missing = [c for c in CORE_NAMES if c not in names]
        if missing:
            raise MetadataError(f"missing column(s) {missing}", source=self.source, field=missing[0])
        self._row_offsets = np.concatenate(
            [[0], np.cumsum([self.parquet.metadata.row_group(i).num_rows
                             for i in range(self.parquet.num_row_groups)])])

    def close(self):
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- metadata ------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return self.parquet.metadata.num_rows

    @property
    def crs(self):
        return self.geo["columns"][self.geo["primary_column"]].get("crs")

    @property
    def extra_columns(self) -> list[str]:
        return [n for n in self.parquet.schema_arrow.names if n not in CORE_NAMES]

    @cached_property
    def decoder_bytes(self) -> bytes:
        href = self.ext["decoder"]["href"]
        if href == "#" + DECODER_KEY:
            if self._decoder_b64 is None:
                raise MetadataError(f"the decoder should be embedded under footer key '{DECODER_KEY}' but is not",
                                    source=self.source, field="decoder.href")
            return decode_decoder(self._decoder_b64, source=self.source)
        return _fetch_asset(href, source=self.source)

    @cached_property
    def decoder(self) -> OnnxDecoder:
        d = self.ext["decoder"]
        return load_decoder(self.decoder_bytes, d["sha256"], source=self.source, input_name=d.get("input"),
                            output_name=d.get("output"))

    # -- row-group selection -------------------------------------------------------------
    def _stat(self, rg: int, path: str):
        meta = self.parquet.metadata.row_group(rg)
        for j in range(meta.num_columns):
            col = meta.column(j)
            if col.path_in_schema == path:
                st = col.statistics
                if st is not None and st.has_min_max:
                    return st.min, st.max
                return None
        return None

    def row_groups(self, query: Query | None = None) -> list[int]:
        """Row groups whose statistics say they may hold rows matching ``query``."""
        query = query or Query()
        keep = []
        for rg in range(self.parquet.num_row_groups):
            if query.bbox is not None:
                s = [self._stat(rg, f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
                if all(v is not None for v in s):
                    qx0, qy0, qx1, qy1 = query.bbox
                    if s[0][0] > qx1 or s[1][0] > qy1 or s[2][1] < qx0 or s[3][1] < qy0:
                        continue
            if query.time is not None:
                t0, t1 = query.time
                st = self._stat(rg, "datetime")
                se = self._stat(rg, "end_datetime") or st
                if st is not None:
                    lo = np.datetime64(st[0].replace(tzinfo=None), "ms")
                    # a row without end_datetime ends at its start (see row_mask): take the later max
                    hi = max(np.datetime64(se[1].replace(tzinfo=None), "ms"),
                             np.datetime64(st[1].replace(tzinfo=None), "ms"))
                    if (t1 is not None and lo > t1) or (t0 is not None and hi < t0):
                        continue
            keep.append(rg)
        return keep

    # -- reading ---------------------------------------------------------------------------
    def read_row_group(self, rg: int, columns: list[str] | None = None) -> pa.Table:
        cols = None if columns is None else list(dict.fromkeys([*columns, *CODE_COLUMNS]))
        try:
            return self.parquet.read_row_group(rg, columns=cols)
        except (pa.ArrowInvalid, OSError) as exc:
            raise GeocodecError(f"row group {rg} could not be read: {exc}", source=self.source,
                                row=int(self._row_offsets[rg])) from exc

    def iter_tables(self, query: Query | None = None, columns: list[str] | None = None
                    ) -> Iterator[tuple[int, pa.Table]]:
        """(first row index in the file, table) per matching row group, rows filtered by ``query``.

        Blocks are self-contained within a row group, so each table carries the
        code bytes of all its rows; filtered-out rows keep their block's codes
        decodable through :meth:`decode`, which works on whole row groups.
        """
        for rg in self.row_groups(query):
            table = self.read_row_group(rg, columns)
            yield int(self._row_offsets[rg]), table

    def row_mask(self, table: pa.Table, query: Query | None) -> np.ndarray:
        n = table.num_rows
        mask = np.ones(n, dtype=bool)
        if query is None:
            return mask
        if query.bbox is not None:
            b = table.column("bbox").combine_chunks()
            x0, y0, x1, y1 = (b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
            qx0, qy0, qx1, qy1 = query.bbox
            mask &= (x0 <= qx1) & (x1 >= qx0) & (y0 <= qy1) & (y1 >= qy0)
        if query.time is not None:
            t0, t1 = query.time
            start = table.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
            end = table.column("end_datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
            end = np.where(np.isnat(end), start, end)
            if t0 is not None:
                mask &= ~np.isnat(end) & (end >= t0)
            if t1 is not None:
                mask &= ~np.isnat(start) & (start <= t1)
        return mask

    def decode_codes(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Integer codes ``(N, C, S)`` of a whole row group table, bit-exact."""
        return decode_code_columns(table, self.spec, source=self.source, row_offset=row_offset)

    def latents(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        return self.spec.dequantize(self.decode_codes(table, row_offset))

    def decode(self, table: pa.Table, row_offset: int = 0) -> np.ndarray:
        """Float32 embeddings ``(N, D)`` of a whole row group table."""
        emb = self.decoder(self.latents(table, row_offset))
        if emb.shape[0] != table.num_rows:
            raise MetadataError(f"decoder returned {emb.shape[0]} rows for {table.num_rows}", source=self.source,
                                field="decoder")
        return emb.reshape(table.num_rows, -1)

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None
                     ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(table of matching rows without code columns, their embeddings), per row group."""
        for offset, table in self.iter_tables(query, columns):
            mask = self.row_mask(table, query)
            if not mask.any():
                continue
            # entropy-decode only the blocks holding matching rows, run the decoder on those rows only
            codes = decode_code_columns(table, self.spec, source=self.source, row_offset=offset, needed=mask)
            emb = self.decoder(self.spec.dequantize(codes[mask])).reshape(int(mask.sum()), -1)
            out = table.filter(pa.array(mask)).drop_columns([c for c in CODE_COLUMNS if c in table.column_names])
            yield out, emb


def decode_code_columns(table: pa.Table, spec: CodecSpec, *, source: str, row_offset: int = 0,
                        needed: np.ndarray | None = None) -> np.ndarray:
    """Integer codes (N, C, S) of a row-group table; every block's structure is checked.

    With ``needed`` (bool mask), blocks holding no needed row are skipped and
    their rows are left as zeros.
    """
    n = table.num_rows
    index = table.column("code_index").to_numpy(zero_copy_only=False)
    rows = table.column("code_rows").to_pylist()
    codes = table.column("code").to_pylist()
    bits = table.column("code_bits").to_pylist()
    crcs = table.column("code_crc32").to_pylist()
    out = np.empty((n, spec.channels, spec.positions), dtype=np.int32)
    i = 0
    while i < n:
        where = row_offset + i
        if index[i] != 0 or codes[i] is None or rows[i] is None:
            raise BitstreamError("expected the first row of a code block (code_index 0 with code bytes)",
                                 source=source, row=where, field="code_index")
        m = int(rows[i])
        if m > spec.block_rows:
            raise BitstreamError(f"code block claims {m} rows, more than block_rows {spec.block_rows}",
                                 source=source, row=where, field="code_rows")
        if m < 1 or i + m > n:
            raise BitstreamError(f"code block claims {m} rows but the row group has {n - i} left",
                                 source=source, row=where, field="code_rows")
        if not np.array_equal(index[i:i + m], np.arange(m)):
            raise BitstreamError("code_index does not count 0..n-1 through the block", source=source,
                                 row=where, field="code_index")
        tail = [j for j in range(i + 1, i + m) if codes[j] is not None or rows[j] is not None]
        if tail:
            raise BitstreamError("a row inside a code block carries block fields (code/code_rows must be null)",
                                 source=source, row=row_offset + tail[0], field="code")
        data = codes[i]
        if bits[i] is None or crcs[i] is None:
            raise BitstreamError("code block without code_bits or code_crc32", source=source, row=where)
        if 8 * len(data) != bits[i]:
            raise BitstreamError(f"code holds {8 * len(data)} bits but code_bits says {bits[i]} (truncated?)",
                                 source=source, row=where, field="code")
        if zlib.crc32(data) != crcs[i]:
            raise BitstreamError("checksum mismatch: the code bytes are corrupted", source=source, row=where,
                                 field="code_crc32")
        if needed is not None and not needed[i:i + m].any():
            out[i:i + m] = 0
            i += m
            continue
        try:
            out[i:i + m] = decode_block(bytes_to_words(data, bits=bits[i]), spec.tables, m, spec.positions)
        except GeocodecError as exc:
            raise exc.at(source=source, row=where, field="code")
        except BaseException as exc:
            raise BitstreamError(f"code block could not be decoded: {exc}", source=source, row=where,
                                 field="code") from exc
        i += m
    return out


def _fetch_asset(href: str, *, source: str) -> bytes:
    try:
        if is_url(href):
            import fsspec

            with fsspec.open(href, "rb") as f:
                return f.read()
        if is_url(source):  # relative to the file's own URL
            from urllib.parse import urljoin

            import fsspec

            with fsspec.open(urljoin(source, href), "rb") as f:
                return f.read()
        path = href
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(os.path.abspath(source)), href)
        with open(path, "rb") as f:
            return f.read()
    except (OSError, ValueError) as exc:
        raise MetadataError(f"decoder asset {href} could not be read: {exc}", source=source,
                            field="decoder.href") from exc


class GeocodecDataset:
    """A file, a directory of files (e.g. partitioned by grid cell and year) or a URL."""

    def __init__(self, source: str | os.PathLike):
        source = os.fspath(source)
        self.source = source
        if not is_url(source) and os.path.isdir(source):
            paths = sorted(os.path.join(root, f) for root, _, files in os.walk(source)
                           for f in files if f.endswith(".parquet") and not f.startswith("."))
            if not paths:
                raise GeocodecError("directory holds no .parquet files", source=source)
        else:
            paths = [source]
        self.files = [GeocodecFile(p) for p in paths]
        first = self.files[0]
        for f in self.files[1:]:
            reason = merge_incompatibility(first, f)
            if reason:
                raise MetadataError(f"files in one dataset must share one codec: {reason}", source=f.source)

    @property
    def spec(self) -> CodecSpec:
        return self.files[0].spec

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    def files_for(self, query: Query | None) -> list[GeocodecFile]:
        if query is None or query.bbox is None:
            return self.files
        out = []
        for f in self.files:
            b = f.geo["columns"][f.geo["primary_column"]].get("bbox")
            qx0, qy0, qx1, qy1 = query.bbox
            if b and (b[0] > qx1 or b[1] > qy1 or b[2] < qx0 or b[3] < qy0):
                continue
            out.append(f)
        return out

    def iter_decoded(self, query: Query | None = None, columns: list[str] | None = None):
        for f in self.files_for(query):
            yield from f.iter_decoded(query, columns)

    def read(self, query: Query | None = None, columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        tables, embs = [], []
        for t, e in self.iter_decoded(query, columns):
            tables.append(t)
            embs.append(e)
        if not tables:
            empty = self.files[0].parquet.schema_arrow.empty_table()
            return empty.drop_columns(list(CODE_COLUMNS)), np.zeros((0, self.spec.dimension), np.float32)
        return pa.concat_tables(tables), np.concatenate(embs)

    def close(self):
        for f in self.files:
            f.close()


def open_dataset(source) -> GeocodecDataset:
    return GeocodecDataset(source)


def merge_incompatibility(a: GeocodecFile, b: GeocodecFile) -> str | None:
    """Why two files cannot be concatenated without re-encoding, or None if they can."""
    if a.spec.fingerprint != b.spec.fingerprint:
        for field in ("codec", "latent", "quantization", "entropy_model", "decoder", "embedding", "model"):
            va, vb = a.ext.get(field), b.ext.get(field)
            if field == "codec":
                va = {k: v for k, v in va.items() if k != "fingerprint"}
                vb = {k: v for k, v in vb.items() if k != "fingerprint"}
            if field == "decoder":
                va, vb = va.get("sha256"), vb.get("sha256")
            if va != vb:
                if isinstance(va, dict) and isinstance(vb, dict):
                    keys = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
                    diffs = ", ".join(f"{field}.{k}: {_short(va.get(k))} vs {_short(vb.get(k))}" for k in keys)
                    return f"'{field}' differs ({diffs})"
                return f"'{field}' differs ({_short(va)} vs {_short(vb)})"
        return "codec fingerprints differ"
    if _crs_key(a.crs) != _crs_key(b.crs):
        return "the geometry CRS differs"
    extra_a = [(n, str(a.parquet.schema_arrow.field(n).type)) for n in a.extra_columns]
    extra_b = [(n, str(b.parquet.schema_arrow.field(n).type)) for n in b.extra_columns]
    if extra_a != extra_b:
        return f"extra columns differ ({extra_a} vs {extra_b})"
    return None


def _crs_key(crs) -> str:
    try:
        from pyproj import CRS

        return CRS.from_user_input(crs).to_wkt()
    except Exception:
        return repr(crs)


def _short(v) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."
