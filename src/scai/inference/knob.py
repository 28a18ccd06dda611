"""The budget solver over the compute knob and the exits together.

A mean budget per spectrum can be met two ways on a network with position-adaptive blocks:
sending more spectra out at early exits (the budgeted-batch thresholds), or running fewer units
at every position (the compute knob, :mod:`scai.models.knob`), or a mix of both. The solver
calibrates budgeted-batch thresholds at every knob setting it has held-out outputs for and
keeps the setting whose calibration answers the held-out spectra best within the budget:

1. per setting ``s``: thresholds by :func:`~scai.inference.policies.calibrate_budgeted_batch`
   on the held-out probabilities and per-sample MACs at ``s``;
2. replay them with the batch guard (:func:`~scai.inference.policies.budgeted_batch`, full-
   compute bounds), which keeps the mean within the budget;
3. keep the most accurate; ties (frequent on a few dozen held-out spectra) go to the higher
   mean probability of the true class at the answering exit -- the same evidence, less coarse
   -- then to the lower mean cost, then to the setting nearest the trained one (1.0).

The held-out outputs are the model's (out-of-fold under cross-fitting): logits per knob setting
are kept at fit time (``SCAIClassifier.validation_``), so solving needs no network pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from scai.errors import BudgetError
from scai.inference.policies import BatchCalibration, budgeted_batch, calibrate_budgeted_batch

__all__ = ["solve_budget"]


def solve_budget(
    outputs: Sequence[tuple[float, np.ndarray, np.ndarray]],
    y: np.ndarray,
    budget: float,
    *,
    exit_bounds: np.ndarray | None = None,
) -> tuple[BatchCalibration, list[dict[str, Any]]]:
    """Budgeted-batch calibration at the best compute-knob setting for ``budget``.

    Parameters
    ----------
    outputs : sequence of (scale, probs, costs)
        Held-out outputs per knob setting: probabilities ``(n_exits, n, C)`` (temperature-scaled,
        carried forward as the exit loop answers) and cumulative MACs ``(n, n_exits)``.
    y : ndarray of int, shape (n,)
        The held-out labels.
    budget : float
        Mean MACs per spectrum.
    exit_bounds : ndarray, shape (n_exits,), optional
        Full-compute cumulative MACs per exit, for the batch guard of the replay.

    Returns
    -------
    (calibration, table)
        The chosen :class:`BatchCalibration` (its ``compute_scale`` set), and one row per setting:
        ``scale``, ``accuracy``, ``p_true`` (mean probability of the true class at the answering
        exit), ``mean_macs`` (replayed), ``expected_mean_macs``, ``chosen``.
    """
    if not outputs:
        raise BudgetError("solve_budget needs held-out outputs at one compute setting at least")
    y = np.asarray(y, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    cals: list[BatchCalibration] = []
    for scale, probs, costs in outputs:
        cal = replace(calibrate_budgeted_batch(probs, costs, budget), compute_scale=float(scale))
        res = budgeted_batch(probs, costs, cal, exit_bounds)
        p_true = np.asarray(probs)[res.exit, np.arange(len(y)), y]
        rows.append({"scale": float(scale), "accuracy": res.accuracy(y), "p_true": float(np.mean(p_true)),
                     "mean_macs": res.mean_macs, "expected_mean_macs": float(cal.expected_mean_cost), "chosen": False})
        cals.append(cal)
    best = max(range(len(rows)), key=lambda i: (round(rows[i]["accuracy"] * len(y)), round(rows[i]["p_true"], 6),
                                                 -rows[i]["mean_macs"], -abs(math.log(rows[i]["scale"]))))
    rows[best]["chosen"] = True
    return cals[best], rows
