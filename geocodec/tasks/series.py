"""Per-date latent cells of one place: for point time series and for geocodec files.

Consumer-safe (numpy, onnxruntime, pyarrow, shapely, pyproj; no torch). Used by the
training of the heads, by ``geocodec classify`` / ``geocodec monitor`` and by the QGIS plugin.

Two sources of per-date cells:

* **Point time series** (e.g. the Rondonia samples: single pixels, no image context).
  Each date's 5-band pixel is encoded as a *spatially homogeneous* 32 x 32 patch (the
  same reflectance everywhere) and the latent cell at the patch centre is taken
  (``(2, 2)`` of the 4 x 4 latent grid). This is a homogeneous-field approximation:
  the encoder sees a uniform field, not an image patch, so texture and neighbourhood
  are absent. With the shipped model the centre cell of a 32 x 32 patch equals the
  centre cell of larger uniform patches (checked: 32, 64, 96 px give the same latents),
  so the patch size does not leak into the codes.
* **geocodec files of the learned codec** (:func:`cell_series`): rows with the same
  ``tile_id`` across dates, and in each the latent cell containing a point (or the mean
  of the tile's valid cells).

Latents are always *dequantized* codes ``q * step`` (what a reader of the file gets),
so heads trained on them run on any quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geocodec.codecs.bands import L2A_BANDS, model_bands
from geocodec.errors import InputError, MetadataError

#: the Rondonia bands (10), in the order of the npz file: the L2A bands without the 60 m B01 and B09
RONDONIA_BANDS = tuple(b for b in L2A_BANDS if b not in ("B01", "B09"))
PATCH_PX = 32


def pick_bands(x: np.ndarray, bands_from=RONDONIA_BANDS, bands_to=None) -> np.ndarray:
    """``x[..., bands_from]`` -> ``x[..., bands_to]`` (last axis; default: the shipped model's bands)."""
    bands_from = list(bands_from)
    bands_to = model_bands() if bands_to is None else bands_to
    missing = [b for b in bands_to if b not in bands_from]
    if missing:
        raise InputError(f"bands {missing} are missing; have {bands_from}", field="bands")
    return np.ascontiguousarray(x[..., [bands_from.index(b) for b in bands_to]], dtype=np.float32)


def homogeneous_latents(model, reflectance: np.ndarray, *, patch_px: int = PATCH_PX, batch: int = 4096,
                        progress: bool = False) -> np.ndarray:
    """Unquantized latents of uniform patches: reflectance ``(..., B)`` -> ``(..., C)`` float32.

    Each vector becomes a ``patch_px`` x ``patch_px`` patch of that reflectance; the
    latent cell at the centre of the patch's latent grid is returned.
    """
    x = np.asarray(reflectance, dtype=np.float32)
    nb = len(model.bands)
    if x.shape[-1] != nb:
        raise InputError(f"reflectance must end with the model's {nb} bands {model.bands}, got shape {x.shape}",
                         field="bands")
    if patch_px % model.stride:
        raise InputError(f"patch size {patch_px} is not a multiple of the stride {model.stride}")
    flat = x.reshape(-1, nb)
    c = int(model.card["channels"])
    out = np.empty((len(flat), c), np.float32)
    h = patch_px // model.stride
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(flat), unit="px", desc="encode")
    for i in range(0, len(flat), batch):
        v = flat[i:i + batch]
        tiles = np.broadcast_to(v[:, :, None, None], (len(v), nb, patch_px, patch_px))
        y = model.latents(np.ascontiguousarray(tiles))
        out[i:i + batch] = y[:, :, h // 2, h // 2]
        if bar is not None:
            bar.update(len(v))
    if bar is not None:
        bar.close()
    return out.reshape(*x.shape[:-1], c)


def quantize(latents: np.ndarray, step: float) -> np.ndarray:
    """Integer codes ``round(latents / step)``, int32, shaped as ``latents``."""
    return np.round(np.asarray(latents, np.float32) / np.float32(step)).astype(np.int32)


def point_series_q(model, reflectance: np.ndarray, quality: int, *, latents: np.ndarray | None = None) -> np.ndarray:
    """Integer codes ``(N, T, C)`` of point series ``(N, T, B)`` at ``quality``."""
    y = homogeneous_latents(model, reflectance) if latents is None else latents
    return quantize(y, model.step(quality))


def point_series_codes(model, reflectance: np.ndarray, quality: int | None, *,
                       latents: np.ndarray | None = None) -> np.ndarray:
    """Dequantized codes ``q * step`` ``(N, T, C)`` of point series ``(N, T, B)`` (B = the model's bands).

    ``quality=None`` returns the unquantized float latents. ``latents``: reuse
    :func:`homogeneous_latents` computed once for several qualities.
    """
    y = homogeneous_latents(model, reflectance) if latents is None else latents
    if quality is None:
        return np.asarray(y, np.float32)
    step = model.step(quality)
    return (quantize(y, step).astype(np.float32) * np.float32(step))


def bits_per_cell(model, q: np.ndarray, quality: int) -> float:
    """Mean ideal code length of integer cells ``(..., C)`` under the model's entropy model at ``quality``
    (each cell coded alone: a 1 x 1 latent grid)."""
    q = np.asarray(q)
    c = q.shape[-1]
    flat = q.reshape(-1, c, 1)
    return model.entropy_model(quality, (1, 1)).cross_entropy_bits(flat) / max(len(flat), 1)


# -- day-of-year alignment ---------------------------------------------------------------------
def day_of_year(dates) -> np.ndarray:
    """Day of the year of each date, 1 for 1 January (int array)."""
    d = np.asarray(dates).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(int) + 1


def align_to_dates(dates, values: np.ndarray, target_dates) -> tuple[np.ndarray, np.ndarray]:
    """Pick, for each target date, the value of the date nearest in day of year (circular).

    Returns (values ``(len(target), ...)``, index into ``dates`` per target). A head
    trained on a year of dates can thus run on a file of other dates; with fewer dates
    than the head expects, dates repeat (the classification is then weaker).
    """
    if len(dates) == 0:
        raise InputError("no dates to align")
    src = day_of_year(dates)
    tgt = day_of_year(target_dates)
    diff = np.abs(tgt[:, None] - src[None, :])
    diff = np.minimum(diff, 365 - diff)
    idx = diff.argmin(axis=1)
    return np.asarray(values)[idx], idx


# -- geocodec files ------------------------------------------------------------------------------
@dataclass
class CellSeries:
    """Per-date latent cells of one place in geocodec files of the learned codec."""

    tile_id: str
    dates: np.ndarray                 # (T,) datetime64[ms], sorted
    latents: np.ndarray               # (T, C) float32: dequantized codes q * step
    q: np.ndarray                     # (T, C) int32 codes (mean over cells: rounded; see ``cell``)
    cell: tuple[int, int] | None      # (row, col) of the latent cell, None: mean of the tile's valid cells
    geometry: object                  # shapely geometry of the cell (or tile), in ``crs``
    crs: object
    qualities: list[int] = field(default_factory=list)
    model_sha256: str | None = None
    ext: dict | None = None
    sources: list[str] = field(default_factory=list)


def _open_files(files):
    """The files of a source or list of sources (the one rule of :mod:`geocodec.format.sources`:
    directories are walked recursively), as a dataset that may mix qualities of one model."""
    from geocodec.format.dataset import GeocodecDataset

    return GeocodecDataset(files, same_codec=False)


def _check_learned(gf) -> tuple[int, int, int]:
    shape = gf.spec.latent_shape
    if len(shape) != 3:
        raise MetadataError(f"latent shape {list(shape)} is not a (channels, h, w) grid: per-date latent cells "
                            "need a file of the learned codec", source=gf.source, field="latent.shape")
    return tuple(int(s) for s in shape)


def _to_file_crs(x: float, y: float, crs, file_crs):
    if crs is None or file_crs is None:
        return x, y
    from pyproj import CRS, Transformer

    src, dst = CRS.from_user_input(crs), CRS.from_user_input(file_crs)
    if src == dst:
        return x, y
    return Transformer.from_crs(src, dst, always_xy=True).transform(x, y)


def _valid_cells(table, n_cells: int) -> np.ndarray | None:
    if "valid_cells" not in table.column_names:
        return None
    vals = table.column("valid_cells").to_pylist()
    out = np.ones((len(vals), n_cells), bool)
    for i, b in enumerate(vals):
        if b:
            out[i] = np.unpackbits(np.frombuffer(b, np.uint8))[:n_cells].astype(bool)
    return out


def tile_mean(q: np.ndarray, step: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Mean dequantized latent over a tile's cells: codes ``(N, C, S)`` -> ``(N, C)``."""
    y = q.astype(np.float32) * np.asarray(step, np.float32)[None, :, None]
    if valid is None:
        return y.mean(axis=2)
    w = valid.astype(np.float32)
    w[w.sum(axis=1) == 0] = 1.0
    return (y * w[:, None, :]).sum(axis=2) / w.sum(axis=1)[:, None]


def cell_series(files, *, point=None, tile_id: str | None = None, crs=None) -> CellSeries:
    """Per-date latent cells of a place from one or more geocodec files of the learned codec.

    ``point=(x, y)`` (in ``crs``, default the file's CRS): the tile containing it, and in
    every date's row of that tile the latent cell containing the point. ``tile_id``: all
    rows of that tile id, each reduced to the mean of its valid cells. Rows of all files
    are gathered and sorted by date; the files must share the encoder (model sha256).
    """
    import pyarrow as pa
    import shapely

    from geocodec.format.query import Query

    if (point is None) == (tile_id is None):
        raise InputError("give exactly one of point and tile_id")
    ds = _open_files(files)
    gfs = ds.files
    try:
        shas = {(g.ext.get("model") or {}).get("sha256") for g in gfs}
        if len(shas) > 1:
            raise MetadataError(f"the files were made by different encoders ({sorted(map(str, shas))}): their "
                                "latent cells are not comparable", source=gfs[0].source, field="model.sha256")
        rows = []  # (date, latent (C,), q (C,), geometry, quality, source)
        found_tile, cell, file_crs0 = tile_id, None, gfs[0].crs
        footprint = None  # WKB of the tile's first row: every row of one tile id has it
        for gf in gfs:
            c, h, w = _check_learned(gf)
            query = None
            find = ["tile_id"]
            if point is not None:
                px, py = _to_file_crs(point[0], point[1], crs, gf.crs)
                query = Query.make((px, py, px, py), None)
                find.append(gf.geometry_column)
            # the rows of the place: first their ids (no decoding), then the codes of those rows only
            mine = []
            for part in gf.iter_rows(query, find):
                ids = np.asarray(part.table.column("tile_id").to_pylist(), dtype=object)
                if point is not None and found_tile is None:
                    geoms = shapely.from_wkb(part.table.column(gf.geometry_column).to_numpy(zero_copy_only=False))
                    inside = shapely.covers(geoms, shapely.points(px, py))
                    if not inside.any():
                        continue
                    found_tile = ids[np.flatnonzero(inside)[0]]
                if found_tile is None:
                    continue
                mine.append(part.rows[ids == found_tile])
            if not mine:
                continue
            cols = [gf.geometry_column, "datetime"] + (["valid_cells"] if "valid_cells" in gf.extra_columns else [])
            step = gf.spec.step
            for part in gf.iter_take(np.concatenate(mine), cols, what="codes", threads=1):
                codes, table = part.values, part.table
                geoms = shapely.from_wkb(table.column(gf.geometry_column).to_numpy(zero_copy_only=False))
                times = table.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
                valid = _valid_cells(table, h * w)
                wkbs = table.column(gf.geometry_column).to_pylist()
                for i in range(table.num_rows):
                    g = geoms[i]
                    footprint = wkbs[0] if footprint is None else footprint
                    if wkbs[i] != footprint:
                        raise InputError(f"tile id {found_tile!r} is on rows with different footprints: duplicate or "
                                         "corrupted tile ids (rows are never merged)", source=gf.source,
                                         row=int(part.rows[i]), field="tile_id")
                    if point is not None:
                        x0, y0, x1, y1 = g.bounds
                        col = min(int((px - x0) / ((x1 - x0) / w)), w - 1)
                        row = min(int((y1 - py) / ((y1 - y0) / h)), h - 1)
                        cell = (row, col)
                        k = row * w + col
                        qv = codes[i, :, k].astype(np.int32)
                        lat = qv.astype(np.float32) * step
                        cw, ch = (x1 - x0) / w, (y1 - y0) / h
                        geom = shapely.box(x0 + col * cw, y1 - (row + 1) * ch, x0 + (col + 1) * cw, y1 - row * ch)
                    else:
                        lat = tile_mean(codes[i:i + 1], step, None if valid is None else valid[i:i + 1])[0]
                        qv = np.round(lat / step).astype(np.int32)
                        geom = g
                    rows.append((times[i], lat, qv, geom, int(gf.ext["codec"].get("quality", 0)), gf.source))
        if not rows:
            what = f"point {tuple(point)}" + (f" ({crs})" if crs else " (in the file's CRS)") if point is not None \
                else f"tile id {tile_id!r}"
            raise InputError(f"no tile of the file(s) holds {what}", source=gfs[0].source)
        order = np.argsort(np.array([r[0] for r in rows], dtype="datetime64[ms]"), kind="stable")
        rows = [rows[i] for i in order]
        return CellSeries(
            tile_id=str(found_tile), dates=np.array([r[0] for r in rows], dtype="datetime64[ms]"),
            latents=np.stack([r[1] for r in rows]).astype(np.float32), q=np.stack([r[2] for r in rows]),
            cell=cell, geometry=rows[0][3], crs=file_crs0, qualities=sorted({r[4] for r in rows}),
            model_sha256=next(iter(shas)), ext=gfs[0].ext, sources=sorted({r[5] for r in rows}))
    finally:
        ds.close()


@dataclass
class TileSeries:
    """Every tile of a file as a per-date series of tile-mean latents (for ``geocodec classify``)."""

    tile_ids: list[str]
    geometries: list            # shapely, one per tile (its first row's footprint)
    dates: list[np.ndarray]     # per tile, datetime64[ms] sorted
    latents: list[np.ndarray]   # per tile, (T_i, C) float32
    crs: object
    ext: dict


def tile_series(files, *, progress: bool = False) -> TileSeries:
    """All tiles of the files: rows grouped by tile id, each row reduced to the mean of its valid cells."""
    import pyarrow as pa
    import shapely

    ds = _open_files(files)
    gfs = ds.files
    by_tile: dict = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=ds.num_rows, unit="row", desc="decode")
    try:
        for gf in gfs:
            c, h, w = _check_learned(gf)
            cols = ["tile_id", "geometry", "datetime"] + (["valid_cells"] if "valid_cells" in gf.extra_columns else [])
            for part in gf.iter_rows(None, cols, what="codes", threads=1):
                table = part.table
                lat = tile_mean(part.values, gf.spec.step, _valid_cells(table, h * w))
                ids = table.column("tile_id").to_pylist()
                geoms = table.column("geometry").to_numpy(zero_copy_only=False)
                times = table.column("datetime").cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
                for i, tid in enumerate(ids):
                    e = by_tile.setdefault(tid, [geoms[i], [], []])
                    if e[1] and (geoms[i] != e[0] or times[i] in e[1]):
                        what = "another footprint" if geoms[i] != e[0] else f"the same date {times[i]}"
                        raise InputError(f"tile id {tid!r} is also on an earlier row with {what}: duplicate or "
                                         "corrupted tile ids (rows are never merged)", source=gf.source,
                                         row=int(part.rows[i]), field="tile_id")
                    e[1].append(times[i])
                    e[2].append(lat[i])
                if bar is not None:
                    bar.update(table.num_rows)
        tids = list(by_tile)
        dates, lats = [], []
        for t in tids:
            d = np.array(by_tile[t][1], dtype="datetime64[ms]")
            o = np.argsort(d, kind="stable")
            dates.append(d[o])
            lats.append(np.stack(by_tile[t][2])[o].astype(np.float32))
        return TileSeries(tids, list(shapely.from_wkb(np.array([by_tile[t][0] for t in tids], dtype=object))),
                          dates, lats, gfs[0].crs, gfs[0].ext)
    finally:
        if bar is not None:
            bar.close()
        ds.close()
