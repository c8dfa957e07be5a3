"""One look for every rate–utility figure: score against bits, codec line vs storage baselines.

Used by the task reports (land cover, monitoring, ships, search) so the plots read the
same way: geocodec at q1..q5 as one labelled line, each swept baseline family
(``pca{k}+int8``, ``pq{m}x{nbits}``, as named by :mod:`geocodec.training.baselines`) as its own
line over its sweep, single baselines (float32, float16, int8/vector) as markers, and
anything else (the raw-pixel model) as a black marker. matplotlib only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from geocodec.atomic import atomic_output

FAMILY = re.compile(r"^(pca|pq)(\d+)")
FAMILY_STYLE = {"pca": ("P", "#e7298a", "PCA-k + int8"), "pq": ("X", "#7570b3", "PQ-m x 8 bit (faiss)")}
SINGLE_STYLE = {"float32": ("s", "#666666"), "float16": ("v", "#1b9e77"), "int8/vector": ("D", "#66a61e")}


def draw(ax, codec: list[tuple[str, float, float]], baselines: dict[str, tuple[float, float]],
         others: dict[str, tuple[float, float]] | None = None, *, suffix: str = " + zstd",
         codec_label: str = "geocodec q1..q5") -> None:
    """Draw on ``ax``: ``codec`` [(label, bits, score)], ``baselines`` {name: (bits, score)} with names
    from geocodec.baselines, ``others`` {label: (bits, score)} (e.g. the raw-pixel model)."""
    ax.plot([c[1] for c in codec], [c[2] for c in codec], "o-", color="#d95f02", lw=2, label=codec_label, zorder=5)
    for label, x, y in codec:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -11), fontsize=8, color="#d95f02")
    fams: dict[str, list] = defaultdict(list)
    for name, (x, y) in baselines.items():
        m = FAMILY.match(name)
        if m:
            fams[m.group(1)].append((int(m.group(2)), x, y))
            continue
        base = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
        mk, col = SINGLE_STYLE.get(base, ("o", "#999999"))
        ax.plot([x], [y], mk, color=col, ms=8, ls="none", label=name)
    for fam, pts in fams.items():
        pts.sort()
        mk, col, label = FAMILY_STYLE[fam]
        ax.plot([p[1] for p in pts], [p[2] for p in pts], mk + "--", color=col, ms=7, label=label + suffix)
        for k, x, y in pts:
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7, color=col)
    for label, (x, y) in (others or {}).items():
        ax.plot([x], [y], "*", color="black", ms=11, ls="none", label=label)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)


def save(fig, path: Path, rect=(0, 0, 1, 1)) -> None:
    """Lay out (leaving ``rect``'s margins free, e.g. for a figure legend) and write a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
