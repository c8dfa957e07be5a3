"""A seeded fuzz campaign against the geocodec command line: mutate small real files, run the commands.

    python tests/fuzz.py --runs 5000 --seed 1 [--report docs/fuzz.md] [--subprocess]

Base files are built from the real Rondonia series (``../shared/data``; synthetic vectors where it is
absent): a linear-codec file of 110-float vectors and a learned-codec file of the shipped model. Each
run picks a base file, a mutation (a bit or byte flip inside one column chunk of one row group, chosen
over every column; a flip in the Parquet footer; an edit of one value of a JSON footer key; a
truncation) and a command (validate, info, decompress, decode, classify, search), runs it in-process
(or, with ``--subprocess``, as ``python -m geocodec``) under a timeout and classifies the outcome:

* ``refused``: exit 2 (validate: 1) with an error line naming the file: a clean refusal;
* ``unchanged``: success with output identical to the unmutated file's (the mutation did not matter);
* ``accepted``: validate/info succeeded (their text is what the file says; not judged);
* failures: ``wrong`` (success with different output: silent wrong output), ``traceback`` (an
  exception escaped the CLI), ``crash`` (the process died of a signal, ``--subprocess`` only: in-process
  such a run ends the campaign), ``unclear`` (exit 2 whose last line does not name the file), ``hang``
  (past the timeout), ``other`` (any other exit status).

With ``--report PATH`` the counts and every failure are written (atomically) as a Markdown page.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
FAILURES = ("wrong", "traceback", "crash", "unclear", "hang", "other")
COMMANDS = {"linear": ("validate", "info", "decompress", "decode", "search"),
            "learned": ("validate", "info", "decompress", "classify", "search")}
MUTATIONS = ("bitflip", "byteset", "footerflip", "keyedit", "truncate")
FOOTER_KEYS = (b"geo", b"geocodec", b"emb")


# -- base files --------------------------------------------------------------------------------
def build_base_files(folder: Path) -> dict[str, Path]:
    """The two unmutated files of the campaign, written under ``folder``."""
    from geocodec.codecs.compress import compress
    from geocodec.format.embeddings_io import write_geoparquet
    from geocodec.training.datasets import data_root, rondonia_embedding_table

    folder.mkdir(parents=True, exist_ok=True)
    have = data_root() is not None and (data_root() / "rondonia/rondonia_s2l2a_monthly.npz").exists()
    floats = folder / "floats.parquet"
    if have:
        write_geoparquet(rondonia_embedding_table().slice(0, 240), floats)
    else:  # no real data: synthetic vectors of the same shape
        sys.path.insert(0, str(Path(__file__).parent))
        from helpers import write_input

        write_input(floats, n=240, d=110)
    out = {"linear": folder / "linear.parquet"}
    compress(floats, "embedding", out["linear"], quality=5, block_rows=20, row_group_rows=60, progress=False)
    if have:
        out["learned"] = folder / "learned.parquet"
        learned_file(out["learned"])
    return out


def learned_file(path: Path) -> None:
    """A learned-codec file (shipped model, quality 3) of 6 real Rondonia points x 11 dates, 2 x 2 cells a tile."""
    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.pack import LatentGrid, pack_grid
    from geocodec.tasks.series import pick_bands, point_series_q
    from geocodec.training.datasets import load_rondonia

    d = load_rondonia()
    model = LearnedModel.load()
    q = point_series_q(model, pick_bands(d["X"][:6]), 3)          # (n, T, C)
    n, t, _ = q.shape
    grid = np.repeat(np.repeat(q.transpose(1, 2, 0)[:, :, None, :], 2, axis=2), 2, axis=3)
    lg = LatentGrid(q=grid.astype(np.int32), valid_fraction=np.ones((t, 2, 2 * n), np.float32),
                    times=list(d["dates"]), origin=(500000.0, 9000000.0), pixel_size=10.0, crs="EPSG:32720")
    pack_grid(lg, model, 3, path, tile_cells=2, block_rows=16, row_group_rows=24)


# -- mutations ---------------------------------------------------------------------------------
def _chunks(path: Path) -> list[tuple[str, int, int, int]]:
    """``(column, row group, start, length)`` of every column chunk's bytes."""
    md = pq.ParquetFile(path).metadata
    out = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        for j in range(rg.num_columns):
            c = rg.column(j)
            start = c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset
            out.append((c.path_in_schema, i, start, c.total_compressed_size))
    return out


def _edit_json(value, rng: random.Random, where: str = ""):
    """``(new value, path)``: one leaf (or member) of a JSON value changed."""
    if isinstance(value, dict) and value and rng.random() < 0.85:
        k = rng.choice(sorted(value))
        if rng.random() < 0.12:
            return {kk: vv for kk, vv in value.items() if kk != k}, f"{where}.{k} deleted"
        new, path = _edit_json(value[k], rng, f"{where}.{k}")
        return {**value, k: new}, path
    if isinstance(value, list) and value and rng.random() < 0.85:
        i = rng.randrange(len(value))
        new, path = _edit_json(value[i], rng, f"{where}[{i}]")
        return value[:i] + [new] + value[i + 1:], path
    choices = [None, True, "x", [], {}, -1, 0, 2 ** 31, 1e308, float("nan")]
    if isinstance(value, bool):
        choices.append(not value)
    elif isinstance(value, (int, float)):
        choices += [value + 1, value - 1, value * 2, -value, value / 2]
    elif isinstance(value, str):
        choices += [value[:-1], value + "x", value.upper()]
    new = rng.choice(choices)
    return new, f"{where}: {json.dumps(value)[:40]} -> {json.dumps(new)[:40]}"


def mutate(src: Path, dst: Path, kind: str, rng: random.Random) -> str:
    """Write a mutation of ``src`` to ``dst``; return what was changed."""
    data = bytearray(src.read_bytes())
    if kind in ("bitflip", "byteset"):
        col, rg, start, length = rng.choice(_chunks(src))
        pos = start + rng.randrange(length)
        old = data[pos]
        data[pos] = old ^ (1 << rng.randrange(8)) if kind == "bitflip" else rng.choice(
            [v for v in range(256) if v != old])
        what = f"{kind} column {col} row group {rg} byte {pos}: {old:#04x} -> {data[pos]:#04x}"
    elif kind == "footerflip":
        flen = int.from_bytes(data[-8:-4], "little")
        pos = len(data) - 8 - flen + rng.randrange(flen)
        data[pos] ^= 1 << rng.randrange(8)
        what = f"footer bit flip at byte {pos}"
    elif kind == "truncate":
        n = rng.randrange(len(data))
        data = data[:n]
        what = f"truncated to {n} of {len(src.read_bytes())} bytes"
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from helpers import rewrite

        holder = {}

        def meta(kv):
            keys = [k for k in FOOTER_KEYS if k in kv]
            key = rng.choice(keys)
            new, path = _edit_json(json.loads(kv[key]), rng)
            kv[key] = json.dumps(new).encode()
            holder["what"] = f"footer key {key.decode()}{path}"
            return kv

        rewrite(src, dst, meta=meta)
        return holder["what"]
    dst.write_bytes(bytes(data))
    return what


# -- running a command -------------------------------------------------------------------------
def argv_for(command: str, path: Path, out: Path) -> list[str]:
    """The command line of ``command`` on ``path`` (outputs go to ``out``)."""
    p = str(path)
    return {"validate": ["validate", p],
            "info": ["info", p, "--json"],
            "decompress": ["decompress", p, "-o", str(out), "-q"],
            "decode": ["decode", p, "-o", str(out), "-q"],
            "classify": ["classify", p, "-o", str(out), "-q"],
            "search": ["search", p, "--tile-id", "__TILE__", "-k", "5", "--method", "exact",
                       "--no-save-index", "-o", str(out), "-q"]}[command]


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


@dataclass
class Result:
    """What one command run gave: exit status, stderr, output table (or None), elapsed seconds."""
    rc: int | None
    err: str
    output: pa.Table | None
    seconds: float
    trace: str = ""
    stdout: str = ""


def run_command(argv: list[str], out: Path, *, timeout: float, in_process: bool) -> Result:
    """Run the CLI on ``argv`` under ``timeout``; read ``out`` if it was written."""
    if out.exists():
        out.unlink()
    t0 = time.monotonic()
    trace, stdout = "", ""
    if in_process:
        from geocodec.cli.main import main

        err_buf, out_buf = io.StringIO(), io.StringIO()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with contextlib.redirect_stderr(err_buf), contextlib.redirect_stdout(out_buf):
                rc = main(argv)
        except _Hang:
            rc = None
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - every escape is a finding
            rc, trace = -1, traceback.format_exc()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        err, stdout = err_buf.getvalue(), out_buf.getvalue()
    else:
        try:
            r = subprocess.run([sys.executable, "-m", "geocodec", *argv], capture_output=True, text=True,
                               timeout=timeout, cwd=ROOT, env={**os.environ, "GEOCODEC_THREADS": "1"})
            rc, err, stdout = r.returncode, r.stderr, r.stdout
            if rc < 0:  # killed by a signal: an abort in native code (SIGABRT), a segfault
                rc, trace = -2, f"killed by signal {-rc}: {err.strip()[-200:]}"
            elif "Traceback (most recent call last)" in err:
                rc, trace = -1, err
        except subprocess.TimeoutExpired:
            rc, err = None, ""
    output = None
    if rc == 0 and out.exists():
        try:
            output = pq.read_table(out) if out.suffix == ".parquet" else None
        except Exception as exc:  # noqa: BLE001
            rc, trace = -1, f"the output {out} cannot be read back: {exc}"
    return Result(rc, err, output, time.monotonic() - t0, trace, stdout)


def classify_outcome(command: str, res: Result, base: Result, path: Path) -> str:
    """One of refused, unchanged, accepted or a failure (see the module docstring)."""
    if res.rc is None:
        return "hang"
    if res.rc == -1:
        return "traceback"
    if res.rc == -2:
        return "crash"
    last = res.err.strip().splitlines()[-1] if res.err.strip() else ""
    if command == "validate" and res.rc == 1:
        return "refused" if str(path) in last and "INVALID" in last else "unclear"
    if res.rc == 2:
        return "refused" if "error:" in last and str(path) in last else "unclear"
    if res.rc != 0:
        return "other"
    if command in ("validate", "info"):
        return "accepted"
    if base.rc != 0:
        return "wrong"  # the unmutated file is refused, the mutated one gives output
    same = res.output is not None and base.output is not None and res.output.equals(base.output)
    return "unchanged" if same else "wrong"


# -- the campaign -------------------------------------------------------------------------------
@dataclass
class Campaign:
    """Counts of one campaign and its failures (``(outcome, base, command, mutation, detail)``)."""
    runs: int
    seed: int
    counts: Counter = field(default_factory=Counter)
    by_command: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    command_line: str = ""

    @property
    def failed(self) -> int:
        """Runs whose outcome is a failure."""
        return sum(self.counts[k] for k in FAILURES)


def run_campaign(runs: int, seed: int, *, timeout: float = 20.0, in_process: bool = True,
                 workdir: Path | None = None, bases: dict[str, Path] | None = None) -> Campaign:
    """``runs`` seeded mutations, one command each; the files live in ``workdir`` (default: a temp folder)."""
    os.environ.setdefault("GEOCODEC_THREADS", "1")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="geocodec-fuzz-")) if own else Path(workdir)
    try:
        bases = bases or build_base_files(workdir / "base")
        tile = {name: pq.read_table(p, columns=["tile_id"]).column("tile_id")[3].as_py()
                for name, p in bases.items()}
        originals = {}
        for name, p in bases.items():
            for cmd in COMMANDS[name]:
                out = workdir / f"orig-{name}-{cmd}.parquet"
                argv = [tile[name] if a == "__TILE__" else a for a in argv_for(cmd, p, out)]
                originals[name, cmd] = run_command(argv, out, timeout=timeout * 3, in_process=in_process)
        rng = random.Random(seed)
        camp = Campaign(runs, seed)
        t0 = time.monotonic()
        for i in range(runs):
            name = rng.choice(sorted(bases))
            kind, cmd = rng.choice(MUTATIONS), rng.choice(COMMANDS[name])
            path = workdir / f"m{i:05d}.parquet"
            what = mutate(bases[name], path, kind, rng)
            out = workdir / "out.parquet"
            argv = [tile[name] if a == "__TILE__" else a for a in argv_for(cmd, path, out)]
            res = run_command(argv, out, timeout=timeout, in_process=in_process)
            outcome = classify_outcome(cmd, res, originals[name, cmd], path)
            camp.counts[outcome] += 1
            camp.by_command.setdefault(cmd, Counter())[outcome] += 1
            if outcome in FAILURES:
                detail = (res.trace.strip().splitlines() or [""])[-1] if res.trace else \
                    (res.err.strip().splitlines() or [""])[-1]
                camp.failures.append((outcome, name, cmd, what, detail[:300]))
            path.unlink(missing_ok=True)
        camp.seconds = time.monotonic() - t0
        return camp
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def report_markdown(camp: Campaign) -> str:
    """The Markdown page of a campaign: command, counts, counts per command and every failure."""
    lines = ["# Fuzz campaign", "",
             "Generated by `tests/fuzz.py` (do not edit by hand); the CI runs a short campaign "
             "(`tests/test_fuzz.py`).", "",
             f"Command: `{camp.command_line}`", "",
             f"{camp.runs} runs in {camp.seconds:.0f} s, seed {camp.seed}.", "",
             "| outcome | runs |", "| --- | --- |"]
    for k in ("refused", "unchanged", "accepted", *FAILURES):
        lines.append(f"| {k} | {camp.counts.get(k, 0)} |")
    lines += ["", "refused: exit 2 with an error naming the file; unchanged: success, output identical to the "
              "unmutated file's; accepted: validate/info succeeded (not judged); wrong: success with different "
              "output (silent wrong output); traceback, crash, unclear, hang, other: failures.", "",
              "| command | " + " | ".join(("refused", "unchanged", "accepted", *FAILURES)) + " |",
              "| --- |" + " --- |" * (3 + len(FAILURES))]
    for cmd in sorted(camp.by_command):
        c = camp.by_command[cmd]
        lines.append(f"| {cmd} | " + " | ".join(str(c.get(k, 0)) for k in ("refused", "unchanged", "accepted",
                                                                         *FAILURES)) + " |")
    lines += ["", f"## Failures ({camp.failed})", ""]
    if not camp.failures:
        lines.append("None: zero silent wrong outputs, zero hangs, zero bare tracebacks.")
    for outcome, name, cmd, what, detail in camp.failures:
        lines.append(f"- **{outcome}** `{cmd}` on the {name} file, {what}: {detail.replace('|', '/')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """The command line of the harness; returns 1 if any run failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per command run (default 20)")
    p.add_argument("--subprocess", action="store_true", help="run each command as python -m geocodec")
    p.add_argument("--report", help="write the counts and failures as Markdown to this path")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    camp = run_campaign(a.runs, a.seed, timeout=a.timeout, in_process=not a.subprocess)
    camp.command_line = "python tests/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps({"runs": camp.runs, "seconds": round(camp.seconds, 1), **camp.counts}))
    for f in camp.failures:
        print(" | ".join(f))
    if a.report:
        from geocodec.atomic import atomic_output

        with atomic_output(a.report) as tmp:
            Path(tmp).write_text(report_markdown(camp))
    return 1 if camp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
