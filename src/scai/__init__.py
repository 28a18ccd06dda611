"""scai: adaptive-inference neural networks for spectral classification.

Heavy parts (PyTorch models, the estimator) are imported lazily so that ``import scai`` and the
NumPy-only parts (data readers, preprocessing, the edge runtime) stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from scai._version import __version__

__all__ = [
    "__version__",
    "SCAIClassifier",
    "load",
    "data",
    "datasets",
    "preprocessing",
    "models",
    "inference",
]

_LAZY = {
    "SCAIClassifier": ("scai.estimators", "SCAIClassifier"),
    "load": ("scai.estimators", "load"),
}
_SUBMODULES = {"data", "datasets", "preprocessing", "models", "training", "inference", "deploy", "report", "bench"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    if name in _SUBMODULES:
        return import_module(f"scai.{name}")
    raise AttributeError(f"module 'scai' has no attribute {name!r}")
