"""Conformal prediction sets per exit, through MAPIE's ``SplitConformalClassifier``.

A prediction set at confidence 0.95 holds the true class of at least 95 % of spectra drawn like
the calibration spectra (split-conformal guarantee, marginal over spectra). An empty set means no
class is plausible: the spectrum is unknown. A set of more than one class says the exit cannot
decide, a reason to go deeper or offload.

The quantile logic is MAPIE's (``mapie>=1.0``, the ``conformal`` extra): the model's calibrated
per-exit probabilities go through a pass-through prefit classifier, so MAPIE sees an ordinary
scikit-learn classifier. The conformity score is LAC (``1 - p(true class)``, Sadinle et al.,
2019), the one whose sets may be empty. What is stored (``to_dict``) is MAPIE's quantile per
exit and confidence level, plain JSON, so the edge runtime needs neither MAPIE nor PyTorch: the
set is ``{k : 1 - p_k <= q}``, MAPIE's own LAC rule, which :meth:`ConformalSets.predict_sets`
applies (``tests/inference/test_conformal.py`` checks it against ``predict_set``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError

__all__ = ["CONFIDENCE_LEVELS", "ConformalSets", "GivenProba"]

#: Levels calibrated by default (``predict(..., confidence_level=...)`` picks one).
CONFIDENCE_LEVELS: tuple[float, ...] = (0.9, 0.95)
#: MAPIE's tolerance in the LAC rule ``1 - p - q <= EPSILON``.
_EPSILON = 1e-8


class GivenProba(ClassifierMixin, BaseEstimator):
    """A prefit classifier whose input *is* its probabilities: ``predict_proba(P) = P``.

    It lets MAPIE calibrate probabilities computed elsewhere (an exit of a network).
    """

    def __init__(self, n_classes: int = 2) -> None:
        self.n_classes = n_classes

    def fit(self, X: Any = None, y: Any = None) -> GivenProba:
        self.classes_ = np.arange(int(self.n_classes))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(np.asarray(X), axis=1)]


def _probs(P: Any, name: str = "probs") -> np.ndarray:
    arr = np.asarray(P, dtype=np.float64)
    if arr.ndim != 3:
        raise DataValueError(f"{name} must be (n_exits, n_samples, n_classes); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataValueError(f"{name} holds NaN/inf values")
    return arr


class ConformalSets:
    """Split-conformal prediction sets at every exit (LAC score, MAPIE quantiles).

    Parameters
    ----------
    confidence_levels : iterable of float
        Levels in (0, 1) to calibrate (default 0.9 and 0.95).
    """

    def __init__(self, confidence_levels: Iterable[float] = CONFIDENCE_LEVELS) -> None:
        self.confidence_levels = tuple(float(c) for c in confidence_levels)

    def fit(self, probs: Any, y: Any) -> ConformalSets:
        """Calibrate on held-out per-exit probabilities (n_exits, n, C) and labels 0..C-1.

        With fewer calibration spectra than a level needs (MAPIE requires ``1 / (1 - level)``
        of them), that level's quantile is 1: every class is in the set, which keeps the
        guarantee trivially; ``too_few_`` lists those levels.
        """
        from mapie.classification import SplitConformalClassifier
        from mapie.conformity_scores import LACConformityScore

        P = _probs(probs)
        y = np.asarray(y)
        if y.shape != (P.shape[1],):
            raise DataValueError(f"Mismatch in number of cases. Found probs = {P.shape[1]} and y = {y.size}")
        if not self.confidence_levels or any(not 0.0 < c < 1.0 for c in self.confidence_levels):
            raise ConfigError(f"confidence_levels must be values in (0, 1); got {self.confidence_levels}")
        n, C = P.shape[1], P.shape[2]
        if y.min(initial=0) < 0 or y.max(initial=0) >= C:
            raise DataValueError(f"y must hold class indices 0..{C - 1}")
        levels = np.asarray(self.confidence_levels)
        ok = n >= np.maximum(1.0 / (1.0 - levels), 1.0 / levels)  # MAPIE's own sample-size check
        self.too_few_ = [float(c) for c, k in zip(levels, ok) if not k]
        q = np.ones((P.shape[0], levels.size))
        if ok.any():
            for e in range(P.shape[0]):
                scc = SplitConformalClassifier(
                    estimator=GivenProba(C).fit(), confidence_level=list(levels[ok]),
                    conformity_score="lac", prefit=True,
                )
                scc.conformalize(P[e], y)
                # The quantiles MAPIE's predict_set uses, through the score's public method.
                q[e, ok] = LACConformityScore().get_conformity_score_quantiles(
                    np.asarray(scc.conformity_scores), 1.0 - levels[ok], cv="prefit"
                )
        self.quantiles_ = q
        self.n_calibration_ = int(n)
        self.n_classes_ = int(C)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "quantiles_"):
            raise NotFittedError("This ConformalSets is not fitted yet; call fit(probs, y) first")

    def _level_index(self, confidence_level: float) -> int:
        for i, c in enumerate(self.confidence_levels):
            if abs(c - confidence_level) < 1e-9:
                return i
        raise ConfigError(
            f"confidence_level={confidence_level} was not calibrated; calibrated: {list(self.confidence_levels)}"
        )

    def predict_sets(self, probs: Any, confidence_level: float = 0.95) -> np.ndarray:
        """Bool (n_exits, n, C): class k is in the set of spectrum i at exit e."""
        self._check_fitted()
        P = _probs(probs)
        if P.shape[0] != self.quantiles_.shape[0] or P.shape[2] != self.n_classes_:
            raise DataValueError(
                f"probs have shape {P.shape}; calibrated for {self.quantiles_.shape[0]} exits and {self.n_classes_} classes"
            )
        q = self.quantiles_[:, self._level_index(confidence_level)]
        return (1.0 - P) - q[:, None, None] <= _EPSILON

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "method": "lac",
            "library": "mapie",
            "confidence_levels": list(self.confidence_levels),
            "quantiles": self.quantiles_.tolist(),  # (n_exits, n_levels)
            "n_calibration": self.n_calibration_,
            "n_classes": self.n_classes_,
            "too_few": self.too_few_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalSets:
        try:
            c = cls(confidence_levels=d["confidence_levels"])
            c.quantiles_ = np.asarray(d["quantiles"], dtype=np.float64)
            c.n_calibration_ = int(d["n_calibration"])
            c.n_classes_ = int(d["n_classes"])
            c.too_few_ = [float(v) for v in d.get("too_few", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"stored conformal sets are not valid ({exc})") from None
        if d.get("method", "lac") != "lac":
            raise ModelFileError(f"stored conformal method {d.get('method')!r} is not known; this scai reads 'lac'")
        if c.quantiles_.ndim != 2 or c.quantiles_.shape[1] != len(c.confidence_levels):
            raise ModelFileError(
                f"stored conformal quantiles have shape {c.quantiles_.shape}; expected (n_exits, {len(c.confidence_levels)})"
            )
        return c
