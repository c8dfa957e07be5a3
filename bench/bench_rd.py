"""Rate–distortion benchmark: the learned codec against JPEG 2000 at matched PSNR and SSIM.

    python bench/bench_rd.py                      # docs/benchmarks-rd.md + docs/img/rd_scenes.png
    python bench/bench_rd.py --scenes genoa --out /tmp/rd.md --fig /tmp/rd.png   # a subset
    python bench/bench_rd.py --threads 1 --refine 100 --out docs/benchmarks-rd-refine.md \
        --fig docs/img/rd_scenes_refine.png      # ours = geocodec encode --refine 100 (plus its gain)

What is compared, on every scene the model (default: the shipped default model) never saw in
training (see :func:`scene_plan`, which decides and prints the list):

* **Ours**: the path ``geocodec encode`` takes: :func:`geocodec.producer.chunks.encode_chunk`
  on the whole scene (tiles of 128 px, invalid pixels filled with the tile's
  per-band valid mean), the latent grid cut into one row per tile as
  :func:`geocodec.producer.pack.pack_grid` does, rows entropy-coded with the
  model's entropy model (:meth:`geocodec.codecs.learned.LearnedModel.entropy_model`,
  the one the file gets: a checkerboard context model where the card has one) in blocks of 256 rows (the
  file's ``code`` column: real rANS bytes, whole 32-bit words), and the preview
  decoder run on those rows' codes. With ``--refine N`` the codes are those of
  ``geocodec encode --refine N`` (:mod:`geocodec.producer.refine`: each tile's latents
  optimised on its own rate-distortion cost, same format and decoders), and the plain
  encoder's curve is measured too, for the BD-rate of refining.
* **JPEG 2000**: OpenJPEG through ``imagecodecs.jpeg2k_encode`` with
  ``level`` = OpenJPEG's fixed-quality PSNR target (``tcp_distoratio``; OpenJPEG
  measures it against the 16-bit peak 65535, so the PSNR on reflectance is about
  ``level - 20 log10(6.5535)`` = level - 16.3 dB; the achieved PSNR is measured,
  never assumed), irreversible 9/7 wavelet, 6 resolutions (fewer for small
  tiles), one quality layer, raw J2K codestream (no JP2 boxes), all 5 bands as
  the components of one image. Input: the same uint16 DN with invalid pixels
  filled exactly like ours (per 128 px tile, per band, mean of the valid pixels),
  so neither codec pays for nodata edges. Measured on the whole scene (one
  codestream) and on the same independent 128 px tiles our rows use (one
  codestream per tile, clipped to the scene, bytes summed).

Quality: PSNR over the valid pixels of all 5 bands together, reflectance = DN /
10000, peak 1.0 (:func:`geocodec.codecs.image_metrics.psnr`); SSIM: mean over the
5 bands of :func:`geocodec.codecs.image_metrics.ssim` (7 x 7 uniform window,
data range 1.0) over the windows made only of valid pixels. The same functions
score both codecs.

Matching: JPEG 2000 is swept over PSNR targets that cover the range our qualities
reach on that scene, 3 dB beyond on each side, every 1 dB, and extended in 2 dB
steps until every one of our PSNRs and SSIMs lies inside the measured range (or
6 extensions are spent). JPEG 2000 bytes at our PSNR (SSIM) are interpolated
linearly in log-bytes between the two measured (Pareto-efficient) points that
bracket it; a point outside the measured range is reported as "not reached",
never extrapolated. BD-rate: Bjøntegaard's average log-rate difference over the
overlapping PSNR range only (piecewise-cubic, and the original cubic fit for
reference).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # this checkout's geocodec, not another installed copy
from geocodec.training.baselines import j2k_decode, j2k_encode  # noqa: E402
SCALE = 1e-4                 # DN -> reflectance
PEAK = 1.0                   # PSNR peak, in reflectance (as geocodec.codecs.image_metrics)
TILE = 128                   # model tile, px
BLOCK_ROWS = 256             # rows per entropy-coded block (geocodec encode's default)
J2K_PEAK_OFFSET_DB = 20 * math.log10(65535 / 10000)   # OpenJPEG's PSNR (peak 65535) minus ours (peak 10000 DN)
SWEEP_STEP_DB = 1.0
SWEEP_MARGIN_DB = 3.0
SWEEP_EXTEND_DB = 2.0
SWEEP_MAX_EXTENSIONS = 6
ZSTD_LEVEL = 19
NOT_REACHED = "not reached"


# ================================================================================================
# The matching and Bjøntegaard math (numpy only; tests/test_bench_rd.py checks it)
# ================================================================================================
def pareto(rate, metric) -> tuple[np.ndarray, np.ndarray]:
    """The operational rate–quality curve: points no other point beats (fewer or equal bytes and
    higher or equal quality, one strictly), sorted by rate; quality then rises strictly."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    r, m = r[ok], m[ok]
    order = np.lexsort((-m, r))            # by rate, ties: best quality first
    keep_r, keep_m, best = [], [], -np.inf
    for i in order:
        if m[i] > best:
            keep_r.append(r[i])
            keep_m.append(m[i])
            best = m[i]
    return np.array(keep_r), np.array(keep_m)


def rate_at(rate, metric, target: float) -> float | None:
    """Rate of a measured curve at quality ``target``: log-rate linear between the two bracketing
    Pareto points; None when ``target`` lies outside the measured range (never extrapolated)."""
    r, m = pareto(rate, metric)
    if len(m) == 0 or not np.isfinite(target) or target < m[0] or target > m[-1]:
        return None
    i = int(np.searchsorted(m, target, side="left"))
    if m[i] == target:
        return float(r[i])
    lr = np.log(r)
    f = (target - m[i - 1]) / (m[i] - m[i - 1])
    return float(np.exp(lr[i - 1] + f * (lr[i] - lr[i - 1])))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson monotone slopes (the same rule as scipy.interpolate.PchipInterpolator)."""
    h = np.diff(x)
    d = np.diff(y) / h
    n = len(x)
    if n == 2:
        return np.array([d[0], d[0]])
    m = np.zeros(n)
    for k in range(1, n - 1):
        if d[k - 1] * d[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])

    def edge(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(s) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
            return 3 * d0
        return s

    m[0] = edge(h[0], h[1], d[0], d[1])
    m[-1] = edge(h[-1], h[-2], d[-1], d[-2])
    return m


def _hermite(x: np.ndarray, y: np.ndarray, m: np.ndarray, t: np.ndarray) -> np.ndarray:
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10 = 2 * s ** 3 - 3 * s ** 2 + 1, s ** 3 - 2 * s ** 2 + s
    h01, h11 = -2 * s ** 3 + 3 * s ** 2, s ** 3 - s ** 2
    return h00 * y[k] + h10 * h * m[k] + h01 * y[k + 1] + h11 * h * m[k + 1]


def _integral(curves, lo: float, hi: float, method: str) -> list[float]:
    """Integral over [lo, hi] of log-rate as a function of quality, for each (quality, log-rate) curve."""
    out = []
    if method == "cubic":
        for x, y in curves:
            p = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
            out.append(float(np.polyval(p, hi) - np.polyval(p, lo)))
        return out
    # piecewise cubic: exact with 2-point Gauss-Legendre between the union of the knots
    knots = np.unique(np.concatenate([[lo, hi]] + [x[(x > lo) & (x < hi)] for x, _ in curves]))
    a, b = knots[:-1], knots[1:]
    mid, half = (a + b) / 2, (b - a) / 2
    g = half / math.sqrt(3)
    for x, y in curves:
        sl = _pchip_slopes(x, y)
        out.append(float(np.sum(half * (_hermite(x, y, sl, mid - g) + _hermite(x, y, sl, mid + g)))))
    return out


def bd_rate(rate_ref, metric_ref, rate_test, metric_test, method: str = "pchip") -> float | None:
    """Bjøntegaard delta rate of ``test`` against ``ref``, in percent: the mean difference of
    log-rate over the overlapping quality range only (positive: ``test`` needs more bytes for the
    same quality). ``method``: ``pchip`` (piecewise cubic, VCEG-AI11) or ``cubic`` (one cubic
    polynomial per curve, VCEG-M33; fitted on the points inside the overlap plus one neighbour on
    each side). None when the curves do not overlap or have too few points."""
    curves = []
    for r, m in ((rate_ref, metric_ref), (rate_test, metric_test)):
        r, m = pareto(r, m)
        curves.append((m, np.log(r)))
    if min(len(m) for m, _ in curves) < 2:
        return None
    lo = max(m[0] for m, _ in curves)
    hi = min(m[-1] for m, _ in curves)
    if not hi > lo:
        return None
    if method == "cubic":
        cut = []
        for m, y in curves:
            i0 = max(0, int(np.searchsorted(m, lo, side="right")) - 1)
            i1 = min(len(m), int(np.searchsorted(m, hi, side="left")) + 1)
            cut.append((m[i0:i1], y[i0:i1]))
        curves = cut
    elif method != "pchip":
        raise ValueError(f"method must be 'pchip' or 'cubic', got {method!r}")
    i_ref, i_test = _integral(curves, lo, hi, method)
    return float((math.exp((i_test - i_ref) / (hi - lo)) - 1) * 100)


# ================================================================================================
# Scenes
# ================================================================================================
@dataclass
class Scene:
    name: str
    group: str               # "held out" (same sources as training, unseen place) or "new place"
    dn: np.ndarray           # (5, H, W) uint16 DN, reflectance x 10000, as stored
    valid: np.ndarray        # (H, W) bool
    pixel_m: float
    files: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def km2(self) -> float:
        return self.dn.shape[1] * self.dn.shape[2] * self.pixel_m ** 2 * 1e-6


def _read_sen2ships(port_dir: Path) -> Scene:
    import rasterio

    from geocodec.producer.chunks import pixel_validity
    from geocodec.training.data import BANDS

    files = [sorted(port_dir.glob(f"*_{b}.tif"))[0] for b in BANDS]
    arrs = []
    for f in files:
        with rasterio.open(f) as src:
            arrs.append(src.read(1))
    dn = np.stack(arrs).astype(np.uint16)
    return Scene(f"sen2ships/{port_dir.name}", "held out", dn, pixel_validity(dn, nodata=0), 10.0,
                 [str(f) for f in files], "EPSG:3857, 10 m nominal pixel")


def _read_ssl4eo(path: Path) -> Scene:
    import rasterio

    from geocodec.training.data import SSL4EO_INDEX

    with rasterio.open(path) as src:
        raw = src.read([i + 1 for i in SSL4EO_INDEX])
    dn = np.clip(raw, 0, None).astype(np.uint16)
    loc, season = path.stem.split("_")[-2:]
    return Scene(f"ssl4eo/{loc}_{season}", "held out", dn, (raw > 0).all(axis=0), 10.0, [str(path)],
                 f"season {season}")


def _read_greenearthnet(path: Path) -> Scene:
    import rasterio

    from geocodec.producer.chunks import pixel_validity
    from geocodec.training.data import BANDS

    with rasterio.open(path) as src:
        desc = list(src.descriptions)
        dn = src.read([desc.index(b) + 1 for b in BANDS]).astype(np.uint16)
        pixel = float(src.transform.a)
    scl_path = path.with_name(path.stem + "_SCL.tif")
    with rasterio.open(scl_path) as src:
        scl = src.read(1)
    site, date = path.stem.split("_", 1)
    return Scene(f"greenearthnet/{site}_{date}", "new place", dn, pixel_validity(dn, scl=scl, nodata=0), pixel,
                 [str(path), str(scl_path)], "20 m pixels fed to the 10 m model as they are; valid: DN > 0 and "
                 "SCL not no-data/cloud/shadow")


def scene_plan(root: Path, seen=()) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """([(name, loader)], [(what, why skipped)]): every held-out scene of the shipped model and
    the places never used in training, in the model's 5 bands. ``seen``: the scene names the
    model was trained on (its card's ``training.data.train_scenes``); a greenearthnet site with a
    date among them is skipped whole."""
    seen = set(seen)
    from geocodec.training.data import BANDS, HELD_OUT_PORTS, HELD_OUT_SSL4EO

    plan, skipped = [], []
    ships = root / "sen2ships"
    for port in HELD_OUT_PORTS:
        d = ships / port
        missing = [b for b in BANDS if not list(d.glob(f"*_{b}.tif"))]
        if missing:
            skipped.append((f"sen2ships/{port}", f"lacks {', '.join(missing)}"))
        else:
            plan.append((f"sen2ships/{port}", lambda d=d: _read_sen2ships(d)))
    others = sorted(p.name for p in ships.glob("*") if p.is_dir() and p.name not in HELD_OUT_PORTS)
    skipped.append((f"sen2ships/{{{', '.join(others)}}}", "seen in training (santos also lacks B02)"))
    for loc in HELD_OUT_SSL4EO:
        for f in sorted((root / "ssl4eo_s2l2a").glob(f"ssl4eos12_val_{loc}_*.tif")):
            plan.append((f"ssl4eo/{loc}_{f.stem[-1]}", lambda f=f: _read_ssl4eo(f)))
    skipped.append(("ssl4eo other locations", "seen in training"))
    for site in ("portugal", "hungary"):
        dates = sorted(p for p in (root / "greenearthnet" / site).glob(f"{site}_????-??-??.tif"))
        if any(f"greenearthnet/{f.stem}" in seen for f in dates):
            skipped.append((f"greenearthnet/{site}", "seen in training by this model"))
            continue
        for f in (dates[0], dates[-1]) if len(dates) > 1 else dates:   # first and last date
            plan.append((f"greenearthnet/{f.stem}", lambda f=f: _read_greenearthnet(f)))
    if (root / "greenearthnet").is_dir():
        skipped.append(("greenearthnet other dates", "two dates per site (first and last) are enough"))
    if (root / "ftw_austria").is_dir():
        skipped.append(("ftw_austria", "4 bands (B04, B03, B02, B08), no B11: the model needs all 5 and no band "
                                       "is invented"))
    return plan, skipped


def filled_dn(dn: np.ndarray, valid: np.ndarray, tile: int = TILE) -> np.ndarray:
    """DN with invalid pixels set to the per-tile (scene grid from the top-left corner), per-band
    mean of the valid ones, rounded: the input ``encode_chunk`` gives the encoder, in DN."""
    from geocodec.producer.chunks import fill_tiles

    b, h, w = dn.shape
    ny, nx = -(-h // tile), -(-w // tile)
    x = np.zeros((b, ny * tile, nx * tile), np.float32)
    v = np.zeros((ny * tile, nx * tile), bool)
    x[:, :h, :w] = dn
    v[:h, :w] = valid
    t = x.reshape(b, ny, tile, nx, tile).transpose(1, 3, 0, 2, 4).reshape(-1, b, tile, tile)
    tv = v.reshape(ny, tile, nx, tile).transpose(0, 2, 1, 3).reshape(-1, tile, tile)
    f = fill_tiles(t, tv).reshape(ny, nx, b, tile, tile).transpose(2, 0, 3, 1, 4).reshape(b, ny * tile, nx * tile)
    return np.clip(np.round(f[:, :h, :w]), 0, 65535).astype(np.uint16)


def tile_boxes(h: int, w: int, valid: np.ndarray, tile: int = TILE) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the 128 px tiles that become rows (some valid pixel), clipped to the scene."""
    out = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            if valid[y:y + tile, x:x + tile].any():
                out.append((y, min(y + tile, h), x, min(x + tile, w)))
    return out


# ================================================================================================
# Measurement
# ================================================================================================
def quality(ref: np.ndarray, rec: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, mean-over-bands SSIM) of reflectance ``rec`` against ``ref`` on ``valid`` pixels."""
    from geocodec.codecs.image_metrics import psnr, ssim

    rec = np.where(np.isfinite(rec), rec, ref)
    p = psnr(np.where(valid, ref, np.nan), np.where(valid, rec, np.nan), peak=PEAK)
    s = float(np.mean([ssim(ref[b], rec[b], PEAK, mask=valid) for b in range(ref.shape[0])]))
    return p, s


def band_psnr(ref: np.ndarray, rec: np.ndarray, valid: np.ndarray) -> list[float]:
    """PSNR dB of each band of ``rec`` against ``ref`` on ``valid`` pixels (peak 1.0 reflectance)."""
    from geocodec.codecs.image_metrics import psnr

    rec = np.where(np.isfinite(rec), rec, ref)
    return [psnr(np.where(valid, ref[b], np.nan), np.where(valid, rec[b], np.nan), peak=PEAK)
            for b in range(ref.shape[0])]


def bands_at(points: list[dict], target: float) -> list[float] | None:
    """Per-band PSNR of a measured JPEG 2000 curve where its overall PSNR is ``target``: linear in the overall
    PSNR between the two measured points that bracket it; None outside the measured range (not extrapolated)."""
    pts = sorted((p for p in points if "band_psnr" in p), key=lambda p: p["psnr"])
    for a, b in zip(pts, pts[1:]):
        if a["psnr"] <= target <= b["psnr"]:
            f = 0.0 if b["psnr"] == a["psnr"] else (target - a["psnr"]) / (b["psnr"] - a["psnr"])
            return [float(x + f * (y - x)) for x, y in zip(a["band_psnr"], b["band_psnr"])]
    return None


class SharedLatents:
    """The model with its encoder run once per scene for all qualities: ``encode`` is exactly
    :meth:`LearnedModel.encode` (round(latents / step)), the latents reused while the tiles are the same."""

    def __init__(self, model):
        self._model = model
        self._tiles = None
        self._latents = None

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, tiles: np.ndarray, quality: int) -> np.ndarray:
        if self._tiles is None or self._tiles.shape != tiles.shape or not np.array_equal(self._tiles, tiles):
            self._tiles, self._latents = np.array(tiles, copy=True), self._model.latents(tiles)
        return self._model.quantize(self._latents, quality)


def ours(model, sc: Scene, ref: np.ndarray, q: int, refine: int = 0) -> dict:
    """The learned codec at quality ``q`` along geocodec encode's path (see the module docstring)."""
    from geocodec.producer.chunks import encode_chunk

    _, h, w = sc.dn.shape
    refl = np.where(sc.valid[None], sc.dn.astype(np.float32) * np.float32(SCALE), np.nan).astype(np.float32)
    cc = encode_chunk(model, refl, q, valid=sc.valid, tile_px=TILE, refine=refine)
    k = TILE // model.stride
    c, hh, ww = cc.q.shape
    ny, nx = -(-hh // k), -(-ww // k)
    codes = np.pad(cc.q, ((0, 0), (0, ny * k - hh), (0, nx * k - ww)))          # as pack_grid pads
    vf = np.pad(cc.valid_fraction, ((0, ny * k - hh), (0, nx * k - ww)))
    rows = codes.reshape(c, ny, k, nx, k).transpose(1, 3, 0, 2, 4).reshape(ny * nx, c, k * k)
    keep = vf.reshape(ny, k, nx, k).transpose(0, 2, 1, 3).reshape(ny * nx, -1).mean(axis=1) > 0
    kept = rows[keep]
    em = model.entropy_model(q, (k, k))
    blocks = [em.encode(kept[i:i + BLOCK_ROWS]) for i in range(0, len(kept), BLOCK_ROWS)]
    first = em.decode(blocks[0], min(BLOCK_ROWS, len(kept)), k * k)
    if not np.array_equal(first, kept[:BLOCK_ROWS]):
        raise RuntimeError(f"{sc.name} q{q}: the rANS block does not decode to its codes")
    file_bytes = sum(4 * len(b) for b in blocks)
    tile_bytes = sum(4 * len(em.encode(kept[i:i + 1])) for i in range(len(kept)))
    prev = np.full((ny * nx, len(model.bands), TILE, TILE), np.nan, np.float32)
    idx = np.flatnonzero(keep)
    for i in range(0, len(idx), 16):
        prev[idx[i:i + 16]] = model.preview(rows[idx[i:i + 16]], q, (k, k))
    rec = prev.reshape(ny, nx, -1, TILE, TILE).transpose(2, 0, 3, 1, 4).reshape(-1, ny * TILE, nx * TILE)[:, :h, :w]
    p, ss = quality(ref, rec, sc.valid)
    return {"quality": q, "bytes": file_bytes, "tile_bytes": tile_bytes, "rows": int(keep.sum()),
            "ideal_bytes": em.cross_entropy_bits(kept) / 8, "psnr": p, "ssim": ss,
            "band_psnr": band_psnr(ref, rec, sc.valid)}


def j2k_main_header_bytes(data: bytes) -> int:
    """Bytes before the first tile-part (SOT marker 0xFF90): the codestream's main header."""
    i = data.find(b"\xff\x90")
    return i if i >= 0 else len(data)


def j2k_point(fill: np.ndarray, ref: np.ndarray, valid: np.ndarray, level: float,
              boxes: list | None) -> dict:
    """JPEG 2000 at ``level`` on the whole scene (``boxes`` None) or per tile (bytes summed)."""
    if boxes is None:
        data = j2k_encode(fill, level)
        rec = j2k_decode(data)
        n, head = len(data), j2k_main_header_bytes(data)
    else:
        rec = np.full(fill.shape, np.nan, np.float32)
        n = head = 0
        for y0, y1, x0, x1 in boxes:
            data = j2k_encode(np.ascontiguousarray(fill[:, y0:y1, x0:x1]), level)
            rec[:, y0:y1, x0:x1] = j2k_decode(data)
            n += len(data)
            head += j2k_main_header_bytes(data)
    rec = rec.astype(np.float32) * np.float32(SCALE)
    p, s = quality(ref, rec, valid)
    return {"level": float(level), "bytes": n, "header_bytes": head, "psnr": p, "ssim": s,
            "band_psnr": band_psnr(ref, rec, valid)}


def sweep(measure, our_psnr: list[float], our_ssim: list[float]) -> list[dict]:
    """JPEG 2000 points over our PSNR range +- the margin, every step, extended until bracketing."""
    lo = math.floor(min(our_psnr) - SWEEP_MARGIN_DB)
    hi = math.ceil(max(our_psnr) + SWEEP_MARGIN_DB)
    pts = {}
    for t in np.arange(lo, hi + 1e-9, SWEEP_STEP_DB):
        level = round(float(t) + J2K_PEAK_OFFSET_DB, 2)
        pts[level] = measure(level)
    for _ in range(SWEEP_MAX_EXTENSIONS):
        need_lo = need_hi = False
        for key, ours_v in (("psnr", our_psnr), ("ssim", our_ssim)):
            _, m = pareto([p["bytes"] for p in pts.values()], [p[key] for p in pts.values()])
            need_lo |= min(ours_v) < m[0]
            need_hi |= max(ours_v) > m[-1]
        if not (need_lo or need_hi):
            break
        if need_lo and min(pts) - SWEEP_EXTEND_DB > 5:
            level = round(min(pts) - SWEEP_EXTEND_DB, 2)
            pts[level] = measure(level)
        if need_hi:
            level = round(max(pts) + SWEEP_EXTEND_DB, 2)
            pts[level] = measure(level)
    return [pts[k] for k in sorted(pts)]


def lossless(sc: Scene) -> dict:
    import imagecodecs

    raw = np.ascontiguousarray(sc.dn)
    data = j2k_encode(raw, None)
    if not np.array_equal(j2k_decode(data), raw):
        raise RuntimeError(f"{sc.name}: JPEG 2000 lossless did not round-trip")
    return {"raw": raw.nbytes, "j2k_lossless": len(data),
            "zstd": len(imagecodecs.zstd_encode(raw.tobytes(), level=ZSTD_LEVEL))}


def run_scene(model, sc: Scene, bar=None, refine: int = 0) -> dict:
    def stage(s):
        if bar is not None:
            bar.set_postfix_str(f"{sc.name}: {s}")

    ref = sc.dn.astype(np.float32) * np.float32(SCALE)
    fill = filled_dn(sc.dn, sc.valid)
    ref = np.where(sc.valid[None], ref, fill.astype(np.float32) * np.float32(SCALE))
    shared = SharedLatents(model)
    plain = None
    if refine:
        stage("ours, plain encoder")
        plain = [ours(shared, sc, ref, q) for q in model.qualities]
    stage(f"ours, refined {refine} steps" if refine else "ours")
    rows = [ours(shared, sc, ref, q, refine) for q in model.qualities]
    ps, ss = [r["psnr"] for r in rows], [r["ssim"] for r in rows]
    boxes = tile_boxes(*sc.dn.shape[1:], sc.valid)
    stage("JPEG 2000 scene")
    j_scene = sweep(lambda lv: j2k_point(fill, ref, sc.valid, lv, None), ps, ss)
    stage("JPEG 2000 tiles")
    j_tiles = sweep(lambda lv: j2k_point(fill, ref, sc.valid, lv, boxes), ps, ss)
    stage("lossless")
    ll = lossless(sc)
    return {"scene": sc, "ours": rows, "plain": plain, "j2k_scene": j_scene, "j2k_tiles": j_tiles,
            "lossless": ll, "tiles": len(boxes), "bands": list(model.bands)}


def matched(res: dict) -> dict:
    """Per quality: JPEG 2000 bytes at our PSNR and SSIM (scene, tiles); BD-rates per curve."""
    out = {"per_q": []}
    for r in res["ours"]:
        row = {"quality": r["quality"]}
        for view, ours_bytes in (("scene", r["bytes"]), ("tiles", r["tile_bytes"])):
            pts = res[f"j2k_{view}"]
            for key in ("psnr", "ssim"):
                jb = rate_at([p["bytes"] for p in pts], [p[key] for p in pts], r[key])
                row[f"j2k_{view}_{key}"] = jb
                row[f"ratio_{view}_{key}"] = None if jb is None else jb / ours_bytes
        if "band_psnr" in r:
            row["j2k_scene_band_psnr"] = bands_at(res["j2k_scene"], r["psnr"])
        out["per_q"].append(row)
    for view, bkey in (("scene", "bytes"), ("tiles", "tile_bytes")):
        pts = res[f"j2k_{view}"]
        for method in ("pchip", "cubic"):
            for key in ("psnr", "ssim"):
                out[f"bd_{view}_{method}_{key}"] = bd_rate(
                    [p["bytes"] for p in pts], [p[key] for p in pts],
                    [r[bkey] for r in res["ours"]], [r[key] for r in res["ours"]], method)
    if res.get("plain"):
        pl = res["plain"]
        out["bd_vs_plain_psnr"] = bd_rate([r["bytes"] for r in pl], [r["psnr"] for r in pl],
                                          [r["bytes"] for r in res["ours"]], [r["psnr"] for r in res["ours"]])
    ps = [r["psnr"] for r in res["ours"]]
    out["psnr_rises"] = bool(np.all(np.diff(ps) > 0))
    out["bytes_rise"] = bool(np.all(np.diff([r["bytes"] for r in res["ours"]]) > 0))
    return out


# ================================================================================================
# Report
# ================================================================================================
def _f(v, fmt="{:,.0f}", none=NOT_REACHED):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _bd(v):
    return _f(v, "{:+.0f} %", "no overlap")


def _ratio_range(vals):
    v = [x for x in vals if x is not None]
    if not v:
        return NOT_REACHED
    s = f"{min(v):.2f}–{max(v):.2f}x" if len(v) > 1 else f"{v[0]:.2f}x"
    miss = len(vals) - len(v)
    return s + (f" ({miss} not reached)" if miss else "")


def file_versions(results) -> list[str]:
    lines = []
    for res in results:
        for f in res["scene"].files:
            p = Path(f)
            h = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            lines.append(f"| `{p.parent.name}/{p.name}` | {p.stat().st_size:,} | `{h}` |")
    return lines


def report(args, results, skipped, wall: float, fig_rel: str) -> str:
    import imagecodecs
    import onnxruntime

    from geocodec import __version__

    m = [matched(r) for r in results]
    refined = bool(getattr(args, "refine", 0))
    lines = [
        "# Rate–distortion: the learned codec against JPEG 2000 at matched quality"
        + (f" (encoder refined, {args.refine} steps)" if refined else ""),
        "",
        "_Generated by `bench/bench_rd.py`; do not edit by hand: every figure below is computed by the "
        "script. Rerun the command to regenerate it._",
        "",
        f"- **Command:** `{args.command}`",
        f"- **Date:** {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {wall:.0f} s",
        f"- **Machine:** {platform.machine()}, {os.cpu_count()} vCPU (shared with other jobs; 1-min load average "
        f"at the end {os.getloadavg()[0]:.1f}), {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__} "
        f"({args.threads} threads), imagecodecs {imagecodecs.__version__} with OpenJPEG "
        f"{imagecodecs.jpeg2k_version().split()[-1]}, geocodec {__version__}",
        f"- **Model:** `{args.model_name}` (its model card: {args.model_card})"
        + ", qualities 1–5, 128 px tiles, 5 bands B02, B03, B04, B08, B11, reflectance = DN / 10000.",
        f"- **Figure:** [{fig_rel}]({fig_rel}) — PSNR against bytes per km² for every scene.",
    ]
    if refined:   # this page's plain twin: the same name without "-refine" (docs/benchmarks-rd-refine.md -> -rd.md)
        plain_page = Path(args.out).name.replace("-refine", "") if "-refine" in Path(args.out).name else "benchmarks-rd.md"
        lines.append(f"- **Encoder:** `geocodec encode --refine {args.refine}` (geocodec.producer.refine: each tile's "
                     f"latents optimised for {args.refine} Adam steps on its own rate-distortion cost, then rounded; "
                     "same file format, tables and decoders). \"ours\" below is the refined encoder; the plain "
                     "encoder's curve is measured on the same tiles for the BD-rate of refining "
                     f"([{plain_page}]({plain_page}) is the plain encoder's page).")
    lines += ["", "## Outcome", ""]
    if refined:
        gains = [x["bd_vs_plain_psnr"] for x in m if x.get("bd_vs_plain_psnr") is not None]
        if gains:
            lines.append(f"- Refining against the plain encoder (BD-rate, PSNR, file bytes, same scenes): "
                         f"{min(gains):+.1f} % to {max(gains):+.1f} % (median {np.median(gains):+.1f} %); "
                         "negative = refined codes need fewer bytes for the same PSNR.")
    # honest outcome, derived from the numbers
    bds = [x["bd_scene_pchip_psnr"] for x in m if x["bd_scene_pchip_psnr"] is not None]
    ratios = [q["ratio_scene_psnr"] for x in m for q in x["per_q"] if q["ratio_scene_psnr"] is not None]
    nr = sum(q["ratio_scene_psnr"] is None for x in m for q in x["per_q"])
    if ratios:
        lose = sum(r < 1 for r in ratios)
        verdict = ("JPEG 2000 needs fewer bytes than the learned codec" if lose == len(ratios) else
                   f"JPEG 2000 needs fewer bytes at {lose} of {len(ratios)} matched points")
        lines.append(
            f"- At equal PSNR on the whole scene, {verdict}: JPEG 2000 / ours = {min(ratios):.2f}–"
            f"{max(ratios):.2f}x (median {np.median(ratios):.2f}x) over {len(ratios)} matched (scene, quality) "
            + (f"points, i.e. JPEG 2000 needs {1 / max(ratios):.1f}–{1 / min(ratios):.1f}x fewer bytes "
               f"(median {1 / np.median(ratios):.1f}x); " if lose == len(ratios) else "points; ")
            + f"{nr} of our points lie outside JPEG 2000's measured range (not reached)."
            + (" A ratio below 1 means JPEG 2000 is smaller, i.e. the learned codec loses." if lose else ""))
    if bds:
        lines.append(f"- BD-rate of ours against JPEG 2000 (whole scene, PSNR, piecewise cubic): "
                     f"{min(bds):+.0f} % to {max(bds):+.0f} % (median {np.median(bds):+.0f} %); positive = ours "
                     "needs that many more bytes for the same PSNR.")
    tr = [q["ratio_tiles_psnr"] for x in m for q in x["per_q"] if q["ratio_tiles_psnr"] is not None]
    if tr:
        heads = [np.median([p["header_bytes"] for p in r["j2k_tiles"]]) / r["tiles"] for r in results]
        lines.append(f"- On independent 128 px tiles (one JPEG 2000 codestream per tile, as our rows are one "
                     f"tile each) JPEG 2000 / ours = {min(tr):.2f}–{max(tr):.2f}x (median {np.median(tr):.2f}x): "
                     "small JPEG 2000 codestreams are much less efficient than one per scene (each carries a "
                     f"main header of {min(heads):.0f}–{max(heads):.0f} bytes, and the wavelet has little room "
                     "on 128 px), so JPEG 2000 loses part or all of its lead there.")
    sr = [q["ratio_scene_ssim"] for x in m for q in x["per_q"] if q["ratio_scene_ssim"] is not None]
    if sr:
        lines.append(f"- At equal SSIM (whole scene): JPEG 2000 / ours = {min(sr):.2f}–{max(sr):.2f}x "
                     f"(median {np.median(sr):.2f}x), "
                     f"{sum(q['ratio_scene_ssim'] is None for x in m for q in x['per_q'])} points not reached.")
    diffs = [(np.asarray(r["band_psnr"]) - np.asarray(q["j2k_scene_band_psnr"]))
             for res, x in zip(results, m) for r, q in zip(res["ours"], x["per_q"])
             if q.get("j2k_scene_band_psnr") is not None]
    if diffs:
        med = np.median(np.stack(diffs), axis=0)
        names = results[0].get("bands") or [f"band {i + 1}" for i in range(len(med))]
        lines.append("- Where the error goes (PSNR of each band, ours minus JPEG 2000 at the same overall PSNR, "
                     f"median over {len(diffs)} matched points): "
                     + ", ".join(f"{n} {d:+.1f} dB" for n, d in zip(names, med))
                     + ". Positive: that band of ours is the more accurate one; overall PSNR weighs every band's "
                       "squared error alike, so the bands with the largest errors decide it.")
    nonmono = [r["scene"].name for r, x in zip(results, m) if not x["psnr_rises"]]
    lines.append("- Our PSNR rises with every quality step on every scene." if not nonmono else
                 f"- Our PSNR does **not** rise with every quality step on: {', '.join(nonmono)}.")
    lines += ["", "## Summary per scene", "",
              "BD-rate: ours against JPEG 2000 (anchor), in % of JPEG 2000's bytes at the same quality, on the "
              "overlapping range only; positive = ours needs more. Ratio: JPEG 2000 bytes / our bytes at our "
              "quality's PSNR, q1..q5 (below 1: JPEG 2000 is smaller).", "",
              "| scene | pixel | size px | valid | BD-rate PSNR (pchip / cubic) | BD-rate SSIM | BD-rate PSNR, "
              "tiles | J2K/ours at our PSNR, q1..q5 | PSNR rises each step |"
              + (" BD-rate refined vs plain |" if refined else ""),
              "|---|---:|---:|---:|---:|---:|---:|---|:---:|" + ("---:|" if refined else "")]
    for res, x in zip(results, m):
        sc = res["scene"]
        rs = " / ".join(_f(q["ratio_scene_psnr"], "{:.2f}", "n.r.") for q in x["per_q"])
        lines.append(f"| {sc.name} | {sc.pixel_m:.0f} m | {sc.dn.shape[1]} x {sc.dn.shape[2]} | "
                     f"{sc.valid.mean():.1%} | {_bd(x['bd_scene_pchip_psnr'])} / {_bd(x['bd_scene_cubic_psnr'])} | "
                     f"{_bd(x['bd_scene_pchip_ssim'])} | {_bd(x['bd_tiles_pchip_psnr'])} | {rs} | "
                     f"{'yes' if x['psnr_rises'] else '**no**'} |"
                     + (f" {_bd(x.get('bd_vs_plain_psnr'))} |" if refined else ""))
    lines += ["", "## References per scene (bytes per km², one date)", "",
              "| scene | km² | raw uint16 | zstd -19 of the DN | JPEG 2000 lossless | ours q1 | ours q5 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        sc, ll, o = res["scene"], res["lossless"], res["ours"]
        k = sc.km2
        lines.append(f"| {sc.name} | {k:.2f} | {ll['raw'] / k:,.0f} | {ll['zstd'] / k:,.0f} | "
                     f"{ll['j2k_lossless'] / k:,.0f} | {o[0]['bytes'] / k:,.0f} | {o[-1]['bytes'] / k:,.0f} |")
    lines += ["", "## Per scene and quality", "",
              "Ours: file bytes = the `code` column (blocks of 256 rows); tile bytes = each row coded alone "
              "(what an independent tile costs). J2K columns: JPEG 2000 bytes per km² at our PSNR (SSIM), "
              "interpolated between two measured points that bracket it; ratio = JPEG 2000 / ours."]
    for res, x in zip(results, m):
        sc = res["scene"]
        k = sc.km2
        lines += ["", f"### {sc.name}", "",
                  f"{sc.dn.shape[1]} x {sc.dn.shape[2]} px at {sc.pixel_m:.0f} m ({k:.2f} km²), {res['tiles']} tiles "
                  f"of 128 px, {sc.valid.mean():.1%} valid. {sc.note}. JPEG 2000 per tile: each codestream's main "
                  f"header is {np.median([p['header_bytes'] for p in res['j2k_tiles']]) / res['tiles']:.0f} bytes "
                  f"on average (median over levels; "
                  f"{np.median([p['header_bytes'] for p in res['j2k_tiles']]) / k:,.0f} B/km² in all), included "
                  "in its bytes.", "",
                  "| q | ours B/km² | bits/px | PSNR dB | SSIM | J2K B/km² at PSNR | ratio | J2K B/km² at SSIM | "
                  "ratio | ours tiles B/km² | J2K tiles at PSNR | ratio | J2K tiles at SSIM | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r, q in zip(res["ours"], x["per_q"]):
            def kb(v):
                return None if v is None else v / k
            lines.append(
                f"| {r['quality']} | {r['bytes'] / k:,.0f} | {8 * r['bytes'] / (sc.dn.shape[1] * sc.dn.shape[2]):.3f} | "
                f"{r['psnr']:.2f} | {r['ssim']:.4f} | {_f(kb(q['j2k_scene_psnr']))} | "
                f"{_f(q['ratio_scene_psnr'], '{:.2f}')} | {_f(kb(q['j2k_scene_ssim']))} | "
                f"{_f(q['ratio_scene_ssim'], '{:.2f}')} | {r['tile_bytes'] / k:,.0f} | {_f(kb(q['j2k_tiles_psnr']))} | "
                f"{_f(q['ratio_tiles_psnr'], '{:.2f}')} | {_f(kb(q['j2k_tiles_ssim']))} | "
                f"{_f(q['ratio_tiles_ssim'], '{:.2f}')} |")
        names = res.get("bands") or []
        if names and any(q.get("j2k_scene_band_psnr") for q in x["per_q"]):
            lines += ["", "PSNR dB per band at our quality's overall PSNR: ours / JPEG 2000 (whole scene, per-band "
                      "PSNR linear in overall PSNR between the two bracketing measured points):", "",
                      "| q | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
            for r, q in zip(res["ours"], x["per_q"]):
                jb = q.get("j2k_scene_band_psnr")
                lines.append(f"| {r['quality']} | " + " | ".join(
                    f"{o:.1f} / {_f(None if jb is None else jb[i], '{:.1f}', 'n.r.')}"
                    for i, o in enumerate(r["band_psnr"])) + " |")
        lines += ["", "JPEG 2000 measured points (level = OpenJPEG PSNR target, peak 65535):", "",
                  "| level | scene B/km² | PSNR dB | SSIM | tiles B/km² | PSNR dB | SSIM |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        tiles = {p["level"]: p for p in res["j2k_tiles"]}
        scene_pts = {p["level"]: p for p in res["j2k_scene"]}
        for lv in sorted(set(tiles) | set(scene_pts)):
            a, b = scene_pts.get(lv), tiles.get(lv)
            ca = f"{a['bytes'] / k:,.0f} | {a['psnr']:.2f} | {a['ssim']:.4f}" if a else "– | – | –"
            cb = f"{b['bytes'] / k:,.0f} | {b['psnr']:.2f} | {b['ssim']:.4f}" if b else "– | – | –"
            lines.append(f"| {lv:.2f} | {ca} | {cb} |")
    offs = [p["level"] - p["psnr"] for r in results for p in r["j2k_scene"]]
    lines += [
        "", "## Method", "",
        "**Scenes** (decided by `scene_plan()` in the script and printed when it runs): every scene the shipped "
        "model never saw in training, per `geocodec.training.data.HELD_OUT_PORTS` and `HELD_OUT_SSL4EO` "
        "(sen2ships genoa and hedland, SSL4EO location 0181476 in its 4 seasons; bands B02, B03, B04, B08, B11 "
        "taken from the 12-band SSL4EO order), plus a source never used in training: greenearthnet "
        "(portugal, hungary; first and last date of each; 20 m pixels, given to the model as they are, which "
        "it was not trained for; valid = every band's DN > 0 and SCL not no-data, cloud or shadow). Skipped:",
        "",
    ] + [f"- {a}: {b}" for a, b in skipped] + [
        "",
        "**Ours** — the path of `geocodec encode`: `encode_chunk` on the whole scene (invalid pixels filled with "
        "the per-tile, per-band valid mean; the scene padded to whole 128 px tiles), the latent grid cut into "
        "one row per 128 px tile as `pack_grid` does (rows without any valid pixel left out), and the rows "
        "entropy-coded with the model's entropy model (`LearnedModel.entropy_model`: what `geocodec encode` "
        "writes; for a card with a `context`, the checkerboard context model of SPEC.md 7.4) in blocks of 256 rows: the bytes reported "
        "are the actual rANS output (whole 32-bit words), checked to decode back to the codes. They exclude "
        "the per-row columns (tile id, footprint, valid mask) and the once-per-file footer (ONNX decoder and "
        "tables, about 0.3 MB). The reconstruction is the preview decoder run on each row's codes.",
        "",
        "**JPEG 2000** — OpenJPEG via `imagecodecs.jpeg2k_encode(x, level=L, codecformat='J2K', "
        "reversible=False, resolutions=R, numthreads=2)` with `x` the (H, W, 5) uint16 DN, i.e. the 5 bands "
        "interleaved as the 5 components of one image, so that OpenJPEG's rate allocation aims at the joint "
        "PSNR of the 5 bands, the quantity measured here (coding each band alone would need a split of the "
        "target between bands). imagecodecs' docstring does not describe "
        "`level`; in its source (`imagecodecs/_jpeg2k.pyx` of v2026.3.6) a lossy `level` is passed to "
        "OpenJPEG as `tcp_distoratio[0]` with `cp_fixed_quality = 1` (one quality layer, RPCL order, "
        "256 px precincts; a level below 1 or above 1000 means lossless), and the multiple-component "
        "transform is applied only to 3-component RGB, so not here: OpenJPEG's rate allocation stops at a "
        "target PSNR in dB computed over the 16-bit range (peak 65535). Measured here: level minus the achieved PSNR "
        f"(peak 1.0 reflectance = 10000 DN) is {min(offs):.1f} to {max(offs):.1f} dB over all points "
        f"(20 log10(65535 / 10000) = {J2K_PEAK_OFFSET_DB:.1f} dB). R = 6 resolutions (OpenJPEG's default, "
        "5 decomposition levels), fewer where a tile clipped by the scene edge is smaller than 32 px. The "
        "input is the DN with invalid pixels filled exactly as ours (so neither codec spends bytes on nodata "
        "edges); lossless reference: `level=None, reversible=True` (5/3 wavelet) on the DN as stored, checked "
        "to round-trip. Bytes: the raw codestream (`J2K`, main header included, no JP2 boxes). "
        "Whole scene: one codestream. Tiles: one codestream per 128 px tile that becomes a row (clipped at the "
        "scene edge, where ours codes a padded tile), all at the same level, bytes summed, PSNR/SSIM measured "
        "on the mosaic.",
        "",
        "**Quality** — PSNR = 10 log10(1.0² / MSE), MSE over the valid pixels of all 5 bands together, in "
        "reflectance (peak 1.0, as `geocodec.codecs.image_metrics.psnr`); SSIM: `image_metrics.ssim` per "
        "band (7 x 7 uniform window, K1 = 0.01, K2 = 0.03, data range 1.0), averaged over the windows made of "
        "valid pixels only, then over the 5 bands. The same two functions score both codecs.",
        "",
        f"**Matching** — JPEG 2000 is measured at PSNR targets from {SWEEP_MARGIN_DB:.0f} dB below our lowest "
        f"to {SWEEP_MARGIN_DB:.0f} dB above our highest PSNR on that scene, every {SWEEP_STEP_DB:.0f} dB, and "
        f"extended by {SWEEP_EXTEND_DB:.0f} dB steps (at most {SWEEP_MAX_EXTENSIONS}) until every one of our "
        "PSNRs and SSIMs is inside the measured range. Only Pareto-efficient JPEG 2000 points (no other point "
        "with fewer bytes and higher quality) form the curve. JPEG 2000 bytes at one of our points: log-bytes "
        "linear in PSNR (or SSIM) between the two measured points that bracket it; outside the measured range "
        f"the table says \"{NOT_REACHED}\" (n.r.): nothing is extrapolated.",
        "",
        "**BD-rate** — G. Bjøntegaard, *Calculation of average PSNR differences between RD-curves*, ITU-T "
        "SG16/Q6 VCEG-M33, 2001, and *Improvements of the BD-PSNR model*, VCEG-AI11, 2008: the mean of "
        "log(bytes) as a function of PSNR, integrated over the PSNR range both curves cover (never beyond), "
        "BD-rate = exp(mean(log ours) − mean(log JPEG 2000)) − 1. The main figure uses piecewise-cubic "
        "monotone (PCHIP) interpolation through the measured points (as in VCEG-AI11 and the common "
        "`bjontegaard` implementations); the cubic column fits one cubic polynomial per curve (VCEG-M33) to "
        "the points inside the overlap plus one on each side. The same on SSIM instead of PSNR for the SSIM "
        "column.",
        "",
        "**Area** — bytes per km² of the scene's whole grid for one date: pixels x pixel area (10 m pixels = "
        "100 m², greenearthnet 20 m pixels = 400 m²). The sen2ships rasters are EPSG:3857 with a 10 m pixel; "
        "on the ground a Web-Mercator pixel is 10 m x cos(latitude) (about 7.1 m at genoa, 9.4 m at hedland), "
        "so their true ground area is smaller than the nominal one used here; the ratios between codecs do "
        "not depend on it.",
        "",
        "## Data versions",
        "",
        "Files read from the shared data folder (its README: sen2ships rasters are reflectance x 10000, "
        "converted from the Sentinel Hub x 65535 exports, each file's `scale` tag says so; SSL4EO int16 "
        "and greenearthnet uint16 are reflectance x 10000). sha256 prefix of each file as read:",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ] + file_versions(results)
    return "\n".join(lines) + "\n"


def figure(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geocodec.atomic import atomic_output

    n = len(results)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, res in zip(axes.ravel(), results):
        sc = res["scene"]
        k = sc.km2
        for key, lab, sty in (("j2k_scene", "JPEG 2000, whole scene", "-"), ("j2k_tiles", "JPEG 2000, 128 px tiles", "--")):
            r, m = pareto([p["bytes"] / k for p in res[key]], [p["psnr"] for p in res[key]])
            ax.plot(r, m, sty, marker=".", ms=4, color="tab:blue" if key == "j2k_scene" else "tab:cyan", label=lab)
        o = res["ours"]
        if res.get("plain"):
            pl = res["plain"]
            ax.plot([r["bytes"] / k for r in pl], [r["psnr"] for r in pl], "o:", ms=3, color="tab:orange",
                    label="geocodec q1–q5, plain encoder")
        ax.plot([r["bytes"] / k for r in o], [r["psnr"] for r in o], "o-", color="tab:red",
                label="geocodec q1–q5" + (", refined" if res.get("plain") else ""))
        for r in o:
            ax.annotate(str(r["quality"]), (r["bytes"] / k, r["psnr"]), textcoords="offset points", xytext=(3, -9),
                        fontsize=7, color="tab:red")
        ax.axvline(res["lossless"]["j2k_lossless"] / k, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        lo = min(r["psnr"] for r in o) - SWEEP_MARGIN_DB - 1
        hi = max(r["psnr"] for r in o) + SWEEP_MARGIN_DB + 1
        ax.set_ylim(lo, hi)
        ax.set_title(sc.name, fontsize=9)
        ax.set_xlabel("bytes per km² (one date)", fontsize=8)
        ax.set_ylabel("PSNR dB (peak 1.0 refl.)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Rate–distortion per scene (dotted: JPEG 2000 lossless)", fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/benchmarks-rd.md")
    ap.add_argument("--fig", default="docs/img/rd_scenes.png")
    ap.add_argument("--data", default=None, help="data folder (default: geocodec's, ../shared/data)")
    ap.add_argument("--scenes", nargs="*", default=None, help="only scenes whose name contains one of these")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    ap.add_argument("--model", default=None, help="model name or folder (default: geocodec's default model)")
    ap.add_argument("--refine", type=int, default=0, metavar="STEPS",
                    help="measure geocodec encode --refine STEPS (and the plain encoder, for the gain)")
    a = ap.parse_args(argv)
    cmd = ["python", "bench/bench_rd.py"] + (argv if argv is not None else sys.argv[1:])
    a.command = " ".join(cmd)
    from tqdm.auto import tqdm

    from geocodec.atomic import atomic_output
    from geocodec.producer.chunks import get_model
    from geocodec.training.data import default_data_dir
    from geocodec.training.model_card import card_path

    t0 = time.time()
    root = Path(a.data) if a.data else default_data_dir()
    model = get_model(a.model, threads=a.threads)
    a.model_name = f"{model.card['name']} {model.card['version']}"
    a.model_card = card_path(model.card["name"])
    plan, skipped = scene_plan(root, ((model.card.get("training") or {}).get("data") or {}).get("train_scenes", ()))
    if a.scenes:
        plan = [(n, f) for n, f in plan if any(s in n for s in a.scenes)]
    print("scenes:", ", ".join(n for n, _ in plan))
    for what, why in skipped:
        print(f"  skipped {what}: {why}")
    if not plan:
        print("no scene to measure", file=sys.stderr)
        return 1
    results = []
    bar = tqdm(plan, desc="rate–distortion", unit="scene")
    for name, load in bar:
        bar.set_postfix_str(f"{name}: reading")
        results.append(run_scene(model, load(), bar, refine=a.refine))
    fig_rel = os.path.relpath(os.path.abspath(a.fig), os.path.dirname(os.path.abspath(a.out)))
    figure(results, a.fig)
    text = report(a, results, skipped, time.time() - t0, fig_rel)
    with atomic_output(a.out) as tmp:
        Path(tmp).write_text(text)
    print(f"wrote {a.out} and {a.fig} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
