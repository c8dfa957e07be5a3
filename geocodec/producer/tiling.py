"""The tiling grid: square tiles of ``tile_px`` pixels anchored at a raster's top-left corner.

The one implementation of cutting an image into tiles (:func:`cut_tiles`, optionally after
padding to whole tiles with :func:`pad_to_tiles`) and of putting tiles back together
(:func:`join_tiles`); the UDF, ``--embedder``, training and the benchmarks all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of ``tile_px`` pixels of ``pixel_size`` CRS units, row 0 / column 0 at ``origin``.

    ``origin`` is (x of the left edge, y of the top edge); rows count downwards.
    """

    crs: object            # anything pyproj understands
    origin: tuple[float, float]   # x of the left edge, y of the top edge
    pixel_size: float      # metres (or CRS units) per pixel
    tile_px: int

    @property
    def tile_size(self) -> float:
        """The side of a tile in CRS units."""
        return self.pixel_size * self.tile_px

    def tile_id(self, row: int, col: int) -> str:
        """The id of the tile at (``row``, ``col``): ``rRRRRRcCCCCC``, zero-padded."""
        return f"r{row:05d}c{col:05d}"

    @classmethod
    def for_raster(cls, crs, transform, tile_px: int) -> "TileGrid":
        """Tiles aligned to a north-up raster's top-left corner (``transform``: affine.Affine)."""
        return cls(crs, (float(transform.c), float(transform.f)), float(transform.a), tile_px)

    def footprints(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Box polygons (shapely, in the grid's CRS) of the tiles at ``rows``, ``cols``."""
        x0 = self.origin[0] + np.asarray(cols) * self.tile_size
        y1 = self.origin[1] - np.asarray(rows) * self.tile_size
        return shapely.box(x0, y1 - self.tile_size, x0 + self.tile_size, y1)

    def to_json(self, grid_id: str | None = None) -> dict:
        """The grid as the ``grid`` field of the extension metadata.

        ``type`` regular, ``crs`` as PROJJSON, ``origin``, tile sizes in pixels and CRS units, ``id`` ``grid_id``.
        """
        from pyproj import CRS

        return {"type": "regular", "crs": compact_crs(CRS.from_user_input(self.crs)),
                "origin": [float(self.origin[0]), float(self.origin[1])],
                "tile_size_px": [self.tile_px, self.tile_px],
                "tile_size_m": [self.tile_size, self.tile_size], "id": grid_id}


def tile_counts(height: int, width: int, tile_px: int, *, pad: bool = False) -> tuple[int, int]:
    """(rows, cols) of tiles over an image: partial edge tiles counted with ``pad``, left out without."""
    if pad:
        return -(-height // tile_px), -(-width // tile_px)
    return height // tile_px, width // tile_px


def pad_to_tiles(data: np.ndarray, tile_px: int, value=0) -> np.ndarray:
    """``data`` (..., H, W) padded at the bottom and right with ``value`` to whole tiles (itself if none is needed)."""
    h, w = data.shape[-2:]
    ph, pw = (-h) % tile_px, (-w) % tile_px
    if not (ph or pw):
        return data
    return np.pad(data, [(0, 0)] * (data.ndim - 2) + [(0, ph), (0, pw)], constant_values=value)


def cut_tiles(data: np.ndarray, tile_px: int, *, pad: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiles of a (..., H, W) image: (rows, cols, tiles (N, ..., T, T)), row-major from the top-left.

    ``pad``: the image is first padded with zeros (False for booleans) at the bottom and
    right to whole tiles (:func:`pad_to_tiles`); without it, partial tiles at the right
    and bottom edges are left out.
    """
    if pad:
        data = pad_to_tiles(data, tile_px)
    t = tile_px
    lead = data.shape[:-2]
    nr, nc = tile_counts(*data.shape[-2:], t)
    n = len(lead)
    tiles = data[..., : nr * t, : nc * t].reshape(*lead, nr, t, nc, t)
    tiles = tiles.transpose(n, n + 2, *range(n), n + 1, n + 3).reshape(nr * nc, *lead, t, t)
    rows, cols = np.divmod(np.arange(nr * nc), nc)
    return rows, cols, tiles


def join_tiles(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The inverse of :func:`cut_tiles`: ``rows * cols`` tiles (N, ..., T, T), row-major, -> (..., rows*T, cols*T)."""
    lead = tiles.shape[1:-2]
    th, tw = tiles.shape[-2:]
    n = len(lead)
    x = tiles.reshape(rows, cols, *lead, th, tw)
    x = x.transpose(*range(2, 2 + n), 0, 2 + n, 1, 3 + n)
    return x.reshape(*lead, rows * th, cols * tw)


def compact_crs(crs):
    """An authority string (``"EPSG:32633"``) when one names ``crs`` exactly, else its PROJJSON: the grid's
    CRS repeats the file's, whose full PROJJSON is already in ``geo`` (saves about 3 KB of footer)."""
    from pyproj import CRS

    auth = crs.to_authority()
    if auth is not None:
        text = f"{auth[0]}:{auth[1]}"
        if CRS.from_user_input(text) == crs:
            return text
    return crs.to_json_dict()

