"""The one ``geocodec train codec|heads|ships`` command: each target's options, defined once.

``geocodec train`` (:mod:`geocodec.cli.main`) and ``python -m geocodec.training.<train|heads|ships>``
build their parsers from the same functions here and run the same :func:`run_codec`,
:func:`run_heads` or :func:`run_ships`. ``geocodec train`` with no target trains the codec.
Every target takes ``--report-only``: render its page again from the saved report without
training (codec: ``docs/model-card.md`` from ``model.json``; heads: ``docs/heads.md`` and its
figures from ``scores.json``; ships: ``docs/ships.md`` and its figure from ``ships_scores.json``).

This module imports no torch: the parsers are built before anything is trained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geocodec.resources import DEFAULT_MODEL
from geocodec.training.presets import DISTORTIONS, PRESETS
from geocodec.verbosity import CommandParser, verbosity

TARGETS = ("codec", "heads", "ships")
#: ``python -m`` module of each target
MODULES = {"codec": "geocodec.training.train", "heads": "geocodec.training.heads",
           "ships": "geocodec.training.ships"}
HELP = {"codec": "the learned Sentinel-2 codec (model.json, ONNX files, model card)",
        "heads": "the shipped land-cover and monitoring heads on Rondonia (docs/heads.md)",
        "ships": "the shipped ship head on sen2ships (docs/ships.md)"}
CODEC_OUT = "out/train/<model>"
CARD = "docs/model-card.md"


def _command(prog: str, options) -> str:
    """``prog`` followed by the options ``(flag, value, default)`` whose value is not the default."""
    return prog + "".join(f" {flag} {value}" for flag, value, default in options if value != default)


def _keep_shipped_outputs(a: argparse.Namespace, outputs: dict) -> None:
    """Refuse a head training for another codec than the default that would write over the default codec's
    shipped heads or pages: ``outputs`` {flag: (value, shipped default)}; every one left at its default is named."""
    if a.model == DEFAULT_MODEL:
        return
    left = [f"{flag} ({default})" for flag, (value, default) in outputs.items() if str(value) == str(default)]
    if left:
        a.parser.error(f"--model {a.model}: the heads of a codec other than the default ({DEFAULT_MODEL}) must not "
                       f"replace the shipped ones; give {', '.join(left)} another path, e.g. "
                       f"--out geocodec/models/heads/{a.model}")


# -- codec ----------------------------------------------------------------------------------------------
def add_codec_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``geocodec train codec``."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"which model to train: its architecture, data and objective ({', '.join(PRESETS)}; "
                        f"default {DEFAULT_MODEL}, the shipped default codec)")
    p.add_argument("--out", help=f"model folder to write (default {CODEC_OUT})")
    p.add_argument("--steps", type=int, help="optimisation steps (default: those of the shipped model)")
    p.add_argument("--minutes", type=float,
                   help="stop after this much wall time (whichever of steps/minutes comes first)")
    p.add_argument("--seed", type=int, default=0, help="random seed of data order and initialisation (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    p.add_argument("--data", help="data folder (default $GEOCODEC_DATA or ../shared/data beside the project)")
    p.add_argument("--card", help=f"also write the Markdown model card here (e.g. {CARD})")
    p.add_argument("--report-only", action="store_true",
                   help=f"only write the model card (--card, default {CARD}) from OUT/model.json, without training")
    p.add_argument("--distortion", choices=DISTORTIONS,
                   help="distortion term: MSE of standardised log bands (s2-5band-v1), of reflectance over each "
                        "band's variance (s2-5band-v2), or of reflectance of all bands alike (as PSNR weighs "
                        "errors; s2-5band-v2u); default: the model's")
    p.add_argument("--checkpoint", help="checkpoint file, written every --checkpoint-minutes and at the end "
                                        "(default OUT/checkpoint.pt)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="minutes between checkpoints (default 5; 0: only at the end)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in the checkpoint (same options and data) up to --steps/--minutes")
    p.add_argument("--tables-only", action="store_true",
                   help="only fit the entropy tables of the model in OUT again (through its ONNX encoder, on its "
                        "training scenes), score it and write model.json (and --card), without training")


def run_codec(a: argparse.Namespace) -> int:
    """Train the codec (or, with ``--report-only``, write its card from ``model.json``)."""
    import dataclasses

    if a.model not in PRESETS:
        a.parser.error(f"--model: unknown model {a.model!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[a.model]
    if a.distortion:
        cfg = dataclasses.replace(cfg, distortion=a.distortion)
    if a.out is None:
        a.out = CODEC_OUT.replace("<model>", a.model)
    if a.report_only:
        from geocodec.training.model_card import write_model_card

        report = Path(a.out) / "model.json"
        from geocodec.training.model_card import card_path

        card = a.card or card_path(a.model)
        if not report.is_file():
            a.parser.error(f"--report-only: {report} is missing; run without --report-only to train and write it")
        write_model_card(report, card)
        print(f"wrote {card} from {report}")
        return 0
    if a.tables_only:
        from geocodec.training.train import refit_tables

        card = refit_tables(a.out, config=cfg, data_dir=a.data, progress=not a.quiet, card_path=a.card,
                            command=_command(f"{a.prog} --out {a.out} --tables-only", [
                                ("--model", a.model, None),
                                ("--data", a.data, None), ("--card", a.card, None)]))
        print(f"wrote {a.out}/model.json: entropy tables of {card['name']} refitted "
              f"({card['training']['entropy_tables']['symbol_order']})")
        _print_scores(card)
        return 0
    from geocodec.training.train import train

    invoked = _command(f"{a.prog} --out {a.out}", [
        (f, v, None) for f, v in (("--model", a.model),
                                  ("--steps", a.steps), ("--minutes", a.minutes), ("--seed", a.seed),
                                  ("--distortion", a.distortion),
                                  ("--device", a.device), ("--data", a.data), ("--card", a.card))])
    if a.resume:
        invoked += " --resume"
    card = train(a.out, steps=a.steps, minutes=a.minutes, seed=a.seed, device=a.device, data_dir=a.data,
                 config=cfg,
                 progress=not a.quiet, card_path=a.card, command=invoked, checkpoint=a.checkpoint,
                 checkpoint_minutes=a.checkpoint_minutes, resume=a.resume)
    tr = card["training"]
    print(f"wrote {a.out}: {card['name']} trained {tr['steps']} steps in {tr['minutes']:.1f} min on {tr['device']}")
    _print_scores(card)
    if a.card:
        print(f"wrote {a.card}")
    return 0


def _print_scores(card: dict) -> None:
    for name, s in card.get("scores", {}).get("sets", {}).items():
        cells = ", ".join(f"q{k} {r['bits_per_pixel']:.3f} bpp {r['psnr_db']} dB"
                          for k, r in sorted(s["qualities"].items(), key=lambda kv: int(kv[0])))
        print(f"  {name} ({s['tiles']} tiles): {cells}")


# -- land-cover and monitoring heads ----------------------------------------------------------------------
HEADS_DEFAULTS = {"out": "geocodec/models/heads", "docs": "docs/heads.md",
                  "plot": "docs/img/rate_utility_landcover.png", "plot_monitor": "docs/img/rate_utility_monitor.png",
                  "epochs": 40, "threads": 1}


def add_heads_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``geocodec train heads``."""
    d = HEADS_DEFAULTS
    p.add_argument("--out", default=d["out"], help=f"folder of the heads and scores.json (default {d['out']})")
    p.add_argument("--docs", default=d["docs"], help=f"page to write (default {d['docs']})")
    p.add_argument("--plot", default=d["plot"], help=f"rate-utility figure to write (default {d['plot']})")
    p.add_argument("--plot-monitor", default=d["plot_monitor"],
                   help=f"monitoring-head figure to write (default {d['plot_monitor']})")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"the codec whose codes the heads eat: a shipped model's name or folder (default "
                        f"{DEFAULT_MODEL}; the heads of another codec go in their own --out, e.g. "
                        "geocodec/models/heads/NAME)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"training epochs of the heads (default {d['epochs']})")
    p.add_argument("--threads", type=int, default=d["threads"], help="torch and faiss threads")
    p.add_argument("--folds", type=int, nargs="*", help="only these folds (default all; fold 0 is always run)")
    p.add_argument("--report-only", action="store_true",
                   help="only write --docs and the plots from OUT/scores.json, without training")


def run_heads(a: argparse.Namespace) -> int:
    """Train the land-cover and monitoring heads (or, with ``--report-only``, render their page)."""
    report = Path(a.out) / "scores.json"
    if a.report_only:
        from geocodec.training.heads_report import write

        if not report.is_file():
            a.parser.error(f"--report-only: {report} is missing; run without --report-only to train and write it")
        write(report, a.docs, a.plot, a.plot_monitor)
        print(f"wrote {a.docs}, {a.plot}, {a.plot_monitor} from {report}")
        return 0
    from geocodec.training.heads import run

    d = HEADS_DEFAULTS
    _keep_shipped_outputs(a, {"--out": (a.out, d["out"]), "--docs": (a.docs, d["docs"]), "--plot": (a.plot, d["plot"]),
                              "--plot-monitor": (a.plot_monitor, d["plot_monitor"])})
    command = _command(a.prog, [("--out", a.out, None), ("--docs", a.docs, None), ("--model", a.model, DEFAULT_MODEL),
                                ("--plot", a.plot, d["plot"]), ("--plot-monitor", a.plot_monitor, d["plot_monitor"]),
                                ("--epochs", a.epochs, d["epochs"]), ("--threads", a.threads, d["threads"])])
    if a.folds:
        command += " --folds " + " ".join(map(str, a.folds))
    run(out=a.out, docs=a.docs, plot=a.plot, plot_monitor=a.plot_monitor, epochs=a.epochs, threads=a.threads,
        folds=a.folds or None, progress=not a.quiet, command=command, model=a.model,
        log=lambda s: print(s, flush=True))
    return 0


# -- ship head ------------------------------------------------------------------------------------------
SHIPS_DEFAULTS = {"steps": 3000, "pixel_steps": 1500, "seed": 0}
SHIPS_OUT, SHIPS_DOC, SHIPS_PLOT = "geocodec/models/heads", "docs/ships.md", "docs/img/rate_utility_ships.png"


def add_ships_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``geocodec train ships`` (it writes geocodec/models/heads/ships.onnx, ships_scores.json,
    docs/ships.md and docs/img/rate_utility_ships.png)."""
    d = SHIPS_DEFAULTS
    p.add_argument("--steps", type=int, default=d["steps"], help=f"optimisation steps of the head (default {d['steps']})")
    p.add_argument("--pixel-steps", type=int, default=d["pixel_steps"],
                   help=f"optimisation steps of the raw-pixel baseline head (default {d['pixel_steps']})")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"random seed (default {d['seed']})")
    p.add_argument("--data", help="data folder (default $GEOCODEC_DATA or ../shared/data)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"the codec whose codes the head eats: a shipped model's name or folder (default "
                        f"{DEFAULT_MODEL}; the head of another codec goes in its own --out)")
    p.add_argument("--out", default=SHIPS_OUT,
                   help=f"folder of ships.onnx and ships_scores.json (default {SHIPS_OUT})")
    p.add_argument("--docs", default=SHIPS_DOC, help=f"page to write (default {SHIPS_DOC})")
    p.add_argument("--plot", default=SHIPS_PLOT, help=f"figure to write (default {SHIPS_PLOT})")
    p.add_argument("--report-only", action="store_true",
                   help="only write --docs and --plot from OUT/ships_scores.json, without training")


def run_ships(a: argparse.Namespace) -> int:
    """Train the ship head (or, with ``--report-only``, render its page)."""
    from geocodec.training import ships_report as R

    default_out = a.out == SHIPS_OUT
    # the defaults are the shipped files, found from the package (any working directory)
    report = R.REPORT_PATH if default_out else Path(a.out) / R.REPORT_PATH.name
    doc = R.DOC_PATH if a.docs == SHIPS_DOC else Path(a.docs)
    plot = R.PLOT_PATH if a.plot == SHIPS_PLOT else Path(a.plot)
    if a.report_only:
        if not report.is_file():
            a.parser.error(f"--report-only: {report} is missing; run without --report-only to train and "
                           "write it")
        R.write(report, doc, plot)
        print(f"wrote {doc}, {plot} from {report}")
        return 0
    from geocodec.training.ships import run

    d = SHIPS_DEFAULTS
    _keep_shipped_outputs(a, {"--out": (a.out, SHIPS_OUT), "--docs": (a.docs, SHIPS_DOC), "--plot": (a.plot, SHIPS_PLOT)})
    command = _command(a.prog, [("--steps", a.steps, d["steps"]), ("--pixel-steps", a.pixel_steps, d["pixel_steps"]),
                                ("--seed", a.seed, d["seed"]), ("--model", a.model, DEFAULT_MODEL),
                                ("--out", a.out, SHIPS_OUT), ("--docs", a.docs, SHIPS_DOC),
                                ("--plot", a.plot, SHIPS_PLOT)])
    run(seed=a.seed, steps=a.steps, pixel_steps=a.pixel_steps, data_dir=a.data, command=command, model=a.model,
        out=None if default_out else a.out, doc=doc, plot=plot, log=lambda m: print(m, flush=True))
    return 0


# -- parsers --------------------------------------------------------------------------------------------
ADD = {"codec": add_codec_arguments, "heads": add_heads_arguments, "ships": add_ships_arguments}
RUN = {"codec": run_codec, "heads": run_heads, "ships": run_ships}


def _finish(p: argparse.ArgumentParser, target: str) -> argparse.ArgumentParser:
    ADD[target](p)
    p.set_defaults(func=RUN[target], prog=p.prog, parser=p)
    return p


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add ``train`` with its targets ``codec``, ``heads`` and ``ships`` to the subparsers ``sub``."""
    p = sub.add_parser("train", help="train the codec or a shipped head on real data (needs torch: train extra)",
                       description="Train the codec or a shipped head and write its page; --report-only renders "
                                   "the page again from the saved report. No target: the codec.")
    targets = p.add_subparsers(dest="target", metavar="{" + ",".join(TARGETS) + "}")
    for t in TARGETS:
        _finish(targets.add_parser(t, help=HELP[t], description=f"Train {HELP[t]}."), t)
    return p


def with_default_target(argv: list[str]) -> list[str]:
    """``argv`` of ``geocodec ...`` with ``codec`` inserted after a ``train`` that names no target."""
    if argv[:1] == ["train"] and not (argv[1:2] and argv[1] in (*TARGETS, "-h", "--help")):
        return ["train", "codec", *argv[1:]]
    return list(argv)


def parser(target: str) -> argparse.ArgumentParser:
    """The parser of ``python -m <MODULES[target]>``: the options of ``geocodec train <target>``."""
    return _finish(CommandParser(prog=f"python -m {MODULES[target]}", description=f"Train {HELP[target]}."), target)


def main(target: str, argv: list[str] | None = None) -> int:
    """``python -m geocodec.training.<module>``: parse ``argv`` (default ``sys.argv[1:]``) and run ``target``."""
    a = parser(target).parse_args(sys.argv[1:] if argv is None else argv)
    with verbosity(a, f"python -m {MODULES[target]}"):
        return a.func(a)
