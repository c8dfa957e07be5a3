"""geocodec: entropy-coded Earth-observation embeddings in GeoParquet.

The one core library shared by the openEO UDF (producer), the CLI and the QGIS
plugin (consumers). Nothing here imports torch.
"""

__version__ = "0.1.0"

from .errors import GeocodecError  # noqa: F401
