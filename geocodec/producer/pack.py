"""A saved UDF result (codes as raster bands, netCDF or GTiff) -> a geocodec GeoParquet file.

The second half of the producer: after ``save_result``, the per-cell codes of the
latent grid are cut into one row per tile and entropy-coded (rasters cannot carry
byte strings, and entropy-coded blocks should span many tiles). See docs/producer.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from geocodec.errors import InputError
from geocodec.producer.chunks import DEFAULT_QUALITY, _dim, band_names, get_model, tile_size
from geocodec.producer.quality import MSE_BAND, rate_ratio, tile_psnr
from geocodec.producer.tiling import tile_counts

#: the quality-figure columns of producer files (SPEC.md section 5.1)
QUALITY_COLUMNS = ("preview_psnr", "rate_ratio")

# -- saved result -> GeoParquet ---------------------------------------------------------------------
@dataclass
class LatentGrid:
    """Codes of a whole result on the latent grid (``preview_mse``: None when the result has no such band)."""
    q: np.ndarray               # (T, C, h, w) int32
    valid_fraction: np.ndarray  # (T, h, w) float32
    times: list                 # T datetimes (numpy datetime64) or None
    origin: tuple[float, float]  # x of the left edge, y of the top edge
    pixel_size: float           # metres of one input pixel (not of a latent cell)
    crs: object
    preview_mse: np.ndarray | None = None  # (T, h, w) float32 preview squared error per cell, NaN where unknown


def latent_grid_from_cube(cube, model, *, crs, pixel_size: float | None = None) -> LatentGrid:
    """A result cube (t?, bands, y, x) of the UDF, in either layout, -> :class:`LatentGrid`.

    The layout is read from the spacing of the x coordinate: the model's
    resolution (``input``: every ``stride``-th pixel is taken, and the blocks are
    checked to be constant) or ``stride`` times it (``latent``). A ``preview_mse`` band (the
    UDF's quality figure) is read when the result has one.
    """
    bdim = _dim(cube, ("bands", "band", "variable"), "bands")
    ydim = _dim(cube, ("y",), "y")
    xdim = _dim(cube, ("x",), "x")
    tdim = _dim(cube, ("t", "time"), "time", required=False)
    cube = cube.transpose(*(([tdim] if tdim else []) + [bdim, ydim, xdim]))
    names = band_names(model, quality_figure=False)
    labels = [str(v) for v in cube.coords[bdim].values]
    missing = [n for n in names if n not in labels]
    with_mse = MSE_BAND in labels
    names += [MSE_BAND] if with_mse else []
    if missing:
        raise InputError(f"the result lacks bands {missing[:3]}{'...' if len(missing) > 3 else ''}", field="bands")
    s = model.stride
    res = float(pixel_size or model.card.get("resolution_m", 10.0))
    xs = np.asarray(cube.coords[xdim].values, dtype=np.float64)
    ys = np.asarray(cube.coords[ydim].values, dtype=np.float64)
    dx = float(xs[1] - xs[0]) if len(xs) > 1 else res * s
    dy = float(ys[1] - ys[0]) if len(ys) > 1 else -res * s
    cube = cube.sel({bdim: names})
    if dy > 0:  # bottom-up rows: flip to north-up
        cube = cube.isel({ydim: slice(None, None, -1)})
        ys = ys[::-1]
    # 2 % slack: rasters in e.g. EPSG:3857 carry pixels like 10.0018 m; the actual spacing is kept
    if math.isclose(abs(dx), res, rel_tol=0.02):
        # input layout: check a bounded corner, then keep every stride-th pixel (lazily for netCDF/GTiff)
        corner = np.asarray(cube.isel({ydim: slice(0, 64 * s), xdim: slice(0, 64 * s)}).values, dtype=np.float32)
        _check_blocks(corner if tdim else corner[None], s)
        cube = cube.isel({ydim: slice(0, None, s), xdim: slice(0, None, s)})
        cell = abs(dx) * s
    elif math.isclose(abs(dx), res * s, rel_tol=0.02):
        cell = abs(dx)
    else:
        raise InputError(f"pixel spacing {abs(dx)} matches neither the model resolution {res} nor the latent "
                         f"cell size {res * s}", field="resolution")
    data = np.asarray(cube.values, dtype=np.float32)   # the latent grid only: C + 1 floats per cell and date
    if tdim is None:
        data = data[None]
    origin = (float(xs[0] - abs(dx) / 2), float(ys[0] + abs(dy) / 2))
    c = len(names) - 1 - int(with_mse)
    codes = data[:, :c]
    vf = np.nan_to_num(data[:, c], nan=0.0)
    bad = ~np.isfinite(codes).all(axis=1)
    vf = np.where(bad, 0.0, vf).astype(np.float32)  # cells the backend left as nodata
    q = np.nan_to_num(codes, nan=0.0).round().astype(np.int32)
    mse = np.where(bad, np.nan, data[:, c + 1]).astype(np.float32) if with_mse else None
    times = [None if _unknown_time(t) else t for t in cube.coords[tdim].values] if tdim else [None]
    return LatentGrid(q, vf, times, origin, cell / s, crs, mse)


def _check_blocks(full: np.ndarray, s: int) -> None:
    """In the ``input`` layout every whole stride x stride block must hold one value."""
    h, w = full.shape[-2:]
    hh, ww = (h // s) * s, (w // s) * s
    if hh == 0 or ww == 0:
        return
    blocks = full[..., :hh, :ww].reshape(*full.shape[:-2], hh // s, s, ww // s, s)
    with np.errstate(invalid="ignore"):
        lo = np.nanmin(blocks, axis=(-3, -1)) if np.isnan(blocks).any() else blocks.min(axis=(-3, -1))
        hi = np.nanmax(blocks, axis=(-3, -1)) if np.isnan(blocks).any() else blocks.max(axis=(-3, -1))
    if not np.array_equal(lo, hi, equal_nan=True):
        raise InputError("codes are not constant over stride x stride blocks: the result's pixel grid is not "
                         "aligned with the chunks the UDF saw (resampled or shifted after apply_neighborhood?)",
                         field="layout")


def pack_grid(grid: LatentGrid, model, quality: int, out_path, *, tile_cells: int | None = None,
              min_valid: float = 0.0, block_rows: int = 256, row_group_rows: int = 65_536,
              embed_decoder: bool = False) -> dict:
    """Write a :class:`LatentGrid` as a geocodec GeoParquet file: one row per tile of
    ``tile_cells x tile_cells`` latent cells (default: the model's tile), per date.

    Rows whose valid fraction is ``<= min_valid`` are left out (by default the
    tiles with no valid pixel at all). Each row carries ``valid_fraction`` (mean
    over its cells) and ``valid_cells``: one bit per cell, row-major, set where
    the cell's valid fraction is at least 0.5 (``numpy.unpackbits``, big-endian bits), and the
    quality figures (SPEC.md 5.1, :mod:`geocodec.producer.quality`): ``rate_ratio`` always,
    ``preview_psnr`` when the grid has ``preview_mse``.

    A published model's decoder and tables are named by reference (SPEC.md 4.14) unless
    ``embed_decoder``: then the file carries them and reads anywhere without the model.

    Rows are sorted along a Hilbert curve of the tile centres as ``geocodec compress``
    sorts them (SPEC.md section 2), the dates of one tile in date order; the codes of
    each row do not depend on the order.
    """
    import pyarrow as pa
    from pyproj import CRS

    from geocodec.format.hilbert import hilbert_order
    from geocodec.format.quality import quality_summary
    from geocodec.format.writer import GeocodecWriter
    from geocodec.producer.tiling import TileGrid

    s = model.stride
    k = int(tile_cells or tile_size(model) // s)
    t_count, c, h, w = grid.q.shape
    ny, nx = tile_counts(h, w, k, pad=True)
    tgrid = TileGrid(grid.crs, grid.origin, grid.pixel_size, k * s)
    ext, decoder = model.extension(quality=quality, latent_hw=(k, k), grid=tgrid.to_json(),
                                   block_rows=block_rows, embed=embed_decoder)
    crs_json = CRS.from_user_input(grid.crs).to_json_dict()
    with_psnr = grid.preview_mse is not None
    extra = pa.schema([pa.field("valid_cells", pa.binary())] + [pa.field(n, pa.float32()) for n in QUALITY_COLUMNS
                                                                  if with_psnr or n != "preview_psnr"])
    entropy = model.entropy_model(quality, (k, k))
    dates, rows, cols = _kept_tiles(grid.valid_fraction, k, min_valid)
    if len(dates) == 0:
        raise InputError("no tile has valid pixels: nothing to write", source=os.fspath(out_path))
    x0 = grid.origin[0] + cols * tgrid.tile_size
    y1 = grid.origin[1] - rows * tgrid.tile_size
    figures = {n: [] for n in extra.names if n in QUALITY_COLUMNS}
    order = hilbert_order(np.stack([x0, y1 - tgrid.tile_size, x0 + tgrid.tile_size, y1], axis=1))
    times = np.array([np.datetime64("NaT", "ms") if t is None else np.datetime64(t, "ms") for t in grid.times])
    with GeocodecWriter(out_path, ext, decoder, crs_json, extra_schema=extra, row_group_rows=row_group_rows,
                        tables=entropy) as wr:
        for lo in range(0, len(order), wr.row_group_rows):
            sel = order[lo:lo + wr.row_group_rows]
            ti, rr, cc = dates[sel], rows[sel], cols[sel]
            tv = _gather_tiles(grid.valid_fraction[:, None], ti, rr, cc, k)[:, 0]      # (n, k*k)
            bits = np.packbits(tv >= 0.5, axis=1)
            t = times[ti]
            q = _gather_tiles(grid.q, ti, rr, cc, k)
            extra_cols = {"valid_cells": [b.tobytes() for b in bits], "rate_ratio": rate_ratio(q, entropy, tv >= 0.5)}
            if with_psnr:
                extra_cols["preview_psnr"] = tile_psnr(_gather_tiles(grid.preview_mse[:, None], ti, rr, cc, k)[:, 0], tv)
            for n in figures:
                figures[n].append(extra_cols[n])
            wr.write(tile_id=[tgrid.tile_id(r, col) for r, col in zip(rr, cc)],
                     geometry=tgrid.footprints(rr, cc), q=q,
                     datetime=None if np.isnat(t).all() else t, valid_fraction=tv.mean(axis=1), extra=extra_cols)
    return {"rows": int(len(order)), "tiles_per_date": ny * nx, "dates": t_count, "code_bits": wr.code_bits,
            "cross_entropy_bits": wr.cross_entropy, "file_bytes": os.path.getsize(out_path),
            "tile_cells": k, "path": os.fspath(out_path),
            "quality": quality_summary({n: np.concatenate(v) for n, v in figures.items()})}


def _kept_tiles(valid_fraction: np.ndarray, k: int, min_valid: float):
    """(date, tile row, tile col) of every tile whose mean valid fraction is ``> min_valid``, date by date."""
    from geocodec.producer.tiling import cut_tiles

    dates, rows, cols = [], [], []
    for ti in range(valid_fraction.shape[0]):
        rr, cc, tv = cut_tiles(valid_fraction[ti], k, pad=True)
        keep = tv.reshape(len(rr), -1).mean(axis=1) > min_valid
        dates.append(np.full(int(keep.sum()), ti))
        rows.append(rr[keep])
        cols.append(cc[keep])
    return np.concatenate(dates), np.concatenate(rows), np.concatenate(cols)


def _gather_tiles(a: np.ndarray, dates, rows, cols, k: int) -> np.ndarray:
    """Tiles ``(n, C, k*k)`` (cells row-major) of ``a`` (T, C, h, w) at the given dates and tile positions;
    cells beyond the grid's bottom and right edges are 0, as :func:`~geocodec.producer.tiling.cut_tiles`
    pads them."""
    _, c, h, w = a.shape
    ys = rows[:, None] * k + np.arange(k)                                # (n, k)
    xs = cols[:, None] * k + np.arange(k)
    out = a[dates[:, None, None, None], np.arange(c)[None, :, None, None],
            np.minimum(ys, h - 1)[:, None, :, None], np.minimum(xs, w - 1)[:, None, None, :]]
    inside = (ys < h)[:, None, :, None] & (xs < w)[:, None, None, :]
    return np.where(inside, out, 0).astype(a.dtype, copy=False).reshape(len(dates), c, k * k)


def read_result(paths, *, crs=None):
    """A saved openEO result (one netCDF, or GTiff files, one per date) -> (cube, crs).

    GTiff band descriptions name the bands; netCDF variables are the bands.
    """
    import xarray as xr

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    paths = [os.fspath(p) for p in paths]
    if all(p.endswith((".nc", ".nc4", ".netcdf")) for p in paths):
        if len(paths) != 1:
            raise InputError("give one netCDF result file", field="paths")
        ds = xr.open_dataset(paths[0], decode_coords="all")
        crs = crs or _nc_crs(ds)
        names = [v for v in ds.data_vars if ds[v].ndim >= 2]
        cube = ds[names].to_array(dim="bands")
        return cube, crs
    import rasterio
    import rioxarray

    cubes, times = [], []
    for p in sorted(paths):
        with rasterio.open(p) as src:
            labels = [d or f"band_{i}" for i, d in enumerate(src.descriptions)]
            crs = crs or (src.crs.to_wkt() if src.crs else None)
            date = src.tags().get("datetime") or date_from_name(p)
        da = rioxarray.open_rasterio(p, chunks={"band": -1, "y": 1024, "x": 1024}, masked=True)
        da = da.rename({"band": "bands"}).assign_coords(bands=labels)
        cubes.append(da.drop_vars([c for c in da.coords if c not in ("bands", "y", "x")]))
        times.append(np.datetime64(date, "ms") if date else None)
    if crs is None:
        raise InputError("the GTiff result names no CRS: pass one", field="crs")
    if len(cubes) == 1 and times[0] is None:
        return cubes[0], crs
    cube = xr.concat(cubes, dim="t").assign_coords(t=[t if t is not None else np.datetime64("NaT", "ms") for t in times])
    return cube, crs


#: the time label of a local scene whose acquisition time is unknown (openEO cubes need a comparable label;
#: NaT never equals itself); packed rows get a null datetime
UNKNOWN_TIME = np.datetime64("1970-01-01T00:00:00", "ns")


def _unknown_time(t) -> bool:
    t = np.datetime64(t, "ns")
    return bool(np.isnat(t) or t == UNKNOWN_TIME)


def date_from_name(path: str):
    """The date ``YYYY-MM-DD`` in a file name (``20240131`` or ``2024-01-31``), or None."""
    import re

    m = re.search(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T_]?(\d{2})(\d{2})?(\d{2})?)?", os.path.basename(path))
    if not m:
        return None
    y, mo, d = m.group(1, 2, 3)
    return f"{y}-{mo}-{d}"


def _nc_crs(ds):
    for name in ("crs", "spatial_ref"):
        if name in ds.variables:
            attrs = ds[name].attrs
            for key in ("crs_wkt", "spatial_ref"):
                if attrs.get(key):
                    return attrs[key]
    for v in ds.data_vars.values():
        gm = v.attrs.get("grid_mapping")
        if gm and gm in ds.variables:
            return ds[gm].attrs.get("crs_wkt") or ds[gm].attrs.get("spatial_ref")
    raise InputError("the netCDF result names no CRS (no crs/spatial_ref variable): pass one", field="crs")


def pack_result(paths, out_path, *, model=None, quality: int = DEFAULT_QUALITY, crs=None, **kw) -> dict:
    """Saved result file(s) -> geocodec GeoParquet (the entropy-coding step after ``save_result``)."""
    m = get_model(model)
    cube, crs = read_result(paths, crs=crs)
    grid = latent_grid_from_cube(cube, m, crs=crs)
    return pack_grid(grid, m, quality, out_path, **kw)


# -- what moves where: bytes per km2 --------------------------------------------------------------------
def transfer_budget(model, quality: int) -> dict:
    """Bytes per km2 of one date for each form the codes can travel in (see docs/producer.md).

    The ANS figure is the entropy model's reference rate at ``quality`` (the tables'
    self-entropy, or a context model's mean rate on its fitting data: the rate on data
    like the training set); a file's real rate is reported by the writer (``code_bits``).
    """
    res = float(model.card.get("resolution_m", 10.0))
    s = model.stride
    c = int(model.card["channels"])
    pixels = 1e6 / res ** 2
    cells = pixels / s ** 2
    bits = model.entropy_model(quality).reference_bits_per_cell
    return {
        "pixels_per_km2": pixels, "latent_cells_per_km2": cells, "channels": c, "stride": s,
        "input_uint16_5bands": pixels * len(model.bands) * 2,
        "udf_out_float32_input_layout": pixels * (c + 1) * 4,
        "udf_out_float32_latent_layout": cells * (c + 1) * 4,
        "float32_latents": cells * c * 4,
        "int16_codes": cells * c * 2,
        "ans_table_entropy": cells * bits / 8,
        "ans_bits_per_cell": bits,
    }
