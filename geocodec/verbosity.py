"""``-q/--quiet`` and ``-v/--verbose``, which every command takes, and what they switch.

One parent parser (:func:`common_options`) gives every parser built by :class:`CommandParser`
(the ``geocodec`` parser, its sub-commands and theirs, e.g. ``geocodec train codec``) the same
two options; :func:`verbosity` then applies them for the duration of a command:

* quiet: no progress bars (``TQDM_DISABLE=1`` for bars that take no ``progress`` argument;
  commands pass ``progress=not quiet`` to the rest) and the ``geocodec`` loggers at ERROR:
  only errors and the command's one-line result are printed;
* default: progress bars, WARNING;
* ``-v``: INFO (the command's wall time, what each step did, where it is cheap to say);
  ``-vv``: DEBUG (per row group and per file).

Log records go to stderr, so stdout keeps only results.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time

LOGGER = "geocodec"


def common_options() -> argparse.ArgumentParser:
    """The parent parser of ``-q/--quiet`` and ``-v/--verbose`` (mutually exclusive).

    Both default to ``argparse.SUPPRESS`` so that an option given before a sub-command
    (``geocodec -v train codec``) is not reset by the sub-command's default; read them through
    :func:`levels`.
    """
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars or log messages: only errors and the one-line result")
    g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more detail on stderr: timings and what each step did (-vv: per row group, debug)")
    return p


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes the :func:`common_options`, as do the sub-command parsers
    it makes (``add_subparsers`` builds them with the parser's own class)."""

    def __init__(self, *args, **kwargs):
        kwargs["parents"] = [common_options(), *kwargs.get("parents", [])]
        super().__init__(*args, **kwargs)


def levels(args: argparse.Namespace) -> tuple[bool, int]:
    """``(quiet, verbose)`` of parsed ``args``; also stored back on ``args`` as ``args.quiet`` and
    ``args.verbose`` (False and 0 when not given)."""
    args.quiet = bool(getattr(args, "quiet", False))
    args.verbose = int(getattr(args, "verbose", 0) or 0)
    return args.quiet, args.verbose


def log_level(quiet: bool, verbose: int) -> int:
    """The ``geocodec`` loggers' level for these options."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


@contextlib.contextmanager
def verbosity(args: argparse.Namespace, name: str = "geocodec"):
    """Apply ``args``' quiet/verbose while the block runs (logging level, progress bars), then
    restore what was there; with ``-v`` logs the block's wall time as ``name``."""
    quiet, verbose = levels(args)
    log = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    old_level, old_propagate = log.level, log.propagate
    old_tqdm = os.environ.get("TQDM_DISABLE")
    log.addHandler(handler)
    log.setLevel(log_level(quiet, verbose))
    log.propagate = False
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
    t0 = time.perf_counter()
    try:
        yield args
        logging.getLogger(LOGGER + ".cli").info("%s took %.2f s", name, time.perf_counter() - t0)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate
        if quiet:
            if old_tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = old_tqdm
