"""Ship detection on a learned-codec file: the ship head on dequantized latent grids -> points.

Consumer-safe (numpy, pyarrow, onnxruntime; no torch). The head (``ships.onnx``, see
docs/ships.md) maps a tile's C x 16 x 16 dequantized latents to a ship probability per
latent cell (80 m). A detection is a cell over the threshold that is a 3 x 3 local maximum
within its tile; its point is the cell centre in the file's CRS. Row groups are streamed:
only the row groups (and code blocks) matching ``bbox``/``time`` are read and decoded.
The result is two :class:`~geocodec.tasks.results.Result` layers (points, and the tile
footprints with their ship count), written by :func:`~geocodec.tasks.results.write_result`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from geocodec.errors import InputError, MetadataError
from geocodec.tasks.results import Result, Style

DEFAULT_HEAD = "ships"


def local_peaks(prob: np.ndarray, threshold: float) -> np.ndarray:
    """(N, h, w) bool: cells over ``threshold`` that are >= each of their 8 neighbours in the tile."""
    prob = np.asarray(prob, dtype=np.float32)
    pad = np.pad(prob, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = prob.shape[1:]
    nbr = np.max(np.stack([pad[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]), axis=0)
    return (prob > threshold) & (prob >= nbr)


@dataclass
class ShipResult:
    """Ship detections of a file: two layers (points and per-tile counts) and how they were made."""

    points: Result       # one row per detection: geometry (WKB point), tile_id, score, datetime, cell_row, cell_col
    counts: Result       # one row per tile read: tile_id, datetime, count, max_score, geometry (tile footprint)
    threshold: float
    head: str


def _load_head(head, for_file: dict | None = None):
    from geocodec.tasks.heads import Head

    h = head if isinstance(head, Head) else Head.load(head or DEFAULT_HEAD, for_file=for_file)
    if h.task != "ships" or h.meta["input"].get("kind") != "latent_grid":
        raise MetadataError(f"head {h.path} is a '{h.task}' head on '{h.meta['input'].get('kind')}' inputs; "
                            "ship detection needs a 'ships' head on 'latent_grid'", source=h.path, field="geocodec:task")
    return h


def _files(file_or_dataset):
    from geocodec.format.dataset import GeocodecDataset
    from geocodec.format.reader import GeocodecFile

    if isinstance(file_or_dataset, GeocodecFile):
        return [file_or_dataset], False
    if isinstance(file_or_dataset, GeocodecDataset):
        return list(file_or_dataset.files), False
    return list(GeocodecDataset(file_or_dataset).files), True


def detect_ships(file_or_dataset, head=DEFAULT_HEAD, threshold: float | None = None, bbox=None, time=None,
                 batch: int = 256) -> ShipResult:
    """Ship points (cell centres over ``threshold``) and per-tile counts of a learned-codec file.

    ``file_or_dataset``: a path (file or folder of files), a :class:`GeocodecFile` or
    :class:`GeocodecDataset`. ``head``: a :class:`Head`, a name under models/heads or a path.
    ``threshold``: default the one the head was tuned with (``geocodec:output.threshold``).
    ``bbox`` (file CRS) and ``time`` (start, end) select tiles. Files made by another
    encoder than the head's are refused (``Head.check_file``).
    """
    from shapely import points as make_points, to_wkb

    from geocodec.format.query import Query

    query = Query.make(bbox, time)
    files, owned = _files(file_or_dataset)
    cols = {k: [] for k in ("x", "y", "tile_id", "score", "datetime", "cell_row", "cell_col")}
    counts = {k: [] for k in ("tile_id", "datetime", "count", "max_score", "geometry")}
    crs = tile_types = None
    try:
        # a shipped head name picks the head trained on these files' codes (Head.load's for_file)
        h = _load_head(head, for_file=files[0].ext if files else None)
        if threshold is None:
            threshold = float(h.meta.get("output", {}).get("threshold",
                                                           (h.meta.get("scores") or {}).get("threshold", 0.5)))
        want = tuple(h.meta["input"]["shape"])
        for f in files:
            h.check_file(f.ext, f.source)
            if f.ext["latent"]["layout"] != "grid" or tuple(f.spec.latent_shape) != want:
                raise MetadataError(f"the head eats latent grids {list(want)}, the file holds "
                                    f"{f.ext['latent']['layout']} latents {list(f.spec.latent_shape)}",
                                    source=f.source, field="latent.shape")
            grid = f.grid
            if grid.get("type") != "regular":
                raise MetadataError("ship points need a file on a regular tile grid", source=f.source, field="grid")
            crs = crs if crs is not None else f.crs
            tile_types = tile_types or f.geo["columns"][f.geo["primary_column"]].get("geometry_types")
            k_h, k_w = want[1], want[2]
            size_x, size_y = (float(v) for v in grid["tile_size_m"])
            cx, cy = size_x / k_w, size_y / k_h
            for part in f.iter_rows(query, what="latents"):
                sub, lat = part.table, part.values
                prob = np.concatenate([np.asarray(h.run(lat[i:i + batch])).reshape(-1, k_h, k_w)
                                       for i in range(0, len(lat), batch)])
                if "valid_cells" in sub.column_names:
                    bits = sub.column("valid_cells").to_pylist()
                    vmask = np.stack([np.unpackbits(np.frombuffer(b, np.uint8))[:k_h * k_w] if b else
                                      np.ones(k_h * k_w, np.uint8) for b in bits]).reshape(-1, k_h, k_w).astype(bool)
                    prob = np.where(vmask, prob, 0.0)
                det = local_peaks(prob, threshold)
                bb = sub.column("bbox").combine_chunks()
                x0 = bb.field("xmin").to_numpy()
                y1 = bb.field("ymax").to_numpy()
                tids = np.asarray(sub.column("tile_id").to_pylist(), dtype=object)
                dts = sub.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
                n, i, j = np.nonzero(det)
                cols["x"].append(x0[n] + (j + 0.5) * cx)
                cols["y"].append(y1[n] - (i + 0.5) * cy)
                cols["tile_id"].append(tids[n])
                cols["score"].append(prob[n, i, j].astype(np.float32))
                cols["datetime"].append(dts[n])
                cols["cell_row"].append(i.astype(np.int16))
                cols["cell_col"].append(j.astype(np.int16))
                counts["tile_id"].append(tids)
                counts["datetime"].append(dts)
                counts["count"].append(det.sum(axis=(1, 2)).astype(np.int32))
                counts["max_score"].append(prob.reshape(len(prob), -1).max(axis=1).astype(np.float32))
                counts["geometry"].append(sub.column(f.geo["primary_column"]).combine_chunks().cast(pa.binary()))
    finally:
        if owned:
            for f in files:
                f.close()
    if not counts["tile_id"]:
        raise InputError("no tile matches the query", source=str(file_or_dataset))

    def cat(parts, dtype=None):
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    x, y = cat(cols["x"], np.float64), cat(cols["y"], np.float64)
    geom = to_wkb(make_points(x, y)) if len(x) else np.zeros(0, object)
    points = pa.table({
        "geometry": pa.array(list(geom), pa.binary()),
        "tile_id": pa.array(list(cat(cols["tile_id"], object)), pa.string()),
        "score": pa.array(cat(cols["score"], np.float32), pa.float32()),
        "datetime": pa.array(cat(cols["datetime"], "datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
        "cell_row": pa.array(cat(cols["cell_row"], np.int16), pa.int16()),
        "cell_col": pa.array(cat(cols["cell_col"], np.int16), pa.int16()),
    })
    counts_t = pa.table({
        "tile_id": pa.array(list(cat(counts["tile_id"], object)), pa.string()),
        "datetime": pa.array(cat(counts["datetime"], "datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
        "count": pa.array(cat(counts["count"], np.int32)),
        "max_score": pa.array(cat(counts["max_score"], np.float32)),
        "geometry": pa.concat_arrays(counts["geometry"]),
    })
    bbox = [float(x.min()), float(y.min()), float(x.max()), float(y.max())] if len(x) else None
    return ShipResult(Result(points, crs, style=Style.graduated("score"), bbox=bbox, geometry_types=["Point"]),
                      Result(counts_t, crs, style=Style.graduated("count"), geometry_types=tile_types),
                      float(threshold), h.path)


def write_map(result: ShipResult, source: str, path: str, *, bbox=None, time=None) -> str:
    """PNG of the detections over the file's preview (the model's preview decoder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from shapely import from_wkb, get_x, get_y

    from geocodec.tasks.preview import preview_mosaic

    mos = preview_mosaic(source, bbox=bbox, time=time)
    h, w = mos.data.shape[1:]
    x0, y1 = mos.origin
    extent = (x0, x0 + w * mos.pixel_size, y1 - h * mos.pixel_size, y1)
    fig, ax = plt.subplots(figsize=(min(14, 3 + w / 150), min(14, 3 + h / 150)))
    ax.imshow(mos.rgb(), extent=extent)
    g = from_wkb(np.asarray(result.points.table.column("geometry").to_pylist(), dtype=object))
    if len(g):
        sc = ax.scatter(get_x(g), get_y(g), c=result.points.table.column("score").to_numpy(), cmap="autumn_r",
                        vmin=result.threshold, vmax=1, s=40, marker="x", linewidths=1.5)
        fig.colorbar(sc, ax=ax, fraction=0.03, label="ship score")
    ax.set_title(f"{len(g)} ship detections (threshold {result.threshold:.2f})")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
