#!/usr/bin/env python
"""The consumer side on a laptop-class CPU: decode speed, streaming memory, similarity search.

* **Decode**: a file of ~1,000,000 rows built by tiling the real Rondonia vectors (4701
  Sentinel-2 L2A point time series, 110 floats each; 213 copies shifted in space, so these
  are *repeated real vectors*, not a million distinct places), compressed at quality 5 with
  ``geocodec.codecs.compress.compress``. Tiles decoded per second through
  ``GeocodecFile.iter_decoded`` with 1 worker and with every core, each measurement in a
  fresh interpreter. (An earlier version also ran the serial reader as committed before
  parallel decoding; that checkout cannot read files of spec 0.2.0 and later, so it is gone.)
* **Memory**: peak RSS (``VmHWM`` of the parent and each worker) and the tracemalloc peak while
  streaming the whole file.
* **Search**: latency p50/p95 of single queries, index build time and memory for 10^4,
  10^5 and 10^6 vectors, exact (numpy) and HNSW (usearch); the vectors are mixtures of
  random pairs of real Rondonia vectors (copies of 4701 vectors would make the nearest
  neighbours near-ties and measure nothing but ties).
* **Recall@10** of search on decoded vectors against exact search on the original float32
  vectors at several qualities (real Rondonia vectors, 500 held-out query tiles).

Usage::

    python bench/bench_consumer.py [--out docs/benchmarks-consumer.md] [--data PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import common
from common import REPO, run_child

import pyproj  # noqa: F401  (before usearch: see geocodec/search.py)
import shapely
import usearch

from geocodec.codecs.compress import compress
from geocodec.training.datasets import RONDONIA_FILE, rondonia_embedding_table
from geocodec.format.embeddings_io import embeddings_table, vectors_from_column
from geocodec.threads import usable_cores
from geocodec.format.dataset import GeocodecDataset
from geocodec.format.reader import GeocodecFile
from geocodec.tasks.search import EXACT_MAX_ROWS, SearchIndex, compressed_recall, recall_at_k

REPEATS = 213                      # 213 x 4701 = 1,001,313 rows
SEARCH_SIZES = (10_000, 100_000, 1_000_000)
QUALITIES = (1, 2, 3, 4, 5, 6, 8, 10)
HELD_OUT = 500
DECODE_ROUNDS = 3


# -- helpers ----------------------------------------------------------------------------------
def machine_description() -> str:
    """The bench machine line, plus the usearch version."""
    return common.machine_description(f"usearch {usearch.__version__}")


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def busy_others() -> str:
    """Other processes using the CPU right now (they make every timing pessimistic)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:6]
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    me = os.getpid()
    rows = [r.split(None, 2) for r in out]
    rows = [r for r in rows if len(r) == 3 and int(r[0]) != me and float(r[1]) >= 20]
    return ", ".join(f"{r[2]} ({float(r[1]):.0f} % CPU)" for r in rows) or "none"


def fmt_rate(v: float) -> str:
    return f"{v / 1e3:.0f} k" if v < 1e6 else f"{v / 1e6:.2f} M"


def fmt_bytes(v: float) -> str:
    for unit, div in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if v >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} B"


# -- the ~1M-row file -------------------------------------------------------------------------
def rondonia_vectors(data: str | None):
    table = rondonia_embedding_table(None if data is None else Path(data) / RONDONIA_FILE)
    v = vectors_from_column(table.column("embedding"), source="rondonia", column="embedding")
    return table, v


def build_big_file(work: Path, table: pa.Table, v: np.ndarray) -> tuple[Path, dict, float]:
    out = work / f"rondonia_x{REPEATS}_q5.parquet"
    info_path = work / f"rondonia_x{REPEATS}_q5.json"
    if out.exists() and info_path.exists():
        return out, json.loads(info_path.read_text()), 0.0
    t0 = time.perf_counter()
    g = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    x, y = shapely.get_x(g), shapely.get_y(g)
    n = len(v)
    k = np.repeat(np.arange(REPEATS), n)
    # copies side by side on a 15 x 15 grid of 7 x 6 degree cells (Rondonia spans ~6.2 x 5.6 degrees)
    geoms = shapely.points(np.tile(x, REPEATS) + 7.0 * (k % 15), np.tile(y, REPEATS) + 6.0 * (k // 15))
    ids = np.char.add(np.repeat(np.array([f"c{i:03d}-" for i in range(REPEATS)]), n),
                      np.tile(np.array(table.column("tile_id").to_pylist()), REPEATS))
    cols = {"tile_id": pa.array(ids),
            "datetime": pa.array(np.tile(table.column("datetime").to_numpy(zero_copy_only=False), REPEATS))
            .cast(pa.timestamp("ms", tz="UTC"))}
    from pyproj import CRS

    big = embeddings_table(np.tile(v, (REPEATS, 1)), geoms, CRS.from_user_input("OGC:CRS84").to_json_dict(), cols)
    src = work / "tiled_input.parquet"
    pq.write_table(big, src, compression="zstd", compression_level=1, use_dictionary=["tile_id"],
                   row_group_size=131_072)
    del big
    info = compress(src, "embedding", out, quality=5, progress=False)
    src.unlink()
    info_path.write_text(json.dumps(info))
    return out, info, time.perf_counter() - t0


# -- decode speed and memory ------------------------------------------------------------------
DECODE_CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from geocodec.format.reader import GeocodecFile
    import geocodec.format.blocks as reader
    f = GeocodecFile({path!r})
    kw = {kw}
    def cpu_of_workers():
        pool = getattr(reader, "_POOL", None)
        total = 0.0
        for pid in list(getattr(pool, "_processes", {{}}) or {{}}):
            try:
                with open(f"/proc/{{pid}}/stat") as fh:
                    parts = fh.read().rsplit(")", 1)[1].split()
                total += (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return total
    def run():
        c0, w0, t0 = time.process_time(), cpu_of_workers(), time.perf_counter()
        n = 0
        for table, emb in f.iter_decoded(**kw):
            n += emb.shape[0]
        return n, time.perf_counter() - t0, time.process_time() - c0 + cpu_of_workers() - w0
    cold = run()
    warm = [run() for _ in range({repeats})]
    best = min(warm, key=lambda r: r[1])
    print(json.dumps({{"rows": best[0], "cold_s": cold[1], "warm_s": best[1], "cpu_s": best[2],
                      "file": reader.__file__}}))
""")

MEMORY_CHILD = textwrap.dedent("""
    import json, os, sys, time, tracemalloc
    sys.path.insert(0, {root!r})
    from common import peak_rss as hwm
    from geocodec.format.reader import GeocodecFile
    import geocodec.format.blocks as reader
    f = GeocodecFile({path!r})
    base_rss = hwm()
    tracemalloc.start()
    n = 0
    quarter = None
    for i, (table, emb) in enumerate(f.iter_decoded(threads={threads})):
        n += emb.shape[0]
        if i + 1 == max(1, f.parquet.num_row_groups // 4):
            quarter = hwm()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    workers = []
    pool = getattr(reader, "_POOL", None)
    for pid in list(getattr(pool, "_processes", {{}}) or {{}}):
        try:
            workers.append(hwm(pid))
        except OSError:
            pass
    print(json.dumps({{"rows": n, "rss_peak": hwm(), "rss_before": base_rss, "rss_quarter": quarter,
                      "traced_peak": traced_peak, "workers_hwm": workers}}))
""")


def gil_check(path: Path) -> dict:
    """Does constriction release the GIL? Decode one row group's blocks on 1 and on 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from geocodec.format.entropy import bytes_to_words, decode_block

    f = GeocodecFile(path)
    t = f.read_row_group(0)
    codes = [c for c in t.column("code").to_pylist() if c is not None]
    rows = [r for r in t.column("code_rows").to_pylist() if r is not None]
    words = [bytes_to_words(c) for c in codes]
    tables = f.spec.tables
    for tb in tables:
        tb.model  # noqa: B018  (build the models once)

    def job(i):
        return decode_block(words[i], tables, rows[i], f.spec.positions)

    def timed(threads):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            if threads == 1:
                [job(i) for i in range(len(words))]
            else:
                with ThreadPoolExecutor(threads) as ex:
                    list(ex.map(job, range(len(words))))
            best = min(best, time.perf_counter() - t0)
        return best

    one, two = timed(1), timed(2)
    return {"blocks": len(words), "rows": int(sum(rows)), "one_thread_s": one, "two_threads_s": two}


# -- search -----------------------------------------------------------------------------------
def mixed_vectors(v: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` mixtures w * a + (1 - w) * b of random pairs of real vectors (linear spectral mixing):
    distinct vectors that stay among the real ones, unlike copies of 4701 vectors."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(v), n), rng.integers(0, len(v), n)
    w = rng.uniform(0.0, 1.0, (n, 1)).astype(np.float32)
    return (w * v[i] + (1.0 - w) * v[j]).astype(np.float32)


def latencies(index: SearchIndex, queries: np.ndarray, k: int = 10) -> np.ndarray:
    index.search(queries[0], k)  # warm-up
    out = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k, threads=1)
        out.append(time.perf_counter() - t0)
    return np.array(out)


def bench_search(v: np.ndarray, work: Path) -> list[dict]:
    rows = []
    queries_all = mixed_vectors(v, 200, seed=99)      # other mixtures: not in any collection
    for n in SEARCH_SIZES:
        x = mixed_vectors(v, n, seed=n)
        truth = None
        for kind in ("exact", "ann"):
            t0 = time.perf_counter()
            idx = SearchIndex.build(x, kind=kind)
            build = time.perf_counter() - t0
            nq = 50 if (kind == "exact" and n >= 1_000_000) else 200
            lat = latencies(idx, queries_all[:nq])
            found, _ = idx.search(queries_all, 10)
            if kind == "exact":
                truth = found
            rec = recall_at_k(truth, found)
            d = work / f"index_{kind}_{n}"
            idx.meta = {"source": {"rows": n, "files": []}}
            t0 = time.perf_counter()
            idx.save(d)
            save_s = time.perf_counter() - t0
            disk = sum(p.stat().st_size for p in d.iterdir())
            t0 = time.perf_counter()
            back = SearchIndex.load(d)
            back.search(queries_all[0], 10, threads=1)
            load_s = time.perf_counter() - t0
            del back
            shutil.rmtree(d)
            rows.append({"n": n, "kind": kind, "build_s": build, "memory": idx.memory_bytes, "disk": disk,
                         "save_s": save_s, "load_first_query_s": load_s, "queries": nq,
                         "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p95_ms": 1e3 * float(np.percentile(lat, 95)),
                         "recall_vs_exact": rec})
            print(f"  search n={n:>9,} {kind:5}: build {build:6.2f} s, p50 {rows[-1]['p50_ms']:.3f} ms, "
                  f"p95 {rows[-1]['p95_ms']:.3f} ms, recall {rec:.4f}", flush=True)
            del idx
    return rows


def bench_recall(table: pa.Table, v: np.ndarray, work: Path) -> list[dict]:
    from geocodec.format.embeddings_io import write_geoparquet

    src = work / "rondonia.parquet"
    write_geoparquet(table, src)
    ids = np.array(table.column("tile_id").to_pylist())
    rng = np.random.default_rng(0)
    held = np.zeros(len(v), bool)
    held[rng.choice(len(v), HELD_OUT, replace=False)] = True
    out = []
    for quality in QUALITIES:
        path = work / f"rondonia_q{quality}.parquet"
        info = compress(src, "embedding", path, quality=quality, progress=False)
        t, dec = GeocodecDataset(path).read()
        pos = {tid: i for i, tid in enumerate(t.column("tile_id").to_pylist())}
        dec = dec[[pos[i] for i in ids]]                  # back to the original row order
        coll, qs = ~held, held
        ex = compressed_recall(v[coll], dec[coll], v[qs], dec[qs], k=10, method="exact")
        an = compressed_recall(v[coll], dec[coll], v[qs], dec[qs], k=10, method="ann")
        out.append({"quality": quality, "bits": info["code_bits"] / info["rows"], "exact": ex["recall"],
                    "exact_min": ex["min"], "ann": an["recall"]})
        print(f"  recall q{quality}: {out[-1]['bits']:.0f} bits/vector, exact {ex['recall']:.4f}, "
              f"ann {an['recall']:.4f}", flush=True)
    return out


# -- report -----------------------------------------------------------------------------------
def render(r: dict) -> str:
    L = []
    a = L.append
    info = r["file"]
    a("# Consumer benchmarks: decoding and similarity search on a 2-core CPU")
    a("")
    a("_Generated by `bench/bench_consumer.py`; do not edit by hand — rerun the command below._")
    a("")
    a(f"- **Command:** `{r['command']}`")
    a(f"- **Date:** {r['date']}")
    a(f"- **Machine:** {r['machine']}")
    a(f"- **Wall time of the whole benchmark:** {r['wall_s']:.0f} s")
    a(f"- **CPU contention:** 1-minute load average {r['load_start']:.1f} at the start and {r['load_end']:.1f} "
      f"at the end (on {r['cores']} vCPUs); other busy processes at the start: {r['others_start']}; at the end: "
      f"{r['others_end']}. Anything above a load of {r['cores']} means other work shared the CPUs and "
      "every speed below is pessimistic, the multi-core ones most.")
    a(f"- **Decode test file:** {info['rows']:,} rows = the 4701 real Rondonia Sentinel-2 L2A point time series "
      f"(11 dates x 10 bands = 110 floats) **repeated {REPEATS} times** (shifted in space on a 15 x 15 grid of "
      "7 x 6 degree cells): repeated real vectors, not a million distinct places. Compressed by "
      f"`geocodec.codecs.compress.compress` at quality {info['quality']} ({info['code_bits'] / info['rows']:.0f} bits/vector "
      f"coded, {fmt_bytes(info['file_bytes'])} on disk vs {fmt_bytes(info['raw_float32_bytes'])} of float32), "
      f"{r['row_groups']} row groups of 65,536 rows, code blocks of 256 rows.")
    a("")
    a("## Decoding speed")
    a("")
    g = r["gil"]
    a(f"constriction holds the GIL while it decodes: the {g['blocks']} blocks ({g['rows']:,} rows) of one row "
      f"group take {g['one_thread_s']:.3f} s on one thread and {g['two_threads_s']:.3f} s on two "
      f"(two threads run at {g['one_thread_s'] / g['two_threads_s']:.2f}x the speed of one). So the reader decodes chunks of 32 blocks in worker "
      "processes (`spawn`, one per core or `$GEOCODEC_THREADS`), while the parent reads the next row group and "
      "runs the ONNX decoder; results are bit-exact with the serial path (tests/test_parallel_decode.py).")
    a("")
    a("Each line is a fresh interpreter decoding the whole file with `GeocodecFile.iter_decoded` (entropy "
      "decoding, dequantisation, ONNX decoder, rows as Arrow tables + float32 arrays). *cold*: the first pass, "
      "including starting the worker processes; *warm*: the second pass. Every reader runs in "
      f"{DECODE_ROUNDS} rounds, interleaved with the others; the table gives the best of them. *CPU*: seconds "
      "of CPU of the parent and its workers in the best warm pass (much less sensitive to other load than "
      "the wall time).")
    a("")
    a("| reader | workers | cold pass, s | warm pass, s | tiles / s (warm) | CPU s (warm) | speed-up vs 1 worker |")
    a("|---|---:|---:|---:|---:|---:|---:|")
    base = next((d["warm_s"] for d in r["decode"] if d["workers"] == 1), None)
    for d in r["decode"]:
        sp = f"{base / d['warm_s']:.2f}x" if base else "n/a"
        a(f"| {d['name']} | {d['workers']} | {d['cold_s']:.2f} | {d['warm_s']:.2f} | "
          f"{fmt_rate(d['rows'] / d['warm_s'])} | {d['cpu_s']:.1f} | {sp} |")
    a("")
    a("## Memory while streaming the whole file")
    a("")
    a(f"Decoded, the file is {fmt_bytes(info['rows'] * 110 * 4)} of float32. `iter_decoded` holds at most "
      "two row groups (the one being handed out and the one decoding ahead), so memory does not grow with "
      "the file. Peak RSS: `VmHWM` in `/proc/PID/status` of the parent and of each worker (`getrusage`'s "
      "maxrss is not used: on Linux it carries over the forking parent's peak into the child); the tracemalloc "
      "peak counts Python and numpy allocations of the parent.")
    a("")
    a("| workers | parent RSS before decoding | parent peak RSS after the first quarter of the file | "
      "parent peak RSS, whole file | tracemalloc peak | worker peak RSS (each) |")
    a("|---:|---:|---:|---:|---:|---:|")
    for m in r["memory"]:
        w = ", ".join(fmt_bytes(x) for x in m["workers_hwm"]) or "none (in-process)"
        a(f"| {m['threads']} | {fmt_bytes(m['rss_before'])} | {fmt_bytes(m['rss_quarter'] or 0)} | "
          f"{fmt_bytes(m['rss_peak'])} | {fmt_bytes(m['traced_peak'])} | {w} |")
    a("")
    a("The peak is reached within the first row groups and stays there: it is set by the size of a row group "
      "(65,536 rows: its codes, latents and embeddings as int32/float32 arrays, onnxruntime's and Arrow's "
      "buffers), not by the size of the file.")
    a("")
    a("## Similarity search")
    a("")
    a("Cosine similarity on unit vectors. *exact*: `geocodec.tasks.search.exact_topk`, a single query scored block by "
      "block with numpy's matrix-vector loop (one thread); *ann*: usearch HNSW (connectivity 16, expansion 64 on add, "
      "max(128, 2k) on search, float32, inner product), built on every core. Vectors: n mixtures "
      "w a + (1 - w) b of random pairs of the real Rondonia vectors (w uniform in 0..1; linear spectral "
      "mixing, so distinct vectors among the real ones: copies of the 4701 vectors would turn the nearest "
      "neighbours into near-ties); 200 other mixtures as queries (50 for exact search at 10^6). Latency: one query at a time, k = 10, one search "
      "thread. *Recall*: recall@10 of the method against exact search on the same vectors. *Reload*: loading "
      "the saved index (vectors / graph memory-mapped) plus a first query.")
    a("")
    a("| n | method | build s | index memory | on disk | reload + 1st query, s | p50 ms | p95 ms | recall@10 vs exact |")
    a("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in r["search"]:
        a(f"| {s['n']:,} | {s['kind']} | {s['build_s']:.2f} | {fmt_bytes(s['memory'])} | {fmt_bytes(s['disk'])} | "
          f"{s['load_first_query_s']:.3f} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | {s['recall_vs_exact']:.4f} |")
    a("")
    ex = {x["n"]: x for x in r["search"] if x["kind"] == "exact"}
    an = {x["n"]: x for x in r["search"] if x["kind"] == "ann"}
    big, mid = max(ex), sorted(ex)[-2] if len(ex) > 1 else max(ex)
    a(f"`geocodec search` picks exact search up to {EXACT_MAX_ROWS:,} rows (no index to build; "
      f"{ex[mid]['p50_ms']:.1f} ms a query at {mid:,} here) and HNSW above: at {big:,} rows exact search takes "
      f"{ex[big]['p50_ms']:.0f} ms a query, HNSW {an[big]['p50_ms']:.2f} ms after a one-off build of "
      f"{an[big]['build_s']:.0f} s while decoding; the index is saved beside the file and reloads in "
      f"{an[big]['load_first_query_s']:.2f} s.")
    a("")
    a("## Recall@10 of search on compressed embeddings")
    a("")
    a(f"Real Rondonia vectors (4701), each quality written by `geocodec.codecs.compress.compress` and decoded by "
      f"`GeocodecDataset.read`. {HELD_OUT} random tiles are held out as queries; the collection is the other "
      f"{4701 - HELD_OUT}. Truth: exact cosine top-10 of the original float32 query among the original vectors. "
      "Answer: the top-10 of the decoded query among the decoded vectors (`geocodec.tasks.search.compressed_recall`), "
      "exact or through the HNSW index.")
    a("")
    a("| quality | bits / vector | recall@10, exact search | worst query | recall@10, HNSW |")
    a("|---:|---:|---:|---:|---:|")
    for q in r["recall"]:
        a(f"| {q['quality']} | {q['bits']:.0f} | {q['exact']:.4f} | {q['exact_min']:.1f} | {q['ann']:.4f} |")
    a("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/benchmarks-consumer.md")
    ap.add_argument("--data", help="folder holding rondonia/ (default $GEOCODEC_DATA or ../shared/data)")
    ap.add_argument("--work", help="keep the ~1M-row file and scratch here (default: a temporary folder)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    r = {"command": "python bench/bench_consumer.py" + "".join(
        f" {k} {shlex.quote(v)}" for k, v in (("--out", args.out), ("--data", args.data)) if v),
         "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_description(),
         "load_start": loadavg(), "others_start": busy_others(), "cores": usable_cores()}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="geocodec-bench-consumer-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        table, v = rondonia_vectors(args.data)
        print("building the tiled file ...", flush=True)
        big, info, build_s = build_big_file(work, table, v)
        r["file"], r["build_s"] = info, build_s
        r["row_groups"] = GeocodecFile(big).parquet.num_row_groups
        print(f"  {info['rows']:,} rows, {info['file_bytes']:,} bytes ({build_s:.0f} s)", flush=True)
        r["gil"] = gil_check(big)
        print(f"  GIL check: {r['gil']}", flush=True)

        decode = []
        cores = r["cores"]
        plans = [("this tree", str(REPO), "{'threads': 1}", 1), ("this tree", str(REPO), f"{{'threads': {cores}}}", cores)]
        # rounds over all readers, so that load from other processes falls on each of them alike
        for _ in range(DECODE_ROUNDS):
            for i, (name, root, kw, workers) in enumerate(plans):
                d = run_child(DECODE_CHILD.format(root=root, path=str(big), kw=kw, repeats=1), cwd=str(work))
                d.update(name=name, workers=workers)
                print(f"  decode {name} workers={workers}: cold {d['cold_s']:.2f} s, warm {d['warm_s']:.2f} s, "
                      f"{d['rows'] / d['warm_s']:,.0f} rows/s, CPU {d['cpu_s']:.1f} s", flush=True)
                if len(decode) <= i:
                    decode.append(d)
                else:
                    best = decode[i]
                    for key in ("cold_s", "warm_s"):
                        best[key] = min(best[key], d[key])
                    if d["warm_s"] <= best["warm_s"]:
                        best["cpu_s"] = d["cpu_s"]
        r["decode"] = decode

        memory = []
        for threads in (1, cores):
            m = run_child(MEMORY_CHILD.format(root=str(REPO), path=str(big), threads=threads), cwd=str(work))
            m["threads"] = threads
            memory.append(m)
            print(f"  memory threads={threads}: {m}", flush=True)
        r["memory"] = memory

        print("search ...", flush=True)
        r["search"] = bench_search(v, work)
        print("recall vs quality ...", flush=True)
        r["recall"] = bench_recall(table, v, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    r["load_end"], r["others_end"] = loadavg(), busy_others()
    r["wall_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    common.write_page(out, render(r))
    print(f"wrote {out} in {r['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
