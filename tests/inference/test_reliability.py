"""The reliability components as ``SCAIClassifier.fit`` fits and stores them, on real milk spectra.

One tiny SCAI+ is trained (3-fold cross-fitting, every exit kept) on nine of the ten
milk_adulteration classes; the tenth is the unknown class. Expectations are independent of the
code under test: the held-out class's labels, the spectra the model never saw, the scores
recomputed through :func:`scai.inference.ood.exit_batch`, and junk spectra built by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY = {"channels": (4, 6, 8), "units_per_block": 2, "stem_stride": 4}
HELD_CLASS = 0  # "cow 0% goat"-style class left out of training: the unknown class
PER_CLASS = 25


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    from scai.datasets import load

    m = load("milk_adulteration")
    rng = np.random.default_rng(0)
    known = [c for c in range(len(m.class_names)) if c != HELD_CLASS]
    tr = np.concatenate([rng.permutation(np.flatnonzero(m.y == c))[:PER_CLASS] for c in known])
    te = np.setdiff1d(np.flatnonzero(np.isin(m.y, known)), tr)
    return {"m": m, "tr": tr, "te": te, "un": np.flatnonzero(m.y == HELD_CLASS)}


@pytest.fixture(scope="module")
def est(data: dict[str, Any]) -> Any:
    import torch

    from scai import SCAIClassifier

    m, tr = data["m"], data["tr"]
    torch.manual_seed(0)
    e = SCAIClassifier(model="scai_plus", model_config=TINY, train_config={"max_epochs": 4}, cross_fit=3, n_jobs=1,
                       skip_exits=False, preprocessing="raman")
    return e.fit(m.X[tr], m.y[tr], axis=m.axis)


@pytest.fixture(scope="module")
def saved(est: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return est.save(tmp_path_factory.mktemp("rel") / "model")


def test_fit_stores_all_three_components(est: Any) -> None:
    rel = est.reliability_
    assert rel.detector is not None and rel.detector.score_name == "relative_mahalanobis"  # ood="auto"
    assert rel.detector.thresholds_.shape == (len(est.exit_macs_),)
    assert rel.domain is not None and rel.conformal is not None
    assert rel.conformal.quantiles_.shape == (len(est.exit_macs_), 2)
    assert "held-out" in rel.record["ood"]["calibration"] and "fold" in rel.record["domain"]["calibration"]
    # a network with an exit combination: every exit's score adds exit 0's, standardised on the
    # same held-out scores the thresholds were set on
    assert est.network_.combination is not None and rel.detector.anchored
    assert rel.detector.anchor_weight == 4.0  # the measured default (benchmarks/results/ood/anchor_weights.md)
    # exit 0's anchored score is (1 + w) times its own standardised score
    raw = (rel.heldout_scores[0] / 3) * rel.detector.anchor_std_[0] + rel.detector.anchor_mean_[0]
    assert abs(raw.mean() - rel.detector.anchor_mean_[0]) < 1e-9 * max(1.0, abs(raw.mean()))


def test_an_anchored_detector_refuses_to_continue_from_stage_features(est: Any, data: dict[str, Any]) -> None:
    from scai.errors import DataValueError
    from scai.inference.exit_loop import run_exit_loop
    from scai.inference.policies import FullRule
    from scai.inference.predictor import TorchStages

    hook = est.reliability_.hook()
    assert hook is not None and hook.anchored
    feats = np.zeros((2, 4, 8), dtype=np.float32)
    with pytest.raises(DataValueError, match="exit 0's unknown-class score"):
        run_exit_loop(TorchStages(est.network_), feats, FullRule(), temperatures=est.temperatures_, start_stage=1,
                      unknown=hook)


def test_a_held_out_class_is_flagged_more_than_known_ones(est: Any, data: dict[str, Any]) -> None:
    from sklearn.metrics import roc_auc_score

    m = data["m"]
    known = est.predict_detailed(m.X[data["te"]], m.axis)
    unknown = est.predict_detailed(m.X[data["un"]], m.axis)
    assert known.unknown is not None and unknown.unknown is not None
    # At the last exit of this 4-epoch network (the full policy answers there) the relative
    # distance flags about a third of the unseen class (plain Mahalanobis about a half; on trained
    # networks the relative one is ahead, benchmarks/results/ood): well above known spectra.
    assert unknown.unknown.mean() > max(5 * known.unknown.mean(), 0.2)
    labels = np.r_[np.zeros(len(data["te"])), np.ones(len(data["un"]))]
    assert roc_auc_score(labels, np.r_[known.unknown_score, unknown.unknown_score]) > 0.8


def test_false_reject_rate_on_unseen_known_spectra_is_near_the_target(est: Any, data: dict[str, Any]) -> None:
    """Thresholds were set to flag 5 % of held-out (out-of-fold) spectra; on spectra of the known
    classes the model never saw (~225) the rate must be of that order, at exit 0 and the last exit."""
    m = data["m"]
    X = m.X[data["te"]]
    last = est.predict_detailed(X, m.axis)
    first = est.predict_detailed(X, m.axis, policy="threshold", threshold=0.0, on_unknown="answer")
    assert set(first.exit.tolist()) == {0}
    for res, who in ((first, "exit 0"), (last, "last exit")):
        rate = float(res.unknown.mean())
        assert rate <= 0.15, f"{who}: {rate:.3f} of known spectra flagged at a 5 % target"


def test_scores_in_the_loop_are_those_of_exit_batch(est: Any, data: dict[str, Any]) -> None:
    """The exit loop pools the stage features in NumPy; exit_batch takes the heads' own inputs in torch."""
    from scai.inference.ood import exit_batch

    m = data["m"]
    X = m.X[data["te"][:20]]
    batch = exit_batch(est, X, m.axis)
    want = est.reliability_.detector.score(batch)  # (n_exits, n)
    got = est.predict_detailed(X, m.axis)
    # anchored scores are standardised (O(1), some near 0): float32 features give ~1e-7 absolute
    np.testing.assert_allclose(got.unknown_score, want[-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.unknown, want[-1] > est.reliability_.detector.thresholds_[-1])


def test_threshold_policy_does_not_let_an_unknown_leave_early(est: Any, data: dict[str, Any]) -> None:
    from scai.inference.ood import exit_batch

    m = data["m"]
    X = np.concatenate([m.X[data["un"][:15]], m.X[data["te"][:15]]])
    flagged0 = est.reliability_.detector.flag(exit_batch(est, X, m.axis))[0]
    assert flagged0.any() and not flagged0.all()
    # threshold 0: every spectrum is confident enough at exit 0
    answer = est.predict_detailed(X, m.axis, policy="threshold", threshold=0.0, on_unknown="answer")
    deeper = est.predict_detailed(X, m.axis, policy="threshold", threshold=0.0, on_unknown="deeper")
    assert (answer.exit == 0).all() and np.array_equal(answer.unknown, flagged0)
    assert (deeper.exit[flagged0] > 0).all() and (deeper.exit[~flagged0] == 0).all()
    last = len(est.exit_macs_) - 1
    at_last = flagged0 & (deeper.exit == last)
    assert set(deeper.reason[at_last]) <= {"unknown"} and set(deeper.reason[~flagged0]) == {"confident"}


def test_junk_spectra_are_out_of_domain_with_a_reason(est: Any, data: dict[str, Any]) -> None:
    m = data["m"]
    W = m.X.shape[1]
    sat = np.array(m.X[data["te"][0]], dtype=np.float64)
    sat[sat > np.quantile(sat, 0.9)] = sat.max()  # a flat top: 10 % of points at the maximum
    junk = np.stack([np.zeros(W), np.full(W, 800.0), sat, np.random.default_rng(1).normal(1000, 50, W)])
    res = est.predict_detailed(junk, m.axis)
    assert res.out_of_domain is not None and res.out_of_domain.all()
    assert "constant" in res.domain_reason[0] and "constant" in res.domain_reason[1]
    assert "saturated" in res.domain_reason[2]
    assert res.domain_reason[3] != ""  # noise: T2 or Q
    known = est.predict_detailed(m.X[data["te"]], m.axis)
    assert known.out_of_domain.mean() <= 0.1


def test_conformal_sets_cover_about_as_promised(est: Any, data: dict[str, Any]) -> None:
    m = data["m"]
    te = data["te"]
    sets = est.predict_sets(m.X[te], m.axis, confidence_level=0.9)
    covered = np.mean([y in s for y, s in zip(m.y[te].tolist(), sets)])
    assert covered >= 0.8, covered
    with pytest.raises(ValueError, match="not calibrated"):
        est.predict_sets(m.X[te[:2]], m.axis, confidence_level=0.8)


def test_save_and_load_round_trip_the_calibration(est: Any, saved: Path, data: dict[str, Any]) -> None:
    import scai

    config = json.loads((saved / "config.json").read_text())
    assert config["ood"]["score"] == "relative_mahalanobis" and config["domain"] and config["conformal"]
    back = scai.load(saved)
    m = data["m"]
    X = np.concatenate([m.X[data["un"][:10]], m.X[data["te"][:10]]])
    a = est.predict_detailed(X, m.axis, confidence_level=0.95)
    b = back.predict_detailed(X, m.axis, confidence_level=0.95)
    np.testing.assert_allclose(a.unknown_score, b.unknown_score, rtol=1e-9)
    for key in ("unknown", "out_of_domain", "domain_reason", "prediction_set", "exit"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_a_model_dir_without_the_records_still_loads(saved: Path, tmp_path: Path, data: dict[str, Any]) -> None:
    import scai

    old = tmp_path / "old"
    shutil.copytree(saved, old)
    config = json.loads((old / "config.json").read_text())
    for key in ("ood", "domain", "conformal"):
        config.pop(key)
    (old / "config.json").write_text(json.dumps(config))
    est = scai.load(old)
    m = data["m"]
    res = est.predict_detailed(np.stack([m.X[0], np.zeros(m.X.shape[1])]), m.axis)
    assert res.unknown is None and res.unknown_score is None and res.prediction_set is None
    assert any("no unknown-class detector" in n for n in res.notes)
    assert "absent" in est.reliability_.record
    assert res.out_of_domain.tolist() == [False, True]  # the raw checks need no model
    with pytest.raises(ValueError, match="conformal"):
        est.predict_detailed(m.X[:2], m.axis, confidence_level=0.9)


def test_ood_none_fits_no_detector(data: dict[str, Any]) -> None:
    from scai import SCAIClassifier

    m, tr = data["m"], data["tr"][::5]
    e = SCAIClassifier(model="scai", model_config=TINY, train_config={"max_epochs": 1}, cross_fit=0, n_jobs=1,
                       preprocessing="snv", ood="none", domain_confidence=None, confidence_levels=None)
    e.fit(m.X[tr], m.y[tr], axis=m.axis)
    assert e.reliability_ is None
    res = e.predict_detailed(m.X[:3], m.axis)
    assert res.unknown is None
    with pytest.raises(ValueError, match="ood="):
        SCAIClassifier(ood="isolation_forest", cross_fit=0, model_config=TINY,
                       train_config={"max_epochs": 1}).fit(m.X[tr], m.y[tr], axis=m.axis)


def test_another_reject_rate_needs_no_refit(est: Any, saved: Path, data: dict[str, Any]) -> None:
    """The held-out scores are stored, so a stricter rate is a new quantile of them, also after loading."""
    import scai

    rel = est.reliability_
    held = rel.heldout_scores
    assert held is not None and held.shape[0] == len(est.exit_macs_)
    strict = rel.at_reject_rate(0.01)
    for k in range(held.shape[0]):  # at most 1 % of the held-out scores above each new threshold
        assert np.mean(held[k] > strict.detector.thresholds_[k]) <= 0.01
        assert strict.detector.thresholds_[k] >= rel.detector.thresholds_[k]
    back = scai.load(saved).reliability_.at_reject_rate(0.01)
    np.testing.assert_allclose(back.detector.thresholds_, strict.detector.thresholds_)
    m = data["m"]
    X = m.X[data["te"]]
    loose = est.predict_detailed(X, m.axis)
    est.reliability_ = strict  # what a --reject-rate option does
    try:
        tight = est.predict_detailed(X, m.axis)
    finally:
        est.reliability_ = rel
    assert tight.unknown.sum() <= loose.unknown.sum()
    assert not (tight.unknown & ~loose.unknown).any()


@pytest.mark.parametrize("policy, kw", [("full", {}), ("threshold", {"threshold": 0.5}), ("anytime", {"budget": "40%"})])
def test_flags_off_change_no_prediction(est: Any, data: dict[str, Any], policy: str, kw: dict[str, Any]) -> None:
    """With on_unknown="answer" the detector, domain check and sets only annotate: predictions, exits
    and MACs equal those of the same model with no reliability record at all (the issue's "no
    accuracy change on in-distribution data when the flags are off")."""
    m = data["m"]
    X = m.X[np.r_[data["te"][:40], data["un"][:10]]]
    flagged = est.predict_detailed(X, m.axis, policy=policy, on_unknown="answer", confidence_level=0.9, **kw)
    rel = est.reliability_
    est.reliability_ = None
    try:
        bare = est.predict_detailed(X, m.axis, policy=policy, **kw)
    finally:
        est.reliability_ = rel
    assert flagged.unknown is not None and bare.unknown is None  # the flags were on in one run only
    assert flagged.prediction.tolist() == bare.prediction.tolist()
    assert flagged.exit.tolist() == bare.exit.tolist()
    np.testing.assert_allclose(flagged.macs, bare.macs)
    np.testing.assert_allclose(flagged.confidence, bare.confidence, rtol=1e-6)
    if policy == "threshold":  # under "deeper" the same flags do change where unknowns leave
        deeper = est.predict_detailed(X, m.axis, policy=policy, on_unknown="deeper", **kw)
        assert flagged.unknown.any(), "nothing flagged: the control below would be empty"
        assert deeper.exit.tolist() != bare.exit.tolist()
