"""Preview images from a learned-codec file: codes -> the model's preview decoder -> a mosaic.

Consumer-safe (onnxruntime). The preview decoder is the ``preview_decoder``
ONNX of the model folder whose encoder hash the file names (``model.sha256``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geocodec.codecs.bands import RGB_BANDS
from geocodec.errors import MetadataError
from geocodec.codecs.learned import LearnedModel
from geocodec.format.query import Query
from geocodec.format.reader import GeocodecFile


@dataclass
class Mosaic:
    """Decoded preview tiles on the file's grid: ``data`` (bands, H, W) float32 reflectance, NaN outside tiles.

    ``bands`` names the bands, ``origin`` is (x left, y top) and ``pixel_size`` the pixel side, both in units of
    ``crs``.
    """

    data: np.ndarray          # (bands, H, W) float32 reflectance, NaN outside tiles
    bands: list[str]
    origin: tuple[float, float]   # x left, y top
    pixel_size: float
    crs: object

    @property
    def transform(self):
        """The north-up ``affine.Affine`` from pixel (col, row) to CRS coordinates."""
        from affine import Affine

        return Affine(self.pixel_size, 0, self.origin[0], 0, -self.pixel_size, self.origin[1])

    def rgb(self, percentile: float = 99.0) -> np.ndarray:
        """(H, W, 3) display image of B04, B03, B02 scaled to [0, 1]."""
        return rgb_image(self.data, self.bands, percentile)


def rgb_image(data: np.ndarray, bands: list[str], percentile: float = 99.0) -> np.ndarray:
    """(H, W, 3) display image of B04, B03, B02 from ``data`` (bands, H, W).

    Divided by their ``percentile``-th value, clipped to [0, 1]; NaN becomes 0.
    """
    rgb = np.stack([data[bands.index(b)] for b in RGB_BANDS], axis=-1)
    scale = np.nanpercentile(rgb, percentile) or 1.0
    return np.nan_to_num(np.clip(rgb / scale, 0, 1))


def model_for_file(f: GeocodecFile, model: str | None = None) -> LearnedModel:
    """The :class:`~geocodec.codecs.learned.LearnedModel` that made the file.

    ``model`` (name or folder), else the shipped model the file names. Raises :class:`~geocodec.errors.MetadataError` if
    its encoder sha256 is not the file's ``model.sha256``.
    """
    m = LearnedModel.load(model) if model else LearnedModel.load(f.ext["model"]["name"])
    if m.identity()["sha256"] != f.ext["model"].get("sha256"):
        raise MetadataError(f"the file was made by encoder sha256 {f.ext['model'].get('sha256')}, the model folder "
                            f"{m.path} holds {m.identity()['sha256']}", source=f.source, field="model.sha256")
    return m


def preview_mosaic(source: str, *, model: str | None = None, bbox=None, time=None, batch: int = 16) -> Mosaic:
    """Decode every matching tile's preview and place it on the file's regular grid."""
    with GeocodecFile(source) as f:
        grid = f.grid
        if grid.get("type") != "regular" or f.ext["latent"]["layout"] != "grid":
            raise MetadataError("previews need a learned-codec file on a regular grid", source=source, field="grid")
        m = model_for_file(f, model)
        tile_m = float(grid["tile_size_m"][0])
        tile_px = int(grid["tile_size_px"][0])
        px = tile_m / tile_px
        ox, oy = grid["origin"]
        query = Query.make(bbox, time)
        placed = []
        for part in f.iter_rows(query, ["bbox"], what="codes"):
            codes = part.values
            bb = part.table.column("bbox").combine_chunks()
            cols = np.rint((bb.field("xmin").to_numpy() - ox) / tile_m).astype(int)
            rows = np.rint((oy - bb.field("ymax").to_numpy()) / tile_m).astype(int)
            step = f.spec.step[0]
            lat = (codes.astype(np.float32) * step).reshape((len(codes),) + f.spec.latent_shape)
            for i in range(0, len(lat), batch):
                img = m.preview_decoder(lat[i:i + batch])
                placed += list(zip(rows[i:i + batch], cols[i:i + batch], img))
        if not placed:
            raise MetadataError("no tile matches the query", source=source)
        r0 = min(p[0] for p in placed)
        c0 = min(p[1] for p in placed)
        nr = max(p[0] for p in placed) - r0 + 1
        nc = max(p[1] for p in placed) - c0 + 1
        nb = placed[0][2].shape[0]
        out = np.full((nb, nr * tile_px, nc * tile_px), np.nan, np.float32)
        for r, c, img in placed:
            out[:, (r - r0) * tile_px:(r - r0 + 1) * tile_px, (c - c0) * tile_px:(c - c0 + 1) * tile_px] = img
        return Mosaic(out, m.bands, (ox + c0 * tile_m, oy - r0 * tile_m), px, f.crs)
