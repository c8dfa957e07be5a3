"""Ship head on the learned codec's latent grid: data, training, evaluation, ONNX export, report.

One command reproduces ``geocodec/models/heads/ships.onnx``, ``docs/ships.md`` and
``docs/img/rate_utility_ships.png``::

    python -m geocodec.training.ships

Data: sen2ships (``../shared/data/sen2ships``), 5 bands B02, B03, B04, B08, B11 as
reflectance = DN / 10000, invalid pixels (DN 0) filled like the producer does
(per-tile band mean). Each port is cut into 128 x 128 px tiles on a grid anchored at
the raster's top-left corner (stride 128); the right/bottom partial tiles are
zero-padded (as ``geocodec encode`` pads them) and kept when they hold any valid
pixel. Targets per tile: a 16 x 16 map of ship centres (box centres of the COCO
annotations) at the latent resolution (8 px = 80 m cells), the ship count and presence.

Split: genoa and hedland are held out (as for the codec itself, docs/model-card.md);
santos lacks B02 and cannot be encoded. Of the 7 remaining ports (the codec's own
training ports) one (``VAL_PORT``) picks the detection threshold and the others train
the heads. The latent head trains on dequantized codes q * step at a random quality
1..5 per sample; training tiles are augmented by encoding shifted (64 px) and
rotated/flipped versions of the scenes with the shipped encoder.

Detections: cells whose probability is over the threshold and a 3 x 3 local maximum
within their tile. A detection matches an annotated ship whose centre lies in the
same or a neighbouring cell (Chebyshev distance <= 1 cell), one to one, best score first.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data as D

TRAIN_PORTS = ("athens", "cartagena", "casablanca", "gdynia", "klang", "valencia")
VAL_PORT = "algiers"
HELD_OUT = D.HELD_OUT_PORTS  # ("genoa", "hedland")
TILE = 128
STRIDE = 8
K = TILE // STRIDE  # 16 cells per tile side
QUALITIES = (1, 2, 3, 4, 5)
REPO = D.REPO_ROOT
HEAD_PATH = REPO / "geocodec" / "models" / "heads" / "ships.onnx"
DOC_PATH = REPO / "docs" / "ships.md"
PLOT_PATH = REPO / "docs" / "img" / "rate_utility_ships.png"


# -- data --------------------------------------------------------------------------------------------
@dataclass
class Port:
    name: str
    data: np.ndarray      # (5, H, W) float32 reflectance, 0 where invalid
    valid: np.ndarray     # (H, W) bool: every band > 0
    centres: np.ndarray   # (n, 2) ship box centres in pixels (x, y)
    date: str


def load_port(name: str, data_dir: Path | None = None) -> Port:
    data_dir = Path(data_dir or D.default_data_dir())
    scene = D.read_sen2ships_port(data_dir / "sen2ships" / name)
    if scene is None:
        raise ValueError(f"port {name} lacks one of the bands {D.BANDS}")
    coco = json.loads((data_dir / "sen2ships" / "coco_annotations.json").read_text())
    img = next(i for i in coco["images"] if i["file_name"] == f"{name}_rgb.tiff")
    if (img["height"], img["width"]) != scene.shape:
        raise ValueError(f"{name}: annotation image {img['height']}x{img['width']} != raster {scene.shape}")
    boxes = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == img["id"]], np.float64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2 if len(boxes) else np.zeros((0, 2))
    date = Path(scene.files[0]).name.split("_")[1]
    return Port(name, scene.data, scene.valid.all(axis=0), centres, date)


def _transform(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by k * 90 degrees, then flip left-right."""
    x = np.rot90(x, k, axes=(-2, -1))
    return np.ascontiguousarray(x[..., ::-1] if flip else x)


def tile_port(port: Port, *, offset=(0, 0), k: int = 0, flip: bool = False):
    """Tiles of a (shifted, rotated, flipped) port: reflectance tiles filled like the producer,
    centre heatmaps (N, 16, 16), counts (N,), tile (row, col) and valid-cell maps (N, 16, 16)."""
    from ..producer import _fill_tiles

    oy, ox = offset
    x = port.data[:, oy:, ox:]
    v = port.valid[oy:, ox:]
    h, w = v.shape
    heat = np.zeros((h, w), np.float32)  # ship-centre counts at pixel resolution
    for cx, cy in port.centres:
        px, py = int(np.floor(cx)) - ox, int(np.floor(cy)) - oy
        if 0 <= px < w and 0 <= py < h:
            heat[py, px] += 1
    x, v, heat = _transform(x, k, flip), _transform(v, k, flip), _transform(heat, k, flip)
    h, w = v.shape
    ph, pw = (-h) % TILE, (-w) % TILE
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    v = np.pad(v, ((0, ph), (0, pw)))
    heat = np.pad(heat, ((0, ph), (0, pw)))
    ny, nx = (h + ph) // TILE, (w + pw) // TILE
    tiles = x.reshape(5, ny, TILE, nx, TILE).transpose(1, 3, 0, 2, 4).reshape(ny * nx, 5, TILE, TILE)
    tv = v.reshape(ny, TILE, nx, TILE).transpose(0, 2, 1, 3).reshape(ny * nx, TILE, TILE)
    cells = heat.reshape(ny, K, STRIDE, nx, K, STRIDE).sum(axis=(2, 5)).transpose(0, 2, 1, 3).reshape(ny * nx, K, K)
    vcell = v.reshape(ny, K, STRIDE, nx, K, STRIDE).mean(axis=(2, 5)).transpose(0, 2, 1, 3).reshape(ny * nx, K, K)
    keep = tv.reshape(len(tv), -1).any(axis=1)
    tiles = _fill_tiles(tiles[keep], tv[keep])
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    return {"tiles": tiles, "count_map": cells[keep], "counts": cells[keep].sum(axis=(1, 2)),
            "rc": np.stack([rows[keep], cols[keep]], 1), "valid_cells": vcell[keep] >= 0.5}


def latent_set(model, port: Port, variants, keep_pixels: bool = True) -> dict:
    """Unquantized latents (float32) and targets over ``variants`` [(offset, k, flip)]."""
    out = {"y": [], "count_map": [], "tiles_px": [], "count_map_px": []}
    for offset, k, flip in variants:
        t = tile_port(port, offset=offset, k=k, flip=flip)
        for i in range(0, len(t["tiles"]), 64):
            out["y"].append(model.latents(t["tiles"][i:i + 64]))
        out["count_map"].append(t["count_map"])
        if keep_pixels and tuple(offset) == (0, 0) and not (k % 2):
            out["tiles_px"].append(t["tiles"].astype(np.float16))
            out["count_map_px"].append(t["count_map"])
    return {key: np.concatenate(v) for key, v in out.items()}


# -- models --------------------------------------------------------------------------------------------
class LatentHead(nn.Module):
    """Dequantized latents (N, 24, 16, 16) -> ship probability per 80 m cell (N, 16, 16) and count (N,)."""

    def __init__(self, channels: int = 24, width: int = 32, scale: np.ndarray | None = None):
        super().__init__()
        self.register_buffer("inv_scale", torch.tensor(
            1.0 / (scale if scale is not None else np.ones(channels)), dtype=torch.float32).view(1, -1, 1, 1))
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, 1, 1))

    def logits(self, y):
        return self.net(y * self.inv_scale)[:, 0]

    def forward(self, y):
        p = torch.sigmoid(self.logits(y))
        return p, p.sum(dim=(1, 2))


class PixelHead(nn.Module):
    """Baseline: raw reflectance (N, 5, 128, 128) -> the same 16 x 16 map (three stride-2 stages)."""

    MEAN = (-1.632349, -1.583788, -1.769117, -1.481659, -1.703221)
    STD = (0.861816, 0.899167, 1.007878, 1.257801, 1.433501)

    def __init__(self, width: int = 48):
        super().__init__()
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 5, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 5, 1, 1))
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(5, 24, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(24, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 1, 1))

    def logits(self, x):
        return self.net((torch.log(torch.clamp(x, min=0) + 0.01) - self.mean) / self.std)[:, 0]


def _loss(logits, target, pos_weight: float):
    t = (target > 0).float()
    return nn.functional.binary_cross_entropy_with_logits(logits, t, pos_weight=torch.tensor(pos_weight))


def train_latent_head(y: np.ndarray, target: np.ndarray, steps_per_q, *, steps: int, seed: int, batch: int = 64,
                      log=print) -> LatentHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = y.std(axis=(0, 2, 3)) + 1e-3
    head = LatentHead(y.shape[1], scale=scale)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    steps_arr = np.asarray(steps_per_q, np.float32)
    yt, tt = torch.from_numpy(y), torch.from_numpy(target)
    pos = np.flatnonzero(target.reshape(len(target), -1).any(axis=1))
    for it in range(steps):
        # half the batch from tiles with ships, half uniform
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.integers(0, len(y), batch - batch // 2)])
        st = torch.from_numpy(steps_arr[rng.integers(0, len(steps_arr), batch)]).view(-1, 1, 1, 1)
        yq = torch.round(yt[idx] / st) * st
        loss = _loss(head.logits(yq), tt[idx], 8.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 250 == 0 or it == steps - 1:
            log(f"  latent head step {it}: loss {loss.item():.4f}")
    return head.eval()


def train_pixel_head(x: np.ndarray, target: np.ndarray, *, steps: int, seed: int, batch: int = 32,
                     log=print) -> PixelHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = PixelHead()
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    tt = torch.from_numpy(target)
    pos = np.flatnonzero(target.reshape(len(target), -1).any(axis=1))
    for it in range(steps):
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.integers(0, len(x), batch - batch // 2)])
        xb = torch.from_numpy(x[idx].astype(np.float32))
        loss = _loss(head.logits(xb), tt[idx], 8.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 250 == 0 or it == steps - 1:
            log(f"  pixel head step {it}: loss {loss.item():.4f}")
    return head.eval()


# -- detection and scores (numpy; the consumer module uses the same peak rule) ---------------------------
def peaks(prob: np.ndarray, threshold: float) -> np.ndarray:
    """(N, 16, 16) bool: cells over ``threshold`` that are a 3 x 3 local maximum within their tile."""
    from ..ships import local_peaks

    return local_peaks(prob, threshold)


def _match(det_cells: np.ndarray, det_scores: np.ndarray, gt_cells: np.ndarray) -> int:
    """Greedy one-to-one matching (best score first) within Chebyshev distance 1: number of matches."""
    used = np.zeros(len(gt_cells), bool)
    hits = 0
    for i in np.argsort(-det_scores):
        if not len(gt_cells):
            break
        d = np.abs(gt_cells - det_cells[i]).max(axis=1)
        d = np.where(used, 99, d)
        j = int(np.argmin(d))
        if d[j] <= 1:
            used[j] = True
            hits += 1
    return hits


def _prf(tp, n_pred, n_true):
    p = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    r = tp / n_true if n_true else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def scores(prob: np.ndarray, count_map: np.ndarray, rc: np.ndarray, threshold: float) -> dict:
    """Tile presence P/R/F1, count MAE, object P/R/F1 at 80 m cells, for one port."""
    det = peaks(prob, threshold)
    pred_n = det.sum(axis=(1, 2))
    true_n = count_map.sum(axis=(1, 2))
    tp_t = int(((pred_n > 0) & (true_n > 0)).sum())
    tp, tr, tf = _prf(tp_t, int((pred_n > 0).sum()), int((true_n > 0).sum()))
    # objects on the port's global cell grid (tiles are aligned to it)
    n, i, j = np.nonzero(det)
    dcells = np.stack([rc[n, 0] * K + i, rc[n, 1] * K + j], 1)
    dscores = prob[n, i, j]
    n, i, j = np.nonzero(count_map)
    reps = count_map[n, i, j].astype(int)
    gcells = np.repeat(np.stack([rc[n, 0] * K + i, rc[n, 1] * K + j], 1), reps, axis=0)
    hits = _match(dcells, dscores, gcells)
    op, orr, of = _prf(hits, len(dcells), len(gcells))
    return {"tile_precision": tp, "tile_recall": tr, "tile_f1": tf,
            "count_mae": float(np.abs(pred_n - true_n).mean()), "count_pred": int(pred_n.sum()),
            "ships": int(true_n.sum()), "tiles": int(len(prob)),
            "obj_precision": op, "obj_recall": orr, "obj_f1": of, "detections": int(len(dcells))}


# -- rates ---------------------------------------------------------------------------------------------
def bits_per_tile(model, y: np.ndarray, quality: int) -> float:
    from ..entropy import cross_entropy_bits

    q = np.round(y / model.step(quality)).astype(np.int32).reshape(len(y), y.shape[1], -1)
    return cross_entropy_bits(q, model.tables(quality)) / len(y)


def _zstd_bits(a: np.ndarray) -> float:
    import pyarrow as pa

    return 8.0 * len(pa.compress(np.ascontiguousarray(a).tobytes(), "zstd", asbytes=True))


def int8_baseline(y: np.ndarray, scale: np.ndarray):
    """Per-channel int8 of the unquantized latents (scale from the training ports) + zstd of the port."""
    q = np.clip(np.round(y / scale[None, :, None, None]), -127, 127).astype(np.int8)
    return q.astype(np.float32) * scale[None, :, None, None], _zstd_bits(q) / len(y)


def pca_int8_baseline(y: np.ndarray, mean: np.ndarray, comps: np.ndarray, scale: np.ndarray):
    """PCA over the 24 channels (fitted on the training ports), k components as int8 + zstd."""
    n, c, h, w = y.shape
    flat = y.transpose(0, 2, 3, 1).reshape(-1, c) - mean
    z = flat @ comps.T
    q = np.clip(np.round(z / scale), -127, 127).astype(np.int8)
    rec = (q.astype(np.float32) * scale) @ comps + mean
    return rec.reshape(n, h, w, c).transpose(0, 3, 1, 2).astype(np.float32), _zstd_bits(q) / n


# -- ONNX ----------------------------------------------------------------------------------------------
def export_head(head: LatentHead, meta: dict) -> bytes:
    import io
    import warnings

    import onnx

    from ..heads import add_head_metadata

    buf = io.BytesIO()
    dummy = torch.zeros(1, 24, K, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (dummy,), buf, input_names=["latent"], output_names=["heatmap", "count"],
                          opset_version=17, dynamic_axes={"latent": {0: "N"}, "heatmap": {0: "N"}, "count": {0: "N"}},
                          dynamo=False, do_constant_folding=True)
    m = onnx.load_from_string(buf.getvalue())
    m.producer_name = "geocodec"
    m.doc_string = "geocodec ship head: dequantized latent grid -> ship probability per 80 m cell"
    onnx.checker.check_model(m)
    return add_head_metadata(m.SerializeToString(), meta)


def _ort(data: bytes):
    import onnxruntime as ort

    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda y: np.concatenate([s.run(["heatmap"], {"latent": y[i:i + 256].astype(np.float32)})[0]
                                     for i in range(0, len(y), 256)])


def _torch_prob(head, x, batch=64):
    with torch.no_grad():
        return np.concatenate([torch.sigmoid(head.logits(torch.from_numpy(x[i:i + batch].astype(np.float32)))).numpy()
                               for i in range(0, len(x), batch)])


def choose_threshold(prob_by_q: list[np.ndarray], count_map, rc) -> tuple[float, float]:
    """Threshold maximising the mean object F1 over the given probability maps (validation port)."""
    best = (0.5, -1.0)
    for t in [*np.round(np.arange(0.2, 0.96, 0.05), 2), 0.97, 0.98, 0.99, 0.995]:
        f = float(np.mean([scores(p, count_map, rc, t)["obj_f1"] for p in prob_by_q]))
        if f > best[1]:
            best = (float(t), f)
    return best


# -- the whole run -------------------------------------------------------------------------------------
def run(*, seed: int = 0, steps: int = 3000, pixel_steps: int = 1500, data_dir=None, command: str = "",
        log=print) -> dict:
    from ..learned import LearnedModel

    t0 = time.time()
    torch.set_num_threads(1)  # small convs: one thread is fastest (and shares the CPU well)
    model = LearnedModel.load()
    ident = model.identity()
    steps_q = [model.step(q) for q in QUALITIES]
    variants = [((oy, ox), k, f) for oy in (0, 64) for ox in (0, 64) for k in range(4) for f in (False, True)]
    log(f"encoding training ports {TRAIN_PORTS} x {len(variants)} variants")
    tr = [latent_set(model, load_port(p, data_dir), variants) for p in TRAIN_PORTS]
    y_tr = np.concatenate([t["y"] for t in tr])
    cm_tr = np.concatenate([t["count_map"] for t in tr])
    # the pixel baseline: unshifted, rotations by 0/180 degrees and flips (memory), float16 pixels
    px_tr = np.concatenate([t["tiles_px"] for t in tr])
    pc_tr = np.concatenate([t["count_map_px"] for t in tr])
    del tr
    log(f"  {len(y_tr)} latent tiles ({int((cm_tr.sum(axis=(1, 2)) > 0).sum())} with ships), "
        f"{len(px_tr)} pixel tiles, {time.time() - t0:.0f} s")

    evalsets = {}
    for p in (VAL_PORT, *HELD_OUT):
        port = load_port(p, data_dir)
        t = tile_port(port)
        evalsets[p] = {"y": np.concatenate([model.latents(t["tiles"][i:i + 64]) for i in range(0, len(t["tiles"]), 64)]),
                       "tiles": t["tiles"], "count_map": t["count_map"], "rc": t["rc"], "date": port.date,
                       "shape": port.valid.shape}

    log("training the latent head")
    head = train_latent_head(y_tr, cm_tr, steps_q, steps=steps, seed=seed, log=log)
    log("training the raw-pixel baseline")
    phead = train_pixel_head(px_tr, pc_tr, steps=pixel_steps, seed=seed, log=log)

    # thresholds on the validation port only
    val = evalsets[VAL_PORT]
    vq = [_torch_prob(head, np.round(val["y"] / s) * s) for s in steps_q]
    thr, val_f1 = choose_threshold(vq, val["count_map"], val["rc"])
    pthr, pval_f1 = choose_threshold([_torch_prob(phead, val["tiles"])], val["count_map"], val["rc"])
    log(f"threshold {thr} (validation {VAL_PORT} mean object F1 {val_f1:.3f}); pixel baseline {pthr} ({pval_f1:.3f})")

    # baselines' parameters from the training latents
    sub = y_tr[:: max(1, len(y_tr) // 2000)]
    i8_scale = (np.abs(sub).max(axis=(0, 2, 3)) / 127.0).astype(np.float32)
    flat = sub.transpose(0, 2, 3, 1).reshape(-1, sub.shape[1])
    pmean = flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat - pmean, full_matrices=False)
    pca_k = 8
    comps = vt[:pca_k].astype(np.float32)
    pscale = (np.abs((flat - pmean) @ comps.T).max(axis=0) / 127.0).astype(np.float32)

    meta = {"task": "ships",
            "input": {"kind": "latent_grid", "shape": [24, K, K], "name": "latent",
                      "values": "dequantized latents q * step of the file's codec"},
            "output": {"kind": "heatmap", "names": ["ship"], "outputs": ["heatmap", "count"],
                       "shape": [K, K], "cell_m": STRIDE * 10.0, "values": "ship probability per cell",
                       "threshold": thr, "peak": "3x3 local maximum within the tile",
                       "count": "sum of cell probabilities (the CLI counts detections instead)"},
            "classes": [{"name": "ship", "color": "#ff0000"}],
            "codec": {"name": "geocodec-s2-learned", "qualities": list(QUALITIES), "model_sha256": ident["sha256"],
                      "model": f"{ident['name']} {ident['version']}"},
            "training": {"data": "sen2ships (../shared/data/sen2ships), COCO ship boxes -> box centres",
                         "split": {"train": list(TRAIN_PORTS), "validation (threshold)": VAL_PORT,
                                   "held_out": list(HELD_OUT), "unused": "santos (no B02)"},
                         "command": command, "seed": seed, "steps": steps}}
    onnx_bytes = export_head(head, meta)
    run_head = _ort(onnx_bytes)
    # onnxruntime vs torch
    chk = evalsets[HELD_OUT[0]]["y"][:8]
    diff = float(np.abs(run_head(chk) - _torch_prob(head, chk)).max())
    if diff > 1e-4:
        raise RuntimeError(f"onnxruntime differs from torch by {diff}")

    results = {}
    for p in HELD_OUT:
        e = evalsets[p]
        rows = {}
        for q, s in zip(QUALITIES, steps_q):
            sc = scores(run_head(np.round(e["y"] / s) * s), e["count_map"], e["rc"], thr)
            sc["bits_per_tile"] = bits_per_tile(model, e["y"], q)
            rows[f"q{q}"] = sc
        rows["unquantized"] = {**scores(run_head(e["y"]), e["count_map"], e["rc"], thr),
                               "bits_per_tile": 24 * K * K * 32.0}
        rec, bits = int8_baseline(e["y"], i8_scale)
        rows["int8+zstd"] = {**scores(run_head(rec), e["count_map"], e["rc"], thr), "bits_per_tile": bits}
        rec, bits = pca_int8_baseline(e["y"], pmean, comps, pscale)
        rows[f"pca{pca_k}+int8+zstd"] = {**scores(run_head(rec), e["count_map"], e["rc"], thr), "bits_per_tile": bits}
        rows["raw pixels"] = {**scores(_torch_prob(phead, e["tiles"]), e["count_map"], e["rc"], pthr),
                              "bits_per_tile": 5 * TILE * TILE * 16.0}
        results[p] = rows
        log(f"{p}: " + ", ".join(f"{k} F1 {v['obj_f1']:.2f} @ {v['bits_per_tile']:.0f} b" for k, v in rows.items()))

    meta["scores"] = {"threshold": thr, "validation_port": VAL_PORT, "validation_obj_f1": val_f1,
                      "held_out": {p: {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()}
                                       for k, r in rows.items() if k.startswith("q") or k == "unquantized"}
                                   for p, rows in results.items()}}
    onnx_bytes = add_meta_scores(onnx_bytes, meta["scores"])
    HEAD_PATH.parent.mkdir(parents=True, exist_ok=True)
    HEAD_PATH.write_bytes(onnx_bytes)
    report = {"results": results, "threshold": thr, "val_f1": val_f1, "pixel_threshold": pthr, "pixel_val_f1": pval_f1,
              "train_tiles": int(len(y_tr)), "pixel_tiles": int(len(px_tr)), "steps": steps,
              "pixel_steps": pixel_steps, "seed": seed, "minutes": (time.time() - t0) / 60, "command": command,
              "pca_k": pca_k, "ships": {p: int(evalsets[p]["count_map"].sum()) for p in evalsets},
              "tiles": {p: int(len(evalsets[p]["y"])) for p in evalsets}, "onnx_check": diff,
              "model": f"{ident['name']} {ident['version']} (encoder sha256 {ident['sha256'][:12]}...)"}
    write_plot(report, PLOT_PATH)
    write_doc(report, DOC_PATH)
    log(f"wrote {HEAD_PATH}, {DOC_PATH}, {PLOT_PATH} in {report['minutes']:.1f} min")
    return report


def add_meta_scores(onnx_bytes: bytes, sc: dict) -> bytes:
    from ..heads import add_head_metadata

    return add_head_metadata(onnx_bytes, {"scores": sc})


def write_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(report["results"]), figsize=(11, 4), sharey=True)
    for ax, (port, rows) in zip(np.atleast_1d(axes), report["results"].items()):
        qs = [k for k in rows if k.startswith("q")]
        ax.plot([rows[k]["bits_per_tile"] for k in qs], [rows[k]["obj_f1"] for k in qs], "o-", label="geocodec q1..q5")
        for k in qs:
            ax.annotate(k, (rows[k]["bits_per_tile"], rows[k]["obj_f1"]), textcoords="offset points", xytext=(3, 3),
                        fontsize=8)
        for name, marker in (("unquantized", "s"), ("int8+zstd", "^"), (f"pca{report['pca_k']}+int8+zstd", "v"),
                             ("raw pixels", "D")):
            r = rows[name]
            ax.plot([r["bits_per_tile"]], [r["obj_f1"]], marker, label=name + (" (float32)" if name == "unquantized"
                                                                             else " (uint16, separate head)"
                                                                             if name == "raw pixels" else ""))
        ax.set_xscale("log")
        ax.set_title(f"{port} (held out, {rows['q1']['ships']} ships)")
        ax.set_xlabel("bits per 128 x 128 px tile")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("object F1 (80 m cells, +-1 cell)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Ship detection: rate vs utility")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(report: dict, path: Path) -> None:
    lines = ["# Ship detection head (`ships.onnx`)", "",
             f"_Generated by `{report['command']}` on {_dt.date.today().isoformat()}; do not edit by hand._", "",
             "A small conv net (4 conv layers, 32 channels) on the dequantized 24 x 16 x 16 latent grid of "
             f"{report['model']} predicts a ship probability per 80 m cell. Detections are cells over the threshold "
             "that are a 3 x 3 local maximum within their tile; the per-tile count is the number of detections. "
             "Consumers run it with `geocodec ships FILE -o ships.gpkg` (geocodec/ships.py, onnxruntime only).", "",
             "## Data and split", "",
             "sen2ships harbour scenes (../shared/data/sen2ships): bands B02, B03, B04, B08, B11, reflectance = DN/10000; "
             "COCO ship boxes -> box centres. 128 px tiles on a grid anchored at the scene's top-left corner, the partial "
             "right/bottom tiles zero-padded and kept when they hold a valid pixel; invalid pixels filled with the tile's "
             "band mean (as the producer does).", "",
             f"- training (head): {', '.join(TRAIN_PORTS)}; each scene also encoded shifted by 64 px and under the 8 "
             f"rotations/flips ({report['train_tiles']} latent tiles), codes at a random quality 1..5 per sample",
             f"- validation (threshold only): {VAL_PORT} ({report['tiles'][VAL_PORT]} tiles, "
             f"{report['ships'][VAL_PORT]} ships): threshold {report['threshold']} (mean object F1 over q1..q5 "
             f"{report['val_f1']:.3f}); raw-pixel baseline threshold {report['pixel_threshold']}",
             f"- **held out** (never used for training or choosing anything; also held out from the codec): "
             + ", ".join(f"{p} ({report['tiles'][p]} tiles, {report['ships'][p]} ships)" for p in HELD_OUT),
             "- not used: santos (lacks B02, cannot be encoded)",
             f"- training: {report['steps']} steps (latent head), {report['pixel_steps']} steps (pixel baseline, "
             f"{report['pixel_tiles']} tiles: unshifted rotations/flips), seed {report['seed']}, CPU, "
             f"{report['minutes']:.1f} min in all; ONNX vs torch max difference {report['onnx_check']:.1e}", "",
             "## Scores on the held-out ports", "",
             "Tile: presence (any detection) precision / recall / F1 over all tiles. Count MAE: mean absolute error of "
             "the number of detections per tile. Object: a detection matches an annotated ship whose centre is in the "
             "same or a neighbouring 80 m cell, one to one. Bits per tile: for geocodec the cross-entropy of the codes "
             "under the model's tables at that quality (what the file's entropy coder spends, within a few bytes); for "
             "int8 / PCA the zstd size of the port's int8 array per tile; raw pixels: 5 x 128 x 128 uint16.", ""]
    for port, rows in report["results"].items():
        lines += [f"### {port}", "",
                  "| input | bits/tile | tile P | tile R | tile F1 | count MAE | detections | obj P | obj R | obj F1 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['bits_per_tile']:,.0f} | {r['tile_precision']:.2f} | {r['tile_recall']:.2f} | "
                         f"{r['tile_f1']:.2f} | {r['count_mae']:.2f} | {r['detections']} / {r['ships']} ships | "
                         f"{r['obj_precision']:.2f} | {r['obj_recall']:.2f} | {r['obj_f1']:.2f} |")
        lines.append("")
    lines += ["`unquantized`: the same head on the encoder's float latents (float32, no entropy coding). "
              "`int8+zstd`, `pca8+int8+zstd`: the same head on latents stored as per-channel int8 (scales from the "
              "training ports), or as 8 PCA components (fitted on the training ports) in int8, both zstd-compressed. "
              "`raw pixels`: a separate small conv net (stride-2 x 3) trained on the 5 raw bands of the same tiles, "
              "same output grid and scoring, threshold from the same validation port.", "",
              "![rate-utility](img/rate_utility_ships.png)", "",
              "## Reproduce", "", "```", report["command"], "```", "",
              "Writes geocodec/models/heads/ships.onnx (with its `geocodec:*` metadata: task, input, output, codec "
              "model_sha256, training, scores), this page and docs/img/rate_utility_ships.png.", "",
              "## Limits", "",
              "- Few labels: the held-out ports hold only a few dozen ships each, so every score above moves by several "
              "points with one ship; treat differences of < 0.1 F1 as noise.",
              "- Positions are at the latent resolution (80 m cells); ship size, heading and boxes are not predicted.",
              "- Detections are per tile (no peak suppression across tile edges), so a ship on a tile edge may be "
              "reported twice."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geocodec.training.ships", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--pixel-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="data folder (default $GEOCODEC_DATA or ../shared/data)")
    a = ap.parse_args(argv)
    cmd = "python -m geocodec.training.ships" + "".join(
        f" {f} {v}" for f, v, d in (("--steps", a.steps, 3000), ("--pixel-steps", a.pixel_steps, 1500),
                                    ("--seed", a.seed, 0)) if v != d)
    run(seed=a.seed, steps=a.steps, pixel_steps=a.pixel_steps, data_dir=a.data, command=cmd,
        log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
