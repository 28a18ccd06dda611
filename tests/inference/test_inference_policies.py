"""Exit policies: hand-computed answers, then properties on random data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from scai.errors import BudgetError, DataValueError
from scai.inference import (
    Budget,
    anytime,
    calibrate_budgeted_batch,
    default_budgets,
    exit_shares,
    softmax,
    threshold,
)

# 3 exits, 2 samples, 2 classes; costs 10 / 30 / 60 MACs.
PROBS = np.array(
    [
        [[0.6, 0.4], [0.3, 0.7]],
        [[0.2, 0.8], [0.9, 0.1]],
        [[0.55, 0.45], [0.1, 0.9]],
    ]
)
COSTS = np.array([10.0, 30.0, 60.0])


def frozen(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------- anytime


def test_anytime_scalar_budget_picks_deepest_fitting_exit():
    r = anytime(frozen(PROBS), frozen(COSTS), 35)
    np.testing.assert_array_equal(r.exit, [1, 1])
    np.testing.assert_array_equal(r.prediction, [1, 0])
    np.testing.assert_allclose(r.confidence, [0.8, 0.9])
    np.testing.assert_allclose(r.macs, [30, 30])
    assert not r.flagged.any()
    assert r.accuracy(np.array([1, 1])) == 0.5
    assert r.mean_macs == 30


def test_anytime_per_sample_budget_and_flag_below_exit_1():
    r = anytime(PROBS, COSTS, np.array([5.0, 100.0]))
    np.testing.assert_array_equal(r.exit, [0, 2])
    np.testing.assert_array_equal(r.prediction, [0, 1])
    np.testing.assert_allclose(r.confidence, [0.6, 0.9])
    np.testing.assert_allclose(r.macs, [10, 60])
    np.testing.assert_array_equal(r.flagged, [True, False])


def test_anytime_budget_equal_to_cost_fits():
    r = anytime(PROBS, COSTS, 10)
    np.testing.assert_array_equal(r.exit, [0, 0])
    assert not r.flagged.any()
    r = anytime(PROBS, COSTS, Budget(60.0))
    np.testing.assert_array_equal(r.exit, [2, 2])


def test_anytime_per_sample_costs():
    costs = np.array([[10.0, 30, 60], [20, 50, 90]])
    r = anytime(PROBS, costs, 40)
    np.testing.assert_array_equal(r.exit, [1, 0])
    np.testing.assert_allclose(r.macs, [30, 20])


@pytest.mark.parametrize(
    "budget, match",
    [(0, "budget"), (-1, "budget"), (np.array([1.0, 2, 3]), "shape"), (Budget(3.0, "ms"), "latency")],
)
def test_anytime_bad_budget(budget, match):
    with pytest.raises(BudgetError, match=match):
        anytime(PROBS, COSTS, budget)


def test_bad_shapes():
    with pytest.raises(DataValueError, match="probs has shape"):
        anytime(PROBS[0], COSTS, 10)
    with pytest.raises(DataValueError, match="costs has shape"):
        anytime(PROBS, COSTS[:2], 10)
    with pytest.raises(DataValueError, match="cumulative"):
        anytime(PROBS, np.array([10.0, 5, 60]), 10)


# ---------------------------------------------------------------------------- threshold


def test_threshold_hand_computed():
    r = threshold(frozen(PROBS), frozen(COSTS), frozen([0.7, 0.85]))
    # sample 0: 0.6 < 0.7, 0.8 < 0.85 -> last exit; sample 1: 0.7 >= 0.7 -> exit 0 (tie leaves)
    np.testing.assert_array_equal(r.exit, [2, 0])
    np.testing.assert_array_equal(r.prediction, [0, 1])
    np.testing.assert_allclose(r.confidence, [0.55, 0.7])
    np.testing.assert_allclose(r.macs, [60, 10])
    assert not r.flagged.any()


def test_threshold_last_value_is_ignored_and_inf_means_never():
    a = threshold(PROBS, COSTS, [0.7, 0.85, 0.999])
    b = threshold(PROBS, COSTS, [0.7, 0.85])
    np.testing.assert_array_equal(a.exit, b.exit)
    r = threshold(PROBS, COSTS, [np.inf, np.inf])
    np.testing.assert_array_equal(r.exit, [2, 2])
    r = threshold(PROBS, COSTS, [0.0, 0.0])
    np.testing.assert_array_equal(r.exit, [0, 0])


def test_threshold_bad_length():
    with pytest.raises(BudgetError, match="thresholds has 1 values; expected 2 or 3"):
        threshold(PROBS, COSTS, [0.5])
    with pytest.raises(BudgetError, match="NaN"):
        threshold(PROBS, COSTS, [np.nan, 0.5])


# ---------------------------------------------------------------------------- budgeted batch


def test_exit_shares_formula():
    np.testing.assert_allclose(exit_shares(0.5, 3), np.array([0.5, 0.25, 0.125]) / 0.875)
    np.testing.assert_allclose(exit_shares(1.0, 3), [1, 0, 0])
    np.testing.assert_allclose(exit_shares(-np.inf, 3), [0, 0, 1])
    np.testing.assert_allclose(exit_shares(1e-12, 4), [0.25] * 4, atol=1e-9)


def _two_exit_probs(conf0):
    c = np.asarray(conf0)
    p0 = np.stack([c, 1 - c], axis=1)
    p1 = np.tile([0.95, 0.05], (len(c), 1))
    return np.stack([p0, p1])


def test_budgeted_batch_two_exits_hand_computed():
    probs = _two_exit_probs([0.9, 0.8, 0.7, 0.6])
    costs = np.array([100.0, 300.0])
    # 100 + 200 r / (1 + r) = 200  ->  r = 1, q = 0: half the samples leave at exit 1.
    cal = calibrate_budgeted_batch(frozen(probs), frozen(costs), 200)
    assert cal.q == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(cal.exit_shares, [0.5, 0.5], atol=1e-6)
    assert cal.thresholds[0] == 0.8 and cal.thresholds[1] == 0.0
    assert cal.expected_mean_cost == 200
    np.testing.assert_allclose(cal.val_exit_shares, [0.5, 0.5])
    # 100 + 200 r / (1 + r) = 150  ->  r = 1/3, q = 2/3: three of four leave at exit 1.
    cal = calibrate_budgeted_batch(probs, costs, 150)
    assert cal.q == pytest.approx(2 / 3, abs=1e-6)
    assert cal.thresholds[0] == 0.7
    assert cal.expected_mean_cost == 150
    assert cal.feasible


def test_budgeted_batch_three_exits_q_solves_quadratic():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(3, 400, 4)))
    # shares ~ [1, r, r^2], costs 1, 2, 3: (1 + 2r + 3r^2) / (1 + r + r^2) = 1.5 -> 3r^2 + r - 1 = 0
    cal = calibrate_budgeted_batch(probs, np.array([1.0, 2.0, 3.0]), 1.5)
    r = (-1 + math.sqrt(13)) / 6
    assert cal.q == pytest.approx(1 - r, abs=1e-6)
    assert cal.planned_mean_cost == pytest.approx(1.5, abs=1e-6)
    assert cal.expected_mean_cost <= 1.5
    np.testing.assert_allclose(cal.val_exit_shares, cal.exit_shares, atol=1 / 400 + 1e-9)


def test_budgeted_batch_below_exit_1_warns_and_sends_all_to_exit_1():
    probs = _two_exit_probs([0.9, 0.8, 0.7, 0.6])
    with pytest.warns(UserWarning, match="below exit 1"):
        cal = calibrate_budgeted_batch(probs, np.array([100.0, 300.0]), 50)
    assert not cal.feasible and cal.q == 1.0
    assert cal.expected_mean_cost == 100
    np.testing.assert_allclose(cal.val_exit_shares, [1, 0])


def test_budgeted_batch_above_full_cost_runs_everything_to_the_end():
    probs = _two_exit_probs([0.9, 0.8, 0.7, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = calibrate_budgeted_batch(probs, np.array([100.0, 300.0]), 1000)
    assert cal.q == -np.inf and np.isinf(cal.thresholds[0])
    assert cal.expected_mean_cost == 300
    d = cal.to_dict()
    assert d["thresholds"] == [None, 0.0] and d["q"] is None


# ---------------------------------------------------------------------------- properties


def _random_problem(seed, n_exits=4, n=300, n_classes=5, per_sample=False):
    rng = np.random.default_rng(seed)
    strength = np.linspace(0.5, 3.0, n_exits)[:, None, None]
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n_exits, n, n_classes))
    logits[:, np.arange(n), y] += strength[:, :, 0]
    probs = softmax(logits * strength)
    stage = rng.uniform(1.0, 3.0, n_exits) * 1000
    if per_sample:
        costs = np.cumsum(stage * rng.uniform(0.3, 1.0, (n, n_exits)), axis=1)
    else:
        costs = np.cumsum(stage)
    return probs, costs, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
def test_budgeted_batch_meets_budget_across_the_range(seed, per_sample):
    probs, costs, _ = _random_problem(seed, per_sample=per_sample)
    qs, planned = [], []
    for b in default_budgets(costs, n=15):
        cal = calibrate_budgeted_batch(probs, costs, b)
        assert cal.expected_mean_cost <= 1.05 * b
        if not per_sample:
            assert cal.expected_mean_cost <= b * (1 + 1e-9)
        qs.append(cal.q)
        planned.append(cal.planned_mean_cost)
    assert np.all(np.diff(qs) <= 1e-12), "q must fall as the budget grows"
    assert np.all(np.diff(planned) >= -1e-9)


@pytest.mark.parametrize("seed", [0, 3])
def test_anytime_accuracy_non_decreasing_when_deeper_exits_are_better(seed):
    from scai.inference import anytime_curve

    probs, costs, y = _random_problem(seed)
    per_exit = (probs.argmax(axis=2) == y).mean(axis=1)
    assert np.all(np.diff(per_exit) >= 0), "fixture: deeper exits must be more accurate"
    curve = anytime_curve(probs, costs, y, default_budgets(costs))
    acc = [p["accuracy"] for p in curve]
    assert np.all(np.diff(acc) >= 0)
    assert [p["mean_macs"] for p in curve] == sorted(p["mean_macs"] for p in curve)
