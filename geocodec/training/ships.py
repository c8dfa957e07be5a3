"""Ship head on the learned codec's latent grid: data, training, evaluation, ONNX export, the saved report.

One command reproduces ``geocodec/models/heads/ships.onnx``, its report ``ships_scores.json``, ``docs/ships.md``
and ``docs/img/rate_utility_ships.png``::

    geocodec train ships      # or python -m geocodec.training.ships, the same command

The page and the figure are rendered from the report alone by :mod:`geocodec.training.ships_report`
(``--report-only`` renders them again without training).

Data: sen2ships (``../shared/data/sen2ships``), 5 bands B02, B03, B04, B08, B11 as
reflectance = DN / 10000, invalid pixels (DN 0) filled like the producer does
(per-tile band mean). Each port is cut into 128 x 128 px tiles on a grid anchored at
the raster's top-left corner (stride 128); the right/bottom partial tiles are
zero-padded (as ``geocodec encode`` pads them) and kept when they hold any valid
pixel. Per tile: the share of each 80 m cell (8 px) inside a ship box (the training
target, :func:`cell_target`), the ship count per cell from the box centres (scoring).

Split: genoa and hedland are held out (as for the codec itself, docs/model-card.md);
santos lacks B02 and cannot be encoded. The 7 remaining ports (the codec's own
training ports) train the heads. The detection threshold is chosen on out-of-fold
probabilities over port folds (``THRESHOLD_FOLDS``), then the shipped head is trained
on all 7. The latent head trains on dequantized codes q * step at a random quality
1..5 per sample; training tiles are augmented by encoding shifted (64 px) and
rotated/flipped versions of the scenes with the shipped encoder.

Detections: cells whose probability is over the threshold and a 3 x 3 local maximum
within their tile. A detection matches an annotated ship whose centre lies in the
same or a neighbouring cell (Chebyshev distance <= 1 cell), one to one, best score first.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from geocodec.training import data as D

TRAIN_PORTS = ("algiers", "athens", "cartagena", "casablanca", "gdynia", "klang", "valencia")
# port folds for the threshold: each fold's ports are scored by heads trained on the other ports
# (about 50 ships per fold)
THRESHOLD_FOLDS = (("athens", "klang"), ("cartagena", "casablanca", "valencia"), ("algiers", "gdynia"))
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97,
              0.98, 0.99)
PCA_KS = (1, 2, 4, 8)         # storage baselines on the C-d cell vectors (geocodec.training.baselines)
PQ_MS = (1, 2, 3, 4, 6, 8)
HELD_OUT = D.HELD_OUT_PORTS  # ("genoa", "hedland")
TILE = 128
STRIDE = 8
K = TILE // STRIDE  # 16 cells per tile side
QUALITIES = (1, 2, 3, 4, 5)
WIDTH = 64          # channels of the latent head's conv layers
POS_WEIGHT = 4.0    # weight of ship cells in the binary cross-entropy
REPO = D.REPO_ROOT
HEAD_PATH = REPO / "geocodec" / "models" / "heads" / "ships.onnx"
REPORT_PATH = REPO / "geocodec" / "models" / "heads" / "ships_scores.json"  # every score of the run; --report-only


# -- data --------------------------------------------------------------------------------------------
@dataclass
class Port:
    """One sen2ships harbour scene with its ship annotations.

    ``data`` (5, H, W) float32 reflectance (0 where invalid), ``valid`` (H, W), ship box ``centres`` (n, 2) and COCO
    ``boxes`` (n, 4) in pixels, and the acquisition ``date`` from the file name.
    """

    name: str
    data: np.ndarray      # (5, H, W) float32 reflectance, 0 where invalid
    valid: np.ndarray     # (H, W) bool: every band > 0
    centres: np.ndarray   # (n, 2) ship box centres in pixels (x, y)
    date: str
    boxes: np.ndarray     # (n, 4) COCO boxes in pixels (x, y, width, height)


def load_port(name: str, data_dir: Path | None = None) -> Port:
    """Read port ``name`` from ``data_dir/sen2ships`` (default the data folder) with its COCO ship boxes.

    Raises ValueError if a band or the port's annotation image is missing, or its size differs from the raster.
    """
    data_dir = Path(data_dir or D.default_data_dir())
    scene = D.read_sen2ships_port(data_dir / "sen2ships" / name)
    if scene is None:
        raise ValueError(f"port {name} lacks one of the bands {D.BANDS}")
    ann = data_dir / "sen2ships" / "coco_annotations.json"
    coco = json.loads(ann.read_text())
    img = next((i for i in coco["images"] if i["file_name"] == f"{name}_rgb.tiff"), None)
    if img is None:
        raise ValueError(f"{ann}: no image {name}_rgb.tiff, so no ship boxes for port {name}")
    if (img["height"], img["width"]) != scene.shape:
        raise ValueError(f"{name}: annotation image {img['height']}x{img['width']} != raster {scene.shape}")
    boxes = np.array([a["bbox"] for a in coco["annotations"] if a["image_id"] == img["id"]], np.float64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2 if len(boxes) else np.zeros((0, 2))
    date = Path(scene.files[0]).name.split("_")[1]
    return Port(name, scene.data, scene.valid.all(axis=0), centres, date, boxes.reshape(-1, 4))


def _transform(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by k * 90 degrees, then flip left-right."""
    x = np.rot90(x, k, axes=(-2, -1))
    return np.ascontiguousarray(x[..., ::-1] if flip else x)


def tile_port(port: Port, *, offset=(0, 0), k: int = 0, flip: bool = False):
    """Tiles of a (shifted, rotated, flipped) port: reflectance tiles filled like the producer,
    centre heatmaps (N, 16, 16), counts (N,), tile (row, col) and valid-cell maps (N, 16, 16)."""
    from geocodec.producer.chunks import fill_tiles
    from geocodec.producer.tiling import cut_tiles

    oy, ox = offset
    x = port.data[:, oy:, ox:]
    v = port.valid[oy:, ox:]
    h, w = v.shape
    heat = np.zeros((h, w), np.float32)  # ship-centre counts at pixel resolution
    for cx, cy in port.centres:
        px, py = int(np.floor(cx)) - ox, int(np.floor(cy)) - oy
        if 0 <= px < w and 0 <= py < h:
            heat[py, px] += 1
    box = np.zeros((h, w), np.float32)   # 1 inside any ship box
    for bx, by, bw, bh in port.boxes:
        box[max(0, int(np.floor(by)) - oy):max(0, int(np.ceil(by + bh)) - oy),
            max(0, int(np.floor(bx)) - ox):max(0, int(np.ceil(bx + bw)) - ox)] = 1
    x, v, heat, box = (_transform(a, k, flip) for a in (x, v, heat, box))
    rows, cols, tiles = cut_tiles(x, TILE, pad=True)
    tv, th, tb = (cut_tiles(a, TILE, pad=True)[2] for a in (v, heat, box))

    def per_cell(t):  # (N, TILE, TILE) -> (N, K, K) cells of STRIDE x STRIDE pixels
        return t.reshape(len(t), K, STRIDE, K, STRIDE)

    cells = per_cell(th).sum(axis=(2, 4))
    vcell = per_cell(tv).mean(axis=(2, 4))
    cover = per_cell(tb).mean(axis=(2, 4))
    keep = tv.reshape(len(tv), -1).any(axis=1)
    tiles = fill_tiles(tiles[keep], tv[keep])
    return {"tiles": tiles, "count_map": cells[keep], "counts": cells[keep].sum(axis=(1, 2)), "cover": cover[keep],
            "rc": np.stack([rows[keep], cols[keep]], 1), "valid_cells": vcell[keep] >= 0.5}


def _latents(model, tiles: np.ndarray) -> np.ndarray:
    """Encoder latents (float32) of reflectance tiles, 64 at a time."""
    return np.concatenate([model.latents(tiles[i:i + 64]) for i in range(0, len(tiles), 64)])


def latent_set(model, port: Port, variants, keep_pixels: bool = True) -> dict:
    """Unquantized latents (float32) and targets over ``variants`` [(offset, k, flip)]; with ``keep_pixels``
    also the float16 pixel tiles of the unshifted variants rotated by 0 or 180 degrees (pixel baseline)."""
    out = {"y": [], "count_map": [], "cover": [], "tiles_px": [], "cover_px": []}
    for offset, k, flip in variants:
        t = tile_port(port, offset=offset, k=k, flip=flip)
        out["y"].append(_latents(model, t["tiles"]))
        out["count_map"].append(t["count_map"])
        out["cover"].append(t["cover"])
        if keep_pixels and tuple(offset) == (0, 0) and not (k % 2):
            out["tiles_px"].append(t["tiles"].astype(np.float16))
            out["cover_px"].append(t["cover"])
    if not out["tiles_px"]:
        del out["tiles_px"], out["cover_px"]
    return {key: np.concatenate(v) for key, v in out.items()}


# -- models --------------------------------------------------------------------------------------------
class LatentHead(nn.Module):
    """Dequantized latents (N, C, 16, 16) -> ship probability per 80 m cell (N, 16, 16) and count (N,)."""

    def __init__(self, channels: int = 24, width: int = WIDTH, scale: np.ndarray | None = None):
        super().__init__()
        self.register_buffer("inv_scale", torch.tensor(
            1.0 / (scale if scale is not None else np.ones(channels)), dtype=torch.float32).view(1, -1, 1, 1))
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 1, 1))

    def logits(self, y):
        """Ship logits per cell (N, 16, 16) of latents ``y`` (N, C, 16, 16), scaled per channel."""
        return self.net(y * self.inv_scale)[:, 0]

    def forward(self, y):
        """(ship probability per cell (N, 16, 16), their sum per tile (N,)) of latents ``y``."""
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
        """Ship logits per 80 m cell (N, 16, 16) of reflectance tiles ``x`` (N, 5, 128, 128)."""
        return self.net((torch.log(torch.clamp(x, min=0) + 0.01) - self.mean) / self.std)[:, 0]


def cell_target(cover: np.ndarray) -> np.ndarray:
    """Training target per 80 m cell from the share of the cell inside a ship box: 1 from half a cell up,
    proportionally less below (a ship 10-40 px long covers 1-5 cells; every covered cell is 'ship')."""
    return np.clip(2.0 * cover, 0.0, 1.0).astype(np.float32)


def _loss(logits, target, pos_weight: float = POS_WEIGHT):
    return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight))


def train_latent_head(y: np.ndarray, target: np.ndarray, steps_per_q, *, steps: int, seed: int, batch: int = 64,
                      log=print) -> LatentHead:
    """Train a :class:`LatentHead` on latents ``y`` (N, C, 16, 16) and cell targets ``target`` (N, 16, 16).

    Each sample is quantized with a step drawn from ``steps_per_q``; half of each batch are tiles with ships. Raises
    ValueError when no tile holds a ship. Returns the head in eval mode.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = y.std(axis=(0, 2, 3)) + 1e-3
    head = LatentHead(y.shape[1], scale=scale)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    steps_arr = np.asarray(steps_per_q, np.float32)
    yt, tt = torch.from_numpy(y), torch.from_numpy(target)
    pos = np.flatnonzero(target.reshape(len(target), -1).any(axis=1))
    if not len(pos):
        raise ValueError("no training tile holds a ship")
    for it in range(steps):
        # half the batch from tiles with ships, half uniform
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.integers(0, len(y), batch - batch // 2)])
        st = torch.from_numpy(steps_arr[rng.integers(0, len(steps_arr), batch)]).view(-1, 1, 1, 1)
        yq = torch.round(yt[idx] / st) * st
        loss = _loss(head.logits(yq), tt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 250 == 0 or it == steps - 1:
            log(f"  latent head step {it}: loss {loss.item():.4f}")
    return head.eval()


def train_pixel_head(x: np.ndarray, target: np.ndarray, *, steps: int, seed: int, batch: int = 32,
                     log=print) -> PixelHead:
    """Train the raw-pixel baseline :class:`PixelHead`; returns it in eval mode.

    Tiles ``x`` (N, 5, 128, 128), cell targets (N, 16, 16); half of each batch are tiles with ships.
    """
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
        loss = _loss(head.logits(xb), tt[idx])
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
    from geocodec.tasks.ships import local_peaks

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
    """Mean ideal code length in bits per tile of latents ``y`` (N, C, h, w) quantized at ``quality``."""
    q = model.quantize(y, quality)
    return model.entropy_model(quality, tuple(y.shape[2:])).cross_entropy_bits(q) / len(y)


# -- ONNX ----------------------------------------------------------------------------------------------
def export_head(head: LatentHead, meta: dict) -> bytes:
    """A :class:`LatentHead` as ONNX bytes, with head metadata ``meta``.

    Input ``latent`` [N, C, 16, 16]; outputs ``heatmap`` [N, 16, 16] and ``count`` [N].
    """
    import io
    import warnings

    import onnx

    from geocodec.tasks.heads import add_head_metadata

    buf = io.BytesIO()
    dummy = torch.zeros(1, head.net[0].in_channels, K, K)
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


def choose_threshold(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Threshold maximising the mean object F1 over ``sets`` [(prob, count_map, rc)]: every training port's
    out-of-fold probabilities at every quality, so no single port decides."""
    best = (0.5, -1.0)
    for t in THRESHOLDS:
        f = float(np.mean([scores(p, cm, rc, t)["obj_f1"] for p, cm, rc in sets]))
        if f > best[1]:
            best = (float(t), f)
    return best


def grid_baselines(train: np.ndarray, test: np.ndarray) -> list:
    """Storage baselines (geocodec.training.baselines) on the latent grid's C-d cell vectors: fitted on ``train``
    (N, C, 16, 16), applied to ``test``; ``decoded`` comes back as a grid."""
    from geocodec.training import baselines as B

    def cells(y):
        return y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])

    out = []
    for st in B.sweep(cells(train), cells(test), pca_ks=PCA_KS, pq_ms=PQ_MS):
        n, c, h, w = test.shape
        st.decoded = st.decoded.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()
        out.append(st)
    return out


def j2k_rows(port: Port, phead, e: dict, threshold: float, budgets: dict, *, log=print) -> dict:
    """What a user could ship instead of codes: the port's pixels as one JPEG 2000 codestream (all five bands,
    DN, invalid pixels 0) at no more bytes than the codes of each quality (``budgets``: {quality: bits per
    tile}), decoded, tiled and scored with the raw-pixel head. Keys ``JPEG 2000 @q<k> bytes``; a budget
    JPEG 2000 cannot reach is logged and left out."""
    from geocodec.training.baselines import j2k_at_bytes

    dn = np.clip(np.round(port.data * 1e4), 0, 65535).astype(np.uint16)
    n = len(e["y"])
    out = {}
    for q, bits in budgets.items():
        try:
            dec, nbytes, level = j2k_at_bytes(dn, bits * n / 8)
        except ValueError as exc:
            log(f"{port.name} JPEG 2000 at q{q}'s bytes: {exc}")
            continue
        data = np.where(port.valid[None], dec.astype(np.float32) * np.float32(1e-4), np.float32(0))
        t = tile_port(dataclasses.replace(port, data=data))
        out[f"JPEG 2000 @q{q} bytes"] = {**scores(_torch_prob(phead, t["tiles"]), e["count_map"], e["rc"], threshold),
                                        "bits_per_tile": 8.0 * nbytes / n, "j2k_target_db": round(level, 3)}
    return out


# -- the whole run -------------------------------------------------------------------------------------
def run(*, seed: int = 0, steps: int = 3000, pixel_steps: int = 1500, data_dir=None, command: str = "",
        model: str | os.PathLike | None = None, out: str | os.PathLike | None = None, doc=None, plot=None,
        log=print) -> dict:
    """``geocodec train ships``: train, threshold, export and score the ship head on the codes of ``model`` (a
    shipped model's name or folder; default the default codec).

    Writes ``ships.onnx`` and ``ships_scores.json`` into ``out`` (default geocodec/models/heads) and the report page
    ``doc`` and figure ``plot`` (default docs/ships.md, docs/img/rate_utility_ships.png); returns the report dict
    (held-out scores per quality and baseline, cross-validation, threshold).
    """
    from geocodec.atomic import atomic_output
    from geocodec.codecs.learned import LearnedModel
    from geocodec.training import ships_report
    from geocodec.training.baselines import raw_tile_bits

    t0 = time.time()
    torch.set_num_threads(1)  # small convs: one thread is fastest (and shares the CPU well)
    model = LearnedModel.load() if model is None else LearnedModel.load(model)
    head_path = HEAD_PATH if out is None else Path(out) / HEAD_PATH.name
    report_path = REPORT_PATH if out is None else Path(out) / REPORT_PATH.name
    doc, plot = doc or ships_report.DOC_PATH, plot or ships_report.PLOT_PATH
    ident = model.identity()
    steps_q = [model.step(q) for q in QUALITIES]
    variants = [((oy, ox), k, f) for oy in (0, 64) for ox in (0, 64) for k in range(4) for f in (False, True)]
    log(f"encoding training ports {TRAIN_PORTS} x {len(variants)} variants")
    train_sets, plain = {}, {}
    for p in tqdm(TRAIN_PORTS, desc="encoding ports", unit="port"):
        port = load_port(p, data_dir)
        train_sets[p] = latent_set(model, port, variants)
        t = tile_port(port)
        plain[p] = {"y": _latents(model, t["tiles"]), "tiles": t["tiles"], "count_map": t["count_map"], "rc": t["rc"]}
    held_ports = {}
    for p in HELD_OUT:
        port = held_ports[p] = load_port(p, data_dir)
        t = tile_port(port)
        plain[p] = {"y": _latents(model, t["tiles"]), "tiles": t["tiles"], "count_map": t["count_map"], "rc": t["rc"],
                    "date": port.date}
    n_lat = sum(len(v["y"]) for v in train_sets.values())
    n_px = sum(len(v["tiles_px"]) for v in train_sets.values())
    log(f"  {n_lat} latent tiles, {n_px} pixel tiles, {time.time() - t0:.0f} s")

    def fit(ports, tag):
        y = np.concatenate([train_sets[p]["y"] for p in ports])
        tgt = cell_target(np.concatenate([train_sets[p]["cover"] for p in ports]))
        log(f"{tag}: latent head on {', '.join(ports)}")
        head = train_latent_head(y, tgt, steps_q, steps=steps, seed=seed, log=log)
        del y, tgt
        x = np.concatenate([train_sets[p]["tiles_px"] for p in ports])
        tgt = cell_target(np.concatenate([train_sets[p]["cover_px"] for p in ports]))
        log(f"{tag}: raw-pixel baseline")
        return head, train_pixel_head(x, tgt, steps=pixel_steps, seed=seed, log=log)

    # 1. threshold: out-of-fold probabilities on every training port (port folds), at every quality
    oof, poof, cv = [], [], {}
    for fold in THRESHOLD_FOLDS:
        head, phead = fit([p for p in TRAIN_PORTS if p not in fold], f"fold {'+'.join(fold)}")
        for p in fold:
            e = plain[p]
            cv[p] = {"latent": [_torch_prob(head, np.round(e["y"] / s) * s) for s in steps_q],
                     "pixel": _torch_prob(phead, e["tiles"])}
            oof += [(pr, e["count_map"], e["rc"]) for pr in cv[p]["latent"]]
            poof.append((cv[p]["pixel"], e["count_map"], e["rc"]))
    thr, cv_f1 = choose_threshold(oof)
    pthr, pcv_f1 = choose_threshold(poof)
    log(f"threshold {thr} (out-of-fold mean object F1 {cv_f1:.3f}); pixel baseline {pthr} ({pcv_f1:.3f})")
    cv_scores = {p: {**{f"q{q}": scores(cv[p]["latent"][i], plain[p]["count_map"], plain[p]["rc"], thr)
                        for i, q in enumerate(QUALITIES)},
                     "raw pixels": scores(cv[p]["pixel"], plain[p]["count_map"], plain[p]["rc"], pthr)}
                 for p in TRAIN_PORTS}

    # 2. the shipped head and the pixel baseline: all training ports
    head, phead = fit(list(TRAIN_PORTS), "final")
    y_fit = np.concatenate([train_sets[p]["y"][:: 8] for p in TRAIN_PORTS])  # baselines' PCA / PQ fit
    del train_sets

    meta = {"task": "ships",
            "input": {"kind": "latent_grid", "shape": [int(model.card["channels"]), K, K], "name": "latent",
                      "values": "dequantized latents q * step of the file's codec"},
            "output": {"kind": "heatmap", "names": ["ship"], "outputs": ["heatmap", "count"],
                       "shape": [K, K], "cell_m": STRIDE * 10.0, "values": "ship probability per cell",
                       "threshold": thr, "peak": "3x3 local maximum within the tile",
                       "count": "sum of cell probabilities (the CLI counts detections instead)"},
            "classes": [{"name": "ship", "color": "#ff0000"}],
            "codec": {"name": "geocodec-s2-learned", "qualities": list(QUALITIES), "model_sha256": ident["sha256"],
                      "model": f"{ident['name']} {ident['version']}"},
            "training": {"data": "sen2ships (../shared/data/sen2ships), COCO ship boxes -> share of each 80 m "
                                 "cell inside a ship box",
                         "split": {"train": list(TRAIN_PORTS),
                                   "threshold": "out-of-fold over port folds " + "; ".join("+".join(f) for f in
                                                                                          THRESHOLD_FOLDS),
                                   "held_out": list(HELD_OUT), "unused": "santos (no B02)"},
                         "command": command, "seed": seed, "steps": steps}}
    onnx_bytes = export_head(head, meta)
    run_head = _ort(onnx_bytes)
    # onnxruntime vs torch
    chk = plain[HELD_OUT[0]]["y"][:8]
    diff = float(np.abs(run_head(chk) - _torch_prob(head, chk)).max())
    if diff > 1e-4:
        raise RuntimeError(f"onnxruntime differs from torch by {diff}")

    results = {}
    for p in HELD_OUT:
        e = plain[p]
        rows = {}
        for q, s in zip(QUALITIES, steps_q):
            sc = scores(run_head(np.round(e["y"] / s) * s), e["count_map"], e["rc"], thr)
            sc["bits_per_tile"] = bits_per_tile(model, e["y"], q)
            rows[f"q{q}"] = sc
        for st in grid_baselines(y_fit, e["y"]):
            rows[st.name + "+zstd"] = {**scores(run_head(st.decoded), e["count_map"], e["rc"], thr),
                                       "bits_per_tile": st.bits_per(len(e["y"])), "side_bits": st.side_bits}
        rows["raw pixels"] = {**scores(_torch_prob(phead, e["tiles"]), e["count_map"], e["rc"], pthr),
                              "bits_per_tile": float(raw_tile_bits(e["tiles"]).mean())}
        rows.update(j2k_rows(held_ports[p], phead, e, pthr, {q: rows[f"q{q}"]["bits_per_tile"] for q in QUALITIES},
                             log=log))
        results[p] = rows
        log(f"{p}: " + ", ".join(f"{k} F1 {v['obj_f1']:.2f} @ {v['bits_per_tile']:.0f} b" for k, v in rows.items()))

    meta["scores"] = {"threshold": thr, "threshold_cv_obj_f1": cv_f1,
                      "held_out": {p: {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()}
                                       for k, r in rows.items() if k.startswith("q") or k == "float32+zstd"}
                                   for p, rows in results.items()}}
    onnx_bytes = add_meta_scores(onnx_bytes, meta["scores"])
    head_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(head_path) as tmp:
        Path(tmp).write_bytes(onnx_bytes)
    report = {"results": results, "cv": cv_scores, "threshold": thr, "cv_f1": cv_f1, "pixel_threshold": pthr,
              "pixel_cv_f1": pcv_f1, "train_tiles": n_lat, "pixel_tiles": n_px, "steps": steps,
              "pixel_steps": pixel_steps, "seed": seed, "minutes": (time.time() - t0) / 60, "command": command,
              "ships": {p: int(plain[p]["count_map"].sum()) for p in plain},
              "tiles": {p: int(len(plain[p]["y"])) for p in plain}, "onnx_check": diff,
              "model": f"{ident['name']} {ident['version']} (encoder sha256 {ident['sha256'][:12]}...)",
              "channels": int(model.card["channels"])}
    report["date"] = _dt.date.today().isoformat()
    with atomic_output(report_path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=lambda o: o.item()) + "\n")
    ships_report.write(report_path, doc, plot)
    log(f"wrote {head_path}, {report_path}, {doc}, {plot} in "
        f"{report['minutes']:.1f} min")
    return report


def add_meta_scores(onnx_bytes: bytes, sc: dict) -> bytes:
    """``onnx_bytes`` with the head's ``scores`` metadata set to ``sc``."""
    from geocodec.tasks.heads import add_head_metadata

    return add_head_metadata(onnx_bytes, {"scores": sc})


def main(argv=None) -> int:
    """``python -m geocodec.training.ships``: the same command as ``geocodec train ships``."""
    from geocodec.training.commands import main as train_main

    return train_main("ships", argv)


if __name__ == "__main__":
    raise SystemExit(main())
