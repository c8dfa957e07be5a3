"""Train, export and score the task heads ``landcover.onnx`` and ``monitor.onnx`` (torch).

Reproduce with::

    python -m geocodec.training.heads --out geocodec/models/heads --docs docs/heads.md

Data: the Rondonia point series (real Sentinel-2 L2A, 4701 points x 11 dates x 10 bands,
9 classes, one label per series). Each date's B02, B03, B04, B08, B11 pixel is encoded as a
uniform 32 x 32 patch with the shipped codec (:mod:`geocodec.series`: a homogeneous-field
approximation, not image patches) and the centre latent cell is kept, dequantized.

Split: spatial blocks of 0.5 deg x 0.5 deg (lon/lat) assigned to 5 folds (largest block first
to the smallest fold, so the folds hold similar numbers of points). Scores are 5-fold
block cross-validation (every point scored by a head that never saw its block) and the
fold-0 hold-out; the shipped heads are the ones trained without fold 0.

torch is imported inside the functions, so :func:`spatial_folds` and the constants import
without it (the tests use them).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

LANDCOVER_COLORS = {
    "Forest": "#1a7f37", "Mountainside_Forest": "#4d9221", "Riparian_Forest": "#2ca25f",
    "Seasonally_Flooded": "#41b6c4", "Wetland": "#7fcdbb", "Water": "#2166ac",
    "Clear_Cut_Bare_Soil": "#d8b365", "Clear_Cut_Burned_Area": "#8c2d04", "Clear_Cut_Vegetation": "#c2e699",
}
#: per-date classes of the monitoring head: the three forest classes merged into Forest
MONITOR_CLASSES = ["Forest", "Seasonally_Flooded", "Wetland", "Water", "Clear_Cut_Bare_Soil",
                   "Clear_Cut_Burned_Area", "Clear_Cut_Vegetation"]
MONITOR_MAP = {"Forest": "Forest", "Mountainside_Forest": "Forest", "Riparian_Forest": "Forest"}
CLEAR_CUT = [c for c in MONITOR_CLASSES if c.startswith("Clear_Cut")]
FOREST_LIKE = ["Forest"]
#: dates of a clear-cut series taken as clear-cut samples: the last three (Oct, Nov, Dec 2022)
CLEAR_CUT_DATES = (8, 9, 10)
QUALITIES = (1, 2, 3, 4, 5)
BLOCK_DEG = 0.5
N_FOLDS = 5
SHIPPED_FOLD = 0
COMMAND = "python -m geocodec.training.heads --out geocodec/models/heads --docs docs/heads.md"


def spatial_folds(lon: np.ndarray, lat: np.ndarray, n_folds: int = N_FOLDS, block_deg: float = BLOCK_DEG) -> np.ndarray:
    """Fold index per point: ``block_deg`` lon/lat blocks, largest first to the smallest fold."""
    bx = np.floor(np.asarray(lon) / block_deg).astype(np.int64)
    by = np.floor(np.asarray(lat) / block_deg).astype(np.int64)
    keys, inv, counts = np.unique(np.stack([bx, by], 1), axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = sorted(range(len(keys)), key=lambda i: (-counts[i], keys[i][0], keys[i][1]))
    sizes = np.zeros(n_folds, np.int64)
    block_fold = np.zeros(len(keys), np.int64)
    for i in order:
        f = int(np.argmin(sizes))
        block_fold[i] = f
        sizes[f] += counts[i]
    return block_fold[inv]


# -- metrics ------------------------------------------------------------------------------------
def macro_f1(y: np.ndarray, p: np.ndarray, k: int) -> float:
    f1s = []
    for c in range(k):
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def zstd_bits(arrays: list[np.ndarray], n_items: int, level: int = 19) -> float:
    import pyarrow as pa

    codec = pa.Codec("zstd", compression_level=level)
    total = sum(len(codec.compress(np.ascontiguousarray(a).tobytes(), asbytes=True)) for a in arrays)
    return 8.0 * total / n_items


# -- torch ---------------------------------------------------------------------------------------
def _mlp(d_in: int, hidden: list[int], k: int, dropout: float):
    import torch.nn as nn

    mods, d = [], d_in
    for h in hidden:
        mods += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
        d = h
    mods.append(nn.Linear(d, k))
    return nn.Sequential(*mods)


def train_mlp(x_sets: list[np.ndarray], y: np.ndarray, k: int, *, hidden=(128, 64), epochs: int = 80,
              dropout: float = 0.2, seed: int = 0, lr: float = 2e-3, batch: int = 256, weight_decay: float = 1e-4,
              balanced: bool = False):
    """Train an MLP on flattened inputs. ``x_sets``: one or more aligned input versions (e.g. the codes
    at each quality); each sample of each batch draws one of them (mixed-quality training).
    Returns (layers [(W (in, out), b)], mean, std, torch module)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = np.stack([np.asarray(x, np.float32).reshape(len(y), -1) for x in x_sets])  # (V, N, F)
    mean = xs.reshape(-1, xs.shape[-1]).mean(0)
    std = xs.reshape(-1, xs.shape[-1]).std(0)
    # floor: a feature (latent channel) that is (almost) constant in training must not blow up when a real
    # file gives it another value
    std = np.maximum(std, 1e-2 * std.max())
    xt = torch.from_numpy((xs - mean) / std)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    net = _mlp(xs.shape[-1], list(hidden), k, dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(y)
    steps = epochs * max(1, n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    cw = None
    if balanced:  # inverse class frequency, normalised to mean 1 over the samples
        cnt = np.bincount(np.asarray(y), minlength=k).astype(np.float64)
        cw = torch.tensor(len(y) / (k * np.maximum(cnt, 1)), dtype=torch.float32)
    lossf = torch.nn.CrossEntropyLoss(weight=cw)
    net.train()
    s = 0
    while s < steps:
        perm = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            idx = perm[i:i + batch]
            v = rng.integers(0, xs.shape[0], len(idx))
            xb = xt[torch.from_numpy(v), torch.from_numpy(idx)]
            loss = lossf(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            s += 1
            if s >= steps:
                break
    net.eval()
    layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
              for m in net if isinstance(m, torch.nn.Linear)]
    return layers, mean.astype(np.float32), std.astype(np.float32), net


def torch_predict(net, mean, std, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        z = torch.from_numpy(((np.asarray(x, np.float32).reshape(len(x), -1) - mean) / std).astype(np.float32))
        return torch.softmax(net(z), dim=1).numpy()


# -- data ----------------------------------------------------------------------------------------
def prepare(progress: bool = True) -> dict:
    from ..datasets import load_rondonia
    from ..learned import LearnedModel
    from ..series import homogeneous_latents, pick_bands, quantize

    d = load_rondonia()
    model = LearnedModel.load()
    x5 = pick_bands(d["X"])
    t0 = time.time()
    lat = homogeneous_latents(model, x5, progress=progress)
    names = sorted(np.unique(d["y"]).tolist())
    y = np.array([names.index(v) for v in d["y"]])
    q = {k: quantize(lat, model.step(k)) for k in QUALITIES}
    deq = {k: q[k].astype(np.float32) * np.float32(model.step(k)) for k in QUALITIES}
    return {"d": d, "model": model, "x5": x5, "lat": lat, "q": q, "deq": deq, "names": names, "y": y,
            "folds": spatial_folds(d["lon"], d["lat"]), "encode_s": time.time() - t0}


def _scores(y, prob, k):
    p = prob.argmax(1)
    return {"oa": float((p == y).mean()), "f1": macro_f1(y, p, k)}


def int8_per_vector(v: np.ndarray):
    scale = np.abs(v).max(axis=-1, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float16)
    q = np.clip(np.round(v / scale.astype(np.float32)), -127, 127).astype(np.int8)
    return q, scale, q.astype(np.float32) * scale.astype(np.float32)


def pca_int8(train: np.ndarray, test: np.ndarray, k: int = 3):
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    comp = vt[:k]
    ztr = (train - mu) @ comp.T
    s = np.abs(ztr).max(0) / 127.0
    z = np.clip(np.round(((test - mu) @ comp.T) / s), -127, 127).astype(np.int8)
    return z, (z.astype(np.float32) * s) @ comp + mu


# -- landcover -----------------------------------------------------------------------------------
def run_landcover(P: dict, *, epochs: int = 80, folds=None, log=print) -> dict:
    from ..series import bits_per_cell

    y, k, model = P["y"], len(P["names"]), P["model"]
    n, t, _ = P["x5"].shape
    res: dict = {}
    rates: dict = {}
    shipped = None
    for f in (range(N_FOLDS) if folds is None else folds):
        tr, te = P["folds"] != f, P["folds"] == f
        t0 = time.time()
        out = {}
        # raw-pixel head and its degraded-input baselines
        L, m, s, net = train_mlp([P["x5"][tr]], y[tr], k, epochs=epochs, seed=f)
        xte = P["x5"][te]
        out["raw float32"] = _scores(y[te], torch_predict(net, m, s, xte), k)
        out["raw float16"] = _scores(y[te], torch_predict(net, m, s, xte.astype(np.float16).astype(np.float32)), k)
        i8, sc, deq8 = int8_per_vector(xte)
        out["raw int8/vector"] = _scores(y[te], torch_predict(net, m, s, deq8), k)
        zp, deqp = pca_int8(P["x5"][tr].reshape(-1, 5), xte.reshape(-1, 5), 3)
        out["raw PCA3+int8"] = _scores(y[te], torch_predict(net, m, s, deqp.reshape(xte.shape)), k)
        nte = int(te.sum()) * t
        r = rates.setdefault(f, {})
        r["raw float32"] = zstd_bits([xte], nte)
        r["raw float16"] = zstd_bits([xte.astype(np.float16)], nte)
        r["raw int8/vector"] = zstd_bits([i8, sc], nte)
        r["raw PCA3+int8"] = zstd_bits([zp], nte)
        # float latents
        L, m, s, net = train_mlp([P["lat"][tr]], y[tr], k, epochs=epochs, seed=f)
        out["latent float32"] = _scores(y[te], torch_predict(net, m, s, P["lat"][te]), k)
        r["latent float32"] = zstd_bits([P["lat"][te]], nte)
        # mixed-quality head (shipped) at every quality
        L, m, s, net = train_mlp([P["deq"][q][tr] for q in QUALITIES], y[tr], k, epochs=epochs, seed=f)
        for q in QUALITIES:
            out[f"codes mixed q{q}"] = _scores(y[te], torch_predict(net, m, s, P["deq"][q][te]), k)
            r[f"codes q{q}"] = bits_per_cell(model, P["q"][q][te], q)
        out["codes mixed @float"] = _scores(y[te], torch_predict(net, m, s, P["lat"][te]), k)
        if f == SHIPPED_FOLD:
            shipped = (L, m, s, net)
        # one head per quality
        for q in QUALITIES:
            _, m2, s2, net2 = train_mlp([P["deq"][q][tr]], y[tr], k, epochs=epochs, seed=f)
            out[f"codes per-q q{q}"] = _scores(y[te], torch_predict(net2, m2, s2, P["deq"][q][te]), k)
        res[f] = {"n_test": int(te.sum()), "n_train": int(tr.sum()), "scores": out}
        log(f"landcover fold {f}: {int(tr.sum())} train / {int(te.sum())} test points, {time.time() - t0:.0f} s; "
            f"raw {out['raw float32']['oa']:.3f}, latent {out['latent float32']['oa']:.3f}, "
            + ", ".join(f"q{q} {out[f'codes mixed q{q}']['oa']:.3f}" for q in QUALITIES))
    return {"folds": res, "rates": rates, "shipped": shipped, "epochs": epochs}


# -- monitor -------------------------------------------------------------------------------------
def monitor_samples(y_names: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(point index, date index) pairs with a per-date label, and the label (index in MONITOR_CLASSES)."""
    pts, dts, lab = [], [], []
    for i, c in enumerate(y_names):
        c2 = MONITOR_MAP.get(c, c)
        dates = CLEAR_CUT_DATES if c2 in CLEAR_CUT else range(t)
        for j in dates:
            pts.append(i)
            dts.append(j)
            lab.append(MONITOR_CLASSES.index(c2))
    return np.array(pts), np.array(dts), np.array(lab)


def event_stats(classes: np.ndarray, y_names: np.ndarray) -> dict:
    """Event detection over series: per labelled class, the share of series with an event."""
    from ..monitor import detect_events

    has = np.array([len(detect_events(row, MONITOR_CLASSES)) > 0 for row in classes])
    first = [detect_events(row, MONITOR_CLASSES) for row in classes]
    out = {}
    for c in sorted(set(y_names)):
        sel = y_names == c
        out[c] = {"series": int(sel.sum()), "with_event": int(has[sel].sum()),
                  "starts_forest": int((classes[sel, 0] == 0).sum())}
    cc = np.isin(y_names, CLEAR_CUT)
    forest = np.isin(y_names, ["Forest", "Mountainside_Forest", "Riparian_Forest"])
    other = ~cc & ~forest
    months = [int(e[0]["index"]) for e, c in zip(first, cc) if c and e]
    return {"per_class": out, "clear_cut_detected": float(has[cc].mean()), "forest_false_event": float(has[forest].mean()),
            "other_false_event": float(has[other].mean()) if other.any() else 0.0,
            "event_date_index_histogram": np.bincount(months, minlength=classes.shape[1]).tolist()}


def run_monitor(P: dict, *, epochs: int = 40, folds=None, log=print) -> dict:
    y_names = P["d"]["y"]
    n, t, c = P["lat"].shape
    pts, dts, lab = monitor_samples(y_names, t)
    k = len(MONITOR_CLASSES)
    res, shipped = {}, None
    for f in (range(N_FOLDS) if folds is None else folds):
        t0 = time.time()
        trs = P["folds"][pts] != f
        tes = ~trs
        te_pts = P["folds"] == f
        L, m, s, net = train_mlp([P["deq"][q][pts[trs], dts[trs]] for q in QUALITIES], lab[trs], k,
                                 hidden=(64, 64), epochs=epochs, seed=100 + f, dropout=0.1, balanced=False)
        out = {}
        for q in [*QUALITIES, None]:
            src = P["lat"] if q is None else P["deq"][q]
            key = "float" if q is None else f"q{q}"
            sc = _scores(lab[tes], torch_predict(net, m, s, src[pts[tes], dts[tes]]), k)
            series = src[te_pts]
            cls = torch_predict(net, m, s, series.reshape(-1, c)).argmax(1).reshape(-1, t)
            out[key] = {"per_date": sc, "events": event_stats(cls, y_names[te_pts])}
        if f == SHIPPED_FOLD:
            shipped = (L, m, s, net)
        res[f] = out
        log(f"monitor fold {f}: {time.time() - t0:.0f} s; q3 per-date OA {out['q3']['per_date']['oa']:.3f}, clear-cut "
            f"series with event {out['q3']['events']['clear_cut_detected']:.3f}, forest false events "
            f"{out['q3']['events']['forest_false_event']:.3f}")
    return {"folds": res, "shipped": shipped}


# -- export --------------------------------------------------------------------------------------
def _codec_meta(model) -> dict:
    from ..learned import CODEC_NAME
    from ..onnx_model import sha256_hex

    return {"name": CODEC_NAME, "model": model.card["name"], "qualities": list(QUALITIES),
            "model_sha256": sha256_hex(model.file_bytes("encoder")),
            "decoder_sha256": sha256_hex(model.file_bytes("embedding_decoder"))}


def _summary(res: dict, key: str, metric: str) -> tuple[float, float]:
    v = [r["scores"][key][metric] for r in res.values()]
    return float(np.mean(v)), float(np.std(v))


def export(P: dict, lc: dict, mon: dict, out_dir: Path) -> dict:
    from ..fewshot import mlp_onnx
    from ..heads import add_head_metadata

    out_dir.mkdir(parents=True, exist_ok=True)
    model, t = P["model"], P["lat"].shape[1]
    dates = [str(d)[:10] for d in P["d"]["dates"]]
    split = (f"spatial blocks of {BLOCK_DEG} deg lon/lat, {N_FOLDS} folds (largest block first to the smallest fold); "
             f"this head: trained on folds != {SHIPPED_FOLD}, scored on fold {SHIPPED_FOLD}")
    files = {}
    # landcover
    L, m, s, net = lc["shipped"]
    onnx_bytes = mlp_onnx(L, input_shape=[t, 24], mean=m, std=s, flatten=True, name="geocodec_landcover")
    f0 = lc["folds"][SHIPPED_FOLD]["scores"]
    te = np.flatnonzero(P["folds"] == SHIPPED_FOLD)[:8]
    ref = torch_predict(net, m, s, P["deq"][3][te])
    lc_meta = {
        "task": "landcover",
        "input": {"kind": "latent_cell_series", "shape": [t, 24], "dates": dates,
                  "cell": "dequantized codes q*step of one latent cell per date (from point series: the centre cell "
                          "of a uniform 32x32 patch, geocodec.series.point_series_codes)",
                  "date_alignment": "other dates: nearest day of year (geocodec.series.align_to_dates)"},
        "output": {"kind": "class_probabilities", "names": P["names"]},
        "classes": [{"name": c, "color": LANDCOVER_COLORS.get(c, "#888888")} for c in P["names"]],
        "codec": _codec_meta(model),
        "training": {"data": "rondonia/rondonia_s2l2a_monthly.npz (INPE sits samples, real Sentinel-2 L2A 2022)",
                     "split": split, "command": COMMAND, "architecture": "MLP 264-128-64-9, ReLU, dropout 0.2",
                     "epochs": lc.get("epochs"),
                     "inputs": "codes at qualities 1..5 mixed (each sample draws a quality)",
                     "date": _dt.date.today().isoformat(),
                     "check": {"rondonia_indices": te.tolist(), "quality": 3,
                               "torch_probabilities": np.round(ref, 7).tolist()}},
        "scores": {"heldout_fold": SHIPPED_FOLD, "n_test": lc["folds"][SHIPPED_FOLD]["n_test"],
                   **{f"q{q}": f0[f"codes mixed q{q}"] for q in QUALITIES},
                   "bits_per_point_date": {f"q{q}": lc["rates"][SHIPPED_FOLD][f"codes q{q}"] for q in QUALITIES}},
    }
    data = add_head_metadata(onnx_bytes, lc_meta)
    (out_dir / "landcover.onnx").write_bytes(data)
    files["landcover"] = len(data)
    # monitor
    L, m, s, net = mon["shipped"]
    onnx_bytes = mlp_onnx(L, input_shape=[None, 24], mean=m, std=s, flatten=False, name="geocodec_monitor")
    mf0 = mon["folds"][SHIPPED_FOLD]
    mon_meta = {
        "task": "monitor",
        "input": {"kind": "latent_cell_series", "shape": [None, 24],
                  "cell": "dequantized codes q*step of one latent cell per date; any number of dates"},
        "output": {"kind": "class_probabilities_per_date", "names": MONITOR_CLASSES,
                   "events": {"from": FOREST_LIKE, "to": CLEAR_CUT, "min_run": 2,
                              "rule": "first date whose class is a clear-cut class for >= min_run consecutive dates "
                                      "right after a date of a 'from' class"}},
        "classes": [{"name": c, "color": LANDCOVER_COLORS.get(c, "#888888")} for c in MONITOR_CLASSES],
        "codec": _codec_meta(model),
        "training": {"data": "rondonia/rondonia_s2l2a_monthly.npz", "split": split, "command": COMMAND,
                     "architecture": "per-date MLP 24-64-64-7, ReLU, dropout 0.1",
                     "labels": "one label per series: Forest/Mountainside_Forest/Riparian_Forest -> Forest, "
                               "Seasonally_Flooded, Wetland, Water on every date; clear-cut classes on their last "
                               f"dates only (indices {list(CLEAR_CUT_DATES)})",
                     "inputs": "single-date codes at qualities 1..5 mixed; unweighted cross-entropy (class-balanced weights gave many false Forest->clear-cut events)", "date": _dt.date.today().isoformat()},
        "scores": {"heldout_fold": SHIPPED_FOLD, **{k: {"per_date": v["per_date"],
                                                         "clear_cut_detected": v["events"]["clear_cut_detected"],
                                                         "forest_false_event": v["events"]["forest_false_event"]}
                                                     for k, v in mf0.items()}},
    }
    data = add_head_metadata(onnx_bytes, mon_meta)
    (out_dir / "monitor.onnx").write_bytes(data)
    files["monitor"] = len(data)
    return files


# -- docs ----------------------------------------------------------------------------------------
def rate_utility_plot(lc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, rates = lc["folds"], lc["rates"]

    def rate(key):
        return float(np.mean([r[key] for r in rates.values()]))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [rate(f"codes q{q}") for q in QUALITIES]
    ys = [_summary(res, f"codes mixed q{q}", "oa")[0] for q in QUALITIES]
    es = [_summary(res, f"codes mixed q{q}", "oa")[1] for q in QUALITIES]
    ax.errorbar(xs, ys, yerr=es, marker="o", color="#d95f02", label="geocodec codes q1..q5 (mixed-quality head)",
                capsize=3)
    for q, x_, y_ in zip(QUALITIES, xs, ys):
        ax.annotate(f"q{q}", (x_, y_), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ys2 = [_summary(res, f"codes per-q q{q}", "oa")[0] for q in QUALITIES]
    ax.plot(xs, ys2, marker="s", ls=":", color="#e6ab02", label="geocodec codes, one head per quality")
    for key, mk, col in (("raw float32", "^", "#1b9e77"), ("raw float16", "v", "#1b9e77"),
                         ("raw int8/vector", "D", "#7570b3"), ("raw PCA3+int8", "P", "#e7298a"),
                         ("latent float32", "*", "#666666")):
        mu, sd = _summary(res, key, "oa")
        ax.errorbar([rate(key)], [mu], yerr=[sd], marker=mk, color=col, ls="none", capsize=3, ms=8,
                    label=f"{key} + zstd" + (" (raw-pixel head)" if key.startswith("raw") else " (latent head)"))
    ax.axhline(_summary(res, "raw float32", "oa")[0], color="#1b9e77", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("bits per point-date (per-date 5-band pixel; zstd-19 or codec cross-entropy)")
    ax.set_ylabel("overall accuracy, 9 classes (5-fold spatial block CV)")
    ax.set_title("Rondonia land cover: rate vs. utility")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_docs(P: dict, lc: dict, mon: dict, files: dict, path: Path, plot_rel: str, wall_s: float,
               epochs: int = 40) -> None:
    res, rates = lc["folds"], lc["rates"]

    def rate(key):
        return float(np.mean([r[key] for r in rates.values()]))

    def cell(key, metric):
        mu, sd = _summary(res, key, metric)
        return f"{mu:.3f} ± {sd:.3f}"

    f0 = res[SHIPPED_FOLD]["scores"]
    fold_sizes = [int((P["folds"] == f).sum()) for f in range(N_FOLDS)]
    import onnxruntime
    import torch

    L = ["# Task heads: land cover and monitoring on geocodec codes", "",
         "_Generated by `geocodec.training.heads`; do not edit by hand — rerun the command below._", "",
         f"- **Command:** `{COMMAND}`",
         f"- **Date:** {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC; wall time {wall_s:.0f} s "
         f"(encoding {P['encode_s']:.0f} s) on {os.cpu_count()} CPU(s); Python {platform.python_version()}, "
         f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}",
         f"- **Files:** `geocodec/models/heads/landcover.onnx` ({files['landcover']:,} bytes), "
         f"`geocodec/models/heads/monitor.onnx` ({files['monitor']:,} bytes); ONNX with the metadata of "
         "`geocodec.heads` (task, input, output, classes, codec sha256s, training, scores)",
         f"- **Data:** `rondonia/rondonia_s2l2a_monthly.npz` (real Sentinel-2 L2A 2022, INPE sits samples): "
         f"{len(P['y'])} points x {P['lat'].shape[1]} dates, one of 9 labels per series. Bands B02, B03, B04, B08, "
         "B11 picked from the 10.",
         "- **How points become codes (homogeneous-field approximation):** the samples are single pixels, not "
         "images. Each date's 5-band pixel is encoded with the shipped codec `s2-5band-v1` as a *uniform* 32 x 32 "
         "patch; the latent cell at the centre of the 4 x 4 latent grid is kept (24 channels) and quantized at "
         "each quality (q = round(latent / step), dequantized q * step). A real file's cell sees a textured 80 m "
         "neighbourhood, so scores on real files can differ from these; the heads are trained on this "
         "approximation (`geocodec.series.point_series_codes`).",
         f"- **Split (no leakage across space):** {BLOCK_DEG}° x {BLOCK_DEG}° lon/lat blocks, assigned to "
         f"{N_FOLDS} folds, largest block first to the currently smallest fold (fold sizes {fold_sizes}). "
         "**5-fold block CV**: every point is scored by a head that never saw its block (mean ± std over folds). "
         f"The **shipped heads** are trained on folds != {SHIPPED_FOLD} and scored on fold {SHIPPED_FOLD} "
         f"({res[SHIPPED_FOLD]['n_test']} points). No hyper-parameter was tuned on these folds beyond a first "
         f"run with the defaults written here (MLP 264-128-64-9, {epochs} epochs, AdamW, one-cycle lr 2e-3; "
         "monitor: half the epochs).",
         "- **Rates:** bits per point-date = one date's 5-band pixel. geocodec: ideal code length "
         "(cross-entropy) of the 24 integer codes under the model's tables at that quality "
         "(`geocodec.entropy.cross_entropy_bits`), averaged over the test folds; baselines: the test fold's array "
         "compressed with zstd level 19 (pyarrow), divided by point-dates. float16 = values rounded to float16; "
         "int8/vector = int8 with one float16 scale per point-date (max|x|/127); PCA3+int8 = 3 principal "
         "components (fitted on the training folds) with a fixed per-component int8 scale. Baselines run the "
         "raw-pixel head (trained on float32) on the degraded inputs.",
         "", "## Land cover (`landcover.onnx`): 9 classes from the 11-date series", "",
         f"![rate vs utility]({plot_rel})", "",
         "| input | bits / point-date | OA (5-fold CV) | macro-F1 (5-fold CV) | OA fold 0 | macro-F1 fold 0 |",
         "|---|---:|---:|---:|---:|---:|"]
    rows = [("raw float32 pixels (raw-pixel head)", "raw float32"), ("raw float16", "raw float16"),
            ("raw int8 / vector", "raw int8/vector"), ("raw PCA3 + int8", "raw PCA3+int8"),
            ("unquantized float latents (latent head)", "latent float32")]
    for label, key in rows:
        L.append(f"| {label} | {rate(key):.1f} | {cell(key, 'oa')} | {cell(key, 'f1')} | "
                 f"{f0[key]['oa']:.3f} | {f0[key]['f1']:.3f} |")
    for q in QUALITIES:
        key = f"codes mixed q{q}"
        L.append(f"| **geocodec q{q}** (shipped mixed-quality head) | {rate(f'codes q{q}'):.1f} | {cell(key, 'oa')} | "
                 f"{cell(key, 'f1')} | {f0[key]['oa']:.3f} | {f0[key]['f1']:.3f} |")
    key = "codes mixed @float"
    L.append(f"| mixed-quality head on float latents | – | {cell(key, 'oa')} | {cell(key, 'f1')} | "
             f"{f0[key]['oa']:.3f} | {f0[key]['f1']:.3f} |")
    L += ["", "One head per quality (trained and scored at that quality only), for the choice of a single "
          "mixed-quality head:", "", "| quality | OA mixed head | OA per-quality head | macro-F1 mixed | macro-F1 per-quality |",
          "|---|---:|---:|---:|---:|"]
    for q in QUALITIES:
        L.append(f"| q{q} | {cell(f'codes mixed q{q}', 'oa')} | {cell(f'codes per-q q{q}', 'oa')} | "
                 f"{cell(f'codes mixed q{q}', 'f1')} | {cell(f'codes per-q q{q}', 'f1')} |")
    gain = np.mean([_summary(res, f"codes per-q q{q}", "oa")[0] - _summary(res, f"codes mixed q{q}", "oa")[0]
                    for q in QUALITIES])
    L += ["", f"Mean OA gain of per-quality heads over the mixed head: {gain:+.3f}. "
          + ("That is within the fold-to-fold spread, so one mixed-quality head is shipped (one file serves every "
             "quality)." if abs(gain) < 0.02 else
             "One mixed-quality head is still shipped (one file for every quality); see the table for the cost."), ""]

    L += ["## Monitoring (`monitor.onnx`): class per date and change events", "",
          "**What can be trained:** the labels are one per series. The per-date classifier learns Forest "
          "(Forest, Mountainside_Forest and Riparian_Forest merged), Seasonally_Flooded, Wetland and Water from "
          "every date of their series (these are taken as stable through the year), and the three clear-cut "
          f"classes from the last three dates of their series only (indices {list(CLEAR_CUT_DATES)}: Oct–Dec 2022), "
          "since the clearing date is unknown. Trained on single-date codes at mixed qualities, unweighted cross-entropy (class-balanced weights were tried once and gave far more false events on forest series: 13–53 % per fold).",
          "",
          "**Event rule** (`geocodec.monitor.detect_events`): an event is the first date whose class is a clear-cut "
          "class for >= 2 consecutive dates, right after a Forest date; the event date is that first clear-cut date.",
          "",
          "**What is measured:** per-date accuracy on the per-date labels above (held-out blocks); the share of "
          "clear-cut labelled series that get an event (a *detection rate*, not a date accuracy); the share of "
          "forest series (3 forest classes) and of other non-clear-cut series that get an event (false events). "
          "**Not measured:** whether the event *date* is right (no per-date truth exists in these labels), "
          "clearings before January 2022 (a series that is never Forest cannot have an event), and degradation "
          "or regrowth events.", "",
          "| input | per-date OA (CV) | per-date macro-F1 (CV) | clear-cut series with event (CV) | forest series with a false event (CV) | other series with an event (CV) |",
          "|---|---:|---:|---:|---:|---:|"]
    mres = mon["folds"]

    def mcell(key, fn):
        v = [fn(r[key]) for r in mres.values()]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    for key in ["float", *[f"q{q}" for q in QUALITIES]]:
        L.append(f"| {'float latents' if key == 'float' else 'geocodec ' + key} | "
                 f"{mcell(key, lambda r: r['per_date']['oa'])} | {mcell(key, lambda r: r['per_date']['f1'])} | "
                 f"{mcell(key, lambda r: r['events']['clear_cut_detected'])} | "
                 f"{mcell(key, lambda r: r['events']['forest_false_event'])} | "
                 f"{mcell(key, lambda r: r['events']['other_false_event'])} |")
    ev = mres[SHIPPED_FOLD]["q3"]["events"]
    L += ["", f"Fold {SHIPPED_FOLD} (shipped head) at q3, per labelled class:", "",
          "| series label | series | with an event | first date classed Forest |", "|---|---:|---:|---:|"]
    for c, v in ev["per_class"].items():
        L.append(f"| {c} | {v['series']} | {v['with_event']} | {v['starts_forest']} |")
    dates = [str(d)[:10] for d in P["d"]["dates"]]
    hist = ev["event_date_index_histogram"]
    L += ["", "Event dates of the clear-cut series (fold 0, q3): " +
          ", ".join(f"{dates[i]}: {h}" for i, h in enumerate(hist) if h), "",
          "## Few-shot heads (`geocodec train-head`)", "",
          "`geocodec.fewshot.train_head` fits a multinomial logistic regression (L2, balanced class weights, "
          "300 full-batch Nesterov steps) in numpy on standardized embeddings and writes it as ONNX (MatMul, Add, "
          "Softmax) with the same metadata (task `custom`, input kind `embedding` and its dimension, classes with "
          "colours, the file's model and decoder sha256). No torch, seconds on a laptop.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geocodec.training.heads", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="geocodec/models/heads")
    ap.add_argument("--docs", default="docs/heads.md")
    ap.add_argument("--plot", default="docs/img/rate_utility_landcover.png")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", type=int, nargs="*", help="only these folds (default all; fold 0 is always run)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.time()
    P = prepare(progress=not a.quiet)
    print(f"encoded {P['lat'].shape[0]} x {P['lat'].shape[1]} point-dates in {P['encode_s']:.0f} s", flush=True)
    folds = sorted(set([SHIPPED_FOLD, *(a.folds or range(N_FOLDS))]))
    log = lambda s: print(s, flush=True)  # noqa: E731
    lc = run_landcover(P, epochs=a.epochs, folds=folds, log=log)
    mon = run_monitor(P, epochs=max(10, a.epochs // 2), folds=folds, log=log)
    files = export(P, lc, mon, Path(a.out))
    plot = Path(a.plot)
    rate_utility_plot(lc, plot)
    docs = Path(a.docs)
    rel = os.path.relpath(plot, docs.parent)
    write_docs(P, lc, mon, files, docs, rel, time.time() - t0, epochs=a.epochs)
    with open(Path(a.out) / "scores.json", "w") as f:
        json.dump({"landcover": {str(k): v for k, v in lc["folds"].items()},
                   "rates": {str(k): v for k, v in lc["rates"].items()},
                   "monitor": {str(k): v for k, v in mon["folds"].items()}}, f, indent=1)
    print(f"wrote {a.out}/landcover.onnx, {a.out}/monitor.onnx, {a.out}/scores.json, {docs}, {plot} "
          f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
