"""Predictor: real early exit agrees with the offline policies and really skips compute."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scai.errors import BudgetError, DataValueError, LabelError  # noqa: E402
from scai.inference import Predictor, anytime, budgeted_batch, calibrate_budgeted_batch, softmax, threshold  # noqa: E402


def offline(net, X, temperatures=None):
    """Per-exit probabilities and per-sample cumulative MACs from one full pass."""
    with torch.inference_mode():
        x = torch.from_numpy(X).unsqueeze(1)
        logits = np.stack([z.double().numpy() for z in net.forward_exits(x)])
        costs = net.stage_costs(x).double().numpy() if hasattr(net, "stage_costs") else None
    t = np.ones(net.n_exits) if temperatures is None else temperatures
    return softmax(logits, t), costs


def mid_thresholds(probs):
    """Per-exit median confidences, nudged so no sample sits exactly on a threshold."""
    conf = probs.max(axis=2)
    return np.median(conf[:-1], axis=1) + 1e-7


def test_threshold_policy_equals_offline_and_drops_samples(tiny_net, spectra):
    probs, costs = offline(tiny_net, spectra)
    th = mid_thresholds(probs)
    ref = threshold(probs, costs, th)
    assert 0 < np.mean(ref.exit == 0) < 1, "fixture: some samples must leave early"
    tiny_net.seen = [[] for _ in range(tiny_net.n_exits)]
    out = Predictor(tiny_net).predict(spectra, thresholds=th, batch_size=64)
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_array_equal(out.class_index, ref.prediction)
    np.testing.assert_allclose(out.confidence, ref.confidence, rtol=1e-6)
    np.testing.assert_array_equal(out.macs, np.asarray(tiny_net.exit_macs(), float)[ref.exit])
    # compute was really saved: later stages only saw the samples still running
    assert tiny_net.seen[0] == [50]
    assert tiny_net.seen[1] == [int(np.sum(ref.exit >= 1))]
    assert tiny_net.seen[2] == [int(np.sum(ref.exit >= 2))]
    assert out.wall_time_s > 0 and out.policy == "threshold"
    assert out.to_policy_result().mean_macs == ref.mean_macs


def test_small_batches_give_the_same_answers(tiny_net, spectra):
    probs, costs = offline(tiny_net, spectra)
    th = mid_thresholds(probs)
    pred = Predictor(tiny_net)
    a = pred.predict(spectra, thresholds=th, batch_size=7)
    b = pred.predict(spectra, thresholds=th, batch_size=256)
    np.testing.assert_array_equal(a.exit, b.exit)
    np.testing.assert_array_equal(a.class_index, b.class_index)


def test_temperatures_are_applied_per_exit(tiny_net, spectra):
    t = np.array([0.5, 2.0, 1.5])
    probs, costs = offline(tiny_net, spectra, t)
    th = mid_thresholds(probs)
    out = Predictor(tiny_net, temperatures=t).predict(spectra, thresholds=th)
    ref = threshold(probs, costs, th)
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_allclose(out.confidence, ref.confidence, rtol=1e-6)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0)


def test_anytime_policy_equals_offline_for_static_network(tiny_net, spectra):
    probs, costs = offline(tiny_net, spectra)
    em = np.asarray(tiny_net.exit_macs(), float)
    budgets = np.resize([em[0] / 2, em[0], (em[0] + em[1]) / 2, em[1], em[2] * 2], 50)
    out = Predictor(tiny_net).predict(spectra, policy="anytime", budget=budgets)
    ref = anytime(probs, costs, budgets)
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_array_equal(out.class_index, ref.prediction)
    np.testing.assert_array_equal(out.flagged, ref.flagged)
    assert np.all((out.macs <= budgets) | out.flagged)
    assert out.budget_conversion == "macs"


def test_anytime_string_budgets_in_macs_and_ms(tiny_net, spectra):
    pred = Predictor(tiny_net)
    em = np.asarray(tiny_net.exit_macs(), float)
    out = pred.predict(spectra, policy="anytime", budget=f"{em[1] / 1000:.6f}k")
    assert np.all(out.exit == 1)
    ms = pred.measure_stage_latency(batch_size=16, repeats=2)
    assert ms.shape == (3,) and np.all(ms > 0)
    np.testing.assert_array_equal(pred.measure_stage_latency(batch_size=16), ms)  # cached
    out = pred.predict(spectra, policy="anytime", budget="1000 s", batch_size=16)
    assert np.all(out.exit == 2) and "ms" in out.budget_conversion and "measured" in out.budget_conversion
    tiny = f"{ms[0] / 10:.8f} ms"
    out = pred.predict(spectra, policy="anytime", budget=tiny, batch_size=16)
    assert np.all(out.exit == 0) and np.all(out.flagged)
    with pytest.raises(BudgetError, match="shape"):
        pred.predict(spectra, policy="anytime", budget=np.ones(3) * 1e9)
    # at an exit's cumulative latency the conversion lands exactly on that exit's MACs
    cum = np.cumsum(ms)
    macs, how = pred.budget_to_macs(f"{float(cum[1])!r} ms", batch_size=16)
    assert macs == pytest.approx(tiny_net.exit_macs()[1]) and "batch 16" in how
    macs, _ = pred.budget_to_macs(f"{float(cum[0] + cum[1]) / 2!r} ms", batch_size=16)
    assert tiny_net.exit_macs()[0] < macs < tiny_net.exit_macs()[1]


def test_full_policy_matches_forward(tiny_net, spectra):
    out = Predictor(tiny_net, class_names=["a", "b", "c"]).predict(spectra, policy="full")
    with torch.inference_mode():
        final = tiny_net(torch.from_numpy(spectra).unsqueeze(1)).argmax(1).numpy()
    np.testing.assert_array_equal(out.class_index, final)
    np.testing.assert_array_equal(out.prediction, np.array(["a", "b", "c"])[final])
    assert np.all(out.exit == 2) and np.all(out.macs == tiny_net.exit_macs()[-1])
    assert out.accuracy(np.array(["a", "b", "c"])[final]) == 1.0
    assert out.accuracy(final) == 1.0


def test_pa_like_network_reports_actual_macs_and_mode(tiny_pa_net, spectra):
    pred = Predictor(tiny_pa_net)
    assert tiny_pa_net.execution == "auto"
    Predictor(tiny_pa_net, sparse=True)
    assert tiny_pa_net.execution == "sparse"
    probs, costs = offline(tiny_pa_net, spectra)
    th = mid_thresholds(probs)
    out = pred.predict(spectra, thresholds=th)
    ref = threshold(probs, costs, th)
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_array_equal(out.macs, ref.macs)
    assert np.any(out.macs < np.asarray(tiny_pa_net.exit_macs(), float)[out.exit])
    # anytime never overspends: the look-ahead uses the full-compute stage cost
    b = np.asarray(tiny_pa_net.exit_macs(), float)[1] * 1.01
    out = pred.predict(spectra, policy="anytime", budget=b)
    assert np.all(out.macs <= b) and np.all(out.exit >= 1)


def test_calibrate_sets_temperatures_and_thresholds(tiny_net, spectra):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, len(spectra))
    pred = Predictor(tiny_net)
    em = np.asarray(tiny_net.exit_macs(), float)
    budget = 0.5 * (em[0] + em[1])
    cal = pred.calibrate(spectra, y, budget)
    assert cal.expected_mean_cost <= budget * (1 + 1e-9)
    assert not np.allclose(pred.temperatures, 1.0)
    np.testing.assert_array_equal(pred.thresholds, cal.thresholds)
    out = pred.predict(spectra)  # calibrated thresholds are the default
    assert out.mean_macs <= 1.05 * budget


@pytest.mark.parametrize("net_name", ["tiny_net", "tiny_pa_net"])
def test_batch_policy_equals_offline_budgeted_batch_and_stays_in_budget(net_name, spectra, request):
    net = request.getfixturevalue(net_name)
    probs, costs = offline(net, spectra)
    costs = costs if costs is not None else np.asarray(net.exit_macs(), float)
    em = np.asarray(net.exit_macs(), float)
    # calibrate on a sharpened copy so the thresholds let too many samples run on: the guard acts
    val = softmax(np.log(probs) * 3.0)
    budget = 0.5 * (em[0] + em[1])
    cal = calibrate_budgeted_batch(val, costs, budget)
    ref = budgeted_batch(probs, costs, cal, exit_bounds=em)  # the predictor prices with the full-compute bounds
    assert ref.flagged.any(), "fixture: the guard must send some samples out"
    out = Predictor(net).predict(spectra, policy="batch", calibration=cal, batch_size=len(spectra))
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_array_equal(out.flagged, ref.flagged)
    np.testing.assert_allclose(out.macs, ref.macs)
    assert out.mean_macs <= budget * (1 + 1e-9)  # PA too: a sample going on is priced at its next stage's most
    # smaller network batches: each batch keeps to the budget on its own
    small = Predictor(net).predict(spectra, policy="batch", calibration=cal, batch_size=16)
    for start in range(0, len(spectra), 16):
        assert small.macs[start : start + 16].mean() <= budget * 1.05 + em[-1] / 16
    with pytest.raises(BudgetError, match="calibration"):
        Predictor(net).predict(spectra, policy="batch")


def test_predictor_errors(tiny_net, spectra):
    pred = Predictor(tiny_net)
    with pytest.raises(BudgetError, match="calibrate"):
        pred.predict(spectra)
    with pytest.raises(BudgetError, match="budget=None"):
        pred.predict(spectra, policy="anytime")
    with pytest.raises(ValueError, match="policy='fast' is not allowed"):
        pred.predict(spectra, policy="fast")  # type: ignore[arg-type]
    with pytest.raises(DataValueError, match=r"expected \(n_samples, 32\)"):
        pred.predict(spectra[:, :10], policy="full")
    bad = spectra.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataValueError, match="row 3"):
        pred.predict(bad, policy="full")
    with pytest.raises(BudgetError, match="thresholds has 5 values"):
        pred.predict(spectra, thresholds=[0.5] * 5)
    with pytest.raises(BudgetError, match="must be in \\[0, 1\\]"):
        pred.predict(spectra, thresholds=[2.0])
    # arguments a policy does not use are refused, not silently ignored
    with pytest.raises(BudgetError, match="budget is only used by policy 'anytime'"):
        pred.predict(spectra, policy="full", budget="150k")
    with pytest.raises(BudgetError, match="thresholds are only used by policy 'threshold'"):
        pred.predict(spectra, policy="anytime", budget="150k", thresholds=[0.5])
    with pytest.raises(ValueError, match="sparse="):
        Predictor(tiny_net, sparse="fast")
    with pytest.raises(LabelError, match="class_names has 2"):
        Predictor(tiny_net, class_names=["a", "b"])
    with pytest.raises(DataValueError, match="temperatures"):
        Predictor(tiny_net, temperatures=[1.0, 0.0, 1.0])
    with pytest.raises(TypeError, match="stage contract"):
        Predictor(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------ the real networks

import scai.models as models  # noqa: E402  (an import error fails the module, it is no skip)


@pytest.mark.parametrize(
    "name, mode", [("scai", "auto"), ("scai_plus", "dense"), ("scai_plus", "auto"), ("scai_plus", "sparse")]
)
def test_real_networks_agree_with_offline_threshold_policy(name, mode):
    assert name in models.list_models()
    torch.manual_seed(0)
    net = models.create_model(name, 96, 3).eval()  # small: the suite runs on 2 shared cores
    X = np.random.default_rng(0).standard_normal((16, 96)).astype(np.float32)
    pred = Predictor(net, sparse=mode)
    logits, costs = pred.exit_outputs(X)
    with torch.inference_mode():
        ref_logits = np.stack([z.double().numpy() for z in net.forward_exits(torch.from_numpy(X).unsqueeze(1))])
        detailed = net.forward_detailed(torch.from_numpy(X).unsqueeze(1)).macs.double().numpy()
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(costs, detailed)
    probs = softmax(ref_logits)
    th = mid_thresholds(probs)
    ref = threshold(probs, detailed, th)
    out = pred.predict(X, thresholds=th, batch_size=8)
    np.testing.assert_array_equal(out.exit, ref.exit)
    np.testing.assert_array_equal(out.class_index, ref.prediction)
    np.testing.assert_allclose(out.macs, ref.macs)
    if name == "scai":  # static: spent MACs are exactly the exit costs
        np.testing.assert_array_equal(out.macs, np.asarray(net.exit_macs(), float)[out.exit])
    else:
        assert np.all(out.macs <= np.asarray(net.exit_macs(), float)[out.exit])
