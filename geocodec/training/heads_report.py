"""The page ``docs/heads.md`` and the figures ``docs/img/rate_utility_*.png`` of the land-cover and monitoring
heads, from their saved report ``geocodec/models/heads/scores.json`` alone (no data, no torch).

:func:`write` is what ``geocodec train heads`` ends with and what ``--report-only`` runs: the report holds every
score, rate and fact of the run (:func:`geocodec.training.heads.build_report`), so the page regenerates from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from geocodec.atomic import atomic_output
from geocodec.training.heads import (BLOCK_DEG, CLEAR_CUT_DATES, N_FOLDS, PCA_KS, PQ_MS, PQ_NBITS, QUALITIES,
                                     RAW_PCA_KS, SHIPPED_FOLD, latent_names)


def _summary(res: dict, key: str, metric: str) -> tuple[float, float]:
    v = [r["scores"][key][metric] for r in res.values()]
    return float(np.mean(v)), float(np.std(v))


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


def landcover_points(report: dict) -> dict:
    """Points of the land-cover figure: key -> (mean bits per point-date, mean OA over the folds)."""
    res, rates = report["landcover"], report["rates"]
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


def monitor_points(report: dict) -> dict:
    """Points of the monitoring figure: key -> (mean bits per point-date, mean per-date OA over the folds)."""
    mon, rates = {"folds": report["monitor"], "extra": report["monitor_extra"]}, report["rates"]
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


def render(report: dict, path: Path, plots: dict) -> None:
    """Write the Markdown page ``path`` from ``report`` (the content of ``scores.json``); ``plots``: the
    figures' paths relative to the page, keys ``landcover`` and ``monitor``."""
    res, rates, side = report["landcover"], report["rates"], report["side_bits"]
    mon = {"folds": report["monitor"], "extra": report["monitor_extra"]}
    run, data, files = report["run"], report["data"], report["files"]
    nc = len(data["latent_channel_std"])   # latent channels of the codec the heads were trained on
    folds = list(res)
    shipped = str(SHIPPED_FOLD)

    def rate(key):
        return _mean_rate(rates, key)

    def cell(key, metric):
        mu, sd = _summary(res, key, metric)
        return f"{mu:.3f} ± {sd:.3f}"

    def nmse_latent(name):
        return data["nmse"][f"latent {name}"]

    def nmse_codes(q):
        return data["nmse"][f"codes q{q}"]

    f0 = res[shipped]["scores"]
    fold_sizes = data["fold_sizes"]
    n_dates = len(data["dates"])
    n_pd = np.mean([res[f]["n_test"] for f in folds]) * n_dates
    pq_side = side[folds[0]][f"latent pq1x{PQ_NBITS}"]
    ch_std = np.array(data["latent_channel_std"])
    small = ch_std < 0.05 * ch_std.max()
    off_grid = data["off_grid_dn"]
    epochs = run["epochs"]

    L = ["# Task heads: land cover and monitoring on geocodec codes", "",
         "_Generated by `geocodec.training.heads_report` from `geocodec/models/heads/scores.json`; do not edit by "
         "hand — rerun the command below (or it with `--report-only`)._", "",
         f"- **Command:** `{run['command']}`",
         f"- **Date:** {run['date']} UTC; wall time {run['wall_s']:.0f} s "
         f"(encoding {run['encode_s']:.0f} s) with {run['threads']} thread(s) on {run['cpus']} CPU(s); Python "
         f"{run['python']}, torch {run['torch']}, onnxruntime {run['onnxruntime']}, faiss {run['faiss']}",
         f"- **Files:** `geocodec/models/heads/landcover.onnx` ({files['landcover']:,} bytes), "
         f"`geocodec/models/heads/monitor.onnx` ({files['monitor']:,} bytes); ONNX with the metadata of "
         "`geocodec.tasks.heads` (task, input, output, classes, codec sha256s, training, scores); every score below "
         "also in `geocodec/models/heads/scores.json`",
         f"- **Data:** `rondonia/rondonia_s2l2a_monthly.npz` (real Sentinel-2 L2A 2022, INPE sits samples): "
         f"{data['points']} points x {n_dates} dates, one of 9 labels per series. Bands B02, B03, B04, B08, "
         "B11 picked from the 10.",
         "- **How points become codes (homogeneous-field approximation):** the samples are single pixels, not "
         f"images. Each date's 5-band pixel is encoded with the shipped codec `{run.get('model', 's2-5band-v1')}` as a *uniform* 32 x 32 "
         f"patch; the latent cell at the centre of the 4 x 4 latent grid is kept ({nc} channels: the *float latent*) "
         "and quantized at each quality (q = round(latent / step), dequantized q * step). A real file's cell sees "
         "a textured 80 m neighbourhood, so scores on real files can differ from these; the heads are trained on "
         "this approximation (`geocodec.tasks.series.point_series_codes`).",
         f"- **Split (no leakage across space):** {BLOCK_DEG}° x {BLOCK_DEG}° lon/lat blocks, assigned to "
         f"{N_FOLDS} folds, largest block first to the currently smallest fold (fold sizes {fold_sizes}). "
         "**5-fold block CV**: every point is scored by a head that never saw its block (mean ± std over folds). "
         f"The **shipped heads** are trained on folds != {SHIPPED_FOLD} and scored on fold {SHIPPED_FOLD} "
         f"({res[shipped]['n_test']} points). No hyper-parameter was tuned on these folds beyond a first "
         f"run with the defaults written here (MLP {n_dates * nc}-128-64-9, {epochs} epochs, AdamW, one-cycle lr 2e-3; "
         "monitor: half the epochs).",
         "",
         "## Rate–utility: what each row is", "",
         "Every row stores the same test point-dates (one date of one point) in some way; the score is that of a "
         "head trained on the training folds and run on what a consumer reads back from that storage. Rates are "
         "**bits per point-date**, averaged over the 5 test folds.", "",
         f"- **geocodec q1..q5**: the {nc} integer codes at that quality; rate = ideal code length (cross-entropy) "
         "under the model's tables (`geocodec.format.entropy.cross_entropy_bits`). Head: the **shipped kind**, one "
         "mixed-quality head trained on the "
         "dequantized codes at q1..q5 (each sample draws a quality).",
         f"- **Embedding baselines** (`geocodec.training.baselines`): the same point-date's {nc}-d float latent (the "
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
         f"large channels (int8, PCA, the codec: its q5 step is {data['q5_step']:g}) rounds them away. Its "
         "scores on lossy inputs swing either way (see the column) and are no measure of the storage.",
         "  - *float32*, *float16*: the latents as they are, or rounded to half precision;",
         "  - *int8 / vector*: int8 with one float16 scale per point-date (max |x| / 127);",
         f"  - *PCA-k + int8* (k = {', '.join(map(str, PCA_KS))}): k principal components fitted on the training "
         "folds' latents (all their point-dates), int8 with one scale per component (max |z| / 127 on training);",
         f"  - *PQ-m x {PQ_NBITS} bit* (m = {', '.join(map(str, PQ_MS))}): faiss product quantization, m "
         f"sub-vectors of {nc}/m dimensions, one byte each (2^{PQ_NBITS} k-means centroids per sub-vector, fitted on "
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
         f"function of 5 band values, so the {nc}-d latents lie near a 5-d surface and PCA with 6 components leaves "
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
    for name in latent_names(len(data["latent_channel_std"])):
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
          f"per-date head trained on that baseline's output (same MLP {nc}-64-64-7 and recipe); the raw-pixel rows a "
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
    for name in latent_names(len(data["latent_channel_std"])):
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
    ev = mon["folds"][shipped]["q3"]["events"]
    L += ["", f"Fold {SHIPPED_FOLD} (shipped head) at q3, per labelled class:", "",
          "| series label | series | with an event | first date classed Forest |", "|---|---:|---:|---:|"]
    for c, v in ev["per_class"].items():
        L.append(f"| {c} | {v['series']} | {v['with_event']} | {v['starts_forest']} |")
    dates = data["dates"]
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


def write(report: dict | str | os.PathLike, docs: str | os.PathLike, plot: str | os.PathLike,
          plot_monitor: str | os.PathLike) -> None:
    """The page ``docs`` and both rate–utility figures from ``report`` (a dict or the path of ``scores.json``)."""
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    docs, plot, plot_monitor = Path(docs), Path(plot), Path(plot_monitor)
    rate_utility_plot(landcover_points(report), plot, per_q=True, raw_lossy=True,
                      title="Rondonia land cover (9 classes, 11-date series): rate vs. utility",
                      ylabel="overall accuracy (5-fold spatial block CV, mean)")
    rate_utility_plot(monitor_points(report), plot_monitor,
                      title="Rondonia monitoring (7 classes per date): rate vs. utility",
                      ylabel="per-date overall accuracy (5-fold spatial block CV, mean)")
    render(report, docs, {"landcover": os.path.relpath(plot, docs.parent),
                          "monitor": os.path.relpath(plot_monitor, docs.parent)})
