"""Monitoring: a class per date and change events (e.g. Forest -> Clear_Cut_*) for one place.

Consumer-safe (numpy + onnxruntime; matplotlib only for :func:`plot_series`). The head is
``monitor.onnx`` (:mod:`geocodec.tasks.heads`): input ``latent_cell_series`` ``[T, C]`` (any T, C the model's latent channels),
output per-date class probabilities. Event rule (from the head's ``geocodec:output``
``events`` entry, defaults below): the first date whose class is a clear-cut class for
``>= min_run`` consecutive dates, right after a date of a forest-like class. The event
date is that first clear-cut date. A series that starts cleared has no event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geocodec.tasks.results import Result, Style

DEFAULT_FROM = ("Forest",)
DEFAULT_TO_PREFIX = "Clear_Cut"


def detect_events(classes, names: list[str], *, from_classes=DEFAULT_FROM, to_classes=None, min_run: int = 2,
                  dates=None) -> list[dict]:
    """Change events in a per-date class sequence (indices into ``names`` or names).

    Returns a list (at most one: the first event) of ``{"index", "date", "from", "to"}``.
    """
    seq = [names[int(c)] if not isinstance(c, str) else c for c in classes]
    to_classes = set(to_classes) if to_classes is not None else {n for n in names if n.startswith(DEFAULT_TO_PREFIX)}
    from_classes = set(from_classes)
    for t in range(1, len(seq) - min_run + 1):
        if seq[t - 1] in from_classes and all(s in to_classes for s in seq[t:t + min_run]):
            return [{"index": t, "date": None if dates is None else str(np.asarray(dates)[t])[:10],
                     "from": seq[t - 1], "to": seq[t]}]
    return []


@dataclass
class MonitorResult:
    """A monitoring head's answer for one place: per date (T) the ``probabilities`` (T, K) and argmax ``classes`` (T,).

    ``dates`` (T,) (indices 0..T-1 when none were given), class ``names`` and ``colors`` (K), and the change ``events``
    of :func:`detect_events`.
    """

    dates: np.ndarray
    probabilities: np.ndarray          # (T, K)
    classes: np.ndarray                # (T,) indices
    names: list[str]
    colors: list[str]
    events: list[dict] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """The class name of each date, (T,)."""
        return [self.names[int(c)] for c in self.classes]


def run_monitor(head, latents: np.ndarray, dates=None) -> MonitorResult:
    """Run a monitoring head on one place's per-date latent cells ``(T, C)``."""
    from geocodec.errors import InputError

    x = np.asarray(latents, np.float32)
    if x.ndim != 2:
        raise InputError(f"per-date latents must be (T, C), got {x.shape}")
    want = head.meta["input"].get("shape") or [None, x.shape[1]]
    if want[-1] is not None and int(want[-1]) != x.shape[1]:
        raise InputError(f"head {head.path} wants {want[-1]} channels per date, got {x.shape[1]}")
    probs = head.run(x[None])[0]
    if probs.ndim == 1:  # a series-level head: repeat for every date
        probs = np.repeat(probs[None], len(x), axis=0)
    cls = probs.argmax(axis=1)
    ev = (head.meta.get("output") or {}).get("events") or {}
    names = head.class_names or list((head.meta.get("output") or {}).get("names", []))
    events = detect_events(cls, names, from_classes=ev.get("from", DEFAULT_FROM), to_classes=ev.get("to"),
                           min_run=int(ev.get("min_run", 2)), dates=dates)
    return MonitorResult(np.asarray(dates) if dates is not None else np.arange(len(x)), probs, cls, names,
                         head.class_colors, events)


def plot_series(result: MonitorResult, latents: np.ndarray, path: str, *, title: str = "") -> str:
    """PNG: the latent channels through time (top) and the class probabilities with events (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(latents, np.float32)
    t = np.arange(len(x))
    labels = [str(d)[:10] for d in result.dates]
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1.2]})
    im = a0.imshow(x.T, aspect="auto", cmap="RdBu_r", interpolation="nearest",
                   vmin=-np.abs(x).max() or -1, vmax=np.abs(x).max() or 1, extent=(-0.5, len(x) - 0.5, x.shape[1] - 0.5, -0.5))
    a0.set_ylabel("latent channel")
    fig.colorbar(im, ax=a0, pad=0.01, label="q * step")
    bottom = np.zeros(len(x))
    for k, name in enumerate(result.names):
        p = result.probabilities[:, k]
        if p.max() < 0.02:
            continue
        a1.bar(t, p, bottom=bottom, color=result.colors[k] if k < len(result.colors) else None, label=name, width=0.85)
        bottom += p
    for e in result.events:
        for a in (a0, a1):
            a.axvline(e["index"] - 0.5, color="k", ls="--", lw=1.2)
        a1.annotate(f"{e['from']} -> {e['to']}", (e["index"] - 0.45, 1.02), fontsize=8, annotation_clip=False)
    a1.set_ylim(0, 1)
    a1.set_ylabel("class probability")
    a1.set_xticks(t, labels, rotation=45, ha="right", fontsize=8)
    a1.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        a0.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class PlaceMonitor:
    """The monitor layer of one place (one row per date, styled by class) and what it came from."""

    layer: Result           # tile_id, date, cell, class, probability, event, event_from, event_to, p_<class> ...,
                            # geometry (the cell or tile, every row)
    result: MonitorResult
    series: object          # geocodec.tasks.series cell series (tile_id, cell, dates, latents, qualities, ...)

    @property
    def where(self) -> str:
        """``cell (row, col)`` or ``tile mean``: what the series is of."""
        return f"cell {self.series.cell}" if self.series.cell else "tile mean"

    @property
    def events(self) -> list[str]:
        """The change events as text, ``DATE: FROM -> TO``."""
        return [f"{e['date']}: {e['from']} -> {e['to']}" for e in self.result.events]

    def plot(self, path: str) -> str:
        """PNG of the place's codes and class probabilities through time (:func:`plot_series`)."""
        return plot_series(self.result, self.series.latents, path, title=f"{self.series.tile_id} ({self.where})")


def monitor_place(files, head_name="monitor", *, point=None, tile_id=None, crs=None) -> PlaceMonitor:
    """Per-date classes and change events of one place (a point or a tile id) across geocodec files."""
    import pyarrow as pa
    import shapely

    from geocodec.tasks.heads import Head
    from geocodec.tasks.series import cell_series

    cs = cell_series(files, point=point, tile_id=tile_id, crs=crs)
    head = Head.load(head_name, for_file=cs.ext)
    head.check_file(cs.ext, cs.sources[0])
    r = run_monitor(head, cs.latents, cs.dates)
    n = len(cs.dates)
    ev = {e["index"]: e for e in r.events}
    cols = {"tile_id": [cs.tile_id] * n, "date": [str(d)[:10] for d in cs.dates],
            "cell": [None if cs.cell is None else f"{cs.cell[0]},{cs.cell[1]}"] * n,
            "class": r.class_names, "probability": r.probabilities.max(axis=1).astype(np.float32),
            "event": [i in ev for i in range(n)],
            "event_from": [ev[i]["from"] if i in ev else None for i in range(n)],
            "event_to": [ev[i]["to"] if i in ev else None for i in range(n)]}
    for k, name in enumerate(r.names):
        cols[f"p_{name}"] = r.probabilities[:, k].astype(np.float32)
    table = pa.table({**cols, "geometry": pa.array(list(shapely.to_wkb([cs.geometry] * n)), pa.binary())})
    return PlaceMonitor(Result(table, cs.crs, style=Style.categorized("class", r.names, r.colors)), r, cs)
