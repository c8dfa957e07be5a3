"""The ``geocodec`` command: argument parsing over the library (:mod:`.main`), the README demo
(:mod:`.demo`) and the builders of the UDF archive and the QGIS plugin zip (:mod:`.packaging`)."""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {"main": ".main"})
