"""Similarity search over decoded embeddings: cosine similarity, exact or approximate.

* :func:`exact_topk` — blocked products in numpy (matrix-vector for a few queries, BLAS
  matrix products for batches): exact, no index to build; the default up to
  :data:`EXACT_MAX_ROWS` rows.
* :class:`SearchIndex` of kind ``"ann"`` — an HNSW graph from `usearch` over unit
  vectors (inner product == cosine), built while the file streams through the decoder,
  saved beside the file and memory-mapped when reloaded.
* :class:`Searcher` — queries a geocodec file (or directory of files) by tile id, by
  point (the tile containing it, else the nearest) or by polygon (the mean embedding of
  the tiles it intersects) and returns the hits with rank, score and tile geometry.

An index records what it was built from (each file's codec fingerprint, row count and
a digest of its code-block checksums) and the sha256 of its own data file, and
``index.json`` carries a digest of itself; :meth:`SearchIndex.load` refuses an index
whose files were changed (:class:`IndexIntegrityError`), :func:`open_index` one that no
longer matches the file (:class:`StaleIndexError`).

:func:`compressed_recall` measures recall@k of search on decoded (compressed)
embeddings against search on the original float32 vectors (used by
``bench/bench_consumer.py``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

# pyproj must be loaded before usearch: usearch's extension links its own copy of the C++
# runtime, and PROJ loaded after it fails to parse numbers ("non double value", the
# import-order problem of pyproj issue #801). Importing it here keeps every CRS working.
import pyproj  # noqa: F401, I001

from geocodec.errors import GeocodecError, InputError, MetadataError
from geocodec.format.onnx_model import file_sha256

EXACT_MAX_ROWS = 100_000          # "auto": exact numpy search up to this many rows, HNSW above
EXACT_BLOCK_ROWS = 65_536         # rows per matrix product in exact search
FEW_QUERIES = 4                   # up to this many queries at once: matrix-vector products, no BLAS threads
INDEX_FORMAT = "geocodec-search-index"
INDEX_VERSION = 2                 # 2: index.json records the data file's sha256 and its own digest
INDEX_META = "index.json"
INDEX_VECTORS = "vectors.npy"     # kind "exact": unit vectors, memory-mapped on load
INDEX_HNSW = "hnsw.usearch"       # kind "ann": the usearch graph (with its vectors)
#: HNSW parameters; on mixtures of real Rondonia vectors (10^4 .. 10^6 rows) these give
#: recall@10 >= 0.99 against exact search at well under 1 ms a query (docs/benchmarks-consumer.md)
HNSW_PARAMS = {"connectivity": 16, "expansion_add": 64, "expansion_search": 128}


class StaleIndexError(MetadataError):
    """A saved search index that was built from other data than the file it sits beside."""


class IndexIntegrityError(StaleIndexError):
    """A saved search index whose files are not the ones it was saved with (replaced, edited or truncated)."""


def meta_digest(meta: dict) -> str:
    """The sha256 of ``index.json``'s content without its ``digest`` key (canonical JSON: sorted keys)."""
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _rebuild_hint(path: str) -> str:
    return f"Rebuild it (geocodec search ... --rebuild-index) or delete {path}"


# -- vectors and exact search ------------------------------------------------------------------
def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero (their cosine is 0)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def exact_topk(collection: np.ndarray, queries: np.ndarray, k: int, *, normalized: bool = False,
               block_rows: int = EXACT_BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-``k``: (row ids (Q, k) int64, scores (Q, k) float32), best first.

    The collection is scanned in blocks of ``block_rows`` (memory: Q x block_rows scores);
    ties are broken by the lower row id. Fewer than ``k`` rows: ids are padded with -1.
    """
    x = np.asarray(collection)
    q = np.asarray(queries, dtype=np.float32)
    q = normalize(q) if not normalized else (q[None, :] if q.ndim == 1 else q)
    n, nq = x.shape[0], q.shape[0]
    k = int(k)
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}", field="k")
    best_ids = np.full((nq, 0), -1, dtype=np.int64)
    best_scores = np.full((nq, 0), -np.inf, dtype=np.float32)
    for lo in range(0, n, block_rows):
        block = x[lo:lo + block_rows]
        block = np.asarray(block, dtype=np.float32) if normalized else normalize(block)
        if nq <= FEW_QUERIES:
            # numpy's own single-threaded dot loops: as fast as BLAS for a matrix-vector product
            # on 2 cores, and no BLAS threads to stall when other programs load the CPU
            scores = np.stack([np.einsum("ij,j->i", block, qq) for qq in q]) if nq else \
                np.zeros((0, len(block)), np.float32)
        else:
            scores = q @ block.T                               # (Q, b), BLAS on every core
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] else \
            np.broadcast_to(np.arange(scores.shape[1]), (nq, scores.shape[1]))
        cand_ids = np.concatenate([best_ids, part + lo], axis=1)
        cand_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
        order = np.lexsort((cand_ids, -cand_scores), axis=1)[:, :k]
        best_ids = np.take_along_axis(cand_ids, order, axis=1)
        best_scores = np.take_along_axis(cand_scores, order, axis=1)
    if best_ids.shape[1] < k:
        pad = k - best_ids.shape[1]
        best_ids = np.pad(best_ids, ((0, 0), (0, pad)), constant_values=-1)
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return best_ids, best_scores.astype(np.float32)


def recall_at_k(truth: np.ndarray, found: np.ndarray, k: int | None = None) -> float:
    """Mean over queries of |top-k found ∩ top-k truth| / k (ids; -1 padding never counts)."""
    truth, found = np.asarray(truth), np.asarray(found)
    k = k or truth.shape[1]
    hits = 0
    for t, f in zip(truth[:, :k], found[:, :k]):
        hits += len(set(t[t >= 0].tolist()) & set(f[f >= 0].tolist()))
    return hits / float(k * len(truth)) if len(truth) else float("nan")


def compressed_recall(original: np.ndarray, decoded: np.ndarray, query_original: np.ndarray,
                      query_decoded: np.ndarray, *, k: int = 10, method: str = "exact",
                      threads: int | None = None) -> dict:
    """Recall@k of search on decoded embeddings against exact search on the originals.

    The truth is the exact cosine top-``k`` of each original query vector among the
    original collection; the answer is what search on the decoded collection returns for
    the decoded query (``method`` "exact", or "ann" through the HNSW index), which is all
    a user of the compressed file has. Queries should be held out of the collection.
    """
    truth, _ = exact_topk(original, query_original, k)
    if method == "exact":
        found, _ = exact_topk(decoded, query_decoded, k)
    elif method == "ann":
        index = SearchIndex.build(decoded, kind="ann", threads=threads, progress=False)
        found, _ = index.search(query_decoded, k)
    else:
        raise InputError(f"method must be 'exact' or 'ann', got {method!r}", field="method")
    per_query = np.array([len(set(t.tolist()) & set(f[f >= 0].tolist())) / k for t, f in zip(truth, found)])
    return {"recall": float(per_query.mean()) if len(per_query) else float("nan"), "k": k, "method": method,
            "queries": int(len(per_query)), "min": float(per_query.min()) if len(per_query) else float("nan")}


# -- the index --------------------------------------------------------------------------------
def _usearch():
    from geocodec._optional import import_optional

    return import_optional("usearch.index", purpose="approximate search").Index


def _threads(threads: int | None) -> int:
    from geocodec.threads import search_threads

    return search_threads(threads)


@dataclass
class SearchIndex:
    """Unit embeddings of a collection, searchable by cosine similarity.

    ``kind`` "exact" keeps the vectors and scans them; "ann" holds a usearch HNSW graph.
    Row ids are positions in the collection (for a geocodec dataset: the row number over
    its files in order).
    """

    kind: str
    dimension: int
    rows: int = 0
    meta: dict = field(default_factory=dict)
    vectors: np.ndarray | None = None       # exact: (rows, dimension) unit float32
    ann: object = None                      # ann: usearch.index.Index

    # building ---------------------------------------------------------------------------
    @classmethod
    def empty(cls, kind: str, dimension: int, capacity: int = 0) -> "SearchIndex":
        """An index of ``kind`` "exact" (room for ``capacity`` rows, grown as needed) or "ann" with no rows yet.

        Raises :class:`~geocodec.errors.InputError` for another kind.
        """
        if kind not in ("exact", "ann"):
            raise InputError(f"index kind must be 'exact' or 'ann', got {kind!r}", field="method")
        idx = cls(kind=kind, dimension=int(dimension))
        if kind == "exact":
            idx.vectors = np.zeros((int(capacity), int(dimension)), dtype=np.float32)
        else:
            Index = _usearch()
            idx.ann = Index(ndim=int(dimension), metric="ip", dtype="f32", **HNSW_PARAMS)
        return idx

    def add(self, vectors: np.ndarray, *, threads: int | None = None) -> None:
        """Append vectors (any scale; stored unit-length) with the next row ids."""
        unit = normalize(vectors)
        if unit.shape[1] != self.dimension:
            raise InputError(f"vectors have {unit.shape[1]} dimensions, the index {self.dimension}")
        lo, hi = self.rows, self.rows + len(unit)
        if self.kind == "exact":
            if self.vectors.shape[0] < hi:
                grown = np.zeros((max(hi, 2 * self.vectors.shape[0]), self.dimension), np.float32)
                grown[:lo] = self.vectors[:lo]
                self.vectors = grown
            self.vectors[lo:hi] = unit
        else:
            self.ann.add(np.arange(lo, hi, dtype=np.uint64), unit, threads=_threads(threads))
        self.rows = hi

    @classmethod
    def build(cls, vectors: np.ndarray, *, kind: str = "auto", threads: int | None = None,
              progress: bool = False, batch_rows: int = 65_536) -> "SearchIndex":
        """Index an in-memory collection (``kind`` "auto": exact up to EXACT_MAX_ROWS)."""
        vectors = np.asarray(vectors)
        kind = choose_kind(kind, len(vectors))
        idx = cls.empty(kind, vectors.shape[1], len(vectors))
        from tqdm.auto import tqdm

        with tqdm(total=len(vectors), unit="vec", desc="index", disable=not progress) as bar:
            for lo in range(0, len(vectors), batch_rows):
                idx.add(vectors[lo:lo + batch_rows], threads=threads)
                bar.update(min(batch_rows, len(vectors) - lo))
        return idx

    def finish(self) -> "SearchIndex":
        """Trim an exact index's spare capacity to its rows; return the index."""
        if self.kind == "exact" and self.vectors.shape[0] != self.rows:
            self.vectors = self.vectors[:self.rows].copy()
        return self

    # searching --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, *, exclude=None,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row ids (Q, k), cosine scores (Q, k)), best first; ``exclude``: row ids never returned."""
        q = normalize(queries)
        if q.shape[1] != self.dimension:
            raise InputError(f"query has {q.shape[1]} dimensions, the index {self.dimension}", field="query")
        k = int(k)
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}", field="k")
        excl = np.unique(np.asarray([] if exclude is None else exclude, dtype=np.int64))
        want = min(k + len(excl), max(self.rows, 1))
        if self.kind == "exact":
            ids, scores = exact_topk(self.vectors, q, want, normalized=True)
        else:
            self.ann.expansion_search = max(HNSW_PARAMS["expansion_search"], 2 * want)
            m = self.ann.search(q, want, threads=_threads(threads) if len(q) > 1 else 1)
            keys = np.asarray(m.keys, dtype=np.int64).reshape(len(q), -1)
            dist = np.asarray(m.distances, dtype=np.float32).reshape(len(q), -1)
            counts = np.asarray(getattr(m, "counts", np.full(len(q), keys.shape[1]))).reshape(-1)
            valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
            ids = np.where(valid, keys, -1)
            scores = np.where(valid, 1.0 - dist, -np.inf).astype(np.float32)
        if len(excl):
            keep = ~np.isin(ids, excl) & (ids >= 0)
            out_ids = np.full((len(q), k), -1, np.int64)
            out_scores = np.full((len(q), k), -np.inf, np.float32)
            for i in range(len(q)):
                sel = np.flatnonzero(keep[i])[:k]
                out_ids[i, :len(sel)] = ids[i, sel]
                out_scores[i, :len(sel)] = scores[i, sel]
            return out_ids, out_scores
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids[:, :k], scores[:, :k]

    @property
    def memory_bytes(self) -> int:
        """Bytes the index holds in memory: the vectors (exact) or usearch's memory usage (ann)."""
        if self.kind == "exact":
            return int(self.vectors.nbytes) if self.vectors is not None else 0
        return int(self.ann.memory_usage)

    # saving -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Write the index folder ``path`` (replaced as a whole when complete)."""
        path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise GeocodecError(f"directory {parent} does not exist", source=path)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        os.makedirs(tmp)
        try:
            meta = dict(self.meta)
            meta.update({"format": INDEX_FORMAT, "version": INDEX_VERSION, "kind": self.kind, "metric": "cosine",
                         "dimension": self.dimension, "rows": self.rows})
            if self.kind == "exact":
                np.save(os.path.join(tmp, INDEX_VECTORS), self.vectors[:self.rows])
            else:
                import usearch

                meta["usearch"] = {"version": usearch.__version__, "metric": "ip", "dtype": "f32", **HNSW_PARAMS}
                self.ann.save(os.path.join(tmp, INDEX_HNSW))
            data_name = INDEX_VECTORS if self.kind == "exact" else INDEX_HNSW
            data_path = os.path.join(tmp, data_name)
            meta["files"] = {data_name: {"bytes": os.path.getsize(data_path), "sha256": file_sha256(data_path)}}
            meta["digest"] = meta_digest(meta)
            with open(os.path.join(tmp, INDEX_META), "w") as f:
                json.dump(meta, f, indent=2)
            if os.path.isdir(path):
                old = path + f".{uuid.uuid4().hex}.old"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SearchIndex":
        """Open a saved index (vectors / graph memory-mapped, not read into memory).

        Refuses (:class:`IndexIntegrityError`) an ``index.json`` whose digest does not match its content, and a
        data file (``vectors.npy`` / ``hnsw.usearch``) whose size or sha256 is not the one recorded at save time.
        """
        path = os.fspath(path)
        try:
            with open(os.path.join(path, INDEX_META)) as f:
                meta = json.load(f)
        except FileNotFoundError as exc:
            raise GeocodecError("no search index here (index.json missing)", source=path) from exc
        except ValueError as exc:
            raise MetadataError(f"unreadable index.json: {exc}", source=path) from exc
        if not isinstance(meta, dict):
            raise MetadataError("index.json does not hold a JSON object", source=path, field=INDEX_META)
        if meta.get("format") == INDEX_FORMAT and meta.get("version") == 1:
            raise IndexIntegrityError("the search index was saved by an older geocodec without the hashes of its "
                                      f"files. {_rebuild_hint(path)}", source=path)
        if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise MetadataError(f"not a {INDEX_FORMAT} version {INDEX_VERSION} folder "
                                f"(format {meta.get('format')!r}, version {meta.get('version')!r})", source=path)
        _check_index_files(meta, path)
        idx = cls(kind=meta["kind"], dimension=int(meta["dimension"]), rows=int(meta["rows"]), meta=meta)
        if idx.kind == "exact":
            idx.vectors = np.load(os.path.join(path, INDEX_VECTORS), mmap_mode="r")
            if idx.vectors.shape != (idx.rows, idx.dimension):
                raise MetadataError(f"vectors.npy has shape {idx.vectors.shape}, index.json says "
                                    f"({idx.rows}, {idx.dimension})", source=path)
        elif idx.kind == "ann":
            Index = _usearch()
            hnsw = os.path.join(path, INDEX_HNSW)
            if not os.path.exists(hnsw):
                raise MetadataError(f"{INDEX_HNSW} missing", source=path)
            idx.ann = Index.restore(hnsw, view=True)
            if idx.ann is None or len(idx.ann) != idx.rows or idx.ann.ndim != idx.dimension:
                raise MetadataError(f"{INDEX_HNSW} does not hold {idx.rows} vectors of {idx.dimension} dimensions",
                                    source=path)
        else:
            raise MetadataError(f"unknown index kind {idx.kind!r}", source=path)
        return idx


def _check_index_files(meta: dict, path: str) -> None:
    """Raise :class:`IndexIntegrityError` unless ``index.json`` and the data file are as saved."""
    where = os.path.join(path, INDEX_META)
    if not isinstance(meta, dict) or meta.get("digest") != meta_digest(meta):
        raise IndexIntegrityError(f"{where} was modified after the index was saved (its digest does not match). "
                                  f"{_rebuild_hint(path)}", source=path, field="digest")
    name = INDEX_VECTORS if meta.get("kind") == "exact" else INDEX_HNSW
    want = (meta.get("files") or {}).get(name)
    if not isinstance(want, dict):
        raise IndexIntegrityError(f"{where} records no hash of {name}. {_rebuild_hint(path)}", source=path,
                                  field="files")
    data_path = os.path.join(path, name)
    if not os.path.isfile(data_path):
        raise IndexIntegrityError(f"{name} missing. {_rebuild_hint(path)}", source=path, field=name)
    size = os.path.getsize(data_path)
    if size != want.get("bytes") or file_sha256(data_path) != want.get("sha256"):
        raise IndexIntegrityError(f"{data_path} is not the file the index was saved with (size {size} bytes, "
                                  f"recorded {want.get('bytes')}; or its sha256 differs). {_rebuild_hint(path)}",
                                  source=path, field=name)


def choose_kind(method: str, rows: int) -> str:
    """The index kind for ``method`` over ``rows`` vectors: "auto" is "exact" up to :data:`EXACT_MAX_ROWS`, else "ann".

    Raises :class:`~geocodec.errors.InputError` for a method other than auto, exact or ann.
    """
    if method == "auto":
        return "exact" if rows <= EXACT_MAX_ROWS else "ann"
    if method not in ("exact", "ann"):
        raise InputError(f"method must be auto, exact or ann, got {method!r}", field="method")
    return method


# -- indexes of geocodec files ----------------------------------------------------------------
def default_index_path(source: str | os.PathLike) -> str | None:
    """Where an index of ``source`` lives: ``FILE.geocodec-index/`` beside a file,
    ``DIR/.geocodec-index/`` inside a directory of files; None for a URL."""
    from geocodec.format.sources import is_url

    source = os.fspath(source)
    if is_url(source):
        return None
    if os.path.isdir(source):
        return os.path.join(source, ".geocodec-index")
    return source + ".geocodec-index"


def dataset_signature(ds) -> dict:
    """What an index depends on: per file its codec fingerprint, rows and code checksums."""
    files = []
    for f in ds.files:
        values = f.block_checksums()
        files.append({"name": os.path.basename(f.source.rstrip("/")), "fingerprint": f.spec.fingerprint,
                      "rows": int(f.num_rows), "codes_digest": hashlib.sha256(values.tobytes()).hexdigest()})
    return {"rows": int(sum(x["rows"] for x in files)), "files": files}


def check_index(index: SearchIndex, ds, *, path: str, signature: dict | None = None) -> None:
    """Raise :class:`StaleIndexError` unless ``index`` was built from exactly these files."""
    sig = signature or dataset_signature(ds)
    built = index.meta.get("source") or {}
    old_files, new_files = built.get("files") or [], sig["files"]
    problems = []
    if index.rows != sig["rows"] or built.get("rows") != sig["rows"]:
        problems.append(f"it holds {index.rows} rows, the data has {sig['rows']}")
    if len(old_files) != len(new_files):
        problems.append(f"it was built from {len(old_files)} file(s), the data has {len(new_files)}")
    for a, b in zip(old_files, new_files):
        if a.get("fingerprint") != b["fingerprint"]:
            problems.append(f"{b['name']}: codec fingerprint {b['fingerprint'][:12]}... differs from the "
                            f"indexed {str(a.get('fingerprint'))[:12]}...")
        elif a.get("rows") != b["rows"]:
            problems.append(f"{b['name']}: {b['rows']} rows, the index was built on {a.get('rows')}")
        elif a.get("codes_digest") != b["codes_digest"]:
            problems.append(f"{b['name']}: same codec and row count but different codes (the file was rewritten)")
    if index.dimension != ds.spec.dimension:
        problems.append(f"it has {index.dimension} dimensions, the embeddings {ds.spec.dimension}")
    if problems:
        raise StaleIndexError("the search index is stale: " + "; ".join(problems) + ". " + _rebuild_hint(path),
                              source=path)


def build_index(source, *, method: str = "auto", threads: int | None = None, progress: bool = True,
                dataset=None) -> SearchIndex:
    """Decode ``source`` row group by row group into a new index (memory: the index itself)."""
    from tqdm.auto import tqdm

    from geocodec import __version__
    from geocodec.format.dataset import GeocodecDataset

    ds = dataset or GeocodecDataset(source)
    sig = dataset_signature(ds)
    kind = choose_kind(method, sig["rows"])
    idx = SearchIndex.empty(kind, ds.spec.dimension, sig["rows"])
    with tqdm(total=sig["rows"], unit="vec", desc=f"index ({kind})", disable=not progress) as bar:
        for part in ds.iter_rows(what="embeddings", threads=threads):
            idx.add(part.values, threads=threads)
            bar.update(len(part))
    idx.finish()
    if idx.rows != sig["rows"]:
        raise GeocodecError(f"decoded {idx.rows} rows but the files hold {sig['rows']}", source=ds.source)
    idx.meta = {"source": sig, "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "geocodec": __version__}
    return idx


def open_index(source, path: str | None = None, *, dataset=None) -> SearchIndex:
    """Load the saved index of ``source`` and check it still matches (StaleIndexError if not)."""
    from geocodec.format.dataset import GeocodecDataset

    path = path or default_index_path(source)
    if path is None:
        raise GeocodecError("a URL has no index beside it: pass the index path", source=os.fspath(source))
    idx = SearchIndex.load(path)
    check_index(idx, dataset or GeocodecDataset(source), path=path)
    return idx


# -- queries on a geocodec dataset ------------------------------------------------------------
@dataclass
class QueryTiles:
    """The tiles a query stands for: global row ids and their mean decoded embedding."""

    rows: np.ndarray
    vector: np.ndarray
    how: str


class Searcher:
    """Search a geocodec file or directory: locate query tiles, look up hits' geometry."""

    def __init__(self, source, index: SearchIndex | None = None, *, method: str = "auto",
                 index_path: str | None = None, save_index: bool = True, rebuild: bool = False,
                 threads: int | None = None, progress: bool = True):
        from geocodec.format.dataset import GeocodecDataset

        self.source = os.fspath(source)
        self.ds = GeocodecDataset(self.source)
        self.threads = threads
        self.index_path = index_path or default_index_path(self.source)
        self.index_status = "given"
        self.index_warning: str | None = None  # why a newly built index was not saved, if it was not
        if index is None:
            index = self._load_or_build(method, save_index, rebuild, progress)
        elif index.rows != self.ds.num_rows:
            raise StaleIndexError(f"the index holds {index.rows} rows, the data has {self.ds.num_rows}",
                                  source=self.source)
        self.index = index

    def _load_or_build(self, method, save, rebuild, progress) -> SearchIndex:
        path = self.index_path
        if path and not rebuild and os.path.exists(os.path.join(path, INDEX_META)):
            idx = SearchIndex.load(path)
            check_index(idx, self.ds, path=path)
            if method in ("exact", "ann") and idx.kind != method:
                raise GeocodecError(f"the saved index at {path} is of kind {idx.kind!r}, {method!r} was asked for: "
                                    "pass --rebuild-index to replace it", source=self.source)
            self.index_status = f"loaded {path}"
            return idx
        idx = build_index(self.source, method=method, threads=self.threads, progress=progress, dataset=self.ds)
        self.index_status = "built"
        if save and path and (idx.kind == "ann" or method == "exact"):
            try:
                idx.save(path)
            except (OSError, GeocodecError) as exc:  # the search goes on; only the next run rebuilds
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.index_warning = f"the index could not be saved to {path}: {why}"
                self.index_status = "built (not saved)"
            else:
                self.index_status = f"built and saved {path}"
        return idx

    def close(self):
        """Close the files of the dataset."""
        self.ds.close()

    # rows by global index ------------------------------------------------------------------
    def _meta_columns(self, f) -> list[str]:
        names = f.column_names
        return [c for c in ("tile_id", "datetime", "end_datetime") if c in names] + [f.geometry_column, "bbox"]

    def decode_rows(self, rows: np.ndarray) -> np.ndarray:
        """Decoded embeddings of the given global rows (in sorted row order)."""
        return self.ds.take(np.unique(np.asarray(rows, dtype=np.int64)), [], what="embeddings", threads=1)[1]

    def rows_table(self, rows: np.ndarray) -> pa.Table:
        """tile_id, datetime(s), geometry and bbox of the given global rows, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        f = self.ds.files[0]
        table, _ = self.ds.take(rows, self._meta_columns(f))
        table = table.replace_schema_metadata(None)
        table = table.rename_columns(["geometry" if c == f.geometry_column else c for c in table.column_names])
        return table.append_column("row", pa.array(rows, pa.int64()))

    # query tiles ---------------------------------------------------------------------------
    def query(self, *, tile_id: str | None = None, point=None, polygon=None, crs=None) -> QueryTiles:
        """The query tiles of exactly one of ``tile_id``, ``point`` (x, y) or ``polygon``.

        ``polygon``: a shapely geometry, WKT text or a vector file (:func:`read_polygon_with_crs`;
        a file's own CRS applies unless ``crs`` is given). ``crs``: of the point or polygon
        (default: the file's).
        """
        given = [name for name, v in (("tile_id", tile_id), ("point", point), ("polygon", polygon)) if v is not None]
        if len(given) != 1:
            raise InputError(f"give exactly one of a tile id, a point or a polygon (got {given or 'none'})",
                             source=self.source, field="query")
        if tile_id is not None:
            return self.tiles_by_id(tile_id)
        if point is not None:
            return self.tiles_at_point(point[0], point[1], crs=crs)
        if isinstance(polygon, str):
            polygon, own_crs = read_polygon_with_crs(polygon)
            crs = crs or own_crs
        return self.tiles_in_polygon(polygon, crs=crs)

    def _to_file_crs(self, geom, crs):
        if crs is None:
            return geom
        import shapely
        from pyproj import CRS, Transformer

        src = CRS.from_user_input(crs)
        dst = CRS.from_user_input(self.ds.files[0].crs)
        if src.equals(dst, ignore_axis_order=False):
            return geom
        tr = Transformer.from_crs(src, dst, always_xy=True)
        return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    def tiles_by_id(self, tile_id: str) -> QueryTiles:
        """The rows whose ``tile_id`` is ``tile_id`` (several dates: all of them) and their mean embedding.

        Raises :class:`~geocodec.errors.InputError` if a file has no ``tile_id`` column or no row matches.
        """
        for f in self.ds.files:
            if "tile_id" not in f.column_names:
                raise InputError("the file has no tile_id column", source=f.source, field="tile_id")
        rows = []
        for part in self.ds.iter_rows(None, ["tile_id"]):
            hit = pa.compute.equal(part.table.column("tile_id"), str(tile_id)).to_numpy(zero_copy_only=False)
            rows.append(part.rows[hit])
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        if not rows.size:
            raise InputError(f"no tile with tile_id {tile_id!r}", source=self.source, field="tile_id")
        return QueryTiles(rows, self.decode_rows(rows).mean(axis=0), f"tile_id {tile_id}")

    def tiles_at_point(self, x: float, y: float, crs=None) -> QueryTiles:
        """The tile(s) containing the point; if none does, the nearest tile."""
        import shapely

        from geocodec.format.query import Query

        pt = self._to_file_crs(shapely.Point(float(x), float(y)), crs)
        px, py = pt.x, pt.y
        rows = self._rows_where(Query.make(bbox=(px, py, px, py)), lambda g: shapely.covers(g, pt))
        how = "containing the point"
        if not rows.size:
            rows, dist = self._nearest_rows(pt)
            how = f"nearest to the point (distance {dist:.6g} in the file's CRS units)"
        return QueryTiles(rows, self.decode_rows(rows).mean(axis=0), how)

    def tiles_in_polygon(self, polygon, crs=None) -> QueryTiles:
        """The tiles intersecting ``polygon`` (shapely geometry, WKT or a vector file path) and their mean embedding.

        ``crs``: the polygon's CRS (default: the file's). Raises :class:`~geocodec.errors.InputError` if the polygon is
        empty or no tile intersects it.
        """
        import shapely

        from geocodec.format.query import Query

        if isinstance(polygon, str):
            polygon = read_polygon(polygon)
        polygon = self._to_file_crs(polygon, crs)
        if polygon.is_empty:
            raise InputError("the polygon is empty", field="polygon")
        shapely.prepare(polygon)
        rows = self._rows_where(Query.make(bbox=polygon.bounds), lambda g: shapely.intersects(polygon, g))
        if not rows.size:
            raise InputError(f"no tile intersects the polygon (bounds {tuple(round(v, 6) for v in polygon.bounds)} "
                             "in the file's CRS; pass --crs if it is in another CRS)", source=self.source,
                             field="polygon")
        return QueryTiles(rows, self.decode_rows(rows).mean(axis=0), f"{rows.size} tiles intersecting the polygon")

    def _rows_where(self, query, predicate) -> np.ndarray:
        import shapely

        rows = []
        geom = self.ds.files[0].geometry_column
        for part in self.ds.iter_rows(query, [geom]):
            g = shapely.from_wkb(part.table.column(geom).to_numpy(zero_copy_only=False))
            rows.append(part.rows[np.asarray(predicate(g), bool)])
        return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)

    def _nearest_rows(self, pt, candidates: int = 64) -> tuple[np.ndarray, float]:
        import shapely

        best_d = np.zeros(0)
        best_r = np.zeros(0, np.int64)
        for part in self.ds.iter_rows(None, ["bbox"]):
            b = part.table.column("bbox").combine_chunks()
            x0, y0, x1, y1 = (b.field(k).to_numpy() for k in ("xmin", "ymin", "xmax", "ymax"))
            dx = np.maximum(np.maximum(x0 - pt.x, pt.x - x1), 0)
            dy = np.maximum(np.maximum(y0 - pt.y, pt.y - y1), 0)
            d = np.hypot(dx, dy)
            best_d, best_r = np.concatenate([best_d, d]), np.concatenate([best_r, part.rows])
            if len(best_d) > candidates:
                keep = np.argpartition(best_d, candidates)[:candidates]
                best_d, best_r = best_d[keep], best_r[keep]
        if not best_r.size:
            raise InputError("the file holds no tiles", source=self.source)
        t = self.rows_table(best_r)
        g = shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False))
        d = shapely.distance(g, pt)
        dmin = float(d.min())
        return np.sort(best_r[d <= dmin]), dmin

    # searching -----------------------------------------------------------------------------
    def search(self, tiles: QueryTiles, k: int = 10, *, include_query: bool = False) -> pa.Table:
        """GeoParquet-ready table of the ``k`` most similar tiles: rank, score, tile_id, ..., geometry."""
        ids, scores = self.index.search(tiles.vector, k, exclude=None if include_query else tiles.rows,
                                        threads=self.threads)
        ids, scores = ids[0], scores[0]
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        table = self.rows_table(ids)
        cols = {"rank": pa.array(np.arange(1, len(ids) + 1, dtype=np.int32)),
                "score": pa.array(scores.astype(np.float32))}
        out = pa.table(cols)
        for name in table.column_names:
            out = out.append_column(name, table.column(name))
        return out

    def result(self, tiles: QueryTiles, k: int = 10, *, include_query: bool = False):
        """:meth:`search` as a result layer in the file's CRS, styled by score (graduated)."""
        from geocodec.tasks.results import Result, Style

        return Result(self.search(tiles, k, include_query=include_query), self.ds.files[0].crs,
                      style=Style.graduated("score"))


def read_polygon(text: str):
    """A polygon from WKT text or a file (see :func:`read_polygon_with_crs`), CRS dropped."""
    return read_polygon_with_crs(text)[0]


def read_polygon_with_crs(text: str):
    """(geometry, CRS or None) from WKT text, a ``.wkt``/``.txt`` file of WKT, a GeoJSON file
    (CRS84 unless it names another) or any vector file pyogrio reads (features unioned)."""
    import shapely

    text = str(text).strip()
    if not os.path.isfile(text):
        try:
            return shapely.from_wkt(text), None
        except Exception as exc:
            raise InputError(f"--polygon is neither an existing file nor WKT: {exc}", field="polygon") from exc
    low = text.lower()
    try:
        if low.endswith((".wkt", ".txt")):
            with open(text) as fh:
                return shapely.from_wkt(fh.read().strip()), None
        if low.endswith((".geojson", ".json")):
            with open(text) as fh:
                obj = json.load(fh)
            feats = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
            geoms = [shapely.geometry.shape(f["geometry"] if f.get("type") == "Feature" else f) for f in feats]
            name = ((obj.get("crs") or {}).get("properties") or {}).get("name")
            return shapely.union_all(geoms), name or "OGC:CRS84"
    except (OSError, ValueError, KeyError, TypeError, shapely.errors.GEOSException) as exc:
        raise InputError(f"could not read a polygon from {text}: {exc}", source=text, field="polygon") from exc
    from geocodec._optional import import_optional

    pyogrio = import_optional("pyogrio", extra="gpkg", purpose=f"reading {text}")
    try:
        meta, table = pyogrio.read_arrow(text)[:2]
    except Exception as exc:
        raise InputError(f"could not read a polygon from {text}: {exc}", source=text, field="polygon") from exc
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))
    return shapely.union_all(geoms), meta.get("crs")
