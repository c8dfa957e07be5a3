"""``geocodec classify``: every tile of a file through a classification head (library function).

Shared by the CLI and the QGIS plugin: returns the output layer as a
:class:`~geocodec.tasks.results.Result` styled by class (the head's names and colours), which
:func:`~geocodec.tasks.results.write_result` writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geocodec.tasks.results import Result, Style


@dataclass
class Classified:
    """A classified file: the layer (one row per tile, styled by class) and the head's classes."""

    layer: Result            # tile_id, (datetime | n_dates, first_date, last_date), class, class_index,
                             # probability, color, p_<class> ..., geometry (WKB footprints)
    names: list[str]
    head: object

    @property
    def rows(self) -> int:
        """Tiles classified."""
        return self.layer.num_rows

    @property
    def counts(self) -> np.ndarray:
        """Tiles per class, in the order of :attr:`names`."""
        idx = self.layer.table.column("class_index").to_numpy()
        return np.bincount(idx, minlength=len(self.names))


def classify_file(source, head_name="landcover", *, threads: int | None = None, progress: bool = True) -> Classified:
    """Every tile of ``source`` (file or folder) through the classification head ``head_name``
    (a shipped name or an ``.onnx`` path): class, probability and per-class probabilities."""
    import pyarrow as pa
    import shapely
    from tqdm.auto import tqdm

    from geocodec.errors import InputError
    from geocodec.tasks.heads import Head
    from geocodec.format.dataset import GeocodecDataset

    ds = GeocodecDataset(source)
    try:
        # a shipped head name picks the head trained on this file's codes (Head.load's for_file)
        head = Head.load(head_name, for_file=ds.files[0].ext if ds.files else None)
        kind = head.meta["input"].get("kind")
        names = head.class_names or list(head.meta.get("output", {}).get("names", []))
        if not names:
            raise InputError(f"head {head.path} names no classes: classify needs a classification head", field="head")
        for f in ds.files:
            head.check_file(f.ext, f.source)
        crs = ds.crs
        if kind == "embedding":
            dim = head.meta["input"].get("dimension") or (head.meta["input"].get("shape") or [None])[-1]
            if dim and int(dim) != ds.spec.dimension:
                raise InputError(f"head {head.path} wants embeddings of {dim} floats, the file has "
                                 f"{ds.spec.dimension}", source=ds.source, field="embedding.dimension")
            # Arrow chunks, not Python objects per tile: a million tiles stay a few hundred MB
            ids, times, geoms, probs = [], [], [], []
            bar = tqdm(total=ds.num_rows, unit="tile", desc="classify", disable=not progress)
            for part in ds.iter_rows(None, ["tile_id", "geometry", "datetime"], what="embeddings", threads=threads):
                table = part.table
                probs.append(head.run(part.values))
                ids.append(table.column("tile_id").combine_chunks())
                times.append(table.column("datetime").combine_chunks())
                geoms.append(table.column("geometry").combine_chunks())
                bar.update(table.num_rows)
            bar.close()
            p = np.concatenate(probs) if probs else np.zeros((0, len(names)), np.float32)
            ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
            geoms = pa.concat_arrays(geoms) if geoms else pa.array([], pa.binary())
            extra = {"datetime": pa.concat_arrays(times) if times else pa.array([], pa.timestamp("ms", tz="UTC"))}
        elif kind == "latent_cell_series":
            from geocodec.tasks.series import align_to_dates, tile_series

            ts = tile_series([f.source for f in ds.files], progress=progress)
            want = head.meta["input"].get("shape") or [None, None]
            hdates = head.meta["input"].get("dates")
            xs = []
            for d, lat in zip(ts.dates, ts.latents):
                if hdates:
                    lat, _ = align_to_dates(d, lat, np.array(hdates, dtype="datetime64[D]"))
                elif want[0] is not None and len(lat) != int(want[0]):
                    raise InputError(f"head wants {want[0]} dates, a tile has {len(lat)}", source=ds.source)
                xs.append(lat)
            x = np.stack(xs).astype(np.float32)
            p = np.concatenate([head.run(x[i:i + 4096]) for i in range(0, len(x), 4096)])
            if p.ndim == 3:  # a per-date head: classify each tile by its mean probability
                p = p.mean(axis=1)
            ids = pa.array(ts.tile_ids)
            geoms = pa.array(list(shapely.to_wkb(list(ts.geometries))), pa.binary())
            extra = {"n_dates": [len(d) for d in ts.dates],
                     "first_date": [str(d[0])[:10] for d in ts.dates], "last_date": [str(d[-1])[:10] for d in ts.dates]}
        else:
            raise InputError(f"classify runs heads whose input is 'embedding' or 'latent_cell_series'; "
                             f"{head.path} wants {kind!r}", field="geocodec:input")
    finally:
        ds.close()
    cls = p.argmax(axis=1).astype(np.int32)
    style = Style.categorized("class", names, head.class_colors)
    colors = [c for _, c in style.categories]
    cols = {"tile_id": ids, **extra,
            "class": pa.DictionaryArray.from_arrays(pa.array(cls), pa.array(names)).cast(pa.string()),
            "class_index": cls, "probability": p.max(axis=1).astype(np.float32) if len(p) else np.zeros(0, np.float32),
            "color": pa.DictionaryArray.from_arrays(pa.array(cls), pa.array(colors)).cast(pa.string())}
    for k, n in enumerate(names):
        cols[f"p_{n}"] = p[:, k].astype(np.float32)
    table = pa.table({**cols, "geometry": geoms})
    layer = Result(table, crs, style=style, bbox=ds.bbox, geometry_types=list(ds.files[0].geometry_types))
    return Classified(layer, names, head)
