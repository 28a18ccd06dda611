"""Cross-fitting: folds, pooled out-of-fold curves, the epoch choice, and the estimator's use of them."""

from __future__ import annotations

import numpy as np
import pytest

from scai import SCAIClassifier
from scai.inference import fit_temperatures
from scai.training.cross_fit import (
    FoldOutput,
    NetworkSpec,
    choose_epoch,
    oof_curve,
    oof_logits,
    run_folds,
    stratified_folds,
)
from scai.training.trainer import TrainConfig, Trainer
from tests.conftest import TINY_SCAI, make_peaks

FAST = {"max_epochs": 6, "min_epochs": 0, "patience": 6, "batch_size": 16, "lr": 3e-3}


def test_folds_hold_every_row_out_once_and_keep_every_class_on_both_sides():
    y = np.repeat([0, 1, 2], [7, 5, 9])
    folds = stratified_folds(y, 5, seed=3)
    assert len(folds) == 5  # the smallest class (5) allows 5
    held = np.concatenate([va for _, va in folds])
    assert sorted(held.tolist()) == list(range(len(y)))
    for tr, va in folds:
        assert set(tr).isdisjoint(va)
        assert set(y[tr]) == {0, 1, 2}
    assert len(stratified_folds(np.repeat([0, 1], [2, 9]), 5, seed=0)) == 2  # capped by the class of 2


def _fold(fold, rows, per_epoch):
    """A fold whose logits are given per epoch as (n_exits, n_val, C) arrays."""
    return FoldOutput(fold=fold, val_idx=np.asarray(rows), logits=np.stack(per_epoch).astype(np.float32),
                      best_epoch=1, fit_time_s=0.0)


def test_pooled_curve_epoch_choice_and_oof_logits_by_hand():
    y = np.array([0, 1, 0, 1])
    right = lambda c: [5.0, 0.0] if c == 0 else [0.0, 5.0]
    wrong = lambda c: right(1 - c)
    # fold A holds rows 0, 1; fold B rows 2, 3. One exit.
    # epoch 1: A right, right; B wrong, wrong  -> 2/4
    # epoch 2: A right, right; B right, wrong  -> 3/4
    # epoch 3: A right, wrong; B right, right  -> 3/4 (tie on accuracy: the lower loss decides)
    A = [np.array([[right(0), right(1)]]), np.array([[right(0), right(1)]]), np.array([[right(0), [0.1, 0.0]]])]
    B = [np.array([[wrong(0), wrong(1)]]), np.array([[right(0), wrong(1)]]), np.array([[right(0), right(1)]])]
    outs = [_fold(0, [0, 1], A), _fold(1, [2, 3], B)]
    curve = oof_curve(outs, y)
    np.testing.assert_allclose(curve["acc"][:, 0], [0.5, 0.75, 0.75])
    # epoch 3's one wrong answer is nearly undecided (0 vs 0.1), epoch 2's is confidently wrong
    assert curve["loss"][2, 0] < curve["loss"][1, 0]
    assert choose_epoch(outs, y) == 3
    L = oof_logits(outs, 4, 2)
    assert L.shape == (1, 4, 2)
    np.testing.assert_array_equal(L[0, 2], right(0))
    np.testing.assert_array_equal(L[0, 3], wrong(1))


def test_a_fold_that_stopped_early_repeats_its_last_epoch():
    y = np.array([0, 1, 0, 1])
    good = np.array([[[5.0, 0.0], [0.0, 5.0]]])
    bad = np.array([[[0.0, 5.0], [5.0, 0.0]]])
    outs = [_fold(0, [0, 1], [bad, good]), _fold(1, [2, 3], [bad, bad, good])]  # fold 0 stopped after 2
    curve = oof_curve(outs, y)
    np.testing.assert_allclose(curve["acc"][:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(oof_logits(outs, 4, 3)[0, :2], good[0])


def test_trainer_without_validation_trains_the_given_epochs_and_records_logits():
    X, labels, _ = make_peaks(n_per_class=8)
    y = np.unique(labels, return_inverse=True)[1]
    from scai.models import create_model

    net = create_model("scai", X.shape[1], 3, **TINY_SCAI)
    cfg = TrainConfig.from_dict({**FAST, "progress": False})
    h = Trainer(cfg).fit(net, X, y, None, None, epochs=4)
    assert len(h.epochs) == 4 and h.best_epoch == 4 and "val_acc" not in h.epochs[-1]
    net2 = create_model("scai", X.shape[1], 3, **TINY_SCAI)
    kept: list[np.ndarray] = []
    h2 = Trainer(cfg).fit(net2, X[:16], y[:16], X[16:], y[16:], val_logits=kept)
    assert len(kept) == len(h2.epochs)
    assert kept[0].shape == (net2.n_exits, len(X) - 16, 3)
    acc = [float(np.mean(k[-1].argmax(1) == y[16:])) for k in kept]  # last exit, per epoch
    np.testing.assert_allclose(acc, [e["val_acc"][-1] for e in h2.epochs])


def test_run_folds_parallel_equals_sequential_and_can_stop_after_the_first_round():
    X, labels, _ = make_peaks(n_per_class=8)
    y = np.unique(labels, return_inverse=True)[1]
    spec = NetworkSpec("scai", X.shape[1], 3, dict(TINY_SCAI))
    cfg = TrainConfig.from_dict({**FAST, "progress": False}).to_dict()
    folds = stratified_folds(y, 3, seed=0)
    seq, r1 = run_folds(spec, cfg, X, y, folds, n_jobs=1)
    par, r2 = run_folds(spec, cfg, X, y, folds, n_jobs=2)
    assert r1 is None and r2 is None and len(seq) == len(par) == 3
    for a, b in zip(seq, par):
        np.testing.assert_array_equal(a.val_idx, b.val_idx)
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    seen: list[int] = []
    out, reason = run_folds(spec, cfg, X, y, folds, n_jobs=1,
                            stop_after_first_round=lambda done: seen.append(len(done)) or "enough")
    assert seen == [2] and len(out) == 2 and reason == "enough"


@pytest.fixture(scope="module")
def peaks_fit():
    X, y, axis = make_peaks(n_per_class=10)
    est = SCAIClassifier(model="scai_plus", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         skip_exits=False, cross_fit=3, n_jobs=1).fit(X, y, axis=axis)
    return est, (X, y, axis)


def test_estimator_calibrates_on_out_of_fold_logits_and_refits_for_the_chosen_epochs(peaks_fit):
    est, (X, y, _) = peaks_fit
    rec = est.cross_fit_
    assert rec["folds"] == 3 and rec["n"] == len(X) and rec["network"] == "trained on all spectra"
    assert 1 <= rec["epochs"] <= FAST["max_epochs"]
    assert len(est.history_.epochs) == rec["epochs"] == est.history_.best_epoch
    assert "val_acc" in est.history_.epochs[-1]  # the pooled out-of-fold curve
    V = est.validation_
    assert V["logits"].shape == (len(est.exit_macs_), len(X), 3) and V["macs"].shape == (len(X), len(est.exit_macs_))
    # every training spectrum is in the calibration data once, with its label
    np.testing.assert_array_equal(np.sort(V["y"]), np.sort(np.unique(y, return_inverse=True)[1]))
    np.testing.assert_allclose(est.temperatures_, fit_temperatures(V["logits"], V["y"]))
    acc = [float(np.mean(z.argmax(1) == V["y"])) for z in V["logits"]]
    np.testing.assert_allclose(acc, rec["oof_accuracy"])
    # out-of-fold logits are not the final model's in-sample logits
    assert not np.allclose(V["logits"][-1], est.exit_logits(est.transform_input(X), preprocessed=True)[-1])


def test_cross_fit_record_and_oof_calibration_survive_save_load(peaks_fit, tmp_path):
    est, (X, _, axis) = peaks_fit
    from scai import load

    back = load(est.save(tmp_path / "m"))
    assert back.cross_fit_ == est.cross_fit_
    for a, b in zip(back.validation_outputs(), est.validation_outputs()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(back.predict_proba(X, axis), est.predict_proba(X, axis), rtol=1e-5, atol=1e-6)


def test_a_perfect_exit0_out_of_fold_means_no_network_is_trained():
    X, y, axis = make_peaks(n_per_class=10)
    est = SCAIClassifier(model="scai_plus", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         cross_fit=3, n_jobs=1).fit(X, y, axis=axis)
    assert est.cross_fit_["oof_accuracy"] == [1.0]
    assert est.cross_fit_["network"].startswith("not trained: exit 0 made no out-of-fold error")
    assert est.network_.n_exits == 1 and est.exit0_["network_trained"] is False
    assert (est.predict(X, axis) == y).all()


def test_single_split_mode_is_one_option_away():
    X, y, axis = make_peaks(n_per_class=10)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         exit0="none", cross_fit=0).fit(X, y, axis=axis)
    assert est.cross_fit_ is None
    assert len(est.validation_["y"]) == max(round(0.1 * len(X)), 3)
    with pytest.raises(Exception, match="cross_fit"):
        SCAIClassifier(cross_fit=-1).fit(X, y)


def test_tail_size_frees_the_idle_slot_of_the_last_round():
    from scai.training.cross_fit import tail_size

    # rounds: first max(2, n_jobs) folds, then n_jobs at a time; a last round with an idle worker
    # trains its folds beside the refit
    assert [tail_size(5, j) for j in (1, 2, 3, 4, 5, 8)] == [0, 1, 2, 1, 0, 0]
    assert tail_size(4, 2) == 0 and tail_size(3, 2) == 1 and tail_size(2, 2) == 0


def test_last_fold_trains_for_the_chosen_epochs_beside_the_refit():
    X, y, axis = make_peaks(n_per_class=10)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         skip_exits=False, cross_fit=3, n_jobs=2).fit(X, y, axis=axis)
    rec = est.cross_fit_
    assert rec["epochs_chosen_on_folds"] == 2 and len(rec["fold_epochs"]) == 3
    assert rec["fold_epochs"][2] <= rec["epochs"]  # the tail fold stops at the chosen count
    assert len(est.history_.epochs) == rec["epochs"]  # the refit trained exactly that many
    V = est.validation_
    assert V["logits"].shape[1] == len(X) and np.isfinite(V["logits"]).all()
    # the epoch count is the pooled choice of the first two folds, not of all three
    assert rec["network"] == "trained on all spectra"


def test_the_training_budget_caps_every_fold_and_the_refit_at_one_epoch_count(monkeypatch):
    """The cap is set once, on a fold's training part (n - n / K spectra), and the folds and the
    refit all train under it; the record says what capped them."""
    import scai.estimators as E

    X, y, axis = make_peaks(n_per_class=10)  # 30 spectra, 3 folds: folds train on 20
    from scai.models import create_model

    macs = create_model("scai", X.shape[1], 3, **TINY_SCAI).exit_macs()[-1]
    budget = 4.5 * 20 * macs  # 4 epochs on a fold's 20 spectra
    seen: list[int] = []
    real = E.Trainer.fit

    def spy(self, network, X_train, *args, **kwargs):
        seen.append(self.config.max_epochs)
        return real(self, network, X_train, *args, **kwargs)

    monkeypatch.setattr(E.Trainer, "fit", spy)
    cfg = {**FAST, "max_epochs": 30, "patience": 30, "train_budget": budget}
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=cfg, preprocessing="snv",
                         skip_exits=False, cross_fit=3, n_jobs=1).fit(X, y, axis=axis)
    assert est.epoch_cap_ == {"max_epochs": 30, "train_budget": budget, "n_train": 20, "net_macs": macs, "epochs": 4}
    assert est.train_config_.max_epochs == 4 and est.train_config_.train_budget is None
    assert est.cross_fit_["fold_epochs"] == [4, 4, 4]  # early stopping (patience 30) never ends them sooner
    assert seen == [4, 4, 4, 4] and len(est.history_.epochs) <= 4  # 3 folds (in this process) and the refit


def test_nested_exit0_folds_keep_the_kind_the_full_fit_chose(monkeypatch):
    X, y, axis = make_peaks(n_per_class=10)
    kinds: list[str] = []
    real = SCAIClassifier._fit_exit0

    def spy(self, Z, yy, kind, capped=None):
        kinds.append(kind)
        return real(self, Z, yy, kind, capped)

    monkeypatch.setattr(SCAIClassifier, "_fit_exit0", spy)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=FAST, preprocessing="snv",
                         exit0="auto", rocket="none", cross_fit=3, n_jobs=1).fit(X, y, axis=axis)
    assert kinds[0] == "auto" and kinds[1:] == [est.exit0_["kind"]] * 3
