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


def tile_windows(height: int, width: int, tile_px: int):
    """(row, col, y0, x0) of every whole tile in an image; partial edge tiles are left out."""
    for r in range(height // tile_px):
        for c in range(width // tile_px):
            yield r, c, r * tile_px, c * tile_px
