"""Exit 0 (fit_linear_exit): the linear-algebra form is the fitted scikit-learn model, exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from scai.errors import ConfigError, DataValueError, LabelError, ModelFileError
from scai.training.linear_exit import FALLBACK_KIND, LinearExitFit, fit_linear_exit


def _spectra(n_per_class: int, n_classes: int, width: int = 120, seed: int = 0, noise: float = 0.15):
    """Classes differ by the height of a class-specific band on a shared background."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, width)
    centres = np.linspace(0.1, 0.9, n_classes)
    X, y = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            s = np.exp(-0.5 * ((x - 0.5) / 0.3) ** 2) * rng.uniform(0.9, 1.1)
            s = s + 0.5 * np.exp(-0.5 * ((x - centres[c]) / 0.03) ** 2)
            X.append(s + rng.normal(0.0, noise, width))
            y.append(c)
    X = np.asarray(X)
    X = (X - X.mean(0)) / X.std(0).mean()  # like Standardize(scale="global")
    return X.astype(np.float32), np.asarray(y, dtype=np.int64)


def _split(X, y, seed=1):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    half = len(y) // 2
    return X[idx[:half]], y[idx[:half]], X[idx[half:]], y[idx[half:]]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_linear_form_reproduces_sklearn_predict(n_classes):
    X, y = _spectra(20, n_classes, noise=0.4)
    Xtr, ytr, Xte, _ = _split(X, y)
    fit = fit_linear_exit(Xtr, ytr, kind="logistic", cv=3)
    assert fit.kind == "logistic" and fit.weight.shape == (n_classes, X.shape[1]) and fit.bias.shape == (n_classes,)
    assert fit.weight.dtype == np.float32 and fit.bias.dtype == np.float32
    logits = Xte.astype(np.float64) @ fit.weight.T.astype(np.float64) + fit.bias
    np.testing.assert_array_equal(logits.argmax(1), fit.estimator.predict(Xte.astype(np.float64)))
    d = fit.estimator.decision_function(Xte.astype(np.float64))
    if n_classes == 2:  # binary: logits [-d/2, d/2], whose softmax is predict_proba
        d = np.stack([-d / 2, d / 2], axis=1)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(p, fit.estimator.predict_proba(Xte.astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(logits, d, atol=1e-4)
    assert fit.projection is None and fit.head is None and fit.n_components is None


def test_pls_linear_form_reproduces_sklearn_predict_dense_and_factorised():
    X, y = _spectra(15, 5, noise=0.4)
    Xtr, ytr, Xte, _ = _split(X, y)
    fit = fit_linear_exit(Xtr, ytr, kind="pls", cv=3)
    k = fit.n_components
    assert fit.kind == "pls" and fit.projection.shape == (k, X.shape[1]) and fit.head.shape == (5, k)
    sk = fit.estimator.predict(Xte.astype(np.float64))
    dense = Xte @ fit.weight.T + fit.bias  # float32, as torch/ONNX will compute it
    factorised = (Xte @ fit.projection.T) @ fit.head.T + fit.bias
    np.testing.assert_array_equal(dense.argmax(1), sk.argmax(1))
    np.testing.assert_allclose(factorised, dense, atol=1e-5)
    np.testing.assert_allclose(dense, sk, atol=1e-5)
    # ...and an independent scikit-learn fit with the chosen k gives the same decision
    ref = PLSRegression(n_components=k, scale=False).fit(Xtr.astype(np.float64), np.eye(5)[ytr])
    np.testing.assert_array_equal(fit.predict(Xte), ref.predict(Xte.astype(np.float64)).argmax(1))


def test_pls_cv_truncation_equals_a_refit_with_fewer_components():
    from scai.training.linear_exit import _pls_factors

    X, y = _spectra(10, 3)
    Y = np.eye(3)[y]
    big = PLSRegression(n_components=8, scale=False).fit(X.astype(np.float64), Y)
    for k in (1, 3, 8):
        P, H, b = _pls_factors(big, k)
        ref = PLSRegression(n_components=k, scale=False).fit(X.astype(np.float64), Y)
        np.testing.assert_allclose(X @ P.T @ H.T + b, ref.predict(X.astype(np.float64)), atol=1e-8)


def test_macs_are_the_hand_counts():
    X, y = _spectra(10, 3, width=100)
    lo = fit_linear_exit(X, y, kind="logistic", cv=3)
    assert lo.macs == 100 * 3
    pls = fit_linear_exit(X, y, kind="pls", cv=3)
    k = pls.n_components
    assert pls.macs == 100 * k + k * 3
    assert pls.to_dict()["macs"] == pls.macs


def test_tiny_data_two_classes_three_spectra():
    X, y = _spectra(3, 2, width=40)
    for kind in ("auto", "logistic", "pls"):
        fit = fit_linear_exit(X, y, kind=kind)
        assert fit.cv_folds == 3  # min(cv=5, smallest class 3)
        assert fit.cv_scores and fit.cv_accuracy is not None
        assert fit.predict(X).shape == (6,)
        if fit.kind == "pls":
            assert 1 <= fit.n_components <= 3  # at most (inner training fold of 4) - 1


def test_a_class_with_one_spectrum_falls_back_to_defaults():
    X, y = _spectra(4, 3, width=40)
    X, y = X[3:], y[3:]  # class 0 keeps 1 spectrum
    fit = fit_linear_exit(X, y)
    assert fit.cv_folds == 0 and fit.cv_scores == {} and fit.kind == FALLBACK_KIND
    assert "no inner CV" in fit.selection
    pls = fit_linear_exit(X, y, kind="pls")
    assert pls.n_components <= len(y) - 1
    assert fit.predict(X).shape == (len(y),)


def test_auto_picks_logistic_when_few_pls_components_cannot_separate_many_classes():
    rng = np.random.default_rng(0)
    C, W = 8, 20
    y = np.repeat(np.arange(C), 8)
    X = (rng.normal(0, 1, (len(y), W)) + 3.0 * np.eye(C, W)[y]).astype(np.float32)
    fit = fit_linear_exit(X, y, max_components=2, cv=4)
    lo = max(v for k, v in fit.cv_scores.items() if k.startswith("logistic"))
    pls = max(v for k, v in fit.cv_scores.items() if k.startswith("pls"))
    assert lo > pls + 0.2
    assert fit.kind == "logistic"


def test_auto_picks_pls_when_per_point_standardisation_blows_up_noise():
    # two strong informative points and 600 near-flat noise points: standardising every point
    # (logistic) lifts the noise to the size of the signal; PLS on the raw scale ignores it.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = rng.normal(0, 1e-3, (40, 602))
    X[:, :2] = rng.normal(0, 0.6, (40, 2)) + np.where(y == 1, 1.0, -1.0)[:, None]
    fit = fit_linear_exit(X.astype(np.float32), y, c_grid=(1e-2, 1.0), cv=5)
    lo = max(v for k, v in fit.cv_scores.items() if k.startswith("logistic"))
    pls = max(v for k, v in fit.cv_scores.items() if k.startswith("pls"))
    assert pls > lo + 0.1
    assert fit.kind == "pls"


def test_auto_tie_goes_to_fewer_macs():
    X, y = _spectra(10, 2, noise=0.02)  # trivially separable: both kinds score 1.0
    fit = fit_linear_exit(X, y, cv=3)
    assert max(fit.cv_scores.values()) == 1.0
    assert fit.kind == "pls" and fit.n_components == 1 and fit.macs < X.shape[1] * 2


def test_bad_input_is_a_scai_error_with_a_clear_message():
    X, y = _spectra(5, 2, width=30)
    Xn = X.copy()
    Xn[2, 7] = np.nan
    with pytest.raises(DataValueError, match=r"NaN/inf.*row 2, column 7"):
        fit_linear_exit(Xn, y)
    with pytest.raises(LabelError, match="at least 2 classes"):
        fit_linear_exit(X, np.zeros(len(y), dtype=np.int64))
    with pytest.raises(LabelError, match=r"class\(es\) \[1\]"):
        fit_linear_exit(X, np.where(y == 1, 2, y))
    with pytest.raises(LabelError, match="one label per spectrum"):
        fit_linear_exit(X, y[:-1])
    with pytest.raises(DataValueError, match="2-D"):
        fit_linear_exit(X[0], y)
    with pytest.raises(ConfigError, match="kind='svm'"):
        fit_linear_exit(X, y, kind="svm")
    with pytest.raises(ConfigError, match="cv=1"):
        fit_linear_exit(X, y, cv=1)


def test_metadata_round_trips_through_json_without_weights():
    X, y = _spectra(8, 3, width=50)
    fit = fit_linear_exit(X, y, cv=3)
    meta = json.loads(json.dumps(fit.to_dict()))
    assert "weight" not in meta and meta["kind"] == fit.kind and meta["macs"] == fit.macs
    bare = LinearExitFit.from_dict(meta)
    assert bare.weight is None and bare.macs == fit.macs and bare.cv_scores == fit.cv_scores
    assert bare.cv_accuracy == fit.cv_accuracy
    with pytest.raises(ModelFileError, match="no weights"):
        bare.logits(X)
    full = LinearExitFit.from_dict(meta, weight=fit.weight, bias=fit.bias, projection=fit.projection, head=fit.head)
    np.testing.assert_array_equal(full.predict(X), fit.predict(X))
    with pytest.raises(ModelFileError, match="weight has shape"):
        LinearExitFit.from_dict(meta, weight=fit.weight[:, :-1], bias=fit.bias)
    with pytest.raises(ModelFileError, match="lacks"):
        LinearExitFit.from_dict({"kind": "pls"})


def test_logistic_in_the_row_space_is_the_full_fit():
    """Fewer spectra than points: the fit on Xs @ V (row-space basis) maps back to the weights a plain
    scikit-learn fit on all W points finds (L2 optimum lies in the row space), and the warm-started C
    path gives each C's cold-fit decisions."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from scai.training.linear_exit import _logistic_fold, _row_space

    X, y = _spectra(8, 3, width=150, noise=0.4)  # n = 24 < W = 150
    fit = fit_linear_exit(X, y, kind="logistic", cv=3)
    c = fit.params["C"]
    scaler = StandardScaler().fit(X)
    ref = LogisticRegression(C=c, max_iter=20000, tol=1e-10).fit(scaler.transform(X), y)
    w_ref = ref.coef_ / scaler.scale_
    b_ref = ref.intercept_ - w_ref @ scaler.mean_
    Xd = X.astype(np.float64)
    ours, theirs = Xd @ fit.weight.T.astype(np.float64) + fit.bias, Xd @ w_ref.T + b_ref
    np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max())
    Xs = scaler.transform(X).astype(np.float64)
    V = _row_space(Xs)  # centred columns: rank n - 1 (a float32 rounding direction may stay)
    assert V is not None and V.shape[0] == 150 and V.shape[1] in (23, 24)
    np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-10)
    np.testing.assert_allclose(Xs @ V @ V.T, Xs, atol=1e-9)  # V spans every training spectrum
    assert _row_space(Xs[:, :20]) is None  # n >= W: nothing to reduce
    tr, te = np.arange(0, 24, 2), np.arange(1, 24, 2)
    grid = (1e-3, 1e-1, 10.0)
    s = StandardScaler().fit(X[tr])
    cold = [int((LogisticRegression(C=g, max_iter=20000, tol=1e-10).fit(s.transform(X[tr]), y[tr])
                 .predict(s.transform(X[te])) == y[te]).sum()) for g in grid]
    assert _logistic_fold(X, y, tr, te, grid, 3) == cold
