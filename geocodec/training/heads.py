"""Train, export and score the task heads ``landcover.onnx`` and ``monitor.onnx`` (torch).

Reproduce with::

    python -m geocodec.training.heads --out geocodec/models/heads --docs docs/heads.md

Data: the Rondonia point series (real Sentinel-2 L2A, 4701 points x 11 dates x 10 bands,
9 classes, one label per series). Each date's B02, B03, B04, B08, B11 pixel is encoded as a
uniform 32 x 32 patch with the shipped codec (:mod:`geocodec.tasks.series`: a homogeneous-field
approximation, not image patches) and the centre latent cell is kept, dequantized.

Split: spatial blocks of 0.5 deg x 0.5 deg (lon/lat) assigned to 5 folds (largest block first
to the smallest fold, so the folds hold similar numbers of points). Scores are 5-fold
block cross-validation (every point scored by a head that never saw its block) and the
fold-0 hold-out; the shipped heads are the ones trained without fold 0.

Rate–utility (docs/heads.md, docs/img/rate_utility_*.png): per test fold, the codec's codes at q1..q5
(shipped kind of head), the float latents stored the other ways of :mod:`geocodec.training.baselines` (float32,
float16, int8/vector, PCA-k + int8, faiss PQ; fitted on the training folds; a head trained on float32
latents), and the raw-pixel baseline (a head on the uncompressed bands), each against its bits per
point-date.

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

from geocodec.atomic import atomic_output

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


def train_mlp_stack(x_sets: list[np.ndarray], y: np.ndarray, k: int, *, hidden=(128, 64), epochs: int = 80,
                    dropout: float = 0.2, seed: int = 0, lr: float = 2e-3, batch: int = 256,
                    weight_decay: float = 1e-4, balanced: bool = False) -> list:
    """One MLP per input of ``x_sets`` (aligned, same labels), trained all at once with the recipe of
    :func:`train_mlp` given a single input: same init, standardization, batches, AdamW, one-cycle lr,
    dropout, loss. The heads are independent (the loss is the sum of the heads' losses, so each gets its own
    gradient, and AdamW works per element) but share each step's batch and dropout masks (so each head
    trains as :func:`train_mlp` would; only their noise is correlated), batched with ``baddbmm``: K heads
    cost less than half of K single ones. Returns a list of (layers, mean, std, torch module) as :func:`train_mlp`."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = np.stack([np.asarray(x, np.float32).reshape(len(y), -1) for x in x_sets])  # (K, N, F)
    n_heads = xs.shape[0]
    mean = xs.mean(1)
    std = xs.std(1)
    std = np.maximum(std, 1e-2 * std.max(1, keepdims=True))   # the floor of train_mlp, per head
    xt = torch.from_numpy((xs - mean[:, None]) / std[:, None])
    yt = torch.from_numpy(np.asarray(y, np.int64))
    nets = [_mlp(xs.shape[-1], list(hidden), k, dropout) for _ in range(n_heads)]
    lins = [[m for m in net if isinstance(m, torch.nn.Linear)] for net in nets]
    ws = [torch.nn.Parameter(torch.stack([ls[j].weight.detach().T for ls in lins])) for j in range(len(lins[0]))]
    bs = [torch.nn.Parameter(torch.stack([ls[j].bias.detach()[None] for ls in lins])) for j in range(len(lins[0]))]
    opt = torch.optim.AdamW([*ws, *bs], lr=lr, weight_decay=weight_decay)
    n = len(y)
    steps = epochs * max(1, n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    cw = None
    if balanced:
        cnt = np.bincount(np.asarray(y), minlength=k).astype(np.float64)
        cw = torch.tensor(len(y) / (k * np.maximum(cnt, 1)), dtype=torch.float32)
    lossf = torch.nn.CrossEntropyLoss(weight=cw)
    s = 0
    while s < steps:
        perm = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            idx = torch.from_numpy(perm[i:i + batch])
            h = xt[:, idx]                                        # (K, B, F)
            for j, (w, b) in enumerate(zip(ws, bs)):
                h = torch.baddbmm(b, h, w)
                if j < len(ws) - 1:   # ReLU, then dropout with one mask (B, H) for every head
                    keep = (torch.rand(h.shape[1:]) >= dropout).float() / (1.0 - dropout)
                    h = torch.relu(h) * keep
            # mean over K * B samples, times K = the sum of the heads' own mean losses
            loss = lossf(h.reshape(-1, k), yt[idx].repeat(n_heads)) * n_heads
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            s += 1
            if s >= steps:
                break
    out = []
    with torch.no_grad():
        for hd, (net, ls) in enumerate(zip(nets, lins)):
            for j, lin in enumerate(ls):
                lin.weight.copy_(ws[j][hd].T)
                lin.bias.copy_(bs[j][hd, 0])
            net.eval()
            layers = [(lin.weight.numpy().T.copy(), lin.bias.numpy().copy()) for lin in ls]
            out.append((layers, mean[hd].astype(np.float32), std[hd].astype(np.float32), net))
    return out


def torch_predict(net, mean, std, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        z = torch.from_numpy(((np.asarray(x, np.float32).reshape(len(x), -1) - mean) / std).astype(np.float32))
        return torch.softmax(net(z), dim=1).numpy()


# -- data ----------------------------------------------------------------------------------------
def prepare(progress: bool = True) -> dict:
    from geocodec.training.datasets import load_rondonia
    from geocodec.codecs.learned import LearnedModel
    from geocodec.tasks.series import homogeneous_latents, pick_bands, quantize

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


# -- storage: the codec and the other ways to keep the same point-dates ------------------------------
#: baselines of the float latents (geocodec.training.baselines), swept to span the codec's rates (q1..q5: ~12-52 bits);
#: PCA stops at 6: the latents of uniform patches have 5 live dimensions (PCA-8: the error of PCA-6, 11 more bits)
PCA_KS = (1, 2, 3, 4, 6)
PQ_MS = (1, 2, 3, 4, 6, 8)
PQ_NBITS = 8
#: lossy storage of the raw bands (secondary table: the raw-pixel head on degraded bands)
RAW_PCA_KS = (2, 3, 4)


def fold_storage(P: dict, f: int) -> dict:
    """Every stored form of the point-dates, for test fold ``f`` (cached in ``P``).

    ``latent``: {name: Stored} of the test fold's float latents for each baseline (fitted on the training
    folds' latents, all their point-dates); ``latent_all``: {name: (N, T, d)} what a consumer reads back for
    *every* point (training folds and test fold, each stored with the same fitted baseline), to train heads
    on; ``raw``: {name: Stored} of the test fold's 5-band pixels; ``bits``: bits per point-date of the test
    fold per key (``latent <name>``, ``raw <name>``, ``codes q<q>``); ``side_bits``: parameters sent once
    (PCA basis, PQ codebooks). Decoded arrays of ``latent`` and ``raw`` are (n_test, T, d)."""
    from geocodec.training import baselines as B
    from geocodec.tasks.series import bits_per_cell

    cache = P.setdefault("storage", {})
    if f in cache:
        return cache[f]
    tr, te = P["folds"] != f, P["folds"] == f
    n_te, t, c = P["lat"][te].shape
    nte = n_te * t
    lat_tr, lat_te = P["lat"][tr].reshape(-1, c), P["lat"][te].reshape(-1, c)
    apply = {"float32": B.float32, "float16": B.float16, "int8/vector": B.int8_per_vector}
    for k in PCA_KS:
        apply[f"pca{k}+int8"] = B.PCAInt8.fit(lat_tr, k).apply
    for m in PQ_MS:
        if c % m == 0:
            apply[f"pq{m}x{PQ_NBITS}"] = B.ProductQuantizer.fit(lat_tr, m, PQ_NBITS, seed=f).apply
    out = {"latent": {}, "latent_all": {}, "raw": {}, "bits": {}, "side_bits": {}}
    for name, fn in apply.items():
        st = fn(lat_te)
        full = P["lat"].copy()
        full[te] = st.decoded.reshape(n_te, t, c)
        if name != "float32":
            full[tr] = fn(lat_tr).decoded.reshape(-1, t, c)
        out["latent"][st.name] = st
        out["latent_all"][st.name] = full
    xtr, xte = P["x5"][tr].reshape(-1, 5), P["x5"][te].reshape(-1, 5)
    dn = B.raw_dn(xte)  # L2A's own quantization (reflectance x 1e4, uint16)
    raw = [B.float32(xte), B.Stored("uint16 DN", B.zstd_bits(dn), dn.astype(np.float32) / np.float32(1e4)),
           B.float16(xte), B.int8_per_vector(xte), *[B.PCAInt8.fit(xtr, k).apply(xte) for k in RAW_PCA_KS]]
    out["raw"] = {s.name: s for s in raw}
    for fam in ("latent", "raw"):
        for s in out[fam].values():
            s.decoded = s.decoded.reshape(n_te, t, -1)
            out["bits"][f"{fam} {s.name}"] = s.bits / nte
            out["side_bits"][f"{fam} {s.name}"] = s.side_bits
    for q in QUALITIES:
        out["bits"][f"codes q{q}"] = bits_per_cell(P["model"], P["q"][q][te], q)
    cache[f] = out
    return out


def latent_names() -> list[str]:
    """Names of the float-latent baselines, in table order."""
    return (["float32", "float16", "int8/vector"] + [f"pca{k}+int8" for k in PCA_KS]
            + [f"pq{m}x{PQ_NBITS}" for m in PQ_MS if 24 % m == 0])


# -- landcover -----------------------------------------------------------------------------------
def run_landcover(P: dict, *, epochs: int = 80, folds=None, log=print) -> dict:
    """Per fold, the heads and what each is scored on (keys of ``folds[f]["scores"]``):

    - raw-pixel head (trained on float32 bands): ``raw <storage>`` for each stored form of the bands;
    - one head per latent baseline, trained on what that baseline gives back for the training folds:
      ``latent <baseline>``; the one trained on float32 latents (the float-latent head) is also run on the
      other baselines' test latents (``float head on latent <baseline>``) and on the codes
      (``float head on codes q<q>``);
    - mixed-quality codes head (the shipped kind): ``codes mixed q<q>``; one head per quality:
      ``codes per-q q<q>``."""
    y, k = P["y"], len(P["names"])
    res: dict = {}
    rates: dict = {}
    side: dict = {}
    shipped = None
    for f in (range(N_FOLDS) if folds is None else folds):
        tr, te = P["folds"] != f, P["folds"] == f
        t0 = time.time()
        S = fold_storage(P, f)
        ts = time.time() - t0
        rates[f], side[f] = S["bits"], S["side_bits"]
        out = {}
        # raw-pixel baseline: a head on the uncompressed bands, run on each stored form of the bands
        L, m, s, net = train_mlp([P["x5"][tr]], y[tr], k, epochs=epochs, seed=f)
        for name, st in S["raw"].items():
            out[f"raw {name}"] = _scores(y[te], torch_predict(net, m, s, st.decoded), k)
        # embedding baselines: each read by a head trained on that baseline's output
        names = list(S["latent"])
        heads = train_mlp_stack([S["latent_all"][nm][tr] for nm in names], y[tr], k, epochs=epochs, seed=f)
        for name, (_, m, s, net) in zip(names, heads):
            out[f"latent {name}"] = _scores(y[te], torch_predict(net, m, s, S["latent"][name].decoded), k)
        _, m, s, net = heads[names.index("float32")]
        for name, st in S["latent"].items():
            out[f"float head on latent {name}"] = _scores(y[te], torch_predict(net, m, s, st.decoded), k)
        for q in QUALITIES:
            out[f"float head on codes q{q}"] = _scores(y[te], torch_predict(net, m, s, P["deq"][q][te]), k)
        # mixed-quality head (shipped) at every quality
        L, m, s, net = train_mlp([P["deq"][q][tr] for q in QUALITIES], y[tr], k, epochs=epochs, seed=f)
        for q in QUALITIES:
            out[f"codes mixed q{q}"] = _scores(y[te], torch_predict(net, m, s, P["deq"][q][te]), k)
        if f == SHIPPED_FOLD:
            shipped = (L, m, s, net)
        # one head per quality
        heads = train_mlp_stack([P["deq"][q][tr] for q in QUALITIES], y[tr], k, epochs=epochs, seed=f)
        for q, (_, m2, s2, net2) in zip(QUALITIES, heads):
            out[f"codes per-q q{q}"] = _scores(y[te], torch_predict(net2, m2, s2, P["deq"][q][te]), k)
        res[f] = {"n_test": int(te.sum()), "n_train": int(tr.sum()), "scores": out}
        log(f"landcover fold {f}: {int(tr.sum())} train / {int(te.sum())} test points, {time.time() - t0:.0f} s "
            f"(storage {ts:.0f} s); raw {out['raw float32']['oa']:.3f}, latent {out['latent float32']['oa']:.3f}, "
            + ", ".join(f"q{q} {out[f'codes mixed q{q}']['oa']:.3f}" for q in QUALITIES))
    return {"folds": res, "rates": rates, "side_bits": side, "shipped": shipped, "epochs": epochs}


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
    from geocodec.tasks.monitor import detect_events

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
    """``folds[f]``: the mixed-quality codes head (shipped kind) on codes ``q<q>`` and on float latents
    (``float``). ``extra[f]``: keys as in :func:`run_landcover` (``latent <baseline>``: a per-date head
    trained on that baseline's output; ``float head on latent <baseline>``, ``float head on codes q<q>``;
    ``raw float32`` and ``raw uint16 DN``: a per-date head on the raw pixels), each {"per_date", "events"}."""
    y_names = P["d"]["y"]
    n, t, c = P["lat"].shape
    pts, dts, lab = monitor_samples(y_names, t)
    k = len(MONITOR_CLASSES)
    res, extra, shipped = {}, {}, None
    kw = dict(hidden=(64, 64), epochs=epochs, dropout=0.1, balanced=False)
    for f in (range(N_FOLDS) if folds is None else folds):
        t0 = time.time()
        S = fold_storage(P, f)
        trs = P["folds"][pts] != f
        tes = ~trs
        te_pts = P["folds"] == f
        # test samples as (row in the test fold, date) of the fold's (n_test, T, d) arrays
        row = np.searchsorted(np.flatnonzero(te_pts), pts[tes])
        y_te = y_names[te_pts]

        def evaluate(net, m, s, series):
            """series: (n_test, T, d) of the test fold"""
            prob = torch_predict(net, m, s, series.reshape(-1, series.shape[-1])).reshape(len(series), t, k)
            sc = _scores(lab[tes], prob[row, dts[tes]], k)
            return {"per_date": sc, "events": event_stats(prob.argmax(-1), y_te)}

        L, m, s, net = train_mlp([P["deq"][q][pts[trs], dts[trs]] for q in QUALITIES], lab[trs], k, seed=100 + f, **kw)
        out = {}
        for q in [*QUALITIES, None]:
            src = P["lat"] if q is None else P["deq"][q]
            out["float" if q is None else f"q{q}"] = evaluate(net, m, s, src[te_pts])
        if f == SHIPPED_FOLD:
            shipped = (L, m, s, net)
        names = list(S["latent"])
        heads = train_mlp_stack([S["latent_all"][nm][pts[trs], dts[trs]] for nm in names], lab[trs], k,
                                seed=100 + f, **kw)
        ex = {f"latent {nm}": evaluate(net2, m2, s2, S["latent"][nm].decoded)
              for nm, (_, m2, s2, net2) in zip(names, heads)}
        _, m2, s2, net2 = heads[names.index("float32")]
        ex.update({f"float head on latent {nm}": evaluate(net2, m2, s2, st.decoded) for nm, st in S["latent"].items()})
        ex.update({f"float head on codes q{q}": evaluate(net2, m2, s2, P["deq"][q][te_pts]) for q in QUALITIES})
        _, m3, s3, net3 = train_mlp([P["x5"][pts[trs], dts[trs]]], lab[trs], k, seed=100 + f, **kw)
        ex.update({f"raw {name}": evaluate(net3, m3, s3, S["raw"][name].decoded) for name in ("float32", "uint16 DN")})
        res[f], extra[f] = out, ex
        log(f"monitor fold {f}: {time.time() - t0:.0f} s; q3 per-date OA {out['q3']['per_date']['oa']:.3f}, clear-cut "
            f"series with event {out['q3']['events']['clear_cut_detected']:.3f}, forest false events "
            f"{out['q3']['events']['forest_false_event']:.3f}; float-latent head "
            f"{ex['latent float32']['per_date']['oa']:.3f}, raw-pixel head {ex['raw float32']['per_date']['oa']:.3f}")
    return {"folds": res, "extra": extra, "shipped": shipped}


# -- export --------------------------------------------------------------------------------------
def _codec_meta(model) -> dict:
    from geocodec.codecs.learned import CODEC_NAME
    from geocodec.format.onnx_model import sha256_hex

    return {"name": CODEC_NAME, "model": model.card["name"], "qualities": list(QUALITIES),
            "model_sha256": sha256_hex(model.file_bytes("encoder")),
            "decoder_sha256": sha256_hex(model.file_bytes("embedding_decoder"))}


def _summary(res: dict, key: str, metric: str) -> tuple[float, float]:
    v = [r["scores"][key][metric] for r in res.values()]
    return float(np.mean(v)), float(np.std(v))


def export(P: dict, lc: dict, mon: dict, out_dir: Path) -> dict:
    from geocodec.tasks.fewshot import mlp_onnx
    from geocodec.tasks.heads import add_head_metadata

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
                          "of a uniform 32x32 patch, geocodec.tasks.series.point_series_codes)",
                  "date_alignment": "other dates: nearest day of year (geocodec.tasks.series.align_to_dates)"},
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
_LAT_LABEL = {"float32": "float32", "float16": "float16", "int8/vector": "int8 / vector"}


def _lat_label(name: str) -> str:
    if name in _LAT_LABEL:
        return _LAT_LABEL[name]
    if name.startswith("pca"):
        return f"PCA-{name[3:].split('+')[0]} + int8"
    return f"PQ-{name[2:].split('x')[0]} x {PQ_NBITS} bit"


def rate_utility_plot(pts: dict, path: Path, *, title: str, ylabel: str, per_q: bool = False,
                      raw_lossy: bool = False) -> None:
    """``pts``: key -> (bits per point-date, score), keys ``codes q<q>`` (codec, shipped head),
    ``codes per-q q<q>`` (optional), ``latent <baseline>`` (a head trained on that baseline's output),
    ``raw <storage>`` (raw-pixel head). Drawn with :func:`geocodec.training.rate_plot.draw` (the look of every
    rate–utility figure); points far below the codec fall under the axis and are named at its bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    from geocodec.training.rate_plot import draw, save

    fig, ax = plt.subplots(figsize=(10, 5.4))
    codec = [(f"q{q}", *pts[f"codes q{q}"]) for q in QUALITIES]
    base = {f"{k[len('latent '):]} + zstd": v for k, v in pts.items() if k.startswith("latent ")}
    raw = {"raw pixels, uint16 DN + zstd (raw-pixel head)": pts["raw uint16 DN"]}
    draw(ax, codec, base, raw, codec_label="geocodec q1..q5 (shipped mixed-quality head)")
    if per_q:
        ax.plot([pts[f"codes q{q}"][0] for q in QUALITIES], [pts[f"codes per-q q{q}"][1] for q in QUALITIES],
                marker="s", ls=":", color="#e6ab02", ms=5, label="geocodec, one head per quality")
    if raw_lossy:
        keys = [f"raw pca{k}+int8" for k in RAW_PCA_KS]
        ax.plot([pts[k][0] for k in keys], [pts[k][1] for k in keys], marker=".", color="#a6a6a6", lw=1, ls="--",
                label="raw bands PCA-k + int8 + zstd, k=" + ",".join(map(str, RAW_PCA_KS)) + " (raw-pixel head)")
    ax.axhline(pts["raw uint16 DN"][1], color="black", ls="--", lw=0.6)
    lo = min(v[1] for v in pts.values() if v[1] >= min(c[2] for c in codec) - 0.08) - 0.02
    ax.set_ylim(bottom=lo)
    for k, (x, y) in pts.items():
        if y < lo:
            ax.annotate(f"{_lat_label(k.split(' ', 1)[1])}: {y:.3f} (below)", (x, lo), textcoords="offset points",
                        xytext=(3, 3), fontsize=7, color="#555555")
    ax.set_xticks([6, 8, 12, 16, 24, 32, 48, 64, 100, 200, 350, 700])
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits per point-date (codec: ideal code length; baselines: zstd-19; log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + "\nbaselines: each read by a head trained on its own output", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, path)
    plt.close(fig)


def _mean_rate(rates: dict, key: str) -> float:
    return float(np.mean([r[key] for r in rates.values()]))


def landcover_points(lc: dict) -> dict:
    res, rates = lc["folds"], lc["rates"]
    pts = {}
    for q in QUALITIES:
        pts[f"codes q{q}"] = (_mean_rate(rates, f"codes q{q}"), _summary(res, f"codes mixed q{q}", "oa")[0])
        pts[f"codes per-q q{q}"] = (_mean_rate(rates, f"codes q{q}"), _summary(res, f"codes per-q q{q}", "oa")[0])
    for key in rates[next(iter(rates))]:
        if key.startswith(("latent ", "raw ")):
            pts[key] = (_mean_rate(rates, key), _summary(res, key, "oa")[0])
    return pts


def _mon_values(mon: dict, key: str, fn) -> list:
    """Per fold: the shipped head's results for ``q<q>``/``float``, the extra heads' for other keys."""
    return [fn(mon["folds"][f][key] if key in mon["folds"][f] else mon["extra"][f][key]) for f in mon["folds"]]


def monitor_points(mon: dict, rates: dict) -> dict:
    oa = lambda r: r["per_date"]["oa"]  # noqa: E731
    pts = {f"codes q{q}": (_mean_rate(rates, f"codes q{q}"), float(np.mean(_mon_values(mon, f"q{q}", oa))))
           for q in QUALITIES}
    for key in mon["extra"][next(iter(mon["extra"]))]:
        if key.startswith(("latent ", "raw ")):
            pts[key] = (_mean_rate(rates, key), float(np.mean(_mon_values(mon, key, oa))))
    return pts


def matched_rate_table(score, rates: dict, metric: str) -> list[str]:
    """Markdown rows comparing each codec quality with the PQ and the PCA point of the largest rate not above
    the codec's (no pick of the best): paired per-fold differences. ``score(fold, key)`` with keys
    ``codes q<q>`` (the codec's shipped head) and ``latent <baseline>``."""
    folds = list(rates)
    out = [f"| codec | bits | {metric} | PQ at ≤ rate | bits | Δ {metric} PQ − codec (folds where PQ is higher) | "
           f"PCA at ≤ rate | bits | Δ {metric} PCA − codec (folds where PCA is higher) |",
           "|---|---:|---:|---|---:|---:|---|---:|---:|"]
    wins = {"PQ": 0, "PCA": 0}
    for q in QUALITIES:
        ck = f"codes q{q}"
        r = _mean_rate(rates, ck)
        line = f"| q{q} | {r:.1f} | {np.mean([score(f, ck) for f in folds]):.3f} |"
        for fam, keys in (("PQ", [f"latent pq{m}x{PQ_NBITS}" for m in PQ_MS]),
                          ("PCA", [f"latent pca{k}+int8" for k in PCA_KS])):
            below = [k for k in keys if k in rates[folds[0]] and _mean_rate(rates, k) <= r]
            if not below:
                line += " – | – | – |"
                continue
            k = max(below, key=lambda k: _mean_rate(rates, k))
            d = np.array([score(f, k) - score(f, ck) for f in folds])
            wins[fam] += int(d.mean() > 0)
            line += (f" {_lat_label(k[7:])} | {_mean_rate(rates, k):.1f} | {d.mean():+.3f} ± {d.std():.3f} "
                     f"({int((d > 0).sum())}/{len(d)}) |")
        out.append(line)
    out += ["", f"At a rate no higher than the codec's, PQ scores higher on average (paired over folds) at "
            f"{wins['PQ']} of {len(QUALITIES)} qualities, PCA at {wins['PCA']} of {len(QUALITIES)}."]
    return out


def _nmse(P: dict, decoded_by_fold: dict) -> float:
    """Squared error of decoded latents over the latents' total variance, pooled over the test folds."""
    err = tot = 0.0
    mu = P["lat"].reshape(-1, P["lat"].shape[-1]).mean(0)
    for f, dec in decoded_by_fold.items():
        x = P["lat"][P["folds"] == f]
        err += float(np.sum((dec - x) ** 2))
        tot += float(np.sum((x - mu) ** 2))
    return err / tot


def write_docs(P: dict, lc: dict, mon: dict, files: dict, path: Path, plots: dict, wall_s: float,
               epochs: int = 40, threads: int = 1) -> None:
    res, rates, side = lc["folds"], lc["rates"], lc["side_bits"]
    folds = list(res)

    def rate(key):
        return _mean_rate(rates, key)

    def cell(key, metric):
        mu, sd = _summary(res, key, metric)
        return f"{mu:.3f} ± {sd:.3f}"

    def nmse_latent(name):
        return _nmse(P, {f: P["storage"][f]["latent"][name].decoded for f in folds})

    def nmse_codes(q):
        return _nmse(P, {f: P["deq"][q][P["folds"] == f] for f in folds})

    f0 = res[SHIPPED_FOLD]["scores"]
    fold_sizes = [int((P["folds"] == f).sum()) for f in range(N_FOLDS)]
    n_pd = np.mean([res[f]["n_test"] for f in folds]) * P["lat"].shape[1]
    pq_side = side[folds[0]][f"latent pq1x{PQ_NBITS}"]
    ch_std = P["lat"].reshape(-1, P["lat"].shape[-1]).std(0)
    small = ch_std < 0.05 * ch_std.max()
    dn = P["x5"].astype(np.float64) * 1e4
    off_grid = float(np.mean(np.abs(dn - np.round(dn)) > 1e-2))
    import faiss
    import onnxruntime
    import torch

    L = ["# Task heads: land cover and monitoring on geocodec codes", "",
         "_Generated by `geocodec.training.heads`; do not edit by hand — rerun the command below._", "",
         f"- **Command:** `{COMMAND}`",
         f"- **Date:** {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC; wall time {wall_s:.0f} s "
         f"(encoding {P['encode_s']:.0f} s) with {threads} thread(s) on {os.cpu_count()} CPU(s); Python "
         f"{platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
         f"faiss {faiss.__version__}",
         f"- **Files:** `geocodec/models/heads/landcover.onnx` ({files['landcover']:,} bytes), "
         f"`geocodec/models/heads/monitor.onnx` ({files['monitor']:,} bytes); ONNX with the metadata of "
         "`geocodec.tasks.heads` (task, input, output, classes, codec sha256s, training, scores); every score below "
         "also in `geocodec/models/heads/scores.json`",
         f"- **Data:** `rondonia/rondonia_s2l2a_monthly.npz` (real Sentinel-2 L2A 2022, INPE sits samples): "
         f"{len(P['y'])} points x {P['lat'].shape[1]} dates, one of 9 labels per series. Bands B02, B03, B04, B08, "
         "B11 picked from the 10.",
         "- **How points become codes (homogeneous-field approximation):** the samples are single pixels, not "
         "images. Each date's 5-band pixel is encoded with the shipped codec `s2-5band-v1` as a *uniform* 32 x 32 "
         "patch; the latent cell at the centre of the 4 x 4 latent grid is kept (24 channels: the *float latent*) "
         "and quantized at each quality (q = round(latent / step), dequantized q * step). A real file's cell sees "
         "a textured 80 m neighbourhood, so scores on real files can differ from these; the heads are trained on "
         "this approximation (`geocodec.tasks.series.point_series_codes`).",
         f"- **Split (no leakage across space):** {BLOCK_DEG}° x {BLOCK_DEG}° lon/lat blocks, assigned to "
         f"{N_FOLDS} folds, largest block first to the currently smallest fold (fold sizes {fold_sizes}). "
         "**5-fold block CV**: every point is scored by a head that never saw its block (mean ± std over folds). "
         f"The **shipped heads** are trained on folds != {SHIPPED_FOLD} and scored on fold {SHIPPED_FOLD} "
         f"({res[SHIPPED_FOLD]['n_test']} points). No hyper-parameter was tuned on these folds beyond a first "
         f"run with the defaults written here (MLP 264-128-64-9, {epochs} epochs, AdamW, one-cycle lr 2e-3; "
         "monitor: half the epochs).",
         "",
         "## Rate–utility: what each row is", "",
         "Every row stores the same test point-dates (one date of one point) in some way; the score is that of a "
         "head trained on the training folds and run on what a consumer reads back from that storage. Rates are "
         "**bits per point-date**, averaged over the 5 test folds.", "",
         "- **geocodec q1..q5**: the 24 integer codes at that quality; rate = ideal code length (cross-entropy) "
         "under the model's tables (`geocodec.format.entropy.cross_entropy_bits`). Head: the **shipped kind**, one "
         "mixed-quality head trained on the "
         "dequantized codes at q1..q5 (each sample draws a quality).",
         "- **Embedding baselines** (`geocodec.training.baselines`): the same point-date's 24-d float latent (the "
         "encoder's output before quantization) stored the ways a user would without geocodec; rate = zstd "
         "level 19 (pyarrow) of the stored arrays of a test fold (one frame per array, as a Parquet column chunk "
         "holds it) divided by its point-dates. Head: **one head per baseline, trained on what that baseline "
         "gives back** for the training folds' point-dates (same MLP and recipe; the baseline is fitted on the "
         "training folds and applied to both): a user of a PQ or PCA product has only the decoded vectors to "
         "train on, just as the codec's head is trained on decoded codes. Last column: the **float-latent head** "
         "(the one trained on float32 latents) run on the same input instead. That head was the first choice "
         f"for every baseline, but it is erratic on any lossy input: {int(small.sum())} of the {len(ch_std)} "
         f"latent channels are nearly constant on these uniform patches (std {ch_std[small].min():.3f}–"
         f"{ch_std[small].max():.3f} against {ch_std[~small].min():.1f}–{ch_std[~small].max():.1f} for the other "
         f"{int((~small).sum())}); a head trained on exact floats uses them, and every quantizer scaled to the "
         f"large channels (int8, PCA, the codec: its q5 step is {P['model'].step(5):g}) rounds them away. Its "
         "scores on lossy inputs swing either way (see the column) and are no measure of the storage.",
         "  - *float32*, *float16*: the latents as they are, or rounded to half precision;",
         "  - *int8 / vector*: int8 with one float16 scale per point-date (max |x| / 127);",
         f"  - *PCA-k + int8* (k = {', '.join(map(str, PCA_KS))}): k principal components fitted on the training "
         "folds' latents (all their point-dates), int8 with one scale per component (max |z| / 127 on training);",
         f"  - *PQ-m x {PQ_NBITS} bit* (m = {', '.join(map(str, PQ_MS))}): faiss product quantization, m "
         f"sub-vectors of 24/m dimensions, one byte each (2^{PQ_NBITS} k-means centroids per sub-vector, fitted on "
         "the training folds' latents).",
         "  - PCA bases and PQ codebooks are sent once per file and are **not** in the rate (a file of many tiles "
         f"amortises them): a PQ codebook set is {pq_side / 8 / 1024:.0f} KiB "
         f"({pq_side / n_pd:.0f} bits per point-date over one test fold of ~{n_pd:,.0f} point-dates), a PCA-6 "
         f"basis {side[folds[0]]['latent pca6+int8'] / 8 / 1024:.1f} KiB.",
         "- **Raw-pixel baseline**: the same MLP trained on the uncompressed float32 5-band pixels (no codec), "
         "scored on the bands as stored. Rate: the bands as uint16 DN (reflectance x 10^4, the quantization L2A "
         f"ships; {off_grid:.0%} of this file's values are off that grid, by at most 0.5 DN) + zstd, or as "
         "float32 + zstd.",
         "- **NMSE**: squared error of the decoded latents over the latents' total variance (pooled over the test "
         "folds); 0 = the float latents. The codec's NMSE is that of the dequantized codes.",
         "- **Caveat (intrinsic dimension):** here each latent is the encoder's output for a uniform patch, i.e. a "
         "function of 5 band values, so the 24-d latents lie near a 5-d surface and PCA with 6 components leaves "
         "only its int8 rounding (NMSE column). PCA and PQ are fitted on exactly these latents and exploit that; a "
         "real file's cells see texture and their latents span more dimensions. The codec's tables were trained on "
         "real image tiles, not on these. So the PCA/PQ rows are optimistic for real files.",
         "", "## Land cover (`landcover.onnx`): 9 classes from the 11-date series", "",
         f"![rate vs utility, land cover]({plots['landcover']})", "",
         "Plot: mean OA over the 5 folds. The fold-to-fold std (≈ ±0.09, table) is mostly shared by all rows, "
         "which are scored on the same folds.", "",
         "| storage | bits / point-date | head trained on | NMSE | OA (5-fold CV) | macro-F1 (5-fold CV) | OA fold 0 | "
         "macro-F1 fold 0 | OA (CV), float-latent head |",
         "|---|---:|---|---:|---:|---:|---:|---:|---:|"]

    def row(label, rkey, head, nm, key, other):
        return (f"| {label} | {rate(rkey):.1f} | {head} | {nm} | {cell(key, 'oa')} | {cell(key, 'f1')} | "
                f"{f0[key]['oa']:.3f} | {f0[key]['f1']:.3f} | {other} |")

    L.append(row("raw pixels, uint16 DN + zstd", "raw uint16 DN", "float32 bands", "–", "raw uint16 DN", "–"))
    L.append(row("raw pixels, float32 + zstd", "raw float32", "float32 bands", "–", "raw float32", "–"))
    for name in latent_names():
        L.append(row(f"latents, {_lat_label(name)}", f"latent {name}", "this storage", f"{nmse_latent(name):.4f}",
                     f"latent {name}", cell(f"float head on latent {name}", "oa")))
    for q in QUALITIES:
        L.append(row(f"**geocodec q{q}**", f"codes q{q}", "codes q1..q5 (shipped)", f"{nmse_codes(q):.4f}",
                     f"codes mixed q{q}", cell(f"float head on codes q{q}", "oa")))
    noise = _summary(res, "latent float16", "oa")[0] - _summary(res, "latent float32", "oa")[0]
    L += ["", f"float32 and float16 latents hold the same information (NMSE ≈ 0); their OA difference, {noise:+.3f}, "
          "is the noise of head training alone (another random initialisation): read smaller differences as ties."]
    L += ["", "**Matched rates:** each codec quality against the PQ and the PCA point of the largest rate that is "
          "not above the codec's (so no baseline is picked for its score); Δ = baseline − codec, per fold on the "
          "same test points, mean ± std over the 5 folds.", ""]
    L += matched_rate_table(
        lambda f, k: res[f]["scores"]["codes mixed " + k[6:] if k.startswith("codes q") else k]["oa"], rates, "OA")
    L += ["", "Raw bands stored lossy (secondary; the raw-pixel head trained on float32 bands, run on the "
          "decoded bands; rates per point-date as above):", "",
          "| storage of the 5 bands | bits / point-date | OA (5-fold CV) | macro-F1 (5-fold CV) |",
          "|---|---:|---:|---:|"]
    for name in ["float16", "int8/vector", *[f"pca{k}+int8" for k in RAW_PCA_KS]]:
        L.append(f"| {_lat_label(name)} | {rate(f'raw {name}'):.1f} | {cell(f'raw {name}', 'oa')} | "
                 f"{cell(f'raw {name}', 'f1')} |")
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
          "**Event rule** (`geocodec.tasks.monitor.detect_events`): an event is the first date whose class is a clear-cut "
          "class for >= 2 consecutive dates, right after a Forest date; the event date is that first clear-cut date.",
          "",
          "**What is measured:** per-date accuracy on the per-date labels above (held-out blocks); the share of "
          "clear-cut labelled series that get an event (a *detection rate*, not a date accuracy); the share of "
          "forest series (3 forest classes) and of other non-clear-cut series that get an event (false events). "
          "**Not measured:** whether the event *date* is right (no per-date truth exists in these labels), "
          "clearings before January 2022 (a series that is never Forest cannot have an event), and degradation "
          "or regrowth events.", "",
          "**Rate–utility** (rows as for land cover, same storage of the same test point-dates, same rates): "
          "geocodec rows run the shipped kind of monitor head (mixed-quality codes); each embedding baseline a "
          "per-date head trained on that baseline's output (same MLP 24-64-64-7 and recipe); the raw-pixel rows a "
          "per-date head on the float32 5-band pixels. Last column: the float-latent per-date head on the same "
          "input, as above.", "",
          f"![rate vs utility, monitoring]({plots['monitor']})", "",
          "| storage | bits / point-date | head trained on | per-date OA (CV) | per-date macro-F1 (CV) | clear-cut "
          "series with event (CV) | forest series with a false event (CV) | other series with an event (CV) | "
          "per-date OA (CV), float-latent head |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|"]

    def mcell(key, fn):
        v = _mon_values(mon, key, fn)
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    def mrow(label, rkey, head, key, other):
        return (f"| {label} | {rate(rkey):.1f} | {head} | {mcell(key, lambda r: r['per_date']['oa'])} | "
                f"{mcell(key, lambda r: r['per_date']['f1'])} | "
                f"{mcell(key, lambda r: r['events']['clear_cut_detected'])} | "
                f"{mcell(key, lambda r: r['events']['forest_false_event'])} | "
                f"{mcell(key, lambda r: r['events']['other_false_event'])} | {other} |")

    L.append(mrow("raw pixels, uint16 DN + zstd", "raw uint16 DN", "float32 bands", "raw uint16 DN", "–"))
    L.append(mrow("raw pixels, float32 + zstd", "raw float32", "float32 bands", "raw float32", "–"))
    for name in latent_names():
        L.append(mrow(f"latents, {_lat_label(name)}", f"latent {name}", "this storage", f"latent {name}",
                      mcell(f"float head on latent {name}", lambda r: r["per_date"]["oa"])))
    for q in QUALITIES:
        L.append(mrow(f"**geocodec q{q}**", f"codes q{q}", "codes q1..q5 (shipped)", f"q{q}",
                      mcell(f"float head on codes q{q}", lambda r: r["per_date"]["oa"])))
    noise = (np.mean(_mon_values(mon, "latent float16", lambda r: r["per_date"]["oa"]))
             - np.mean(_mon_values(mon, "latent float32", lambda r: r["per_date"]["oa"])))
    L += ["", f"Head-training noise, as for land cover (float16 − float32 per-date OA): {noise:+.3f}."]
    L += ["", "**Matched rates** (as for land cover; per-date OA):", ""]
    L += matched_rate_table(lambda f, k: (mon["folds"][f][k[6:]] if k.startswith("codes q") else mon["extra"][f][k])
                            ["per_date"]["oa"], rates, "OA")
    mres = mon["folds"]
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
          "`geocodec.tasks.fewshot.train_head` fits a multinomial logistic regression (L2, balanced class weights, "
          "300 full-batch Nesterov steps) in numpy on standardized embeddings and writes it as ONNX (MatMul, Add, "
          "Softmax) with the same metadata (task `custom`, input kind `embedding` and its dimension, classes with "
          "colours, the file's model and decoder sha256). No torch, seconds on a laptop.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_text("\n".join(L) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geocodec.training.heads", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="geocodec/models/heads")
    ap.add_argument("--docs", default="docs/heads.md")
    ap.add_argument("--plot", default="docs/img/rate_utility_landcover.png")
    ap.add_argument("--plot-monitor", default="docs/img/rate_utility_monitor.png")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    ap.add_argument("--folds", type=int, nargs="*", help="only these folds (default all; fold 0 is always run)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(a.threads)
    t0 = time.time()
    P = prepare(progress=not a.quiet)
    print(f"encoded {P['lat'].shape[0]} x {P['lat'].shape[1]} point-dates in {P['encode_s']:.0f} s", flush=True)
    folds = sorted(set([SHIPPED_FOLD, *(a.folds or range(N_FOLDS))]))
    log = lambda s: print(s, flush=True)  # noqa: E731
    lc = run_landcover(P, epochs=a.epochs, folds=folds, log=log)
    mon = run_monitor(P, epochs=max(10, a.epochs // 2), folds=folds, log=log)
    files = export(P, lc, mon, Path(a.out))
    plot, plot_m = Path(a.plot), Path(a.plot_monitor)
    rate_utility_plot(landcover_points(lc), plot, per_q=True, raw_lossy=True,
                      title="Rondonia land cover (9 classes, 11-date series): rate vs. utility",
                      ylabel="overall accuracy (5-fold spatial block CV, mean)")
    rate_utility_plot(monitor_points(mon, lc["rates"]), plot_m,
                      title="Rondonia monitoring (7 classes per date): rate vs. utility",
                      ylabel="per-date overall accuracy (5-fold spatial block CV, mean)")
    docs = Path(a.docs)
    rels = {"landcover": os.path.relpath(plot, docs.parent), "monitor": os.path.relpath(plot_m, docs.parent)}
    write_docs(P, lc, mon, files, docs, rels, time.time() - t0, epochs=a.epochs, threads=a.threads)
    with atomic_output(Path(a.out) / "scores.json") as tmp, open(tmp, "w") as f:
        json.dump({"landcover": {str(k): v for k, v in lc["folds"].items()},
                   "rates": {str(k): v for k, v in lc["rates"].items()},
                   "side_bits": {str(k): v for k, v in lc["side_bits"].items()},
                   "monitor": {str(k): v for k, v in mon["folds"].items()},
                   "monitor_extra": {str(k): v for k, v in mon["extra"].items()}}, f, indent=1)
    print(f"wrote {a.out}/landcover.onnx, {a.out}/monitor.onnx, {a.out}/scores.json, {docs}, {plot}, {plot_m} "
          f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
