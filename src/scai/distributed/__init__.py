"""Beyond one machine: batch inference over sharded archives on Ray Data.

``predict_dataset`` (:mod:`scai.distributed.predict`) classifies Parquet, ``.npy``, HDF5 and CSV
shards with one model actor per worker and writes resumable, exactly-once Parquet shards of
predictions; ``scai predict MODEL 'archive/*.parquet' --engine ray --out preds/`` calls it.
Ray is imported only when the Ray engine runs (``pip install 'scai[distributed]'``), never by
``import scai`` or ``import scai.distributed``. Guide: docs/distributed.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["BatchEvent", "PredictSummary", "plan_inputs", "predict_dataset"]

_LAZY = {
    "predict_dataset": "scai.distributed.predict",
    "PredictSummary": "scai.distributed.predict",
    "BatchEvent": "scai.distributed.predict",
    "plan_inputs": "scai.distributed.shards",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scai.distributed' has no attribute {name!r}")
