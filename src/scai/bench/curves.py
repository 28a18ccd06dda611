"""Accuracy-vs-MACs curves of the benchmark: reading one at a budget, averaging seeds, and the
MACs a family of static depths needs to reach an accuracy.

The curves themselves (``anytime`` and ``budgeted_batch`` rows of results.json) are computed by
:func:`scai.report.evaluation.evaluate`; this module only combines stored ones, for the claims
and the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["curve_at", "mean_curve", "macs_to_reach"]


def curve_at(rows: Sequence[dict[str, Any]], macs: float, setting: str) -> float | None:
    """Accuracy of one curve at ``macs``; None below its cheapest point.

    Anytime: the budget is per spectrum, so take the last point whose budget fits (a step
    function). Budgeted batch: interpolate accuracy linearly in log mean MACs spent. Above the
    most expensive point both return its accuracy (more budget cannot be used).
    """
    if not rows:
        return None
    key = "budget_macs" if setting == "anytime" else "mean_macs"
    pts = sorted((float(r[key]), float(r["accuracy"])) for r in rows if r.get(key))
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    if macs < xs[0] * (1 - 1e-9):
        return None
    if setting == "anytime":
        return float(ys[np.searchsorted(xs, macs * (1 + 1e-9), side="right") - 1])
    return float(np.interp(np.log(macs), np.log(xs), ys))


def mean_curve(curves: Sequence[Sequence[dict[str, Any]]], setting: str, n: int = 40) -> list[dict[str, float]]:
    """Mean over seeds of curves evaluated on a common log grid of MACs (NaN-free points only)."""
    key = "budget_macs" if setting == "anytime" else "mean_macs"
    xs = [float(r[key]) for c in curves for r in c if r.get(key)]
    if not xs:
        return []
    grid = np.unique(np.geomspace(min(xs), max(xs), n)) if max(xs) > min(xs) else np.array([min(xs)])
    rows = []
    for g in grid:
        vals = [curve_at(c, g, setting) for c in curves]
        vals = [v for v in vals if v is not None]
        if len(vals) == len(curves):
            rows.append({"mean_macs": float(g), "accuracy": float(np.mean(vals)), "std": float(np.std(vals))})
    return rows


def macs_to_reach(points: Sequence[tuple[float, float]], target: float) -> tuple[float | None, str]:
    """MACs a family of static depths needs to reach ``target`` accuracy (log-linear interpolation).

    Returns ``(macs, note)``; ``macs`` is None with note ``"not reached"`` when no depth reaches
    it, and the note is ``"shallowest depth"`` when the cheapest depth already does.
    """
    pts = sorted(points)
    for i, (m, a) in enumerate(pts):
        if a >= target - 1e-12:
            if i == 0:
                return m, "shallowest depth"
            m0, a0 = pts[i - 1]
            t = (target - a0) / (a - a0) if a > a0 else 1.0
            return float(math.exp(math.log(m0) + t * (math.log(m) - math.log(m0)))), "interpolated"
    return None, "not reached"

