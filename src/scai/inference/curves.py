"""Accuracy-versus-budget curves (paper Figs. 8-9), as JSON-ready lists of dicts.

``scai evaluate`` writes these into ``metrics.json``; reports plot them. Each point records the
budget asked for (``budget_macs``), what was actually spent on average (``mean_macs``) and the
accuracy, so a curve can be plotted against either.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from scai.errors import BudgetError, DataValueError
from scai.inference.policies import anytime, as_cost_matrix, budgeted_batch, calibrate_budgeted_batch

__all__ = ["default_budgets", "anytime_curve", "budgeted_batch_curve"]


def default_budgets(exit_costs: np.ndarray, n: int = 12) -> np.ndarray:
    """Budgets from exit 0's cost to the full path: ``n`` log-spaced points plus every exit cost.

    Parameters
    ----------
    exit_costs : ndarray, shape (n_exits,) or (n_samples, n_exits)
        Cumulative cost per exit. Per-sample costs are averaged for the exit costs added to the
        grid, and the grid ends at the largest per-sample full-path cost.
    n : int
        Number of log-spaced points (the exit costs are added to them).

    Returns
    -------
    ndarray
        Sorted, unique budgets in MACs.
    """
    c = np.asarray(exit_costs, dtype=np.float64)
    top = None
    if c.ndim == 2 and c.size:
        top = float(np.max(c[:, -1])) if np.all(np.isfinite(c)) else None
        c = c.mean(axis=0)
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise DataValueError(f"exit_costs has shape {c.shape}; expected positive finite (n_exits,) costs")
    if n < 2:
        raise BudgetError(f"n={n} is not allowed; use n >= 2")
    # per-sample costs: the top budget is the costliest sample's full path, so at the end of an
    # anytime curve every sample reaches the last exit (the mean full path leaves some short)
    lo, hi = float(c.min()), max(float(c.max()), top or 0.0)
    grid = np.geomspace(lo, hi, n) if hi > lo else np.array([lo])
    grid = np.clip(grid, lo, hi)  # geomspace may round its end points just outside the range
    grid[0], grid[-1] = lo, hi
    return np.unique(np.concatenate([grid, c]))


def _check_y(y: np.ndarray, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataValueError(f"{name} has shape {y.shape}; expected ({n},) to match the probabilities")
    return y


def anytime_curve(
    probs: np.ndarray, costs: np.ndarray, y: np.ndarray, budgets: Any
) -> list[dict[str, Any]]:
    """Accuracy of :func:`~scai.inference.anytime` at each budget (same budget for every sample).

    Returns
    -------
    list of dict
        ``{"budget_macs", "mean_macs", "accuracy", "flagged_fraction", "exit_shares"}`` per budget.
    """
    probs = np.asarray(probs)
    y = _check_y(y, probs.shape[1] if probs.ndim == 3 else -1, "y")
    points = []
    for b in np.asarray(budgets, dtype=np.float64).reshape(-1):
        res = anytime(probs, costs, float(b))
        points.append(
            {
                "budget_macs": float(b),
                "mean_macs": res.mean_macs,
                "accuracy": res.accuracy(y),
                "flagged_fraction": float(np.mean(res.flagged)),
                "exit_shares": [float(s) for s in res.exit_shares(probs.shape[0])],
            }
        )
    return points


def budgeted_batch_curve(
    val_probs: np.ndarray,
    val_costs: np.ndarray,
    test_probs: np.ndarray,
    test_costs: np.ndarray,
    test_y: np.ndarray,
    budgets: Any,
) -> list[dict[str, Any]]:
    """Calibrate thresholds on validation for each mean budget, then run :func:`budgeted_batch` on test.

    The test set is one batch: its thresholds come from validation and the batch guard keeps
    its mean cost within the budget (``guard_fraction`` is the share of test samples the guard
    sent out early).

    Returns
    -------
    list of dict
        ``{"budget_macs", "mean_macs", "accuracy", "thresholds", "q", "exit_shares",
        "expected_mean_macs", "guard_fraction", "feasible"}`` per budget; ``mean_macs`` is what the test set spent,
        ``expected_mean_macs`` what validation predicted. Infinite thresholds ("nobody leaves
        here") and ``q = -inf`` ("everything runs to the end") are written as ``None`` so the
        result is strict JSON.
    """
    test_probs = np.asarray(test_probs)
    if test_probs.ndim != 3:
        raise DataValueError(f"test_probs has shape {test_probs.shape}; expected (n_exits, n_samples, n_classes)")
    n_exits, n_test, _ = test_probs.shape
    test_y = _check_y(test_y, n_test, "test_y")
    test_costs = as_cost_matrix(test_costs, n_exits, n_test, "test_costs")
    points = []
    for b in np.asarray(budgets, dtype=np.float64).reshape(-1):
        with warnings.catch_warnings():
            # an infeasible budget is reported through "feasible" rather than a warning per point
            warnings.simplefilter("ignore", UserWarning)
            cal = calibrate_budgeted_batch(val_probs, val_costs, float(b))
        res = budgeted_batch(test_probs, test_costs, cal)
        points.append(
            {
                "budget_macs": float(b),
                "mean_macs": res.mean_macs,
                "accuracy": res.accuracy(test_y),
                "thresholds": [float(t) if math.isfinite(t) else None for t in cal.thresholds],
                "q": float(cal.q) if math.isfinite(cal.q) else None,
                "exit_shares": [float(s) for s in res.exit_shares(n_exits)],
                "expected_mean_macs": float(cal.expected_mean_cost),
                "guard_fraction": float(np.mean(res.flagged)) if n_test else 0.0,
                "feasible": bool(cal.feasible),
            }
        )
    return points
