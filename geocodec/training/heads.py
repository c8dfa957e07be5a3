"""Train, export and score the task heads ``landcover.onnx`` and ``monitor.onnx`` (torch).

Reproduce with::

    geocodec train heads      # or python -m geocodec.training.heads, the same command

It writes the two heads and the report ``geocodec/models/heads/scores.json``; the page ``docs/heads.md`` and
its figures are rendered from that report by :mod:`geocodec.training.heads_report` (``--report-only`` renders
them again without training).

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

import datetime as _dt
import json
import os
import platform
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
COMMAND = "geocodec train heads --out geocodec/models/heads --docs docs/heads.md"


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
    """Mean F1 over the ``k`` classes of labels ``y`` and predictions ``p`` (classes in neither are left out)."""
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


def latent_cnn(channels: int, side: int, *, width: int = 64, dropout: float = 0.2):
    """A ``build`` for :func:`train_mlp`: a small CNN on a (channels, side, side) neighbourhood of latent cells
    (flattened in, class logits out). Two 1 x 1 convolutions (the same per-cell transform at every cell, so a
    few hundred places train it), one 3 x 3 convolution across the cells, average pooling, dropout, linear: the
    pixel CNN's shape (conv stack, pooling, dropout 0.2) on the latent grid instead of on pixels."""
    import torch.nn as nn

    def build(d_in: int, k: int):
        if d_in != channels * side * side:
            raise ValueError(f"latent_cnn: {d_in} features is not {channels} channels x {side} x {side} cells")
        return nn.Sequential(
            nn.Unflatten(1, (channels, side, side)),
            nn.Conv2d(channels, width, 1), nn.ReLU(),
            nn.Conv2d(width, width, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, k))
    return build


def train_mlp(x_sets: list[np.ndarray], y: np.ndarray, k: int, *, hidden=(128, 64), epochs: int = 80,
              dropout: float = 0.2, seed: int = 0, lr: float = 2e-3, batch: int = 256, weight_decay: float = 1e-4,
              balanced: bool = False, build=None):
    """Train an MLP on flattened inputs. ``x_sets``: one or more aligned input versions (e.g. the codes
    at each quality); each sample of each batch draws one of them (mixed-quality training).
    ``build(d_in, k)``: another network on the standardized flattened features (e.g. a CNN that unflattens
    them), trained with the same recipe; default the MLP of ``hidden`` and ``dropout``.
    Returns (layers [(W (in, out), b)] of the network's top-level Linear modules, mean, std, torch module)."""
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
    net = _mlp(xs.shape[-1], list(hidden), k, dropout) if build is None else build(xs.shape[-1], k)
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
    """Class probabilities (N, K) of torch head ``net`` on ``x`` (N, ...), flattened and standardised."""
    import torch

    with torch.no_grad():
        z = torch.from_numpy(((np.asarray(x, np.float32).reshape(len(x), -1) - mean) / std).astype(np.float32))
        return torch.softmax(net(z), dim=1).numpy()


# -- data ----------------------------------------------------------------------------------------
def prepare(progress: bool = True, model: str | os.PathLike | None = None) -> dict:
    """Encode the Rondonia point series once for the head experiments with the codec ``model`` (a shipped
    model's name or folder; default the default codec); return the shared inputs.

    Keys: ``d`` (:func:`~geocodec.training.datasets.load_rondonia`), ``model``, ``x5`` (the model's bands), ``lat``
    (float latents), ``q``/``deq`` ({quality: codes / dequantized codes} for :data:`QUALITIES`), ``names`` and ``y``
    (class names and indices), ``folds`` (:func:`spatial_folds`) and ``encode_s`` (seconds).
    """
    from geocodec.training.datasets import load_rondonia
    from geocodec.codecs.learned import LearnedModel
    from geocodec.tasks.series import homogeneous_latents, pick_bands, quantize

    d = load_rondonia()
    model = LearnedModel.load() if model is None else LearnedModel.load(model)
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


def latent_names(channels: int = 24) -> list[str]:
    """Names of the float-latent baselines for a latent of ``channels`` channels, in table order."""
    return (["float32", "float16", "int8/vector"] + [f"pca{k}+int8" for k in PCA_KS]
            + [f"pq{m}x{PQ_NBITS}" for m in PQ_MS if channels % m == 0])


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


def export(P: dict, lc: dict, mon: dict, out_dir: Path, command: str = COMMAND) -> dict:
    """Write ``landcover.onnx`` and ``monitor.onnx`` (the fold-0 heads, with their metadata) into ``out_dir``;
    returns their sizes in bytes."""
    from geocodec.tasks.fewshot import mlp_onnx
    from geocodec.tasks.heads import add_head_metadata

    out_dir.mkdir(parents=True, exist_ok=True)
    model, t, c = P["model"], P["lat"].shape[1], P["lat"].shape[2]
    dates = [str(d)[:10] for d in P["d"]["dates"]]
    split = (f"spatial blocks of {BLOCK_DEG} deg lon/lat, {N_FOLDS} folds (largest block first to the smallest fold); "
             f"this head: trained on folds != {SHIPPED_FOLD}, scored on fold {SHIPPED_FOLD}")
    files = {}
    # landcover
    L, m, s, net = lc["shipped"]
    onnx_bytes = mlp_onnx(L, input_shape=[t, c], mean=m, std=s, flatten=True, name="geocodec_landcover")
    f0 = lc["folds"][SHIPPED_FOLD]["scores"]
    te = np.flatnonzero(P["folds"] == SHIPPED_FOLD)[:8]
    ref = torch_predict(net, m, s, P["deq"][3][te])
    lc_meta = {
        "task": "landcover",
        "input": {"kind": "latent_cell_series", "shape": [t, c], "dates": dates,
                  "cell": "dequantized codes q*step of one latent cell per date (from point series: the centre cell "
                          "of a uniform 32x32 patch, geocodec.tasks.series.point_series_codes)",
                  "date_alignment": "other dates: nearest day of year (geocodec.tasks.series.align_to_dates)"},
        "output": {"kind": "class_probabilities", "names": P["names"]},
        "classes": [{"name": c, "color": LANDCOVER_COLORS.get(c, "#888888")} for c in P["names"]],
        "codec": _codec_meta(model),
        "training": {"data": "rondonia/rondonia_s2l2a_monthly.npz (INPE sits samples, real Sentinel-2 L2A 2022)",
                     "split": split, "command": command, "architecture": f"MLP {t * c}-128-64-9, ReLU, dropout 0.2",
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
    onnx_bytes = mlp_onnx(L, input_shape=[None, c], mean=m, std=s, flatten=False, name="geocodec_monitor")
    mf0 = mon["folds"][SHIPPED_FOLD]
    mon_meta = {
        "task": "monitor",
        "input": {"kind": "latent_cell_series", "shape": [None, c],
                  "cell": "dequantized codes q*step of one latent cell per date; any number of dates"},
        "output": {"kind": "class_probabilities_per_date", "names": MONITOR_CLASSES,
                   "events": {"from": FOREST_LIKE, "to": CLEAR_CUT, "min_run": 2,
                              "rule": "first date whose class is a clear-cut class for >= min_run consecutive dates "
                                      "right after a date of a 'from' class"}},
        "classes": [{"name": c, "color": LANDCOVER_COLORS.get(c, "#888888")} for c in MONITOR_CLASSES],
        "codec": _codec_meta(model),
        "training": {"data": "rondonia/rondonia_s2l2a_monthly.npz", "split": split, "command": command,
                     "architecture": f"per-date MLP {c}-64-64-7, ReLU, dropout 0.1",
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


# -- the report: every score, rate and fact the page and the figures are written from ---------------------
def _nmse(P: dict, decoded_by_fold: dict) -> float:
    """Squared error of decoded latents over the latents' total variance, pooled over the test folds."""
    err = tot = 0.0
    mu = P["lat"].reshape(-1, P["lat"].shape[-1]).mean(0)
    for f, dec in decoded_by_fold.items():
        x = P["lat"][P["folds"] == f]
        err += float(np.sum((dec - x) ** 2))
        tot += float(np.sum((x - mu) ** 2))
    return err / tot


def data_facts(P: dict, folds) -> dict:
    """What the page says of the data and the storage beyond the scores (``data`` of the report): points,
    dates, fold sizes, the latents' per-channel std, the share of band values off the uint16 DN grid, the q5
    step and the NMSE of each stored form of the latents over ``folds`` (the storage of :func:`fold_storage`)."""
    dn = P["x5"].astype(np.float64) * 1e4
    nmse = {f"latent {name}": _nmse(P, {f: fold_storage(P, f)["latent"][name].decoded for f in folds})
            for name in latent_names(P["lat"].shape[-1])}
    nmse.update({f"codes q{q}": _nmse(P, {f: P["deq"][q][P["folds"] == f] for f in folds}) for q in QUALITIES})
    return {"points": int(len(P["y"])), "dates": [str(d)[:10] for d in P["d"]["dates"]],
            "fold_sizes": [int((P["folds"] == f).sum()) for f in range(N_FOLDS)],
            "latent_channel_std": [float(v) for v in P["lat"].reshape(-1, P["lat"].shape[-1]).std(0)],
            "off_grid_dn": float(np.mean(np.abs(dn - np.round(dn)) > 1e-2)),
            "q5_step": float(P["model"].step(5)), "nmse": nmse}


def build_report(P: dict, lc: dict, mon: dict, files: dict, *, wall_s: float, epochs: int, threads: int,
                 command: str) -> dict:
    """The run's report (``scores.json``), JSON-ready: per-fold scores, rates and side bits of land cover
    (``landcover``, ``rates``, ``side_bits``) and monitoring (``monitor``, ``monitor_extra``), the ONNX sizes
    (``files``), :func:`data_facts` (``data``) and how it ran (``run``)."""
    import faiss
    import onnxruntime
    import torch

    run = {"command": command, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "wall_s": float(wall_s), "encode_s": float(P["encode_s"]), "epochs": epochs, "threads": threads,
           "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "faiss": faiss.__version__,
           "model": f"{P['model'].card['name']} {P['model'].card['version']}"}
    report = {"landcover": {str(k): v for k, v in lc["folds"].items()},
              "rates": {str(k): v for k, v in lc["rates"].items()},
              "side_bits": {str(k): v for k, v in lc["side_bits"].items()},
              "monitor": {str(k): v for k, v in mon["folds"].items()},
              "monitor_extra": {str(k): v for k, v in mon["extra"].items()},
              "files": dict(files), "data": data_facts(P, list(lc["folds"])), "run": run}
    return json.loads(json.dumps(report))  # what the saved file gives back


def run(*, out: str | os.PathLike = "geocodec/models/heads", docs: str | os.PathLike = "docs/heads.md",
        plot: str | os.PathLike = "docs/img/rate_utility_landcover.png",
        plot_monitor: str | os.PathLike = "docs/img/rate_utility_monitor.png", epochs: int = 40, threads: int = 1,
        folds=None, progress: bool = True, command: str = COMMAND, model: str | os.PathLike | None = None,
        log=print) -> dict:
    """Train and score both heads, write ``landcover.onnx``, ``monitor.onnx`` and the report ``scores.json``
    into ``out``, then the page and the figures from that report (:mod:`geocodec.training.heads_report`).
    ``folds``: only these folds (fold 0, the shipped heads', always runs). ``model``: the codec whose codes the
    heads eat (default the default codec). Returns the report."""
    import faiss
    import torch

    from geocodec.training import heads_report

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    t0 = time.time()
    P = prepare(progress=progress, model=model)
    log(f"encoded {P['lat'].shape[0]} x {P['lat'].shape[1]} point-dates in {P['encode_s']:.0f} s")
    folds = sorted(set([SHIPPED_FOLD, *(range(N_FOLDS) if folds is None else folds)]))
    lc = run_landcover(P, epochs=epochs, folds=folds, log=log)
    mon = run_monitor(P, epochs=max(10, epochs // 2), folds=folds, log=log)
    files = export(P, lc, mon, Path(out), command)
    report = build_report(P, lc, mon, files, wall_s=time.time() - t0, epochs=epochs, threads=threads,
                          command=command)
    with atomic_output(Path(out) / "scores.json") as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    heads_report.write(report, docs, plot, plot_monitor)
    log(f"wrote {out}/landcover.onnx, {out}/monitor.onnx, {out}/scores.json, {docs}, {plot}, {plot_monitor} "
        f"in {time.time() - t0:.0f} s")
    return report


def main(argv=None) -> int:
    """``python -m geocodec.training.heads``: the same command as ``geocodec train heads``."""
    from geocodec.training.commands import main as train_main

    return train_main("heads", argv)


if __name__ == "__main__":
    raise SystemExit(main())
