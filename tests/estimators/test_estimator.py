"""SCAIClassifier: fit/predict, policies, save/load round trip, safe loading and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scai import SCAIClassifier, load
from scai.errors import AxisError, DataValueError, LabelError, ModelFileError, NotFittedError
from tests.conftest import TINY_SCAI

FAST = {"max_epochs": 25, "patience": 25, "batch_size": 16, "lr": 3e-3}


def _fit(X, y, axis, model="scai", **kw):
    """The network alone (exit0='none'): these tests are about the network's exits and policies."""
    kw.setdefault("exit0", "none")
    return SCAIClassifier(model=model, model_config=TINY_SCAI, train_config=FAST, preprocessing="snv", **kw).fit(X, y, axis=axis)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from tests.conftest import make_peaks

    X, y, axis = make_peaks()
    return _fit(X, y, axis, model="scai_plus"), (X, y, axis)


def test_learns_an_easy_problem(fitted):
    est, (X, y, axis) = fitted
    assert (est.predict(X, axis=axis) == y).mean() >= 0.9
    proba = est.predict_proba(X, axis=axis)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert list(est.classes_) == ["class_0", "class_1", "class_2"]
    assert len(est.exit_macs_) == 3 and est.exit_macs_ == sorted(est.exit_macs_)


def test_exit_outputs_shapes_and_costs(fitted):
    est, (X, _, axis) = fitted
    probs, costs = est.exit_outputs(X, axis)
    assert probs.shape == (3, len(X), 3)
    assert costs.shape == (len(X), 3)
    # PA blocks never spend more than the full-compute cost, and cumulative costs grow.
    assert np.all(costs <= np.asarray(est.exit_macs_)[None, :] + 1e-6)
    assert np.all(np.diff(costs, axis=1) > 0)


def test_policies_through_predict(fitted):
    est, (X, y, axis) = fitted
    full = est.predict_detailed(X, axis, policy="full")
    assert np.all(np.asarray(full.exit) == 2)
    cheap = est.predict_detailed(X, axis, policy="anytime", budget=est.exit_macs_[0])
    assert np.all(np.asarray(cheap.exit) == 0)
    assert np.all(np.asarray(cheap.macs) <= est.exit_macs_[0])
    thr = est.predict_detailed(X, axis, policy="threshold", threshold=0.0, on_unknown="answer")
    assert np.all(np.asarray(thr.exit) == 0)
    held = est.predict_detailed(X, axis, policy="threshold", threshold=0.0)  # on_unknown="deeper" by default
    np.testing.assert_array_equal(held.exit > 0, thr.unknown)  # only a spectrum flagged unknown at exit 0 goes deeper
    np.testing.assert_array_equal(held.held, np.where(thr.unknown, "unknown", ""))
    budget = 0.5 * (est.exit_macs_[0] + est.exit_macs_[1])
    labels = est.predict(X, axis=axis, policy="batch", budget=budget)
    res = est.predict_detailed(X, axis, policy="batch", budget=budget)
    # the same decisions as the offline policy on every exit's stored output, and within budget
    from scai.inference import budgeted_batch

    from scai.models.knob import compute_scale

    cal = est.calibrate_batch(budget)["calibration"]
    with compute_scale(est.network_, cal.compute_scale):  # the knob the solver chose with the thresholds
        probs, costs = est.exit_outputs(X, axis)
    offline = budgeted_batch(probs, costs, cal, exit_bounds=est.exit_macs_)
    np.testing.assert_array_equal(res.exit, offline.exit)
    np.testing.assert_array_equal(labels, est.classes_[offline.prediction])
    assert res.mean_macs <= budget + (est.exit_macs_[-1] - est.exit_macs_[0]) / len(X)
    # typos and options without their policy are refused, not silently ignored
    with pytest.raises(TypeError, match="polcy"):
        est.predict(X, axis=axis, polcy="batch")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="budget is only used"):
        est.predict(X, axis=axis, budget="150k")


def test_save_load_round_trip(fitted, tmp_path):
    est, (X, _, axis) = fitted
    est.save(tmp_path / "m")
    assert {"config.json", "model.safetensors", "validation.safetensors", "history.json", "history.csv"} <= {
        p.name for p in (tmp_path / "m").iterdir()
    }
    again = load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(X, axis=axis), est.predict_proba(X, axis=axis), atol=1e-6)
    assert again.exit_macs_ == est.exit_macs_
    np.testing.assert_allclose(again.temperatures_, est.temperatures_)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["exit_macs"] == est.exit_macs_ and cfg["class_names"] == ["class_0", "class_1", "class_2"]


def test_loading_never_unpickles(fitted, tmp_path, monkeypatch):
    """With every unpickling entry point booby-trapped, a saved model still loads and predicts."""
    import pickle

    import torch

    est, (X, _, axis) = fitted
    est.save(tmp_path / "m")

    def trap(*args, **kwargs):
        raise AssertionError("loading a model unpickled something")

    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(pickle, "loads", trap)
    monkeypatch.setattr(pickle, "Unpickler", trap)
    monkeypatch.setattr(torch, "load", trap)
    monkeypatch.setattr(np, "load", trap)
    again = load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(X, axis=axis), est.predict(X, axis=axis))
    # and what is stored is plain JSON / safetensors / CSV
    for path in (tmp_path / "m").iterdir():
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            n = int.from_bytes(path.read_bytes()[:8], "little")
            json.loads(path.read_bytes()[8 : 8 + n])
        else:
            assert path.suffix == ".csv", path.name


def test_tampered_weights_are_refused(fitted, tmp_path):
    est, _ = fitted
    d = est.save(tmp_path / "m")
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load(d)


def test_truncated_config_is_refused(fitted, tmp_path):
    est, _ = fitted
    d = est.save(tmp_path / "m")
    text = (d / "config.json").read_text()
    (d / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load(d)


def test_newer_format_is_refused(fitted, tmp_path):
    est, _ = fitted
    d = est.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["format_version"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="newer"):
        load(d)


def test_shape_mismatch_is_explained(fitted, tmp_path):
    est, _ = fitted
    d = est.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_classes"] = 5
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="shape"):
        load(d)


def test_missing_dir_and_files(tmp_path):
    with pytest.raises(ModelFileError, match="not a model directory"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="config.json"):
        load(tmp_path / "empty")


def test_axis_contract(fitted):
    est, (X, y, axis) = fitted
    with pytest.raises(AxisError, match="expecting 96 features"):
        est.predict(X[:, :-3])
    # same instrument range at another resolution: resampled with a warning
    fine = np.linspace(axis[0], axis[-1], 2 * len(axis))
    X_fine = np.stack([np.interp(fine, axis, row) for row in X])
    with pytest.warns(UserWarning, match="resampled"):
        pred = est.predict(X_fine, axis=fine)
    assert (pred == y).mean() >= 0.85
    with pytest.raises(AxisError, match="overlap"):
        est.predict(X, axis=axis + 5000)


def test_bad_input_errors(peaks):
    X, y, axis = peaks
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=FAST, preprocessing="none")
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(X)
    bad = X.copy()
    bad[3, 7] = np.nan
    with pytest.raises(DataValueError, match="row 3, column 7"):
        est.fit(bad, y, axis=axis)
    with pytest.raises(LabelError, match="at least 2 classes"):
        est.fit(X, np.full(len(X), "a"), axis=axis)
    y1 = y.copy()
    y1[0] = "lonely"
    with pytest.raises(LabelError, match="'lonely' has 1 sample"):
        est.fit(X, y1, axis=axis)
    with pytest.raises(LabelError, match="Mismatch"):
        est.fit(X, y[:-1], axis=axis)
    with pytest.raises(ValueError, match="Reshape your data"):
        est.fit(X[0], y, axis=axis)


def test_unknown_validation_label(peaks):
    X, y, axis = peaks
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=FAST, preprocessing="none")
    y_val = y[:5].copy()
    y_val[2] = "martian"
    with pytest.raises(LabelError, match="martian"):
        est.fit(X, y, axis=axis, X_val=X[:5], y_val=y_val)


def test_seeded_fit_is_reproducible(peaks):
    X, y, axis = peaks
    a = _fit(X, y, axis)
    b = _fit(X, y, axis)
    np.testing.assert_array_equal(a.predict_proba(X, axis=axis), b.predict_proba(X, axis=axis))


def test_exit0_leads_and_useless_exits_are_skipped():
    """Peaks a linear model separates perfectly: exit 0 answers, the network exits add nothing."""
    from tests.conftest import make_peaks

    X, y, axis = make_peaks()
    est = _fit(X, y, axis, model="scai_plus", exit0="auto")
    W, C = est.pipeline_.transform(X[:1]).shape[1], 3
    assert est.exit0_["validation_accuracy"][0] == 1.0
    assert est.network_.uses == [True] and est.exit_macs_[0] == est.network_.exit0.macs
    assert est.exit_macs_[0] <= 2 * W * (C + 1)  # auto: within twice a standardised logistic's MACs
    assert len(est.exit_macs_) == 1  # no network stage runs at all
    assert (est.predict(X, axis=axis) == y).mean() >= 0.95
    keep = _fit(X, y, axis, model="scai_plus", exit0="pls", skip_exits=False)
    assert keep.network_.uses == [True] * 4 and len(keep.exit_macs_) == 4
    assert keep.network_.exit0.rank is not None
    k = keep.network_.exit0.rank
    assert keep.exit_macs_[0] == W * k + k * C  # PLS-DA: projection + head
    with pytest.raises(ValueError, match="exit0='lda' is not allowed"):
        _fit(X, y, axis, exit0="lda")


def test_degenerate_spectra_give_a_clear_error_not_a_traceback():
    """One point per spectrum: SNV leaves nothing that varies; exit 0 cannot be fitted, and says so."""
    X = np.array([[1.0], [1.1], [0.9], [3.0], [3.1], [2.9]])
    y = np.array(["a", "a", "a", "b", "b", "b"])
    with pytest.raises(DataValueError, match="exit 0 could not be fitted on the preprocessed spectra"):
        SCAIClassifier(preprocessing="snv", model_config=TINY_SCAI, train_config={"max_epochs": 1}).fit(X, y)
