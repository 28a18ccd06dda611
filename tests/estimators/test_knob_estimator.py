"""The compute knob in SCAIClassifier: held-out outputs per knob setting, the budget solver's choice,
predictions and exports that run at it, and the files that keep it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scai import SCAIClassifier, load
from scai.inference.calibration import softmax
from scai.inference.exit_loop import carry_forward
from scai.inference.policies import budgeted_batch
from scai.models.knob import KNOB_SCALES, compute_scale
from scai.training.trainer import Trainer, TrainConfig, evaluate_exits
from tests.conftest import TINY_SCAI, make_peaks

FAST = {"max_epochs": 20, "patience": 20, "batch_size": 16, "lr": 3e-3}


@pytest.fixture(scope="module")
def knobbed():
    X, y, axis = make_peaks()
    est = SCAIClassifier(model="scai_plus", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         exit0="none", n_jobs=1).fit(X, y, axis=axis)
    return est, (X, y, axis)


def _dense(est, Z, scale):
    with torch.inference_mode(), compute_scale(est.network_, scale):
        out = est.network_.forward_detailed(torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32)).unsqueeze(1))
    return np.stack([t.numpy() for t in out.logits]), out.macs.double().numpy()


def test_held_out_outputs_are_kept_per_knob_setting(knobbed):
    est, (X, y, axis) = knobbed
    v = est.validation_
    n, L, C = len(y), len(est.exit_macs_), 3
    np.testing.assert_array_equal(v["knob_scales"], KNOB_SCALES)
    assert v["knob_logits"].shape == (len(KNOB_SCALES), L, n, C)
    Z = est.transform_input(X, axis)
    for i, s in enumerate(KNOB_SCALES):  # the final model's own MACs at that setting, computed here
        np.testing.assert_allclose(v["knob_macs"][i], _dense(est, Z, s)[1], rtol=1e-6)
    # fewer units at a lower setting: the mean cost of the last exit falls with the knob
    means = [v["knob_macs"][i][:, -1].mean() for i in range(len(KNOB_SCALES))] + [v["macs"][:, -1].mean()]
    assert means == sorted(means) and means[0] < means[-1]
    assert set(est.cross_fit_["knob_oof_accuracy"]) == {f"{s:g}" for s in KNOB_SCALES}


def test_solver_choice_is_the_best_within_budget_and_predictions_run_at_it(knobbed):
    est, (X, y, axis) = knobbed
    budget = 0.35 * est.exit_macs_[-1]
    r = est.calibrate_batch(budget, store=False)
    table = r["knob"]
    assert [row["scale"] for row in table] == [1.0, *KNOB_SCALES]
    chosen = next(row for row in table if row["chosen"])
    assert chosen["scale"] == r["compute_scale"] == r["calibration"].compute_scale
    assert all(chosen["accuracy"] >= row["accuracy"] for row in table)
    assert all(row["mean_macs"] <= budget * (1 + 1e-9) for row in table)
    # online (the exit loop, at the calibration's knob) = offline replay of the dense outputs at that knob
    pred = est.predict_detailed(X, axis=axis, policy="batch", budget=budget, batch_size=len(X))
    Z = est.transform_input(X, axis)
    logits, macs = _dense(est, Z, r["compute_scale"])
    probs = carry_forward(np.stack([softmax(z, t) for z, t in zip(logits, est.temperatures_)]), None)
    ref = budgeted_batch(probs, macs, r["calibration"], np.asarray(est.exit_macs_, dtype=np.float64))
    np.testing.assert_array_equal(pred.exit, ref.exit)
    np.testing.assert_allclose(pred.macs, ref.macs, rtol=1e-6)
    assert est.network_.compute_scale == 1.0  # the knob is put back after the call


def test_trainer_keeps_logits_at_each_knob_setting():
    X, names, _ = make_peaks(n_per_class=8)
    y = np.unique(names, return_inverse=True)[1]
    Z = ((X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)).astype(np.float32)
    from scai.models import create_model

    torch.manual_seed(0)
    net = create_model("scai_plus", Z.shape[1], 3, **TINY_SCAI)
    per_epoch, knob = [], {0.4: [], 2.0: []}
    Trainer(TrainConfig.from_dict({**FAST, "max_epochs": 1, "ema_decay": 0.0})).fit(
        net, Z, y, Z, y, val_logits=per_epoch, knob_logits=knob)
    assert len(knob[0.4]) == len(knob[2.0]) == len(per_epoch) == 1
    for s in (0.4, 2.0):  # the kept weights (one epoch, no average) evaluated at that setting here
        with compute_scale(net, s):
            np.testing.assert_allclose(knob[s][0], evaluate_exits(net, Z, y, return_logits=True)["logits"], atol=1e-6)
    np.testing.assert_allclose(per_epoch[0], evaluate_exits(net, Z, y, return_logits=True)["logits"], atol=1e-6)
    assert net.compute_scale == 1.0


def test_save_load_keeps_the_knob_outputs_and_the_choice(knobbed, tmp_path):
    est, _ = knobbed
    key = next(iter(est.thresholds_))
    assert est.thresholds_[key]["compute_scale"] in (1.0, *KNOB_SCALES)
    back = load(est.save(tmp_path / "m"))
    for k in ("knob_scales", "knob_logits", "knob_macs"):
        np.testing.assert_array_equal(back.validation_[k], est.validation_[k])
    a, b = est.calibrate_batch("30%", store=False), back.calibrate_batch("30%", store=False)
    assert a["compute_scale"] == b["compute_scale"]
    np.testing.assert_array_equal(a["thresholds"], b["thresholds"])


def test_export_bakes_the_calibrated_knob_into_the_stages(knobbed, tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX check needs the onnx extra")
    import onnxruntime as ort

    from scai.deploy.onnx_export import export_onnx

    est, (X, _, axis) = knobbed
    key = next(iter(est.thresholds_))
    saved = dict(est.thresholds_[key])
    est.thresholds_[key]["compute_scale"] = 0.4  # as if the solver had chosen 0.4 at the default budget
    try:
        out = export_onnx(est, tmp_path / "onnx")
    finally:
        est.thresholds_[key] = saved
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compute_scale"] == 0.4
    Z = est.transform_input(X, axis)[:, None, :].astype(np.float32)
    sess = ort.InferenceSession(str(out / "stage_0.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = sess.run(None, {"spectrum": Z})[1]
    with torch.inference_mode():
        at = {s: est.network_.set_compute(s).run_stage(0, torch.from_numpy(Z))[1].numpy() for s in (0.4, 1.0)}
    est.network_.set_compute(1.0)
    assert not np.allclose(at[0.4], at[1.0], atol=1e-4)  # the knob changes stage 0 of this model
    np.testing.assert_allclose(onnx_logits, at[0.4], atol=1e-4)


def test_a_cascades_knob_costs_are_its_own_at_each_setting():
    """With exit 0 in front, the knob's MACs are computed from the network alone (the exits before it
    cost the same at every setting); they must equal the whole cascade's pass at that setting."""
    X, y, axis = make_peaks()
    est = SCAIClassifier(model="scai_plus", model_config=TINY_SCAI, train_config={**FAST, "max_epochs": 6},
                         preprocessing="snv", skip_exits=False, rocket="none", n_jobs=1).fit(X, y, axis=axis)
    assert est.network_.net_start == 1 and len(est.exit_macs_) == 4
    np.testing.assert_array_equal(est.validation_["knob_scales"], KNOB_SCALES)
    Z = est.transform_input(X, axis)
    for i, s in enumerate(est.validation_["knob_scales"]):
        np.testing.assert_allclose(est.validation_["knob_macs"][i], _dense(est, Z, float(s))[1], rtol=1e-9)
