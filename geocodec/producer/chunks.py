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
* With the quality figure (context ``quality_figure``, default on) the preview
  decoder runs on each tile's codes and a last band, ``preview_mse``, holds each
  latent cell's squared error against the input (:mod:`geocodec.producer.quality`);
  packing turns it into the rows' ``preview_psnr``. It doubles the ONNX work.
* With ``refine`` N > 0 (context ``refine``; needs torch) each tile's latents are optimised
  for N steps on that tile's own rate-distortion cost before rounding
  (:mod:`geocodec.producer.refine`): smaller codes at the same quality, same file format,
  about 25x the encode time at N = 100 (docs/benchmarks-producer.md).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

from geocodec.codecs.bands import SCL_BAND
from geocodec.errors import InputError
from geocodec.producer.quality import MSE_BAND, cell_mse
from geocodec.producer.radiometry import check_reflectance
from geocodec.producer.tiling import cut_tiles, join_tiles, pad_to_tiles, tile_counts
from geocodec.threads import udf_threads

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


def get_model(name_or_path=None, threads: int | None = None):
    """The :class:`~geocodec.codecs.learned.LearnedModel` for ``name_or_path``, cached per process.

    ``threads`` caps onnxruntime's intra-op thread pool of the encoder session
    (default :func:`geocodec.threads.udf_threads`: ``$GEOCODEC_THREADS``, else 1).
    """
    from geocodec.codecs.learned import DEFAULT_MODEL, LearnedModel, model_dir

    name = name_or_path or os.environ.get("GEOCODEC_MODEL") or DEFAULT_MODEL
    path = str(model_dir(name).resolve())
    threads = udf_threads(threads)
    key = (path, threads)
    model = _MODELS.get(key)
    if model is None:
        model = LearnedModel.load(path, threads=threads)
        _ = model.encoder  # build the onnxruntime session now, with the thread cap in force
        _MODELS[key] = model
    return model


def tile_size(model, tile_px: int | None = None) -> int:
    """Pixels per encoded tile: ``tile_px``, else the model's training tile, else 128; a multiple of the stride."""
    t = int(tile_px or model.card.get("tile_px") or 128)
    if t % model.stride:
        raise InputError(f"tile size {t} px is not a multiple of the model stride {model.stride}", field="tile_px")
    return t


def band_names(model, quality_figure: bool = True) -> list[str]:
    """Output band labels of the UDF: one per latent channel, then ``valid_fraction``, then (with
    ``quality_figure``, for a model that has a preview decoder) ``preview_mse``."""
    return _names(model.card, quality_figure)


def has_quality_figure(card: dict, quality_figure: bool = True) -> bool:
    """Whether the UDF writes ``preview_mse``: asked for (``quality_figure``) and the model card names a
    preview decoder (a model without one cannot say how well its codes reproduce the input)."""
    return bool(quality_figure) and "preview_decoder" in (card.get("files") or {})


def _names(card: dict, quality_figure: bool) -> list[str]:
    codes = [f"{CODE_PREFIX}{c:03d}" for c in range(int(card["channels"]))]
    return codes + [VALID_BAND] + ([MSE_BAND] if has_quality_figure(card, quality_figure) else [])


# -- one chunk -----------------------------------------------------------------------------------------
@dataclass
class ChunkCodes:
    """The codes of one chunk, one value per latent cell (see :func:`encode_chunk`).

    ``q`` (C, h, w) int32 codes, ``valid_fraction`` (h, w) float32 share of valid pixels under each cell, ``stride``
    pixels per cell, ``pad`` the (bottom, right) pixels added before encoding and ``preview_mse`` (h, w) float32
    the preview's squared error of each cell (NaN without valid pixels), or None without the quality figure.
    """

    q: np.ndarray               # (C, h, w) int32 codes of the latent cells
    valid_fraction: np.ndarray  # (h, w) float32, share of valid pixels under each cell
    stride: int
    pad: tuple[int, int]        # pixels added at the bottom and right before encoding
    preview_mse: np.ndarray | None = None  # (h, w) float32, see geocodec.producer.quality

    def upsample(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes and valid fractions repeated over each cell's ``stride x stride`` pixels, cropped to H x W."""
        return self.repeat(self.q, height, width), self.repeat(self.valid_fraction, height, width)

    def repeat(self, cells: np.ndarray, height: int, width: int) -> np.ndarray:
        """A (..., h, w) per-cell array repeated over each cell's ``stride x stride`` pixels, cropped to H x W."""
        s = self.stride
        return np.repeat(np.repeat(cells, s, axis=-2), s, axis=-1)[..., :height, :width]


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


def fill_tiles(tiles: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by the per-tile, per-band mean of the valid ones (0 if none)."""
    n, b = tiles.shape[:2]
    w = valid[:, None].astype(np.float64)                       # (N, 1, t, t)
    count = w.sum(axis=(2, 3))                                  # (N, 1)
    total = np.where(valid[:, None], tiles, 0.0).sum(axis=(2, 3), dtype=np.float64)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)  # (N, B)
    return np.where(valid[:, None], tiles, mean[:, :, None, None]).astype(np.float32)


def encode_chunk(model, reflectance: np.ndarray, quality: int, *, valid: np.ndarray | None = None,
                 tile_px: int | None = None, quality_figure: bool = False, refine: int = 0) -> ChunkCodes:
    """Reflectance (B, H, W) in the model's band order -> :class:`ChunkCodes`.

    ``valid`` (H, W) marks usable pixels (default: finite ones). Any H, W >= 1 is
    accepted: see the module docstring for padding and cropping. ``quality_figure``
    also runs the preview decoder and fills ``preview_mse`` (about twice the ONNX work); ``refine`` > 0 refines
    each tile's latents for that many steps (:func:`geocodec.producer.refine.refine_codes`).
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
    x, valid = pad_to_tiles(x, t), pad_to_tiles(valid, t)
    H, W = valid.shape
    x = np.where(valid[None], x, 0.0).astype(np.float32)
    ny, nx = tile_counts(H, W, t)
    tiles, tvalid = cut_tiles(x, t)[2], cut_tiles(valid, t)[2]
    filled = fill_tiles(tiles, tvalid)
    if refine:
        from geocodec.producer.refine import refine_codes

        codes = refine_codes(model, filled, tvalid, quality, iterations=refine)
    else:
        codes = model.encode(filled, quality)                         # (N, C, (t/s)^2)
    c, k = codes.shape[1], t // s
    q = join_tiles(codes.reshape(ny * nx, c, k, k), ny, nx)
    vf = valid.reshape(H // s, s, W // s, s).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    hh, ww = -(-h // s), -(-w // s)
    mse = None
    if quality_figure:
        mse = join_tiles(cell_mse(model, tiles, tvalid, codes, quality)[:, None], ny, nx)[0, :hh, :ww]
    return ChunkCodes(q[:, :hh, :ww].astype(np.int32), vf[:hh, :ww], s, (H - h, W - w), mse)


# -- the UDF body (xarray in, xarray out) ------------------------------------------------------------
def _dim(cube, names, what, required=True):
    for n in names:
        if n in cube.dims:
            return n
    if required:
        raise InputError(f"the cube has no {what} dimension (looked for {list(names)}; it has {list(cube.dims)})",
                         field="dims")
    return None


def latent_coords(coord: np.ndarray, stride: int, n: int) -> np.ndarray:
    """Centres of latent cells from the pixel-centre coordinates of one axis."""
    coord = np.asarray(coord, dtype=np.float64)
    step = float(coord[1] - coord[0]) if len(coord) > 1 else 1.0
    first_edge = coord[0] - step / 2
    return first_edge + (np.arange(n) * stride + stride / 2) * step


def _chunk_name(cube, xdim: str, ydim: str) -> str:
    """``chunk at x=…, y=…`` (its first pixel centre), the source an input error names."""
    try:
        return f"chunk at x={float(cube.coords[xdim].values[0]):.1f}, y={float(cube.coords[ydim].values[0]):.1f}"
    except (KeyError, IndexError, TypeError, ValueError):
        return "chunk"


def apply_datacube(cube, context: dict | None = None):
    """The UDF: (t?, bands, y, x) DN cube -> codes + valid_fraction, see docs/producer.md.

    Context keys (all optional): ``model`` (folder or shipped name), ``quality``,
    ``threads``, ``scale``, ``offset`` (reflectance = DN * scale + offset, see
    :mod:`geocodec.producer.radiometry`), ``check_inputs`` (default true: refuse implausible
    reflectance, naming the band), ``nodata``, ``layout`` (``input``: codes
    repeated over each cell's pixels, the resolution ``apply_neighborhood``
    requires; ``latent``: one pixel per latent cell), ``tile_px``, ``quality_figure``
    (default true: a last band ``preview_mse``, the preview decoder's squared error of each
    latent cell against the input, see :mod:`geocodec.producer.quality`), ``refine`` (default 0:
    Adam steps of encode-time refinement per tile, :mod:`geocodec.producer.refine`; needs torch).
    """
    import xarray as xr

    ctx = dict(context or {})
    model = get_model(ctx.get("model"), ctx.get("threads"))
    quality = int(ctx.get("quality", DEFAULT_QUALITY))
    model.step(quality)  # fails early with the qualities the model has
    layout = ctx.get("layout", DEFAULT_LAYOUT)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}", field="layout")
    scale = float(ctx.get("scale", DEFAULT_SCALE))
    offset = float(ctx.get("offset", 0.0))
    nodata = ctx.get("nodata", DEFAULT_NODATA)
    nodata = None if nodata is None else float(nodata)
    check = bool(ctx.get("check_inputs", True))
    figure = has_quality_figure(model.card, ctx.get("quality_figure", True))
    refine = ctx.get("refine", 0) or 0
    if (isinstance(refine, bool) or not isinstance(refine, numbers.Real) or not math.isfinite(refine)
            or refine != int(refine) or refine < 0):
        raise InputError(f"refine must be a whole number of steps >= 0, got {refine!r}", field="refine")
    refine = int(refine)

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
        scl_idx = labels.index(SCL_BAND) if SCL_BAND in labels else None
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
        if check:
            check_reflectance(refl, valid, model.bands, scale=scale, offset=offset, where=_chunk_name(cube, xdim, ydim))
        cc = encode_chunk(model, refl, quality, valid=valid, tile_px=ctx.get("tile_px"), quality_figure=figure,
                          refine=refine)
        bands = [cc.q.astype(np.float32), cc.valid_fraction[None]] + ([cc.preview_mse[None]] if figure else [])
        cells = np.concatenate(bands, axis=0)
        outs.append(cc.repeat(cells, h, w) if layout == "input" else cells)
    out = np.stack(outs)
    if layout == "input":
        ycoord = cube.coords[ydim].values if ydim in cube.coords else np.arange(h)
        xcoord = cube.coords[xdim].values if xdim in cube.coords else np.arange(w)
    else:
        s = model.stride
        ycoord = latent_coords(cube.coords[ydim].values if ydim in cube.coords else np.arange(h), s, out.shape[-2])
        xcoord = latent_coords(cube.coords[xdim].values if xdim in cube.coords else np.arange(w), s, out.shape[-1])
    coords = {bdim: band_names(model, figure), ydim: ycoord, xdim: xcoord}
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


def output_band_names(name_or_path=None, quality_figure: bool = True) -> list[str]:
    """:func:`band_names` of a model read from its ``model.json`` alone (no ONNX session): the
    model ``name_or_path``, else ``$GEOCODEC_MODEL``, else the default model."""
    from geocodec.codecs.learned import DEFAULT_MODEL, model_dir, read_card

    card = read_card(model_dir(name_or_path or os.environ.get("GEOCODEC_MODEL") or DEFAULT_MODEL))
    return _names(card, quality_figure)


def apply_metadata(metadata, context: dict | None = None):
    """The UDF's metadata function: name the output bands (codes, valid_fraction, preview_mse with the
    quality figure)."""
    ctx = context or {}
    return metadata.rename_labels(dimension="bands",
                                  target=output_band_names(ctx.get("model"), bool(ctx.get("quality_figure", True))))
