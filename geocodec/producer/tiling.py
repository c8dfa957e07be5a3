"""The tiling grid: square tiles of ``tile_px`` pixels aligned to a raster's origin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely


@dataclass(frozen=True)
class TileGrid:
    crs: object            # anything pyproj understands
    origin: tuple[float, float]   # x of the left edge, y of the top edge
    pixel_size: float      # metres (or CRS units) per pixel
    tile_px: int

    @property
    def tile_size(self) -> float:
        return self.pixel_size * self.tile_px

    def tile_id(self, row: int, col: int) -> str:
        return f"r{row:05d}c{col:05d}"

    @classmethod
    def for_raster(cls, crs, transform, tile_px: int) -> "TileGrid":
        """Tiles aligned to a north-up raster's top-left corner (``transform``: affine.Affine)."""
        return cls(crs, (float(transform.c), float(transform.f)), float(transform.a), tile_px)

    def footprints(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        x0 = self.origin[0] + np.asarray(cols) * self.tile_size
        y1 = self.origin[1] - np.asarray(rows) * self.tile_size
        return shapely.box(x0, y1 - self.tile_size, x0 + self.tile_size, y1)

    def to_json(self, grid_id: str | None = None) -> dict:
        from pyproj import CRS

        return {"type": "regular", "crs": CRS.from_user_input(self.crs).to_json_dict(),
                "origin": [float(self.origin[0]), float(self.origin[1])],
                "tile_size_px": [self.tile_px, self.tile_px],
                "tile_size_m": [self.tile_size, self.tile_size], "id": grid_id}


def cut_tiles(data: np.ndarray, tile_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole tiles of a (bands, H, W) image: (rows, cols, tiles (N, bands, T, T)), row-major.

    Partial tiles at the right and bottom edges are left out.
    """
    b, h, w = data.shape
    nr, nc = h // tile_px, w // tile_px
    tiles = data[:, : nr * tile_px, : nc * tile_px].reshape(b, nr, tile_px, nc, tile_px)
    tiles = tiles.transpose(1, 3, 0, 2, 4).reshape(nr * nc, b, tile_px, tile_px)
    rows, cols = np.divmod(np.arange(nr * nc), nc)
    return rows, cols, tiles
