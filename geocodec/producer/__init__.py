"""The producer: Sentinel-2 to entropy-coded embeddings.

The core, which an openEO worker runs (:mod:`geocodec.cli.packaging` ships exactly these
modules): one chunk of bands to integer codes (:mod:`.chunks`, the body of
``openeo_udf/udf.py``), a saved result to a geocodec file (:mod:`.pack`), the tile grid
(:mod:`.tiling`). On the client: :mod:`.backend` builds the process graph a backend runs,
:mod:`.local` runs the same graph on local rasters with dask (``geocodec encode``).
With torch (the ``train`` extra), :mod:`.refine` optimises each tile's latents before rounding
(``geocodec encode --refine``) through the codec's torch modules (:mod:`.torch_codec`, which
training also uses).
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "get_model": ".chunks", "pixel_validity": ".chunks", "encode_chunk": ".chunks", "fill_tiles": ".chunks",
    "apply_datacube": ".chunks", "apply_metadata": ".chunks", "band_names": ".chunks", "output_band_names": ".chunks",
    "LatentGrid": ".pack", "pack_grid": ".pack", "read_result": ".pack", "pack_result": ".pack",
    "transfer_budget": ".pack",
    "TileGrid": ".tiling", "cut_tiles": ".tiling", "pad_to_tiles": ".tiling", "join_tiles": ".tiling",
    "tile_counts": ".tiling",
})
