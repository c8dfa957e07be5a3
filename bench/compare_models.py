#!/usr/bin/env python
"""Is a newly trained codec worth shipping? BD-rate of one model folder against another on held-out tiles.

    python bench/compare_models.py NEW [--against geocodec/models/s2-5band-v2u]   # default: the default model

Reads the held-out scores both models' ``model.json`` carry (written by ``geocodec train codec`` on the
held-out sets of ``geocodec.training.data``: bits per pixel and PSNR per quality) and prints, per set,
the Bjøntegaard delta rate of NEW against the other over the PSNR range both reach
(:func:`bench_rd.bd_rate`, PCHIP; negative: NEW needs fewer bytes for the same PSNR), and the change of
bits and PSNR at each quality. Both must have been scored on the same held-out sets. It measures
nothing itself: shipping still means rerunning ``bench/bench_rd.py`` against JPEG 2000.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import common  # noqa: F401  (puts this checkout first on sys.path)
from bench_rd import bd_rate

from geocodec.resources import DEFAULT_MODEL, MODELS_DIR


def held_out(path: Path) -> dict:
    """{set: {quality: (bits per pixel, PSNR dB)}} from a model folder's (or a model.json's) scores."""
    card = path / "model.json" if path.is_dir() else path
    try:
        sets = json.loads(card.read_text())["scores"]["sets"]
        return {name: {int(q): (float(v["bits_per_pixel"]), float(v["psnr_db"])) for q, v in s["qualities"].items()}
                for name, s in sets.items()}
    except OSError as exc:
        raise ValueError(f"{card}: cannot be read ({exc.strerror or exc})") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{card}: no held-out scores (scores.sets.<set>.qualities.<q>.bits_per_pixel/psnr_db; "
                         f"missing {exc})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{card}: not JSON ({exc})") from exc


def compare(new: dict, ref: dict) -> list[str]:
    """Lines of the comparison table."""
    lines = ["| held-out set | BD-rate new vs ref (PSNR) | per quality: Δ bpp % / Δ dB |", "|---|---:|---|"]
    for name in ref:
        if name not in new:
            lines.append(f"| {name} | not scored in the new model | |")
            continue
        qs = sorted(set(new[name]) & set(ref[name]))
        if len(qs) < 2:
            lines.append(f"| {name} | fewer than 2 qualities in common | |")
            continue
        bd = bd_rate([ref[name][q][0] for q in qs], [ref[name][q][1] for q in qs],
                     [new[name][q][0] for q in qs], [new[name][q][1] for q in qs])
        per = ", ".join(f"q{q} {100 * (new[name][q][0] / ref[name][q][0] - 1):+.1f} % / "
                        f"{new[name][q][1] - ref[name][q][1]:+.2f}" for q in qs)
        lines.append(f"| {name} | {'no overlap' if bd is None else f'{bd:+.1f} %'} | {per} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("new", type=Path, help="model folder (or model.json) of the new model")
    ap.add_argument("--against", type=Path, default=MODELS_DIR / DEFAULT_MODEL,
                    help=f"model folder to compare with (default: the shipped default, {DEFAULT_MODEL})")
    a = ap.parse_args(argv)
    try:
        new, ref = held_out(a.new), held_out(a.against)
    except ValueError as exc:
        print(f"compare_models: {exc}", file=sys.stderr)
        return 2
    print("\n".join(compare(new, ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
