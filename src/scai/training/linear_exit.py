"""Exit 0: a linear chemometric classifier on the preprocessed spectrum (NumPy + scikit-learn).

Every multi-exit model gets, as its first and cheapest exit, a linear classifier fitted on the
spectrum as it leaves the model's preprocessing pipeline (which ends with a global
standardisation). :func:`fit_linear_exit` chooses it by inner cross-validation among

- ``"logistic"``: multinomial logistic regression (L2, lbfgs) on per-point standardised input,
  ``C`` from :data:`LOGISTIC_C_GRID`. The per-point mean and scale (fitted on ``Z``) are folded
  into the final weights, so the exit is one matrix product on ``Z``.
- ``"pls"``: PLS-DA, scikit-learn's ``PLSRegression(scale=False)`` on one-hot targets with the
  argmax as decision; ``n_components`` from 1 to ``min(max_components, n - 1, W)``. It is stored
  both dense and factorised (projection onto the k latent variables, then a k -> C head), which
  costs ``W*k + k*C`` multiply-accumulates instead of ``W*C``.

The result, :class:`LinearExitFit`, is plain linear algebra (``logits = Z @ weight.T + bias``)
so that the torch module and the ONNX graph reproduce the fitted model's decision exactly.
For logistic the logits are its ``decision_function`` (binary: ``[-d/2, +d/2]``, whose softmax
is ``predict_proba``); for PLS-DA they are the predicted one-hot scores, not calibrated.

Inner CV is stratified k-fold with ``n_splits = min(cv, smallest class count)`` (shuffled with
``seed``); accuracy is pooled over the folds (correct predictions / n), so ties are exact.
Ties are broken towards the cheaper/simpler model: fewer PLS components, smaller ``C`` (more
regularised), and between the two kinds the one with fewer MACs. When the smallest class has a
single spectrum no stratified split exists; then no CV is run and the documented defaults
(:data:`FALLBACK_C`, :data:`FALLBACK_COMPONENTS`, :data:`FALLBACK_KIND`) are used, and
``selection`` says so.

The inner CV runs on ``Z`` as given, i.e. after a pipeline fitted on all of ``Z``'s spectra;
its unsupervised statistics (the global mean/scale) are shared by the folds, the labels are not.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from scai.errors import ConfigError, DataValueError, LabelError, ModelFileError

__all__ = [
    "FALLBACK_C",
    "FALLBACK_COMPONENTS",
    "FALLBACK_KIND",
    "LINEAR_EXIT_KINDS",
    "LOGISTIC_C_GRID",
    "PLS_MAX_COMPONENTS",
    "LinearExitFit",
    "fit_linear_exit",
]

LINEAR_EXIT_KINDS = ("auto", "logistic", "pls")
LOGISTIC_C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
PLS_MAX_COMPONENTS = 20
FALLBACK_KIND = "logistic"  # kind="auto" when no inner CV is possible (a class with 1 spectrum)
FALLBACK_C = 1.0  # the paper's logistic anchor
FALLBACK_COMPONENTS = 10  # the paper's PLS-DA anchor (capped at n - 1 and W)
_LOGISTIC_MAX_ITER = 2000
_SCHEMA = 1


@dataclass
class LinearExitFit:
    """A fitted exit 0 as plain linear algebra: ``logits = Z @ weight.T + bias``.

    For ``kind == "pls"`` also ``logits = (Z @ projection.T) @ head.T + bias`` (the factorised
    form whose cost :attr:`macs` counts). ``weight``/``bias``/``projection``/``head`` are None in
    an object rebuilt by :meth:`from_dict` without arrays (metadata only).
    """

    kind: str  # "logistic" or "pls"
    n_features: int  # W
    n_classes: int  # C
    params: dict[str, Any]  # {"C": float} or {"n_components": int}
    cv_scores: dict[str, float]  # "logistic:C=0.1" / "pls:k=3" -> pooled inner-CV accuracy
    cv_folds: int  # inner-CV folds used (0: no CV, defaults)
    selection: str  # how the candidate was chosen, one line
    weight: np.ndarray | None = None  # (C, W) float32
    bias: np.ndarray | None = None  # (C,) float32
    projection: np.ndarray | None = None  # (k, W) float32, PLS only
    head: np.ndarray | None = None  # (C, k) float32, PLS only
    fit_time_s: float = 0.0
    estimator: Any = field(default=None, repr=False, compare=False)  # the fitted sklearn model (not saved)

    @property
    def n_components(self) -> int | None:
        """PLS latent variables k (None for logistic)."""
        return int(self.params["n_components"]) if self.kind == "pls" else None

    @property
    def macs(self) -> int:
        """Multiply-accumulates per spectrum of the matrix products: W*C, or W*k + k*C for PLS."""
        W, C = self.n_features, self.n_classes
        if self.kind == "pls":
            k = int(self.params["n_components"])
            return W * k + k * C
        return W * C

    @property
    def cv_accuracy(self) -> float | None:
        """Inner-CV accuracy of the chosen candidate (None when no CV was run)."""
        return self.cv_scores.get(_key(self.kind, self.params)) if self.cv_scores else None

    def logits(self, Z: Any, *, factorised: bool = False) -> np.ndarray:
        """Exit-0 scores (n, C) in float64 (dense form, or the factorised PLS form)."""
        if self.weight is None or self.bias is None:
            raise ModelFileError("LinearExitFit has no weights (rebuilt from metadata only); pass weight= and bias=")
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_features:
            raise DataValueError(f"Z must have shape (n, {self.n_features}); got {Z.shape}")
        if factorised:
            if self.projection is None or self.head is None:
                raise ConfigError(f"factorised=True needs a PLS exit with projection and head; this is {self.kind!r}")
            return (Z @ self.projection.T.astype(np.float64)) @ self.head.T.astype(np.float64) + self.bias
        return Z @ self.weight.T.astype(np.float64) + self.bias

    def predict(self, Z: Any) -> np.ndarray:
        """Class indices (argmax of :meth:`logits`)."""
        return self.logits(Z).argmax(axis=1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (no weights: those go to model.safetensors)."""
        return {
            "schema": _SCHEMA,
            "kind": self.kind,
            "n_features": int(self.n_features),
            "n_classes": int(self.n_classes),
            "params": dict(self.params),
            "macs": int(self.macs),
            "cv_folds": int(self.cv_folds),
            "cv_accuracy": self.cv_accuracy,
            "cv_scores": {k: float(v) for k, v in self.cv_scores.items()},
            "selection": self.selection,
            "fit_time_s": float(self.fit_time_s),
        }

    @classmethod
    def from_dict(
        cls,
        meta: dict[str, Any],
        *,
        weight: Any = None,
        bias: Any = None,
        projection: Any = None,
        head: Any = None,
    ) -> LinearExitFit:
        """Rebuild from :meth:`to_dict`'s metadata, optionally with the arrays (shapes are checked)."""
        if not isinstance(meta, dict):
            raise ModelFileError(f"linear exit metadata must be a JSON object; got {type(meta).__name__}")
        missing = [k for k in ("kind", "n_features", "n_classes", "params") if k not in meta]
        if missing:
            raise ModelFileError(f"linear exit metadata lacks {', '.join(missing)}")
        kind = meta["kind"]
        if kind not in ("logistic", "pls"):
            raise ModelFileError(f"linear exit metadata: kind={kind!r} is not 'logistic' or 'pls'")
        params = dict(meta["params"])
        if kind == "pls" and not isinstance(params.get("n_components"), int):
            raise ModelFileError(f"linear exit metadata: a pls exit needs an integer params.n_components; got {params}")
        W, C = int(meta["n_features"]), int(meta["n_classes"])
        k = params.get("n_components")
        shapes = {"weight": (C, W), "bias": (C,), "projection": (k, W), "head": (C, k)}
        arrays: dict[str, np.ndarray | None] = {}
        for name, value in (("weight", weight), ("bias", bias), ("projection", projection), ("head", head)):
            if value is None:
                arrays[name] = None
                continue
            if kind == "logistic" and name in ("projection", "head"):
                raise ModelFileError(f"linear exit: a logistic exit has no {name}")
            a = np.asarray(value, dtype=np.float32)
            if a.shape != shapes[name]:
                raise ModelFileError(f"linear exit: {name} has shape {a.shape}, the metadata says {shapes[name]}")
            arrays[name] = a
        return cls(
            kind=kind,
            n_features=W,
            n_classes=C,
            params=params,
            cv_scores={str(a): float(b) for a, b in dict(meta.get("cv_scores", {})).items()},
            cv_folds=int(meta.get("cv_folds", 0)),
            selection=str(meta.get("selection", "")),
            fit_time_s=float(meta.get("fit_time_s", 0.0)),
            **arrays,
        )


# ----------------------------------------------------------------------------- fitting


def _key(kind: str, params: dict[str, Any]) -> str:
    return f"logistic:C={params['C']:g}" if kind == "logistic" else f"pls:k={int(params['n_components'])}"


def _check_inputs(Z: Any, y: Any, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    Z = np.asarray(Z)
    if Z.ndim != 2:
        raise DataValueError(f"fit_linear_exit: Z must be 2-D (n spectra, W points); got shape {Z.shape}")
    if not np.issubdtype(Z.dtype, np.number) or np.issubdtype(Z.dtype, np.complexfloating):
        raise DataValueError(f"fit_linear_exit: Z must be real numbers; got dtype {Z.dtype}")
    Z = Z.astype(np.float64)
    n, W = Z.shape
    if n < 2 or W < 1:
        raise DataValueError(f"fit_linear_exit: Z needs at least 2 spectra and 1 point; got shape {Z.shape}")
    bad = ~np.isfinite(Z)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataValueError(
            f"fit_linear_exit: Z holds {int(bad.sum())} NaN/inf value(s), the first at row {r}, column {c} "
            f"({Z[r, c]}); preprocessed spectra must be finite"
        )
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise LabelError(f"fit_linear_exit: y must be 1-D with one label per spectrum ({n}); got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise LabelError(f"fit_linear_exit: y must hold integer class indices 0..C-1; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise LabelError(f"fit_linear_exit: y must hold class indices 0..C-1; got {int(y.min())}")
    C = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if y.max() >= C:
        raise LabelError(f"fit_linear_exit: label {int(y.max())} is out of range for n_classes={C}")
    counts = np.bincount(y, minlength=C)
    present = int((counts > 0).sum())
    if present < 2:
        raise LabelError(
            f"fit_linear_exit: a classifier needs at least 2 classes; y holds 1 class ({int(y[0])}) in {n} spectra"
        )
    if counts.min() == 0:
        empty = [int(c) for c in np.flatnonzero(counts == 0)]
        raise LabelError(f"fit_linear_exit: class(es) {empty} of 0..{C - 1} have no training spectra")
    return Z, y, C


def _logistic(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(c), solver="lbfgs", max_iter=_LOGISTIC_MAX_ITER)


def _scores_all_classes(model: Any, X: np.ndarray, C: int) -> np.ndarray:
    """decision_function of a fitted LogisticRegression as (n, C); absent classes get -inf."""
    d = np.asarray(model.decision_function(X), dtype=np.float64)
    if d.ndim == 1:
        d = np.stack([-0.5 * d, 0.5 * d], axis=1)
    out = np.full((X.shape[0], C), -np.inf)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = d
    return out


def _row_space(Xs: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis V (W, r) of the row space of standardised training spectra ``Xs`` (n, W),
    or None when n >= W (no reduction).

    L2-regularised logistic regression with an unpenalised intercept has its weights in that row
    space (at the optimum w = C * Xs' r for the residuals r), so fitting it on ``Xs @ V`` (n, r)
    and mapping back with ``w = beta @ V'`` is the same optimum at r / W of the cost per solver
    iteration; on 360 spectra x 1738 points that is about 5x faster.
    """
    n, W = Xs.shape
    if n >= W:
        return None
    _, s, vt = np.linalg.svd(Xs, full_matrices=False)
    keep = s > s[0] * max(n, W) * np.finfo(np.float64).eps if s.size and s[0] > 0 else np.zeros(s.size, bool)
    return np.ascontiguousarray(vt[keep].T) if keep.any() else None


def _logistic_path(Xtr: np.ndarray, ytr: np.ndarray, grid: tuple[float, ...]) -> Any:
    """Fitted logistic regressions for each C of the ascending ``grid`` (one model object refitted
    with warm starts: each C starts from the previous optimum); yields (c, model) in order."""
    from sklearn.exceptions import ConvergenceWarning

    model = _logistic(grid[0])
    model.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in grid:
            yield c, model.set_params(C=float(c)).fit(Xtr, ytr)


def _logistic_fold(
    Z: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, grid: tuple[float, ...], C: int
) -> list[int]:
    """Correct test predictions of the fold for every C of the grid (row-space reduced, warm-started)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Z[tr])
    Xtr, Xte = scaler.transform(Z[tr]).astype(np.float64), scaler.transform(Z[te]).astype(np.float64)
    V = _row_space(Xtr)
    if V is not None:
        Xtr, Xte = Xtr @ V, Xte @ V
    return [int((_scores_all_classes(m, Xte, C).argmax(1) == y[te]).sum()) for _, m in _logistic_path(Xtr, y[tr], grid)]


def _pls_factors(pls: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projection (k, W), head (C, k), bias (C,)) of the first k components of a fitted PLSRegression.

    NIPALS extracts components one after another, so the first k weights and loadings of a fit
    with more components are those of a k-component fit; the rotations are recomputed from them
    exactly as scikit-learn does (``W_k pinv(P_k' W_k)``).
    """
    from scipy.linalg import pinv

    Wk, Pk, Qk = pls.x_weights_[:, :k], pls.x_loadings_[:, :k], pls.y_loadings_[:, :k]
    R = Wk @ pinv(Pk.T @ Wk, check_finite=False)  # (W, k)
    projection = (R / pls._x_std[:, None]).T  # (k, W)
    head = Qk * pls._y_std[:, None]  # (C, k)
    bias = pls._y_mean - (pls._x_mean @ projection.T) @ head.T
    return projection, head, bias


def _pls(k: int) -> Any:
    from sklearn.cross_decomposition import PLSRegression

    return PLSRegression(n_components=int(k), scale=False)


def _pls_fold(Z: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, k_max: int, C: int) -> list[int]:
    """Correct test predictions of the fold for k = 1..k_max (one fit, truncated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y residual is constant": later components are 0
        pls = _pls(k_max).fit(Z[tr], np.eye(C)[y[tr]])
    correct = []
    for k in range(1, k_max + 1):
        P, H, b = _pls_factors(pls, k)
        pred = ((Z[te] @ P.T) @ H.T + b).argmax(1)
        correct.append(int((pred == y[te]).sum()))
    return correct


def _run_folds(fn: Any, folds: list[tuple[np.ndarray, np.ndarray]], n_jobs: int) -> np.ndarray:
    """Sum over the folds of ``fn(train_idx, test_idx)`` (a list of correct counts per candidate)."""
    if n_jobs == 1 or len(folds) == 1:
        rows = [fn(tr, te) for tr, te in folds]
    else:
        from joblib import Parallel, delayed

        rows = Parallel(n_jobs=n_jobs)(delayed(fn)(tr, te) for tr, te in folds)
    return np.asarray(rows, dtype=np.int64).sum(axis=0)


def _fit_logistic(Z: np.ndarray, y: np.ndarray, C: int, c: float) -> tuple[np.ndarray, np.ndarray, Any]:
    """Logistic regression at ``c`` on per-point standardised ``Z`` (fitted in the row space, see
    :func:`_row_space`); (weight (C, W), bias (C,), the sklearn pipeline that predicts the same)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    scaler = StandardScaler().fit(Z)
    Xs = scaler.transform(Z).astype(np.float64)
    V = _row_space(Xs)
    lr = _logistic(c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(Xs if V is None else Xs @ V, y)
    coef = np.asarray(lr.coef_, dtype=np.float64)
    icpt = np.asarray(lr.intercept_, dtype=np.float64)
    project = FunctionTransformer(None if V is None else (lambda X, V=V: np.asarray(X, np.float64) @ V))
    est = make_pipeline(scaler, project, lr)
    if V is not None:
        coef = coef @ V.T  # back to the W points
    if coef.shape[0] == 1:  # binary: decision d -> logits [-d/2, d/2], softmax = predict_proba
        coef, icpt = np.vstack([-0.5 * coef, 0.5 * coef]), np.array([-0.5 * icpt[0], 0.5 * icpt[0]])
    if coef.shape[0] != C or not np.array_equal(lr.classes_, np.arange(C)):
        raise LabelError(
            f"fit_linear_exit: logistic regression saw classes {lr.classes_.tolist()}, expected 0..{C - 1}"
        )
    weight = coef / scaler.scale_  # fold z = (x - mean) / scale into the weights
    bias = icpt - weight @ scaler.mean_
    return weight, bias, est


def _fit_pls(Z: np.ndarray, y: np.ndarray, C: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est = _pls(k).fit(Z, np.eye(C)[y])
    P, H, b = _pls_factors(est, k)
    keep = np.flatnonzero(np.abs(P).max(axis=1) > 0)  # components NIPALS stopped before (y residual 0)
    return P[keep], H[:, keep], b, int(keep.size), est


def _one_blas_thread(fn: Any) -> Any:
    """Run ``fn`` with BLAS limited to one thread: these are small problems (hundreds of spectra),
    where OpenBLAS threads beside torch's OpenMP pool cost more than they give (5 logistic C x 5
    folds on 400 x 1738 spectra: 39 s with 2 threads, 7 s with one, on 2 cores)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@_one_blas_thread
def fit_linear_exit(
    Z: Any,
    y: Any,
    *,
    kind: str = "auto",
    cv: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
    n_classes: int | None = None,
    c_grid: tuple[float, ...] | None = None,
    max_components: int = PLS_MAX_COMPONENTS,
) -> LinearExitFit:
    """Fit exit 0 on preprocessed spectra ``Z`` (n, W) with class indices ``y`` (0..C-1).

    ``kind``: ``"auto"`` (the candidate with the best inner-CV accuracy; ties to fewer MACs),
    ``"logistic"`` or ``"pls"``. ``cv``: inner folds (capped at the smallest class count).
    ``n_classes``: C when it is more than ``y.max() + 1`` (every class must have a spectrum).
    ``c_grid`` / ``max_components``: the logistic C grid and the largest PLS k tried.

    Raises
    ------
    DataValueError
        Z not 2-D, not finite, or fewer than 2 spectra.
    LabelError
        y of the wrong shape/type, fewer than 2 classes, or a class without spectra.
    ConfigError
        An unknown ``kind`` or a bad ``cv``/``c_grid``/``max_components``/``n_jobs``.
    """
    t0 = time.perf_counter()
    if kind not in LINEAR_EXIT_KINDS:
        raise ConfigError(f"fit_linear_exit: kind={kind!r} is not one of {', '.join(map(repr, LINEAR_EXIT_KINDS))}")
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ConfigError(f"fit_linear_exit: cv={cv!r} must be an integer >= 2")
    if isinstance(max_components, bool) or not isinstance(max_components, (int, np.integer)) or max_components < 1:
        raise ConfigError(f"fit_linear_exit: max_components={max_components!r} must be an integer >= 1")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ConfigError(f"fit_linear_exit: n_jobs={n_jobs!r} must be a non-zero integer (-1: all cores)")
    grid = tuple(sorted(float(c) for c in (LOGISTIC_C_GRID if c_grid is None else c_grid)))
    if not grid or not all(math.isfinite(c) and c > 0 for c in grid):
        raise ConfigError(f"fit_linear_exit: c_grid={c_grid!r} must be a non-empty list of positive numbers")
    Z, y, C = _check_inputs(Z, y, n_classes)
    n, W = Z.shape
    counts = np.bincount(y, minlength=C)
    n_splits = int(min(cv, counts.min()))
    kinds = ("logistic", "pls") if kind == "auto" else (kind,)

    cv_scores: dict[str, float] = {}
    chosen: dict[str, dict[str, Any]] = {}
    if n_splits >= 2:
        from sklearn.model_selection import StratifiedKFold

        folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(Z, y))
        if "logistic" in kinds:
            correct = _run_folds(partial(_logistic_fold, Z, y, grid=grid, C=C), folds, n_jobs)
            for c, k in zip(grid, correct):
                cv_scores[_key("logistic", {"C": c})] = float(k / n)
            best = int(np.argmax(correct))  # first maximum: the smallest C among ties
            chosen["logistic"] = {"C": grid[best]}
        if "pls" in kinds:
            k_max = int(min(max_components, min(len(tr) for tr, _ in folds) - 1, W))
            correct = _run_folds(partial(_pls_fold, Z, y, k_max=max(k_max, 1), C=C), folds, n_jobs)
            for k, hits in enumerate(correct, start=1):
                cv_scores[_key("pls", {"n_components": k})] = float(hits / n)
            chosen["pls"] = {"n_components": int(np.argmax(correct)) + 1}  # fewest components among ties
        selection = f"inner stratified {n_splits}-fold CV (seed {seed}), pooled accuracy"
    else:
        chosen = {"logistic": {"C": FALLBACK_C}, "pls": {"n_components": int(min(FALLBACK_COMPONENTS, n - 1, W))}}
        selection = (
            f"no inner CV (class {int(np.argmin(counts))} has 1 spectrum): defaults "
            f"logistic C={FALLBACK_C:g}, PLS k<={FALLBACK_COMPONENTS}"
            + (f", kind {FALLBACK_KIND}" if kind == "auto" else "")
        )

    def macs_of(kd: str) -> int:
        return W * int(chosen[kd]["n_components"]) + int(chosen[kd]["n_components"]) * C if kd == "pls" else W * C

    if kind != "auto":
        final = kind
    elif cv_scores:
        final = max(kinds, key=lambda kd: (cv_scores[_key(kd, chosen[kd])], -macs_of(kd)))
    else:
        final = FALLBACK_KIND
    if kind == "auto" and cv_scores:
        other = next(kd for kd in kinds if kd != final)
        selection += (
            f"; chose {final} ({_key(final, chosen[final])}: {cv_scores[_key(final, chosen[final])]:.3f}) "
            f"over {other} ({_key(other, chosen[other])}: {cv_scores[_key(other, chosen[other])]:.3f})"
        )

    params = dict(chosen[final])
    projection = head = None
    if final == "logistic":
        weight, bias, est = _fit_logistic(Z, y, C, params["C"])
    else:
        projection, head, bias, k_eff, est = _fit_pls(Z, y, C, params["n_components"])
        if k_eff != params["n_components"]:
            selection += f"; NIPALS stopped at {k_eff} of {params['n_components']} components (y residual constant)"
            params = {"n_components": k_eff}
        weight = head @ projection
        projection, head = projection.astype(np.float32), head.astype(np.float32)
    return LinearExitFit(
        kind=final,
        n_features=W,
        n_classes=C,
        params=params,
        cv_scores=cv_scores,
        cv_folds=n_splits if n_splits >= 2 else 0,
        selection=selection,
        weight=np.ascontiguousarray(weight, dtype=np.float32),
        bias=np.ascontiguousarray(bias, dtype=np.float32),
        projection=projection,
        head=head,
        fit_time_s=time.perf_counter() - t0,
        estimator=est,
    )

