"""Re-exports imported on first use: each wing's `__init__` names the functions the notebooks
import from it, without importing every module of the wing (and matplotlib, scikit-learn, ...)
when one is asked for. Layer: as config (imports nothing of the package)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str], namespace: dict):
    """(__getattr__, __dir__) for the package `package` whose names `exports` maps to modules."""

    def __getattr__(name):  # a re-exported name is imported from its module when first used
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__():
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
