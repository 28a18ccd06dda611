"""Accuracy-vs-budget curves and the default budget grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scai.errors import DataValueError
from scai.inference import anytime_curve, budgeted_batch_curve, default_budgets, softmax


def test_default_budgets_span_and_include_exit_costs():
    costs = np.array([100.0, 250.0, 900.0])
    b = default_budgets(costs, n=5)
    assert b[0] == 100 and b[-1] == 900
    assert set(costs) <= set(b)
    assert np.all(np.diff(b) > 0)
    np.testing.assert_allclose(default_budgets(np.tile(costs, (4, 1)), n=5), b)
    with pytest.raises(DataValueError):
        default_budgets(np.array([0.0, 1.0]))


def test_anytime_curve_hand_computed():
    probs = np.array([[[0.6, 0.4], [0.3, 0.7]], [[0.2, 0.8], [0.9, 0.1]]])
    costs = np.array([10.0, 30.0])
    y = np.array([1, 0])
    curve = anytime_curve(probs, costs, y, [10, 30])
    assert curve[0] == {"budget_macs": 10.0, "mean_macs": 10.0, "accuracy": 0.0,
                        "flagged_fraction": 0.0, "exit_shares": [1.0, 0.0]}
    assert curve[1]["accuracy"] == 1.0 and curve[1]["mean_macs"] == 30.0


def test_budgeted_batch_curve_is_strict_json_and_meets_budgets():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(3, 200, 4)) * np.array([1, 2, 4])[:, None, None])
    y = rng.integers(0, 4, 200)
    costs = np.array([1e3, 3e3, 6e3])
    budgets = default_budgets(costs, n=6)
    curve = budgeted_batch_curve(probs[:, :100], costs, probs[:, 100:], costs, y[100:], budgets)
    assert len(curve) == len(budgets)
    json.dumps(curve, allow_nan=False)
    for point in curve:
        assert set(point) >= {"budget_macs", "mean_macs", "accuracy", "thresholds"}
        assert point["expected_mean_macs"] <= point["budget_macs"] * (1 + 1e-9)
    assert curve[-1]["mean_macs"] == 6e3 and curve[0]["mean_macs"] == 1e3


def test_per_sample_costs_end_at_the_costliest_full_path():
    """PA networks: the last anytime budget lets every sample reach the last exit."""
    costs = np.array([[10.0, 20.0, 30.0], [12.0, 26.0, 44.0], [8.0, 15.0, 22.0]])
    b = default_budgets(costs, n=5)
    assert b[0] == pytest.approx(10.0) and b[-1] == 44.0  # mean exit 1 .. costliest full path
    assert np.any(np.isclose(b, 32.0))  # mean full path is still on the grid
    probs = softmax(np.random.default_rng(0).normal(size=(3, 3, 4)))
    y = probs[-1].argmax(1)
    last = anytime_curve(probs, costs, y, b)[-1]
    assert last["accuracy"] == 1.0 and last["exit_shares"] == [0.0, 0.0, 1.0]
