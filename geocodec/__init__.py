"""geocodec: entropy-coded Earth-observation embeddings in GeoParquet.

The one core library shared by the openEO UDF (producer), the CLI and the QGIS
plugin (consumers). Its subpackages follow the data flow, each a layer that imports
only the layers before it:

* :mod:`geocodec.format` — the file: footer metadata, entropy coding, writer, reader, validation.
* :mod:`geocodec.codecs` — what turns floats into integer codes and back: the linear codec for
  anyone's embeddings, the learned Sentinel-2 codec (ONNX).
* :mod:`geocodec.producer` — Sentinel-2 chunks to codes (the openEO UDF's body) and saved results
  to files; ``producer.local`` runs the graph on local rasters, ``producer.backend`` builds it.
* :mod:`geocodec.tasks` — what a laptop does with a file: heads, classify, ships, monitor, search.
* :mod:`geocodec.cli` — the ``geocodec`` command; :mod:`geocodec.training` — torch, producer side.

Nothing in format, codecs or tasks imports torch, openeo, dask or qgis (``tests/test_layers.py``).
"""

from geocodec._lazy import lazy_exports
from geocodec.errors import BitstreamError, GeocodecError, InputError, MetadataError

__version__ = "0.1.0"

_api, __getattr__, __dir__ = lazy_exports(__name__, {
    "open_dataset": "geocodec.format.dataset", "GeocodecFile": "geocodec.format.reader",
    "GeocodecDataset": "geocodec.format.dataset", "Query": "geocodec.format.query",
})
__all__ = ["__version__", "GeocodecError", "InputError", "MetadataError", "BitstreamError", *_api]
