"""scai.inference: exit policies, budgets, temperature scaling and real early-exit prediction.

The policies, budgets, calibration and curves are pure NumPy/SciPy so the edge runtime can use
them without PyTorch; :class:`Predictor` (which runs a network stage by stage) is imported
lazily and imports torch only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from scai.inference.budget import Budget, parse_budget
from scai.inference.calibration import fit_temperatures, softmax
from scai.inference.curves import anytime_curve, budgeted_batch_curve, default_budgets
from scai.inference.policies import (
    BatchCalibration,
    PolicyResult,
    anytime,
    batch_guard,
    budgeted_batch,
    calibrate_budgeted_batch,
    exit_shares,
    threshold,
)

__all__ = [
    "Budget",
    "parse_budget",
    "PolicyResult",
    "BatchCalibration",
    "anytime",
    "threshold",
    "calibrate_budgeted_batch",
    "budgeted_batch",
    "batch_guard",
    "exit_shares",
    "fit_temperatures",
    "softmax",
    "anytime_curve",
    "budgeted_batch_curve",
    "default_budgets",
    "Predictor",
    "PredictionBatch",
]

_LAZY = {"Predictor", "PredictionBatch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module("scai.inference.predictor"), name)
    raise AttributeError(f"module 'scai.inference' has no attribute {name!r}")
