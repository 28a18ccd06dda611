"""scai.deploy: one trained model from edge spectrometers to a computing centre.

* :func:`export_onnx` -- one ONNX graph per stage plus ``manifest.json`` (needs torch + onnx);
* :class:`EdgeClient` -- runs the ONNX stages under a MAC budget and offloads to the centre
  (NumPy + ONNX Runtime only, never torch);
* :func:`create_app` / :func:`serve` -- the computing-centre HTTP server (FastAPI + uvicorn);
* :mod:`scai.deploy.payloads` -- the ``.npy``/JSON wire formats both sides share.

Everything is imported lazily, so ``import scai.deploy`` (and the edge client) never pulls in
PyTorch or FastAPI.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "export_onnx",
    "EdgeClient",
    "EdgeResult",
    "write_results_csv",
    "create_app",
    "serve",
    "ServerConfig",
    "MicroBatcher",
    "ModelService",
    "PayloadError",
    "load_manifest",
]

_LAZY = {
    "export_onnx": "scai.deploy.onnx_export",
    "EdgeClient": "scai.deploy.edge",
    "EdgeResult": "scai.deploy.edge",
    "write_results_csv": "scai.deploy.edge",
    "create_app": "scai.deploy.server",
    "serve": "scai.deploy.server",
    "ServerConfig": "scai.deploy.server",
    "MicroBatcher": "scai.deploy.batching",
    "ModelService": "scai.deploy.service",
    "PayloadError": "scai.deploy.payloads",
    "load_manifest": "scai.deploy.manifest",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scai.deploy' has no attribute {name!r}")
