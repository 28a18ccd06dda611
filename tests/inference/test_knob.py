"""The budget solver over the compute knob and the exits (scai.inference.knob), and the knob's
context manager (scai.models.knob) on wrapped networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scai.errors import BudgetError, ModelConfigError
from scai.inference.exit_loop import run_exit_loop
from scai.inference.knob import solve_budget
from scai.inference.policies import BatchCalibration, BatchRule, ThresholdRule, calibrate_budgeted_batch
from scai.inference.predictor import TorchStages
from scai.models import create_model
from scai.models.knob import KNOB_SCALES, compute_scale, current_scale, has_knob, knob_scales, set_compute_scale
from tests.conftest import TINY_SCAI


def _outputs(n: int, correct_late: np.ndarray, late_cost: float, seed: int = 0,
             sure: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two exits: exit 0 unsure and right on even rows only; exit 1 ``sure``, right where ``correct_late``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p0 = np.where(np.arange(n) % 2 == 0, 0.6, 0.4)  # confidence in the true class at exit 0
    p1 = np.where(correct_late, sure, 1 - sure)
    probs = np.zeros((2, n, 2))
    for k, p in enumerate((p0, p1)):
        probs[k, np.arange(n), y] = p
        probs[k, np.arange(n), 1 - y] = 1 - p
    costs = np.column_stack([np.full(n, 100.0), np.full(n, 100.0 + late_cost)])
    return probs, costs, y


def test_solver_takes_the_cheaper_setting_when_it_answers_as_well():
    n = 40
    right = np.ones(n, dtype=bool)
    p1, c1, y = _outputs(n, right, late_cost=900.0)  # the trained setting: exit 1 costs 1000 in all
    p04, c04, _ = _outputs(n, right, late_cost=300.0)  # knob 0.4: same answers, exit 1 costs 400
    budget = 400.0
    cal, table = solve_budget([(1.0, p1, c1), (0.4, p04, c04)], y, budget)
    assert cal.compute_scale == 0.4
    rows = {r["scale"]: r for r in table}
    # at 1.0 the budget lets only (400-100)/900 = 1/3 of the spectra reach exit 1; at 0.4 all of them
    assert rows[0.4]["accuracy"] == 1.0 and rows[1.0]["accuracy"] < 1.0
    assert rows[0.4]["chosen"] and not rows[1.0]["chosen"]
    assert rows[0.4]["mean_macs"] <= budget + 1e-9 and rows[1.0]["mean_macs"] <= budget + 1e-9


def test_solver_keeps_the_trained_setting_when_the_knob_costs_accuracy():
    n = 40
    p1, c1, y = _outputs(n, np.ones(n, dtype=bool), late_cost=300.0)
    wrong_half = np.arange(n) < n // 2
    p04, c04, _ = _outputs(n, ~wrong_half, late_cost=100.0)  # cheaper but wrong on half the rows
    cal, table = solve_budget([(1.0, p1, c1), (0.4, p04, c04)], y, 1000.0)
    assert cal.compute_scale == 1.0
    assert [r["chosen"] for r in table] == [True, False]


def test_accuracy_ties_go_to_the_surer_answers_then_to_the_lower_cost():
    n = 20
    right = np.ones(n, dtype=bool)
    p_sure, c_dear, y = _outputs(n, right, late_cost=300.0, sure=0.95)
    p_unsure, c_cheap, _ = _outputs(n, right, late_cost=100.0, sure=0.7)
    # everyone reaches exit 1 in both (budget above both full costs): same accuracy, 1.0
    cal, table = solve_budget([(0.4, p_unsure, c_cheap), (1.0, p_sure, c_dear)], y, 1e6)
    assert [r["accuracy"] for r in table] == [1.0, 1.0]
    assert table[1]["p_true"] > table[0]["p_true"] and cal.compute_scale == 1.0
    cal, _ = solve_budget([(1.0, p_sure, c_dear), (0.4, p_sure, c_cheap)], y, 1e6)  # equally sure: cheaper wins
    assert cal.compute_scale == 0.4


def test_solver_ties_go_to_the_lower_cost_then_to_the_trained_setting():
    n = 20
    p, c, y = _outputs(n, np.ones(n, dtype=bool), late_cost=100.0)
    cal, _ = solve_budget([(0.7, p, c), (1.0, p, c), (0.4, p, c)], y, 1e6)  # identical outputs
    assert cal.compute_scale == 1.0
    # the same calibration as the plain solve, at the chosen setting
    plain = calibrate_budgeted_batch(p, c, 1e6)
    np.testing.assert_array_equal(cal.thresholds, plain.thresholds)


def test_solver_refuses_no_outputs():
    with pytest.raises(BudgetError, match="at one compute setting"):
        solve_budget([], np.zeros(0, dtype=int), 1.0)


def test_calibration_round_trips_its_compute_scale():
    p, c, y = _outputs(10, np.ones(10, dtype=bool), late_cost=100.0)
    cal, _ = solve_budget([(0.7, p, c)], y, 150.0)
    back = BatchCalibration.from_dict(cal.to_dict())
    assert back.compute_scale == 0.7
    assert BatchRule(back, 2).compute_scale == 0.7
    old = cal.to_dict()
    old.pop("compute_scale")  # written before the knob was solved for
    assert BatchCalibration.from_dict(old).compute_scale == 1.0


def test_knob_context_reaches_pa_blocks_inside_a_wrapper_and_restores():
    net = create_model("scai_plus", 96, 3, **TINY_SCAI).eval()
    wrapper = torch.nn.Sequential(net)
    assert has_knob(wrapper) and knob_scales(wrapper) == KNOB_SCALES
    with compute_scale(wrapper, 0.4):
        assert net.compute_scale == 0.4 and current_scale(wrapper) == 0.4
    assert net.compute_scale == 1.0
    with compute_scale(wrapper, None):
        assert net.compute_scale == 1.0
    net.set_compute(2.0)
    with pytest.raises(RuntimeError), compute_scale(wrapper, 0.4):
        raise RuntimeError("inside")
    assert net.compute_scale == 2.0  # restored even on error


def test_knob_refused_without_pa_blocks():
    net = create_model("scai", 96, 3, **TINY_SCAI)
    assert not has_knob(net) and knob_scales(net) == ()
    assert set_compute_scale(net, 1.0) == 1.0
    with pytest.raises(ModelConfigError, match="no position-adaptive blocks"):
        set_compute_scale(net, 0.5)


def test_exit_loop_runs_the_network_at_the_rules_knob():
    torch.manual_seed(0)
    net = create_model("scai_plus", 96, 3, **TINY_SCAI).eval()
    X = np.random.default_rng(0).normal(size=(12, 96)).astype(np.float32)
    never = np.r_[np.full(net.n_exits - 1, np.inf), 0.0]  # everyone to the last exit
    at = {}
    for scale in (1.0, 0.4):
        with torch.inference_mode():
            at[scale] = net.set_compute(scale).forward_detailed(torch.from_numpy(X).unsqueeze(1))
    net.set_compute(1.0)
    res = run_exit_loop(TorchStages(net), X, ThresholdRule(never, compute_scale=0.4), temperatures=None)
    np.testing.assert_allclose(res.macs, at[0.4].macs[:, -1].numpy(), rtol=1e-6)
    assert not np.allclose(at[0.4].macs[:, -1].numpy(), at[1.0].macs[:, -1].numpy())
    assert net.compute_scale == 1.0  # the loop put the knob back
    res1 = run_exit_loop(TorchStages(net), X, ThresholdRule(never), temperatures=None)  # None: as set
    np.testing.assert_allclose(res1.macs, at[1.0].macs[:, -1].numpy(), rtol=1e-6)
