"""Exit combination: the formula by hand, the fit against a derivative-free optimiser, and its use
by the exit loop, the cascade, the estimator and the model files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax as sp_log_softmax

from scai.errors import DataValueError, ModelConfigError
from scai.inference.combination import OFFSET_RIDGE, ExitCombination, fit_combination
from scai.inference.exit_loop import PrecomputedStages, run_exit_loop
from scai.inference.policies import FullRule


def _nll(u: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(sp_log_softmax(u, axis=1)[np.arange(len(y)), y]))


def _logits(seed: int = 0, n: int = 200, C: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Three exits: exit 0 right ~75 %, exit 1 noise, exit 2 right ~75 % with errors independent of exit 0's."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    onehot = np.eye(C)[y]
    z0 = 1.5 * onehot + rng.normal(0, 1.0, (n, C))
    z1 = rng.normal(0, 1.0, (n, C))
    z2 = 1.5 * onehot + rng.normal(0, 1.0, (n, C))
    return np.stack([z0, z1, z2]), y


def test_apply_is_the_documented_recursion_by_hand() -> None:
    Z, _ = _logits()
    comb = ExitCombination(np.array([0.0, 0.7, 0.2]), np.array([1.0, 0.4, 1.3]), np.array([[0, 0, 0], [0.1, -0.2, 0.3], [0.0, 0.5, -0.5]]))
    s1 = 0.7 * Z[0] + 0.4 * sp_log_softmax(Z[1], axis=1) + np.array([0.1, -0.2, 0.3])
    s2 = 0.2 * s1 + 1.3 * sp_log_softmax(Z[2], axis=1) + np.array([0.0, 0.5, -0.5])
    out = comb.apply(Z)
    np.testing.assert_allclose(out[0], Z[0])
    np.testing.assert_allclose(out[1], s1, rtol=1e-12)
    np.testing.assert_allclose(out[2], s2, rtol=1e-12)
    # step by step (what the exit loop does) = all at once
    state = comb.step(0, None, Z[0])
    for k in (1, 2):
        state = comb.step(k, state, Z[k])
    np.testing.assert_allclose(state, s2, rtol=1e-12)
    with pytest.raises(DataValueError, match="needs the combined logits of exit 0"):
        comb.step(1, None, Z[1])


def test_identity_keeps_every_exits_answer_and_round_trips() -> None:
    Z, _ = _logits()
    ident = ExitCombination.identity(3, 3)
    assert ident.is_identity
    np.testing.assert_array_equal(ident.apply(Z).argmax(axis=2), Z.argmax(axis=2))
    comb = fit_combination(Z, _logits()[1])
    back = ExitCombination.from_dict(comb.to_dict())
    np.testing.assert_array_equal(back.c, comb.c)
    with pytest.raises(DataValueError, match="expected an object with keys a, b, c"):
        ExitCombination.from_dict({"a": [0.0]})
    with pytest.raises(DataValueError, match=">= 0"):
        ExitCombination(np.array([0.0, -1.0]), np.ones(2), np.zeros((2, 3)))
    with pytest.raises(DataValueError, match="expected \\(3, n, 3\\)"):
        comb.apply(Z[:2])


def test_fit_reaches_the_optimum_a_derivative_free_search_finds() -> None:
    Z, y = _logits(seed=1)
    comb = fit_combination(Z, y)
    L0 = sp_log_softmax(Z, axis=2)

    def objective(theta: np.ndarray, prev: np.ndarray, own: np.ndarray) -> float:
        a, b, c = abs(theta[0]), abs(theta[1]), theta[2:]  # |.| keeps a, b >= 0 for Nelder-Mead
        return _nll(a * prev + b * own + c, y) + OFFSET_RIDGE * float(c @ c)

    prev = Z[0]
    for k in (1, 2):
        ours = objective(np.concatenate([[comb.a[k], comb.b[k]], comb.c[k]]), prev, L0[k])
        ref = minimize(objective, np.concatenate([[0.5, 0.5], np.zeros(3)]), args=(prev, L0[k]), method="Nelder-Mead",
                       options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000, "maxfev": 20000})
        assert ours <= ref.fun + 1e-6
        # never worse (in held-out NLL) than repeating the previous exit or answering alone
        assert ours <= objective(np.array([1.0, 0.0, 0, 0, 0]), prev, L0[k]) + 1e-9
        assert ours <= objective(np.array([0.0, 1.0, 0, 0, 0]), prev, L0[k]) + 1e-9
        prev = comb.apply(Z)[k]
    # the noise exit gets (almost) no weight; the informative exit 2 does, and the pair beats either
    assert comb.b[1] < 0.1 and comb.b[2] > 0.3
    acc = (comb.apply(Z).argmax(axis=2) == y).mean(axis=1)
    assert acc[2] > max((Z[0].argmax(1) == y).mean(), (Z[2].argmax(1) == y).mean())


def test_exit_loop_combines_stage_by_stage_and_continues_from_a_state() -> None:
    Z, y = _logits(seed=2, n=40)
    comb = fit_combination(Z, y)
    costs = np.cumsum(np.ones((40, 3)), axis=1)

    class Raw(PrecomputedStages):  # stored raw logits; the loop combines them
        def __init__(self) -> None:
            super().__init__(Z, costs)
            self.combination = comb

    temps = np.array([1.0, 1.3, 0.8])
    res = run_exit_loop(Raw(), np.arange(40), FullRule(), temperatures=temps)
    want = comb.apply(Z)[2] / 0.8
    want = np.exp(want - want.max(1, keepdims=True))
    np.testing.assert_allclose(res.probabilities, want / want.sum(1, keepdims=True), rtol=1e-10)
    # continuing at stage 2 from the state of exit 1 gives the same answers; without it, a clear error
    state1 = comb.apply(Z)[1]
    cont = run_exit_loop(Raw(), np.arange(40), FullRule(), temperatures=temps, start_stage=2, prior_state=state1)
    np.testing.assert_allclose(cont.probabilities, res.probabilities, rtol=1e-10)
    with pytest.raises(DataValueError, match="needs the combined logits of exit 1"):
        run_exit_loop(Raw(), np.arange(40), FullRule(), temperatures=temps, start_stage=2)


def test_cascade_combines_and_cut_keeps_the_first_exits_weights() -> None:
    import torch

    from scai.models import create_model
    from scai.models.cascade import Cascade, CascadeSpec, LinearExit
    from tests.conftest import TINY_SCAI

    torch.manual_seed(0)
    net = create_model("scai", 64, 3, **TINY_SCAI).eval()
    head = LinearExit(64, 3)
    head.set_weights(np.random.default_rng(0).normal(size=(3, 64)), np.zeros(3))
    L = net.n_exits + 1
    rng = np.random.default_rng(1)
    comb = ExitCombination(np.r_[0.0, rng.uniform(0, 1, L - 1)], np.r_[1.0, rng.uniform(0, 1, L - 1)], rng.normal(0, 0.2, (L, 3)))
    casc = Cascade(net, head, CascadeSpec("logistic")).combined(comb)
    x = torch.randn(5, 1, 64)
    with torch.no_grad():
        raw = [casc.run_stage(0, x)[1]]
        feats = x
        for i in range(L):
            feats, z = casc.run_stage(i, feats)
            if i:
                raw.append(z)
        out = casc.forward_detailed(x).logits
    want = comb.apply(np.stack([r.double().numpy() for r in raw]))
    np.testing.assert_allclose(np.stack([o.double().numpy() for o in out]), want, rtol=1e-5, atol=1e-5)
    cut = casc.cut([True] * 2 + [False] * (L - 2))
    assert cut.n_exits == 2 and cut.combination.n_exits == 2
    np.testing.assert_array_equal(cut.combination.c, comb.c[:2])
    with pytest.raises(ModelConfigError, match="exit combination is for 2 exits"):
        Cascade(net, head, CascadeSpec("logistic"), combination=ExitCombination.identity(2, 3).__class__(
            np.array([0.0, 0.5]), np.array([1.0, 0.5]), np.zeros((2, 3))))


def test_estimator_fits_the_combination_on_out_of_fold_logits_and_saves_it(tmp_path) -> None:
    from scai import SCAIClassifier, load
    from tests.conftest import TINY_SCAI, make_peaks

    X, y, axis = make_peaks(n_per_class=10)
    fast = {"max_epochs": 4, "min_epochs": 0, "patience": 4, "batch_size": 16, "lr": 3e-3}
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=fast, preprocessing="snv",
                         skip_exits=False, cross_fit=3, n_jobs=1).fit(X, y, axis=axis)
    rec = est.cross_fit_["combination"]
    comb = est.network_.combination
    assert comb is not None and comb.n_exits == len(est.exit_macs_)
    np.testing.assert_allclose(comb.a, rec["a"])
    # the stored held-out logits are the combined out-of-fold ones, and the accuracies recorded are theirs
    V = est.validation_
    acc = [float(np.mean(z.argmax(1) == V["y"])) for z in V["logits"]]
    np.testing.assert_allclose(acc, est.cross_fit_["oof_accuracy"])
    # the model answers with combined logits, and so does its reloaded copy
    Z = est.transform_input(X, axis)
    plain = est.network_.combined(None)
    import torch

    with torch.no_grad():
        raw = np.stack([t.double().numpy() for t in plain.forward_detailed(torch.from_numpy(Z).unsqueeze(1)).logits])
    np.testing.assert_allclose(est.exit_logits(Z, preprocessed=True), comb.apply(raw), rtol=1e-4, atol=1e-4)
    back = load(est.save(tmp_path / "m"))
    np.testing.assert_allclose(back.network_.combination.c, comb.c)
    np.testing.assert_allclose(back.predict_proba(X, axis), est.predict_proba(X, axis), rtol=1e-5, atol=1e-6)
    pred = est.predict_detailed(X, axis, policy="full")
    np.testing.assert_array_equal(pred.prediction, est.predict(X, axis))
    off = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config=fast, preprocessing="snv",
                         skip_exits=False, cross_fit=3, n_jobs=1, combine_exits=False).fit(X, y, axis=axis)
    assert off.network_.combination is None and "combination" not in off.cross_fit_
