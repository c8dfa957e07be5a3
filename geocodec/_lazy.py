"""Lazy public API for subpackages: ``__all__`` is declared up front, each name is imported on first use.

A subpackage's ``__init__`` lists its public names and the module each lives in; importing the
subpackage imports none of them, so ``import geocodec.format.entropy`` does not pull in pyarrow,
and the openEO UDF does not pull in dask (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, str]):
    """``(__all__, __getattr__, __dir__)`` for ``package`` exporting ``name -> '.module'`` lazily."""
    names = sorted(where)

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value
        return value

    def __dir__():
        return sorted(set(names) | set(importlib.import_module(package).__dict__))

    return names, __getattr__, __dir__
