"""Exit policies: hand-computed answers, then properties on random data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from scai.errors import BudgetError, DataValueError
from scai.inference import (
    Budget,
    BatchCalibration,
    anytime,
    batch_guard,
    budgeted_batch,
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
    with pytest.raises(BudgetError, match="thresholds has 4 values; give 1, 2 or 3"):
        threshold(PROBS, COSTS, [0.5, 0.5, 0.5, 0.5])
    with pytest.raises(BudgetError, match=r"must be in \[0, 1\]; got \[nan, 0.5\]"):
        threshold(PROBS, COSTS, [np.nan, 0.5])


def test_threshold_single_value_applies_to_every_exit():
    one = threshold(PROBS, COSTS, [0.5])
    each = threshold(PROBS, COSTS, [0.5, 0.5])
    np.testing.assert_array_equal(one.exit, each.exit)


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


def test_budgeted_batch_below_the_first_exit_warns_and_sends_all_to_exit_0():
    probs = _two_exit_probs([0.9, 0.8, 0.7, 0.6])
    with pytest.warns(UserWarning, match="below exit 0"):
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
    # -inf ("all to the end") may repeat at budgets beyond the mean full path; -inf - -inf is nan
    assert np.all(np.diff(np.maximum(qs, -1e300)) <= 1e-12), "q must fall as the budget grows"
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


# ---------------------------------------------------------------------------- batch guard


def _cal(budget, costs, shares, thresholds):
    return BatchCalibration(
        thresholds=np.asarray(thresholds, float),
        expected_mean_cost=float("nan"),
        q=0.0,
        exit_shares=np.asarray(shares, float),
        budget=float(budget),
        exit_costs=np.asarray(costs, float),
    )


def test_batch_guard_hand_computed():
    # 2 exits, costs 100 / 300: going on costs 200 more. Batch of 4 at budget 200 may spend 800.
    cal = _cal(200, [100, 300], [0.5, 0.5], [0.9, 0.0])
    # all 4 still running after exit 1: spent 400, left 400 -> 2 may go on; the 2 most confident leave
    forced = batch_guard(np.array([0.3, 0.8, 0.5, 0.7]), 0, 400.0, 4, cal)
    np.testing.assert_array_equal(forced, [False, True, False, True])
    # one already left: 3 running, left 400 -> 2 go on, the most confident of 3 leaves
    np.testing.assert_array_equal(batch_guard(np.array([0.3, 0.8, 0.5]), 0, 400.0, 4, cal), [False, True, False])
    # within budget: nobody forced
    assert not batch_guard(np.array([0.3, 0.8]), 0, 400.0, 4, cal).any()
    # over budget already: everybody leaves
    assert batch_guard(np.array([0.3, 0.8]), 0, 900.0, 4, cal).all()


def test_batch_guard_prices_the_work_ahead_with_planned_shares():
    # 3 exits, costs 10 / 30 / 60; planned shares of exits 2 and 3 are 0.25 / 0.75 (renormalised),
    # so a sample going on from exit 1 is expected to cost 0.25 * 20 + 0.75 * 50 = 42.5 more.
    cal = _cal(40, [10, 30, 60], [0.2, 0.2, 0.6], [0.9, 0.9, 0.0])
    # batch of 10 may spend 400; 10 running spent 100 -> left 300 -> floor(300 / 42.5) = 7 go on
    forced = batch_guard(np.linspace(0.1, 1.0, 10), 0, 100.0, 10, cal)
    np.testing.assert_array_equal(np.flatnonzero(forced), [7, 8, 9])
    # at the second-to-last exit the price is exactly the last stage: 30 more
    forced = batch_guard(np.linspace(0.1, 0.5, 5), 1, 300.0, 10, cal)  # left 100 -> 3 go on
    np.testing.assert_array_equal(np.flatnonzero(forced), [3, 4])
    with pytest.raises(BudgetError, match="exit_index"):
        batch_guard(np.ones(2), 2, 0.0, 2, cal)


def test_batch_guard_with_exit_bounds_prices_the_next_stage_at_its_most():
    # A PA network: mean costs 10 / 30 / 60 on calibration, but the full-compute bounds are
    # 10 / 50 / 110, so the second-to-last exit's next stage may cost up to 60, not 30.
    cal = _cal(40, [10, 30, 60], [0.2, 0.2, 0.6], [0.9, 0.9, 0.0])
    bounds = np.array([10.0, 50.0, 110.0])
    # left 100 at exit 2: planned price 30 lets 3 go on; the bound 60 lets 1 (floor(100 / 60))
    forced = batch_guard(np.linspace(0.1, 0.5, 5), 1, 300.0, 10, cal, bounds)
    np.testing.assert_array_equal(np.flatnonzero(forced), [1, 2, 3, 4])
    # at exit 1 the planned 42.5 is above the next stage's bound 40: the plan decides, as without bounds
    np.testing.assert_array_equal(batch_guard(np.linspace(0.1, 1.0, 10), 0, 100.0, 10, cal, bounds),
                                  batch_guard(np.linspace(0.1, 1.0, 10), 0, 100.0, 10, cal))
    # whatever the go-on samples then spend (at most the bound), the batch stays within 10 * 40
    spent_after = 300.0 + (5 - forced.sum()) * 60.0
    assert spent_after <= 10 * 40


def test_budgeted_batch_hand_computed():
    # 2 exits, costs 100 / 300, threshold 0.75 from validation, budget 150 for a batch of 4.
    probs = _two_exit_probs([0.9, 0.8, 0.7, 0.6])
    cal = _cal(150, [100, 300], [0.75, 0.25], [0.75, 0.0])
    # thresholds alone: 2 leave at exit 1, 2 go on -> mean (2*100 + 2*300) / 4 = 200 > 150.
    assert threshold(probs, [100.0, 300.0], cal.thresholds).mean_macs == 200
    res = budgeted_batch(probs, np.array([100.0, 300.0]), cal)
    # left = 600 - 400 = 200 -> one may go on: the 0.7 sample is sent out, the 0.6 one goes on
    np.testing.assert_array_equal(res.exit, [0, 0, 0, 1])
    np.testing.assert_array_equal(res.flagged, [False, False, True, False])
    assert res.mean_macs == 150


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
def test_budgeted_batch_keeps_a_shifted_test_batch_within_budget(seed, per_sample):
    """Validation more confident than test (a shift): thresholds alone overspend, the guard does not."""
    probs, costs, _ = _random_problem(seed, per_sample=per_sample)
    val_probs = softmax(np.log(probs[:, :150]) * 2.0)  # sharper = more confident on validation
    val_costs = costs[:150] if per_sample else costs
    test_probs, test_costs = probs[:, 150:], costs[150:] if per_sample else costs
    full = np.mean(as_matrix(test_costs, probs.shape[0], 150)[:, -1])
    over = []
    for b in default_budgets(test_costs, n=10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # test's exit-1 mean may sit below validation's
            cal = calibrate_budgeted_batch(val_probs, val_costs, b)
        if not cal.feasible or b >= full:
            continue
        plain = threshold(test_probs, test_costs, cal.thresholds).mean_macs
        guarded = budgeted_batch(test_probs, test_costs, cal)
        over.append(plain / b)
        slack = 1.0 if not per_sample else 1.05  # PA-like costs vary per sample around the mean
        assert guarded.mean_macs <= slack * b * (1 + 1e-9), (b, guarded.mean_macs)
        assert guarded.exit.min() >= 0 and np.all(guarded.flagged <= (guarded.exit < 3))
    assert max(over) > 1.05, "fixture: thresholds alone must overspend on this shifted batch"


def as_matrix(costs, n_exits, n):
    from scai.inference.policies import as_cost_matrix

    return as_cost_matrix(costs, n_exits, n)
