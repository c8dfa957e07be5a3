"""The Processing provider: toolbox group "geocodec"."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS


class GeocodecProvider(QgsProcessingProvider):
    def id(self):
        return "geocodec"

    def name(self):
        return "geocodec"

    def longName(self):  # noqa: N802
        return "geocodec: compressed Earth-observation embeddings"

    def icon(self):
        return QIcon(os.path.join(os.path.dirname(__file__), "icon.png"))

    def loadAlgorithms(self):  # noqa: N802
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())
