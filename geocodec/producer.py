"""The producer core shared by the openEO UDF, the local runner, the CLI and the tests.

One chunk of Sentinel-2 bands (what openEO's ``apply_neighborhood`` hands a UDF)
becomes the integer codes of the learned model's latent grid plus the fraction
of valid pixels under each latent cell; a saved result (codes as raster bands)
becomes a geocodec GeoParquet file. See docs/producer.md.

Conventions (documented in docs/producer.md):

* Input values are digital numbers (DN); ``reflectance = DN * scale + offset``
  with ``scale = 1e-4``, ``offset = 0`` unless the context says otherwise.
* A pixel is invalid when any model band is NaN/inf or equals ``nodata``
  (DN 0 for Sentinel-2), or when an ``SCL`` band is present and holds class 0
  (no data), 3 (cloud shadow), 8/9 (cloud medium/high probability) or 10
  (thin cirrus). A NaN ``SCL`` value means "unknown" and masks nothing.
* Invalid pixels are filled with the per-tile, per-band mean of the valid
  pixels (0 where a tile has none) before encoding, so the encoder never sees
  NaN; the ``valid_fraction`` of each latent cell says how much of it was real.
* A chunk whose height or width is not a multiple of the model's tile size is
  padded at the bottom/right to the next multiple (padded pixels are invalid),
  every tile is encoded as during training, and the outputs are cropped back:
  ``ceil(H / stride) x ceil(W / stride)`` latent cells, or ``H x W`` pixels in
  the ``input`` layout. Codes therefore do not depend on how a scene was cut
  into chunks, as long as chunk origins fall on the tile grid.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .errors import InputError

SCL_CLOUD_CLASSES = (3, 8, 9, 10)   # cloud shadow, cloud medium/high probability, thin cirrus
SCL_NODATA_CLASSES = (0,)           # no data
DEFAULT_SCALE = 1e-4                # Sentinel-2 L1C/L2A DN -> reflectance
DEFAULT_NODATA = 0.0
DEFAULT_QUALITY = 5
CODE_PREFIX = "code_"
VALID_BAND = "valid_fraction"
LAYOUTS = ("input", "latent")
DEFAULT_LAYOUT = "input"


# -- the model, loaded once per worker -----------------------------------------------------------
_MODELS: dict = {}


def resolve_threads(context: dict | None = None) -> int:
    """onnxruntime intra-op threads: context ``threads``, else GEOCODEC_THREADS, else 1."""
    ctx = context or {}
    for value in (ctx.get("threads"), os.environ.get("GEOCODEC_THREADS")):
        if value not in (None, "", 0, "0"):
            return max(1, int(value))
    return 1


def get_model(name_or_path=None, threads: int | None = None):
    """The :class:`~geocodec.learned.LearnedModel` for ``name_or_path``, cached per process.

    ``threads`` caps onnxruntime's intra-op thread pool of the encoder session
    (through GEOCODEC_THREADS, which :class:`geocodec.onnx_model.OnnxDecoder`
    reads when the session is created).
    """
    from .learned import DEFAULT_MODEL, LearnedModel, model_dir

    name = name_or_path or os.environ.get("GEOCODEC_MODEL") or DEFAULT_MODEL
    path = str(model_dir(name).resolve())
    threads = int(threads or resolve_threads())
    key = (path, threads)
    model = _MODELS.get(key)
    if model is None:
        os.environ["GEOCODEC_THREADS"] = str(threads)
        model = LearnedModel.load(path)
        _ = model.encoder  # build the onnxruntime session now, with the thread cap in force
        _MODELS[key] = model
    return model


def tile_size(model, tile_px: int | None = None) -> int:
    """Pixels per encoded tile: ``tile_px``, else the model's training tile, else 128; a multiple of the stride."""
    t = int(tile_px or model.card.get("tile_px") or 128)
    if t % model.stride:
        raise InputError(f"tile size {t} px is not a multiple of the model stride {model.stride}", field="tile_px")
    return t


def band_names(model) -> list[str]:
    """Output band labels of the UDF: one per latent channel, then ``valid_fraction``."""
    return [f"{CODE_PREFIX}{c:03d}" for c in range(int(model.card["channels"]))] + [VALID_BAND]


# -- one chunk -----------------------------------------------------------------------------------------
@dataclass
class ChunkCodes:
    q: np.ndarray               # (C, h, w) int32 codes of the latent cells
    valid_fraction: np.ndarray  # (h, w) float32, share of valid pixels under each cell
    stride: int
    pad: tuple[int, int]        # pixels added at the bottom and right before encoding

    def upsample(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes and valid fractions repeated over each cell's ``stride x stride`` pixels, cropped to H x W."""
        s = self.stride
        q = np.repeat(np.repeat(self.q, s, axis=1), s, axis=2)[:, :height, :width]
        v = np.repeat(np.repeat(self.valid_fraction, s, axis=0), s, axis=1)[:height, :width]
        return q, v


def pixel_validity(dn: np.ndarray, *, scl: np.ndarray | None = None, nodata: float | None = DEFAULT_NODATA) -> np.ndarray:
    """(H, W) bool: True where every band is finite (and not ``nodata``) and SCL is not cloud/no-data."""
    dn = np.asarray(dn)
    valid = np.isfinite(dn).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= ~(dn == nodata).any(axis=0)
    if scl is not None:
        scl = np.asarray(scl, dtype=np.float64)
        bad = np.isin(scl, SCL_CLOUD_CLASSES + SCL_NODATA_CLASSES)  # NaN is in no class: unknown, kept
        valid &= ~bad
    return valid


def _fill_tiles(tiles: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by the per-tile, per-band mean of the valid ones (0 if none)."""
    n, b = tiles.shape[:2]
    w = valid[:, None].astype(np.float64)                       # (N, 1, t, t)
    count = w.sum(axis=(2, 3))                                  # (N, 1)
    total = np.where(valid[:, None], tiles, 0.0).sum(axis=(2, 3), dtype=np.float64)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)  # (N, B)
    return np.where(valid[:, None], tiles, mean[:, :, None, None]).astype(np.float32)


def encode_chunk(model, reflectance: np.ndarray, quality: int, *, valid: np.ndarray | None = None,
                 tile_px: int | None = None) -> ChunkCodes:
    """Reflectance (B, H, W) in the model's band order -> :class:`ChunkCodes`.

    ``valid`` (H, W) marks usable pixels (default: finite ones). Any H, W >= 1 is
    accepted: see the module docstring for padding and cropping.
    """
    x = np.asarray(reflectance, dtype=np.float32)
    nb = len(model.bands)
    if x.ndim != 3 or x.shape[0] != nb:
        raise InputError(f"expected ({nb} bands {model.bands}, H, W), got {x.shape}", field="bands")
    _, h, w = x.shape
    if h == 0 or w == 0:
        raise InputError(f"empty chunk {x.shape}")
    valid = np.isfinite(x).all(axis=0) if valid is None else (np.asarray(valid, bool) & np.isfinite(x).all(axis=0))
    s = model.stride
    t = tile_size(model, tile_px)
    ph, pw = (-h) % t, (-w) % t
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        valid = np.pad(valid, ((0, ph), (0, pw)))
    x = np.where(valid[None], x, 0.0).astype(np.float32)
    H, W = h + ph, w + pw
    ny, nx = H // t, W // t
    tiles = x.reshape(nb, ny, t, nx, t).transpose(1, 3, 0, 2, 4).reshape(ny * nx, nb, t, t)
    tvalid = valid.reshape(ny, t, nx, t).transpose(0, 2, 1, 3).reshape(ny * nx, t, t)
    q = model.encode(_fill_tiles(tiles, tvalid), quality)             # (N, C, (t/s)^2)
    c, k = q.shape[1], t // s
    q = q.reshape(ny, nx, c, k, k).transpose(2, 0, 3, 1, 4).reshape(c, ny * k, nx * k)
    vf = valid.reshape(H // s, s, W // s, s).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    hh, ww = -(-h // s), -(-w // s)
    return ChunkCodes(q[:, :hh, :ww].astype(np.int32), vf[:hh, :ww], s, (ph, pw))


# -- the UDF body (xarray in, xarray out) ------------------------------------------------------------
def _dim(cube, names, what, required=True):
    for n in names:
        if n in cube.dims:
            return n
    if required:
        raise InputError(f"the cube has no {what} dimension (looked for {list(names)}; it has {list(cube.dims)})",
                         field="dims")
    return None


def _latent_coords(coord: np.ndarray, stride: int, n: int) -> np.ndarray:
    """Centres of latent cells from the pixel-centre coordinates of one axis."""
    coord = np.asarray(coord, dtype=np.float64)
    step = float(coord[1] - coord[0]) if len(coord) > 1 else 1.0
    first_edge = coord[0] - step / 2
    return first_edge + (np.arange(n) * stride + stride / 2) * step


def apply_datacube(cube, context: dict | None = None):
    """The UDF: (t?, bands, y, x) DN cube -> codes + valid_fraction, see docs/producer.md.

    Context keys (all optional): ``model`` (folder or shipped name), ``quality``,
    ``threads``, ``scale``, ``offset``, ``nodata``, ``layout`` (``input``: codes
    repeated over each cell's pixels, the resolution ``apply_neighborhood``
    requires; ``latent``: one pixel per latent cell), ``tile_px``.
    """
    import xarray as xr

    ctx = dict(context or {})
    model = get_model(ctx.get("model"), resolve_threads(ctx))
    quality = int(ctx.get("quality", DEFAULT_QUALITY))
    model.step(quality)  # fails early with the qualities the model has
    layout = ctx.get("layout", DEFAULT_LAYOUT)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}", field="layout")
    scale = float(ctx.get("scale", DEFAULT_SCALE))
    offset = float(ctx.get("offset", 0.0))
    nodata = ctx.get("nodata", DEFAULT_NODATA)
    nodata = None if nodata is None else float(nodata)

    bdim = _dim(cube, ("bands", "band"), "bands")
    ydim = _dim(cube, ("y", "lat", "latitude"), "y")
    xdim = _dim(cube, ("x", "lon", "longitude"), "x")
    tdim = _dim(cube, ("t", "time"), "time", required=False)
    order = ([tdim] if tdim else []) + [bdim, ydim, xdim]
    extra = [d for d in cube.dims if d not in order]
    if extra:
        raise InputError(f"unexpected dimensions {extra}", field="dims")
    cube = cube.transpose(*order)
    labels = [str(v) for v in cube.coords[bdim].values] if bdim in cube.coords else []
    if labels and all(b in labels for b in model.bands):
        band_idx = [labels.index(b) for b in model.bands]
        scl_idx = labels.index("SCL") if "SCL" in labels else None
    elif cube.sizes[bdim] >= len(model.bands):
        band_idx = list(range(len(model.bands)))   # unlabeled: the model's order, SCL (if any) right after
        scl_idx = len(model.bands) if cube.sizes[bdim] > len(model.bands) else None
    else:
        raise InputError(f"the cube has bands {labels or cube.sizes[bdim]}, the model needs {model.bands}",
                         field="bands")

    data = np.asarray(cube.values, dtype=np.float32)
    if tdim is None:
        data = data[None]
    h, w = data.shape[-2:]
    outs = []
    for frame in data:
        dn = frame[band_idx]
        scl = frame[scl_idx] if scl_idx is not None else None
        valid = pixel_validity(dn, scl=scl, nodata=nodata)
        refl = np.where(valid[None], dn * scale + offset, np.nan)
        cc = encode_chunk(model, refl, quality, valid=valid, tile_px=ctx.get("tile_px"))
        if layout == "input":
            q, vf = cc.upsample(h, w)
        else:
            q, vf = cc.q, cc.valid_fraction
        outs.append(np.concatenate([q.astype(np.float32), vf[None]], axis=0))
    out = np.stack(outs)
    if layout == "input":
        ycoord = cube.coords[ydim].values if ydim in cube.coords else np.arange(h)
        xcoord = cube.coords[xdim].values if xdim in cube.coords else np.arange(w)
    else:
        s = model.stride
        ycoord = _latent_coords(cube.coords[ydim].values if ydim in cube.coords else np.arange(h), s, out.shape[-2])
        xcoord = _latent_coords(cube.coords[xdim].values if xdim in cube.coords else np.arange(w), s, out.shape[-1])
    coords = {bdim: band_names(model), ydim: ycoord, xdim: xcoord}
    dims = [bdim, ydim, xdim]
    if tdim is None:
        out = out[0]
    else:
        dims = [tdim] + dims
        coords[tdim] = cube.coords[tdim].values if tdim in cube.coords else np.arange(out.shape[0])
    result = xr.DataArray(out, dims=dims, coords=coords, name=cube.name,
                          attrs={"geocodec_layout": layout, "geocodec_stride": model.stride,
                                 "geocodec_quality": quality, "geocodec_model": model.card["name"]})
    return result


def apply_metadata(metadata, context: dict | None = None):
    """The UDF's metadata function: name the output bands (codes then valid_fraction)."""
    import json

    from .learned import model_dir

    ctx = context or {}
    card = json.loads((model_dir(ctx.get("model") or os.environ.get("GEOCODEC_MODEL") or "s2-5band-v1")
                       / "model.json").read_text())
    names = [f"{CODE_PREFIX}{c:03d}" for c in range(int(card["channels"]))] + [VALID_BAND]
    return metadata.rename_labels(dimension="bands", target=names)


# -- saved result -> GeoParquet ---------------------------------------------------------------------
@dataclass
class LatentGrid:
    """Codes of a whole result on the latent grid."""
    q: np.ndarray               # (T, C, h, w) int32
    valid_fraction: np.ndarray  # (T, h, w) float32
    times: list                 # T datetimes (numpy datetime64) or None
    origin: tuple[float, float]  # x of the left edge, y of the top edge
    pixel_size: float           # metres of one input pixel (not of a latent cell)
    crs: object


def latent_grid_from_cube(cube, model, *, crs, pixel_size: float | None = None) -> LatentGrid:
    """A result cube (t?, bands, y, x) of the UDF, in either layout, -> :class:`LatentGrid`.

    The layout is read from the spacing of the x coordinate: the model's
    resolution (``input``: every ``stride``-th pixel is taken, and the blocks are
    checked to be constant) or ``stride`` times it (``latent``).
    """
    bdim = _dim(cube, ("bands", "band", "variable"), "bands")
    ydim = _dim(cube, ("y",), "y")
    xdim = _dim(cube, ("x",), "x")
    tdim = _dim(cube, ("t", "time"), "time", required=False)
    cube = cube.transpose(*(([tdim] if tdim else []) + [bdim, ydim, xdim]))
    names = band_names(model)
    labels = [str(v) for v in cube.coords[bdim].values]
    missing = [n for n in names if n not in labels]
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
    codes = data[:, :-1]
    vf = np.nan_to_num(data[:, -1], nan=0.0)
    bad = ~np.isfinite(codes).all(axis=1)
    vf = np.where(bad, 0.0, vf).astype(np.float32)  # cells the backend left as nodata
    q = np.nan_to_num(codes, nan=0.0).round().astype(np.int32)
    times = [None if _unknown_time(t) else t for t in cube.coords[tdim].values] if tdim else [None]
    return LatentGrid(q, vf, times, origin, cell / s, crs)


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
              min_valid: float = 0.0, block_rows: int = 256, row_group_rows: int = 65_536) -> dict:
    """Write a :class:`LatentGrid` as a geocodec GeoParquet file: one row per tile of
    ``tile_cells x tile_cells`` latent cells (default: the model's tile), per date.

    Rows whose valid fraction is ``<= min_valid`` are left out (by default the
    tiles with no valid pixel at all). Each row carries ``valid_fraction`` (mean
    over its cells) and ``valid_cells``: one bit per cell, row-major, set where
    the cell's valid fraction is at least 0.5 (``numpy.unpackbits``, big-endian bits).
    """
    import pyarrow as pa
    from pyproj import CRS

    from .tiling import TileGrid
    from .writer import GeocodecWriter

    s = model.stride
    k = int(tile_cells or tile_size(model) // s)
    t_count, c, h, w = grid.q.shape
    ny, nx = -(-h // k), -(-w // k)
    ph, pw = ny * k - h, nx * k - w
    q = np.pad(grid.q, ((0, 0), (0, 0), (0, ph), (0, pw)))
    vf = np.pad(grid.valid_fraction, ((0, 0), (0, ph), (0, pw)))
    tgrid = TileGrid(grid.crs, grid.origin, grid.pixel_size, k * s)
    ext, decoder = model.extension(quality=quality, latent_hw=(k, k), grid=tgrid.to_json(),
                                   block_rows=block_rows)
    crs_json = CRS.from_user_input(grid.crs).to_json_dict()
    extra = pa.schema([pa.field("valid_cells", pa.binary())])
    rr, cc = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    rows = 0
    with GeocodecWriter(out_path, ext, decoder, crs_json, extra_schema=extra, row_group_rows=row_group_rows) as wr:
        for ti in range(t_count):
            tq = q[ti].reshape(c, ny, k, nx, k).transpose(1, 3, 0, 2, 4).reshape(ny * nx, c, k * k)
            tv = vf[ti].reshape(ny, k, nx, k).transpose(0, 2, 1, 3).reshape(ny * nx, k * k)
            frac = tv.mean(axis=1)
            keep = frac > min_valid
            if not keep.any():
                continue
            bits = np.packbits(tv[keep] >= 0.5, axis=1)
            wr.write(tile_id=[tgrid.tile_id(r, col) for r, col in zip(rr[keep], cc[keep])],
                     geometry=tgrid.footprints(rr[keep], cc[keep]), q=tq[keep],
                     datetime=None if grid.times[ti] is None else np.full(int(keep.sum()), grid.times[ti]),
                     valid_fraction=frac[keep], extra={"valid_cells": [b.tobytes() for b in bits]})
            rows += int(keep.sum())
        if rows == 0:
            raise InputError("no tile has valid pixels: nothing to write", source=os.fspath(out_path))
    return {"rows": rows, "tiles_per_date": ny * nx, "dates": t_count, "code_bits": wr.code_bits,
            "cross_entropy_bits": wr.cross_entropy, "file_bytes": os.path.getsize(out_path),
            "tile_cells": k, "path": os.fspath(out_path)}


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
            date = src.tags().get("datetime") or _date_from_name(p)
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


def _date_from_name(path: str):
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

    The ANS figure is the self-entropy of the model's integer tables at
    ``quality`` (the rate on data like the training set); a file's real rate is
    reported by the writer (``code_bits``).
    """
    res = float(model.card.get("resolution_m", 10.0))
    s = model.stride
    c = int(model.card["channels"])
    pixels = 1e6 / res ** 2
    cells = pixels / s ** 2
    bits = 0.0
    for t in model.tables(quality):
        f = np.asarray(t.freq, dtype=np.float64)
        p = f / f.sum()
        bits += float(-(p * np.log2(p)).sum())
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
