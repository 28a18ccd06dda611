"""Input-domain check before the network: Hotelling T² and Q residuals of a PCA on training spectra.

QA labs judge whether a spectrum belongs to a calibration model's domain with a principal
component model of the (preprocessed) training spectra: Hotelling's T² measures how far a
spectrum lies *within* the model plane, beyond the spread of the training scores; Q (the squared
prediction error, SPE) how far it lies *off* the plane, i.e. what the components cannot explain.
A spectrum of another kind on the same axis (another instrument, another sample type, noise, a
saturated detector) has a large Q even when its scores look ordinary.

Limits at a chosen confidence (default 0.99):

* T²: ``A (n - 1) (n + 1) / (n (n - A)) * F(confidence; A, n - A)`` for a new observation
  (Tracy, Young & Mason, 1992), with A components fitted on n spectra;
* Q: Jackson & Mudholkar (1979) from the residual eigenvalues ``theta_i = sum_{j > A} lambda_j^i``,
  or Box's (1954) ``g * chi2(confidence; h)`` with ``g = theta_2 / theta_1``,
  ``h = theta_1^2 / theta_2``.

Training spectra fit the plane better than new ones (with more points per spectrum than
spectra, much better), so limits from the training eigenvalues alone are too tight for new
in-domain spectra. :meth:`DomainCheck.calibrate` therefore raises each limit, if needed, to the
chosen quantile of held-out in-domain spectra (the validation split); ``benchmarks/ood.py``
measures both.

A few raw-spectrum checks that need no model run first (:func:`raw_reasons`): non-finite values,
a constant spectrum, a flat top at the maximum (saturation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError

__all__ = [
    "Q_METHODS",
    "DomainCheck",
    "hotelling_t2_limit",
    "q_limit",
    "raw_reasons",
]

Q_METHODS: tuple[str, ...] = ("jackson_mudholkar", "box")
#: A raw spectrum whose largest value repeats at this share of its points or more is saturated.
SATURATION_SHARE = 0.02


def hotelling_t2_limit(n_components: int, n_samples: int, confidence: float) -> float:
    """T² limit of a new observation for a PCA of ``n_components`` fitted on ``n_samples``."""
    a, n = int(n_components), int(n_samples)
    if not 1 <= a < n:
        raise ConfigError(f"n_components must be in [1, n_samples - 1] = [1, {n - 1}]; got {a}")
    _check_confidence(confidence)
    return float(a * (n - 1) * (n + 1) / (n * (n - a)) * stats.f.ppf(confidence, a, n - a))


def q_limit(residual_eigenvalues: Any, confidence: float, method: str = "jackson_mudholkar") -> float:
    """Q (SPE) limit from the eigenvalues of the components left out of the model."""
    _check_confidence(confidence)
    if method not in Q_METHODS:
        raise ConfigError(f"method={method!r} is not allowed; use one of {Q_METHODS}")
    lam = np.asarray(residual_eigenvalues, dtype=np.float64)
    lam = lam[lam > 0]
    if lam.size == 0:
        return 0.0
    t1, t2, t3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    if method == "box":
        g, h = t2 / t1, t1**2 / t2
        return float(g * stats.chi2.ppf(confidence, h))
    h0 = 1.0 - 2.0 * t1 * t3 / (3.0 * t2**2)
    z = stats.norm.ppf(confidence)
    inner = z * np.sqrt(2.0 * t2 * h0**2) / t1 + 1.0 + t2 * h0 * (h0 - 1.0) / t1**2
    return float(t1 * inner ** (1.0 / h0))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence}")


def raw_reasons(X: Any) -> list[list[str]]:
    """Reasons, per raw spectrum, that it cannot be a measurement: non-finite, constant, saturated."""
    X = np.asarray(X)
    # float32 spectra are checked as they are: no float64 copy, and "within 1e-9 of the maximum" is
    # equality there (neighbouring float32 values differ by more than 5e-8 relative).
    exact32 = X.dtype == np.float32
    if not exact32:
        X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataValueError(f"X must be 2-D (n_samples, n_points); got shape {X.shape}")
    out: list[list[str]] = [[] for _ in range(X.shape[0])]
    finite = np.isfinite(X).all(axis=1) if X.shape[1] else np.zeros(X.shape[0], dtype=bool)
    # The finite rows at once (the same arithmetic as the per-row rule below, row by row).
    F = X[finite] if not finite.all() else X
    if F.shape[0]:
        hi, lo = F.max(axis=1), F.min(axis=1)
        if exact32:
            top = (F == hi[:, None]).mean(axis=1)
            hi, lo = hi.astype(np.float64), lo.astype(np.float64)
        else:
            top = np.isclose(F, hi[:, None], rtol=1e-9, atol=0.0).mean(axis=1)
        scale = np.maximum(1.0, np.maximum(np.abs(hi), np.abs(lo)))
        constant = (hi - lo) <= 1e-12 * scale
        for i, c, t in zip(np.flatnonzero(finite), constant, top):
            if c:
                out[i].append("constant spectrum")
            elif t >= SATURATION_SHARE:
                out[i].append(f"saturated: {t:.0%} of points at the maximum")
    for i in np.flatnonzero(~finite):
        out[i] = _raw_row_reasons(X[i].astype(np.float64))
    return out


def _raw_row_reasons(row: np.ndarray) -> list[str]:
    """:func:`raw_reasons` of one spectrum (the rule, as written for a row with non-finite values)."""
    reasons: list[str] = []
    finite = np.isfinite(row)
    if not finite.all():
        reasons.append(f"non-finite values at {int((~finite).sum())} point(s)")
        row = row[finite]
    if row.size == 0 or np.ptp(row) <= 1e-12 * max(1.0, float(np.abs(row).max(initial=0.0))):
        reasons.append("constant spectrum")
    else:
        top = np.isclose(row, row.max(), rtol=1e-9, atol=0.0).mean()
        if top >= SATURATION_SHARE:
            reasons.append(f"saturated: {top:.0%} of points at the maximum")
    return reasons


class DomainCheck:
    """PCA model of the training spectra with Hotelling T² and Q limits.

    Parameters
    ----------
    n_components : int or float
        Principal components kept: an int, or the share of variance they must explain
        (default 0.99), capped by ``max_components``.
    max_components : int
        Upper bound on the components (keeps T² from chasing noise in small data sets).
    confidence : float
        Confidence of both limits, in (0, 1).
    q_method : {"jackson_mudholkar", "box"}
        Approximation of the Q limit.
    """

    def __init__(
        self,
        *,
        n_components: int | float = 0.99,  # noqa: PYI041 -- an int is a count, a float a share
        max_components: int = 20,
        confidence: float = 0.99,
        q_method: str = "jackson_mudholkar",
    ) -> None:
        self.n_components = n_components
        self.max_components = max_components
        self.confidence = confidence
        self.q_method = q_method

    def fit(self, Z: Any) -> DomainCheck:
        """Fit the PCA and both limits on preprocessed training spectra ``Z`` (n, W)."""
        from sklearn.decomposition import PCA

        _check_confidence(self.confidence)
        if self.q_method not in Q_METHODS:
            raise ConfigError(f"q_method={self.q_method!r} is not allowed; use one of {Q_METHODS}")
        X = _spectra(Z)
        n = len(X)
        if n < 3:
            raise DataValueError(f"DomainCheck needs at least 3 training spectra; got {n}")
        full = PCA(svd_solver="full").fit(X)  # every eigenvalue: the Q limit needs the residual ones
        lam = np.asarray(full.explained_variance_, dtype=np.float64)
        cap = max(1, min(int(self.max_components), n - 2, lam.size))
        if isinstance(self.n_components, float) and not isinstance(self.n_components, bool):
            if not 0.0 < self.n_components <= 1.0:
                raise ConfigError(f"n_components as a share of variance must be in (0, 1]; got {self.n_components}")
            share = np.cumsum(lam) / lam.sum()
            a = int(np.searchsorted(share, self.n_components) + 1)
        else:
            a = int(self.n_components)
            if a < 1:
                raise ConfigError(f"n_components must be >= 1; got {a}")
        self.n_components_ = min(a, cap)
        self.n_samples_ = n
        self.mean_ = full.mean_.astype(np.float64)
        self.components_ = full.components_[: self.n_components_].astype(np.float64)
        self.eigenvalues_ = lam[: self.n_components_]
        self.t2_limit_ = hotelling_t2_limit(self.n_components_, n, self.confidence)
        self.q_limit_ = q_limit(lam[self.n_components_ :], self.confidence, self.q_method)
        self.limits_source_ = "theory"
        return self

    def calibrate(self, Z_heldout: Any) -> DomainCheck:
        """Raise each limit to the ``confidence`` quantile of held-out in-domain spectra if that
        is higher (training spectra sit closer to their own PCA than new ones do)."""
        t2, q = self.statistics(Z_heldout)
        self.t2_limit_ = max(self.t2_limit_, float(np.quantile(t2, self.confidence, method="higher")))
        self.q_limit_ = max(self.q_limit_, float(np.quantile(q, self.confidence, method="higher")))
        self.limits_source_ = f"theory, raised to held-out quantiles ({len(t2)} spectra)"
        return self

    def raise_limits(self, t2: Any, q: Any, source: str) -> DomainCheck:
        """Raise each limit, if needed, to the ``confidence`` quantile of held-out statistics
        computed elsewhere (out-of-fold: each fold's T² and Q under a check fitted without it)."""
        self._check_fitted()
        t2, q = np.asarray(t2, dtype=np.float64).ravel(), np.asarray(q, dtype=np.float64).ravel()
        if t2.size == 0 or t2.shape != q.shape or not (np.all(np.isfinite(t2)) and np.all(np.isfinite(q))):
            raise DataValueError(f"held-out T2 and Q must be finite and of one length; got {t2.shape} and {q.shape}")
        self.t2_limit_ = max(self.t2_limit_, float(np.quantile(t2, self.confidence, method="higher")))
        self.q_limit_ = max(self.q_limit_, float(np.quantile(q, self.confidence, method="higher")))
        self.limits_source_ = source
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError("This DomainCheck is not fitted yet; call fit(Z_train) first")

    def statistics(self, Z: Any) -> tuple[np.ndarray, np.ndarray]:
        """(T², Q) per spectrum.

        One float64 working copy of the spectra is centred, then overwritten by the residual and
        its square in place (the values of ``X - mean``, ``centred - scores @ components``,
        ``resid**2``, without three more full-size temporaries). The matrix products run on all
        rows at once: BLAS may round a product differently when it is split into blocks.
        """
        self._check_fitted()
        X = _spectra(Z, convert=False)
        if X.shape[1] != self.mean_.size:
            raise DataValueError(f"spectra have {X.shape[1]} points but the domain model has {self.mean_.size}")
        work = np.subtract(X, self.mean_, dtype=np.float64)  # the centred spectra, a new array
        scores = work @ self.components_.T
        t2 = np.sum(scores**2 / self.eigenvalues_, axis=1)
        resid = np.subtract(work, scores @ self.components_, out=work)
        return t2, np.sum(np.square(resid, out=resid), axis=1)

    def out_of_domain(self, Z: Any) -> np.ndarray:
        """Bool (n,): T² or Q above its limit."""
        t2, q = self.statistics(Z)
        return (t2 > self.t2_limit_) | (q > self.q_limit_)

    def flag(self, Z: Any, raw: Any = None) -> list[list[str]]:
        """Reasons per spectrum it is out of domain (an empty list: in domain).

        ``Z`` is the preprocessed spectra; ``raw`` (optional) the raw ones, for
        :func:`raw_reasons`.
        """
        t2, q = self.statistics(Z)
        out = raw_reasons(raw) if raw is not None else [[] for _ in range(len(t2))]
        if len(out) != len(t2):
            raise DataValueError(f"Mismatch in number of cases. Found Z = {len(t2)} and raw = {len(out)}")
        for reasons, a, b in zip(out, t2, q):
            if a > self.t2_limit_:
                reasons.append(f"Hotelling T2 {a:.3g} > limit {self.t2_limit_:.3g} at {self.confidence:g}")
            if b > self.q_limit_:
                reasons.append(f"Q residual {b:.3g} > limit {self.q_limit_:.3g} at {self.confidence:g}")
        return out

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "n_components": self.n_components_,
            "n_samples": self.n_samples_,
            "confidence": self.confidence,
            "q_method": self.q_method,
            "t2_limit": self.t2_limit_,
            "q_limit": self.q_limit_,
            "limits_source": self.limits_source_,
            "mean": self.mean_.tolist(),
            "components": self.components_.tolist(),
            "eigenvalues": self.eigenvalues_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DomainCheck:
        try:
            c = cls(n_components=int(d["n_components"]), confidence=float(d["confidence"]),
                    q_method=str(d["q_method"]))
            c.n_components_ = int(d["n_components"])
            c.n_samples_ = int(d["n_samples"])
            c.t2_limit_, c.q_limit_ = float(d["t2_limit"]), float(d["q_limit"])
            c.limits_source_ = str(d.get("limits_source", "theory"))
            c.mean_ = np.asarray(d["mean"], dtype=np.float64)
            c.components_ = np.asarray(d["components"], dtype=np.float64)
            c.eigenvalues_ = np.asarray(d["eigenvalues"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"stored domain check is not valid ({exc})") from None
        if c.components_.shape != (c.n_components_, c.mean_.size) or c.eigenvalues_.shape != (c.n_components_,):
            raise ModelFileError(
                f"stored domain check has components {c.components_.shape} and eigenvalues {c.eigenvalues_.shape} "
                f"for {c.n_components_} components of {c.mean_.size} points"
            )
        return c


def float_spectra(Z: Any) -> np.ndarray:
    """``Z`` as float32 or float64, kept as it is when it is either (no copy); other dtypes become
    float64. For a caller that converts as it computes (float32 -> float64 is exact)."""
    X = np.asarray(Z)
    return X if X.dtype in (np.float32, np.float64) else np.asarray(X, dtype=np.float64)


def _spectra(Z: Any, convert: bool = True) -> np.ndarray:
    """``Z`` as a 2-D array of finite values: float64, or (``convert=False``) :func:`float_spectra`."""
    X = np.asarray(Z, dtype=np.float64) if convert else float_spectra(Z)
    if X.ndim != 2:
        raise DataValueError(f"spectra must be 2-D (n_samples, n_points); got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise DataValueError("spectra hold NaN/inf values; raw_reasons() names them before preprocessing")
    return X
