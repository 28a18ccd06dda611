"""Unknown-class scores at every exit, and their calibration to a false-reject rate.

A classifier trained on K classes answers one of them for any input. These scores say how far a
spectrum is from what an exit saw in training, so that a counterfeit of a kind nobody trained on
can be flagged ``unknown`` instead of being forced into a known class. Higher always means
"more unknown".

Four scores, per exit:

* ``"msp"`` -- minus the largest (temperature-scaled) softmax probability; the baseline of
  Hendrycks & Gimpel (2017).
* ``"energy"`` -- minus ``T * logsumexp(logits / T)`` (Liu et al., 2020): it keeps the logits'
  magnitude, which the softmax throws away.
* ``"mahalanobis"`` -- the smallest squared Mahalanobis distance of the exit's pooled features to
  a class mean, with one covariance shared by the classes (Lee et al., 2018) estimated with
  OAS (or Ledoit-Wolf) shrinkage, because an exit's features have about as many dimensions as a
  spectral data set has spectra. Optionally on the first ``n_components`` principal components
  of the features (which keeps the stored state small).
* ``"relative_mahalanobis"`` -- the same distance minus the squared Mahalanobis distance to one
  Gaussian fitted to all training features (Ren et al., 2021, "A simple fix to Mahalanobis
  distance for improving near-OOD detection"). Directions in which the whole training set varies
  count less, directions that only the classes' spread explains count more: a new variety of a
  known product (a near unknown) stands out, where the plain distance sees mostly how far a
  spectrum lies from the training set as a whole. The default (``benchmarks/ood_exit0.py``:
  leave-one-class-out AUROC 0.910 against 0.856 for the plain distance of earlier releases, on
  seven dev sets x three seeds).

**Anchored scores** (``anchored=True``, what ``SCAIClassifier`` fits for the feature scores):
every spectrum passes exit 0 first, and exit 0 sees the spectrum itself, so exit ``k``'s score is
its own raw score plus ``anchor_weight`` (default 4) times exit 0's, each standardised by its mean
and spread on held-out in-distribution spectra. A network exit's features are fitted to separate
the *known* classes; adding what exit 0 measured on the spectrum keeps the evidence an unseen
class leaves there (``benchmarks/ood.py``: last-exit AUROC 0.97 vs 0.88 on milk_adulteration,
0.898 vs 0.845 on the mean of seven dev sets; see docs/ood.md).

A threshold per exit is set on held-out in-distribution spectra (the validation split, or
out-of-fold predictions) so that a chosen share of them is flagged: the *false-reject rate*
(default 5 %). Everything stores as plain JSON (``to_dict`` / ``from_dict``), never pickle.

The scorers and the detector are NumPy + scikit-learn; :func:`exit_batch` (which runs a fitted
:class:`scai.SCAIClassifier` and collects each exit's pooled features) imports torch when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError

__all__ = [
    "DEFAULT_ANCHOR_WEIGHT",
    "DEFAULT_REJECT_RATE",
    "OOD_SCORES",
    "ExitBatch",
    "FEATURE_SCORES",
    "MahalanobisScorer",
    "UnknownDetector",
    "calibrate_threshold",
    "energy_score",
    "exit_batch",
    "msp_score",
]

#: The unknown-class scores :class:`UnknownDetector` knows.
OOD_SCORES: tuple[str, ...] = ("msp", "energy", "mahalanobis", "relative_mahalanobis")
#: The scores computed on an exit's features (the others need only its logits).
FEATURE_SCORES: tuple[str, ...] = ("mahalanobis", "relative_mahalanobis")
#: Share of in-distribution spectra flagged unknown, unless the user sets another.
DEFAULT_REJECT_RATE = 0.05
#: Weight of exit 0's standardised score in an anchored exit's score. By measurement
#: (``benchmarks/ood_anchor_weights.py`` on the scores of ``benchmarks/ood.py``, 7 dev sets x 3
#: seeds, 102 leave-one-class-out runs): first network exit AUROC 0.859 / 0.901 / 0.905 / 0.906 /
#: **0.906** / 0.906 / 0.905 for weights 0 / 1 / 2 / 3 / 4 / 6 / exit 0's score alone, last exit
#: 0.845 / 0.892 / 0.898 / 0.900 / **0.901** / 0.902 / 0.905. 4 is where the first network exit
#: (where most early exits are taken) peaks; larger weights leave a deeper exit ever less say of
#: its own (exit 0's score alone would make every exit's flag the same).
DEFAULT_ANCHOR_WEIGHT = 4.0
_SHRINKAGE = ("ledoit_wolf", "oas")


@dataclass
class ExitBatch:
    """What every exit said about a batch of spectra: the inputs of the unknown-class scores.

    Attributes
    ----------
    logits : ndarray (n_exits, n, n_classes)
        Raw (not temperature-scaled) logits.
    probs : ndarray (n_exits, n, n_classes)
        Temperature-scaled probabilities.
    features : list of ndarray
        One (n, D_i) array per exit: what the exit's classifier sees (the pooled block output;
        for a cascade's linear exit 0, the preprocessed spectrum).
    """

    logits: np.ndarray
    probs: np.ndarray
    features: list[np.ndarray] = field(default_factory=list)

    @property
    def n_exits(self) -> int:
        return int(self.logits.shape[0])


def msp_score(probs: np.ndarray) -> np.ndarray:
    """Minus the largest softmax probability over the last axis (higher = more unknown)."""
    return -np.asarray(probs, dtype=np.float64).max(axis=-1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Energy ``-T * logsumexp(logits / T)`` over the last axis (higher = more unknown)."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0; got {temperature}")
    z = np.asarray(logits, dtype=np.float64)
    return -temperature * logsumexp(z / temperature, axis=-1)


def _as_features(features: Any, name: str = "features") -> np.ndarray:
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise DataValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataValueError(f"{name} holds NaN/inf values")
    return arr


class MahalanobisScorer:
    """Smallest squared Mahalanobis distance to a class mean, with a shrunk shared covariance.

    Parameters
    ----------
    shrinkage : {"oas", "ledoit_wolf"}
        Covariance estimator (:class:`sklearn.covariance.OAS` or ``LedoitWolf``) fitted on the
        class-centred features (and, when ``relative``, on the features around their mean).
    n_components : int or None
        Score on the first ``n_components`` principal components of the features
        (:class:`sklearn.decomposition.PCA`, capped by the data); None uses every feature.
    relative : bool
        Subtract the squared distance to one Gaussian of all training features (the relative
        Mahalanobis distance of Ren et al., 2021; see the module docstring).
    """

    def __init__(self, *, shrinkage: str = "oas", n_components: int | None = None, relative: bool = False) -> None:
        self.shrinkage = shrinkage
        self.n_components = n_components
        self.relative = relative

    def fit(self, features: Any, y: Any) -> MahalanobisScorer:
        """Fit class means and the shared shrunk precision on training features (n, D) and labels."""
        from sklearn.covariance import OAS, LedoitWolf
        from sklearn.decomposition import PCA

        if self.shrinkage not in _SHRINKAGE:
            raise ConfigError(f"shrinkage={self.shrinkage!r} is not allowed; use one of {_SHRINKAGE}")
        X = _as_features(features)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise DataValueError(f"Mismatch in number of cases. Found features = {len(X)} and y = {y.size}")
        if self.n_components is not None:
            k = int(self.n_components)
            if k < 1:
                raise ConfigError(f"n_components must be >= 1 or None; got {self.n_components}")
            pca = PCA(n_components=min(k, X.shape[1], len(X) - 1), svd_solver="full").fit(X)
            self.pca_mean_, self.pca_components_ = pca.mean_, pca.components_
            X = self._project(X)
        else:
            self.pca_mean_ = self.pca_components_ = None
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.means_ = np.stack([X[y_idx == k].mean(axis=0) for k in range(len(self.classes_))])
        estimator = LedoitWolf if self.shrinkage == "ledoit_wolf" else OAS
        est = estimator(assume_centered=True).fit(X - self.means_[y_idx])
        self.precision_ = np.asarray(est.precision_, dtype=np.float64)
        self.shrinkage_ = float(est.shrinkage_)
        self.global_mean_ = self.global_precision_ = None
        if self.relative:  # the background Gaussian, with the same estimator
            background = estimator().fit(X)
            self.global_mean_ = np.asarray(background.location_, dtype=np.float64)
            self.global_precision_ = np.asarray(background.precision_, dtype=np.float64)
        return self

    def _project(self, X: np.ndarray) -> np.ndarray:
        if self.pca_components_ is None:
            return X
        return (X - self.pca_mean_) @ self.pca_components_.T

    def _check_fitted(self) -> None:
        if not hasattr(self, "precision_"):
            raise NotFittedError("This MahalanobisScorer is not fitted yet; call fit(features, y) first")

    def _projected(self, features: Any) -> np.ndarray:
        """The checked features on the scorer's principal components (one projection per call)."""
        self._check_fitted()
        X = _as_features(features)
        width = self.means_.shape[1] if self.pca_components_ is None else self.pca_components_.shape[1]
        if X.shape[1] != width:
            raise DataValueError(f"features have {X.shape[1]} columns but the scorer was fitted on {width}")
        return self._project(X)

    def _class_distances(self, U: np.ndarray) -> np.ndarray:
        diff = U[:, None, :] - self.means_[None, :, :]  # (n, C, D)
        # (diff P) . diff: one BLAS product, then a row-wise dot; 25x faster than the
        # three-operand einsum "ncd,de,nce->nc" (a plain loop), equal to ~1e-14 relative
        return np.einsum("ncd,ncd->nc", diff @ self.precision_, diff)

    def distances(self, features: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each sample to each class mean, shape (n, n_classes)."""
        return self._class_distances(self._projected(features))

    def score(self, features: Any) -> np.ndarray:
        """Smallest squared distance to a class mean, minus the distance to the background Gaussian
        when ``relative``; shape (n,) (higher = more unknown)."""
        U = self._projected(features)
        nearest = self._class_distances(U).min(axis=1)
        if self.global_precision_ is None:
            return nearest
        e = U - self.global_mean_
        return nearest - np.einsum("nd,nd->n", e @ self.global_precision_, e)

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "shrinkage": self.shrinkage,
            "n_components": self.n_components,
            "shrinkage_value": self.shrinkage_,
            "classes": self.classes_.tolist(),
            "means": self.means_.tolist(),
            "precision": self.precision_.tolist(),
            "pca_mean": None if self.pca_mean_ is None else self.pca_mean_.tolist(),
            "pca_components": None if self.pca_components_ is None else self.pca_components_.tolist(),
            "relative": self.relative,
            "global_mean": None if self.global_mean_ is None else self.global_mean_.tolist(),
            "global_precision": None if self.global_precision_ is None else self.global_precision_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MahalanobisScorer:
        try:
            s = cls(shrinkage=str(d["shrinkage"]), n_components=d.get("n_components"), relative=bool(d.get("relative", False)))
            s.shrinkage_ = float(d["shrinkage_value"])
            s.classes_ = np.asarray(d["classes"])
            s.means_ = np.asarray(d["means"], dtype=np.float64)
            s.precision_ = np.asarray(d["precision"], dtype=np.float64)
            s.pca_mean_ = None if d.get("pca_mean") is None else np.asarray(d["pca_mean"], dtype=np.float64)
            s.pca_components_ = (None if d.get("pca_components") is None
                                 else np.asarray(d["pca_components"], dtype=np.float64))
            s.global_mean_ = s.global_precision_ = None
            if s.relative:
                s.global_mean_ = np.asarray(d["global_mean"], dtype=np.float64)
                s.global_precision_ = np.asarray(d["global_precision"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"stored Mahalanobis scorer is not valid ({exc})") from None
        d_means = s.means_.shape[-1]
        if s.means_.ndim != 2 or s.precision_.shape != (d_means, d_means):
            raise ModelFileError(
                f"stored Mahalanobis scorer has means {s.means_.shape} and precision {s.precision_.shape}; "
                "expected (C, D) and (D, D)"
            )
        if s.relative and (s.global_mean_.shape != (d_means,) or s.global_precision_.shape != (d_means, d_means)):
            raise ModelFileError(
                f"stored relative Mahalanobis scorer has a background mean {s.global_mean_.shape} and precision "
                f"{s.global_precision_.shape}; expected ({d_means},) and ({d_means}, {d_means})"
            )
        return s


def calibrate_threshold(scores: Any, reject_rate: float = DEFAULT_REJECT_RATE) -> float:
    """The threshold above which at most ``reject_rate`` of the held-out ``scores`` lie.

    ``scores`` are unknown-class scores of in-distribution spectra the model did not train on;
    a spectrum is flagged when its score is *above* the threshold. With few held-out spectra the
    empirical rate is coarse (one spectrum of 20 is 5 %): the threshold is an order statistic,
    never interpolated below it.
    """
    if not 0.0 <= reject_rate < 1.0:
        raise ConfigError(f"reject_rate must be in [0, 1); got {reject_rate}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise DataValueError("calibrate_threshold needs at least one held-out score")
    if not np.all(np.isfinite(s)):
        raise DataValueError("held-out scores hold NaN/inf values")
    return float(np.quantile(s, 1.0 - reject_rate, method="higher"))


class UnknownDetector:
    """An unknown-class score and a threshold at every exit.

    Parameters
    ----------
    score : {"relative_mahalanobis", "mahalanobis", "msp", "energy"}
        Which score flags unknowns (see the module docstring; the default is chosen by
        ``benchmarks/ood.py``).
    reject_rate : float
        Share of held-out in-distribution spectra flagged unknown at each exit (the false-reject
        rate), in [0, 1).
    shrinkage, n_components
        Of the :class:`MahalanobisScorer` (the feature scores only). OAS with 64 principal
        components by measurement (``benchmarks/ood_exit0.py``); models saved with other values
        keep them.
    anchored : bool
        Add exit 0's standardised score to every exit's (module docstring); the anchor is set
        by :meth:`fit` on ``heldout``, or by :meth:`set_anchor`.
    anchor_weight : float
        The weight of exit 0's standardised score in an anchored exit's score (> 0); default
        :data:`DEFAULT_ANCHOR_WEIGHT`.

    Examples
    --------
    >>> det = UnknownDetector().fit(train_batch, y_train, heldout_batch)  # doctest: +SKIP
    >>> scores, unknown = det.score(batch), det.flag(batch)  # (n_exits, n) each  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        score: str = "relative_mahalanobis",
        reject_rate: float = DEFAULT_REJECT_RATE,
        shrinkage: str = "oas",
        n_components: int | None = 64,
        anchored: bool = False,
        anchor_weight: float = DEFAULT_ANCHOR_WEIGHT,
    ) -> None:
        self.score_name = score
        self.reject_rate = reject_rate
        self.shrinkage = shrinkage
        self.n_components = n_components
        self.anchored = anchored
        self.anchor_weight = anchor_weight

    def _check_params(self) -> None:
        if self.score_name not in OOD_SCORES:
            raise ConfigError(f"score={self.score_name!r} is not allowed; use one of {OOD_SCORES}")
        if not 0.0 <= float(self.reject_rate) < 1.0:
            raise ConfigError(f"reject_rate must be in [0, 1); got {self.reject_rate}")
        w = float(self.anchor_weight)
        if not (np.isfinite(w) and w > 0):
            raise ConfigError(f"anchor_weight must be a finite number > 0; got {self.anchor_weight}")

    def new_scorer(self) -> MahalanobisScorer:
        """An unfitted scorer with this detector's settings (a feature score only)."""
        return MahalanobisScorer(shrinkage=self.shrinkage, n_components=self.n_components,
                                 relative=self.score_name == "relative_mahalanobis")

    def fit(self, train: ExitBatch | None, y_train: Any, heldout: ExitBatch) -> UnknownDetector:
        """Fit the scorers on ``train`` (Mahalanobis only; the softmax scores need no fit), then
        set each exit's threshold on ``heldout`` in-distribution spectra."""
        self._check_params()
        self.scorers_: list[MahalanobisScorer] | None = None
        if self.score_name in FEATURE_SCORES:
            if train is None or not train.features:
                raise DataValueError(f"score={self.score_name!r} needs the training spectra's per-exit features")
            self.scorers_ = [self.new_scorer().fit(f, y_train) for f in train.features]
        self.n_exits_ = heldout.n_exits
        raw = self._raw_scores(heldout)  # scored once: the anchor and the thresholds share it
        if self.anchored:
            self.set_anchor(raw)
        self._set_thresholds(raw, self.reject_rate)
        return self

    def recalibrate(self, heldout: ExitBatch, reject_rate: float) -> np.ndarray:
        """Thresholds (n_exits,) for another false-reject rate on ``heldout``; stored and returned."""
        return self._set_thresholds(self._raw_scores(heldout), reject_rate)

    def _set_thresholds(self, raw: np.ndarray, reject_rate: float) -> np.ndarray:
        self.reject_rate = reject_rate
        self._check_params()
        self.thresholds_ = np.array([calibrate_threshold(s, reject_rate) for s in self.combine(raw)])
        return self.thresholds_

    # ------------------------------------------------------------------ the anchor (exit 0's score)
    def set_anchor(self, heldout_raw: Any) -> None:
        """Standardise each exit's raw score by its mean and spread on held-out in-distribution
        spectra (n_exits, n), so that exit ``k``'s score can add exit 0's (:meth:`combine`)."""
        raw = np.asarray(heldout_raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] < 2 or not np.all(np.isfinite(raw)):
            raise DataValueError(f"the anchor needs finite held-out scores (n_exits, n >= 2); got shape {raw.shape}")
        self.anchored = True
        self.anchor_mean_ = raw.mean(axis=1)
        self.anchor_std_ = np.maximum(raw.std(axis=1), 1e-12 * np.maximum(np.abs(self.anchor_mean_), 1.0))

    def combine_exit(self, k: int, raw_k: Any, raw_0: Any) -> np.ndarray:
        """Exit ``k``'s score from its raw score and exit 0's raw score of the same spectra: its
        standardised score plus ``anchor_weight`` times exit 0's when anchored (exit 0:
        ``1 + anchor_weight`` times its own), else ``raw_k``."""
        raw_k = np.asarray(raw_k, dtype=np.float64)
        if not self.anchored:
            return raw_k
        z0 = (np.asarray(raw_0, dtype=np.float64) - self.anchor_mean_[0]) / self.anchor_std_[0]
        return (raw_k - self.anchor_mean_[k]) / self.anchor_std_[k] + float(self.anchor_weight) * z0

    def combine(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`combine_exit` for every exit of a (n_exits, n) array of raw scores."""
        raw = np.asarray(raw, dtype=np.float64)
        if not self.anchored:
            return raw
        return np.stack([self.combine_exit(k, raw[k], raw[0]) for k in range(raw.shape[0])])

    def _raw_scores(self, batch: ExitBatch) -> np.ndarray:
        if self.score_name == "msp":
            return msp_score(batch.probs)
        if self.score_name == "energy":
            return energy_score(batch.logits)
        if getattr(self, "scorers_", None) is None:  # softmax scores set thresholds without scorers
            raise NotFittedError("This UnknownDetector is not fitted yet; call fit(...) first")
        if len(batch.features) != len(self.scorers_):
            raise DataValueError(f"batch has features of {len(batch.features)} exits; the detector has {len(self.scorers_)}")
        return np.stack([s.score(f) for s, f in zip(self.scorers_, batch.features)])

    def score(self, batch: ExitBatch) -> np.ndarray:
        """Unknown-class score per exit and spectrum, shape (n_exits, n); higher = more unknown."""
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("This UnknownDetector is not fitted yet; call fit(...) first")
        return self.combine(self._raw_scores(batch))

    def flag(self, batch: ExitBatch) -> np.ndarray:
        """``unknown`` per exit and spectrum, bool (n_exits, n): score above the exit's threshold."""
        return self.score(batch) > self.thresholds_[:, None]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON state (config.json / the ONNX manifest)."""
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("This UnknownDetector is not fitted yet; call fit(...) first")
        return {
            "score": self.score_name,
            "reject_rate": float(self.reject_rate),
            "thresholds": self.thresholds_.tolist(),
            "shrinkage": self.shrinkage,
            "n_components": self.n_components,
            "scorers": None if getattr(self, "scorers_", None) is None else _dedupe([s.to_dict() for s in self.scorers_]),
            "anchored": bool(self.anchored),
            "anchor_mean": self.anchor_mean_.tolist() if self.anchored else None,
            "anchor_std": self.anchor_std_.tolist() if self.anchored else None,
            "anchor_weight": float(self.anchor_weight),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnknownDetector:
        try:
            det = cls(score=str(d["score"]), reject_rate=float(d["reject_rate"]),
                      shrinkage=str(d.get("shrinkage", "ledoit_wolf")), n_components=d.get("n_components"))
            det.thresholds_ = np.asarray(d["thresholds"], dtype=np.float64)
            scorers = d.get("scorers")
            if d.get("anchored"):  # records written before the anchor have no key: not anchored
                det.anchored = True
                det.anchor_mean_ = np.asarray(d["anchor_mean"], dtype=np.float64)
                det.anchor_std_ = np.asarray(d["anchor_std"], dtype=np.float64)
            det.anchor_weight = float(d.get("anchor_weight", 1.0))  # records before the weight: 1
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"stored unknown-class detector is not valid ({exc})") from None
        det._check_params()
        if scorers is not None:
            scorers = _resolve(scorers)
        det.scorers_ = None if scorers is None else [MahalanobisScorer.from_dict(s) for s in scorers]
        det.n_exits_ = int(det.thresholds_.size)
        if det.scorers_ is not None and len(det.scorers_) != det.n_exits_:
            raise ModelFileError(f"stored detector has {len(det.scorers_)} scorers but {det.n_exits_} thresholds")
        if det.anchored and not (det.anchor_mean_.shape == det.anchor_std_.shape == (det.n_exits_,)
                                 and np.all(det.anchor_std_ > 0) and np.all(np.isfinite(det.anchor_mean_))):
            raise ModelFileError(f"stored detector's anchor_mean / anchor_std must be {det.n_exits_} finite values "
                                 "(std > 0), one per exit")
        return det


def _dedupe(scorers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store a scorer equal to an earlier exit's as ``{"same_as": j}``: a cascade's exit 0 and
    MiniRocket exit both score the spectrum, so their scorers are one (half of the stored state)."""
    out: list[dict[str, Any]] = []
    for k, d in enumerate(scorers):
        j = next((j for j in range(k) if "same_as" not in out[j] and scorers[j] == d), None)
        out.append(d if j is None else {"same_as": j})
    return out


def _resolve(scorers: Any) -> list[dict[str, Any]]:
    """Undo :func:`_dedupe`; a reference must point to an earlier, stored scorer."""
    if not isinstance(scorers, list):
        raise ModelFileError(f"stored unknown-class scorers must be a list; got {type(scorers).__name__}")
    out: list[dict[str, Any]] = []
    for k, d in enumerate(scorers):
        if isinstance(d, dict) and "same_as" in d:
            j = d["same_as"]
            if not isinstance(j, int) or not 0 <= j < k or "same_as" in scorers[j]:
                raise ModelFileError(f"stored scorer {k} refers to {j!r}; expected an earlier stored scorer")
            d = out[j]
        out.append(d)
    return out


# --------------------------------------------------------------------------- glue to the estimator
def _exit_modules(network: Any) -> list[Any]:
    """The module in front of which each exit's classifier sees its features, in exit order."""
    from scai.models.cascade import Cascade
    from scai.models.layers import ExitHead

    if isinstance(network, Cascade):  # exit 0 and a MiniRocket exit classify the spectrum itself
        heads = [m for m in network.network.modules() if isinstance(m, ExitHead)]
        pre = [network.exit0] if network.rocket is None else [network.exit0, network.rocket]
        return [*pre, *heads[: network.n_exits - len(pre)]]
    heads = [m for m in network.modules() if isinstance(m, ExitHead)]
    return heads[: network.n_exits]


def _pooled(module: Any, x: Any, pooling: str) -> Any:
    """What ``module`` (an ExitHead or exit 0) classifies, from its input ``x`` (B, C, W)."""
    import torch

    from scai.models.layers import ExitHead

    if not isinstance(module, ExitHead):  # exit 0: the flattened preprocessed spectrum
        return x.reshape(x.shape[0], -1)
    if pooling == "gap" or module.bins == 1:
        return x.mean(dim=-1)
    return torch.matmul(x, module.pool).flatten(1)


def exit_batch(est: Any, X: Any, axis: Any = None, *, preprocessed: bool = False,
               pooling: str = "head") -> ExitBatch:
    """Run a fitted :class:`scai.SCAIClassifier` on ``X`` and collect logits, probabilities and
    each exit's pooled features.

    ``pooling="head"`` gives what the exit head classifies (its binned average pooling);
    ``"gap"`` the global average over positions (one value per channel). Features are taken with
    forward pre-hooks on the exit heads, so the network runs once, as ``exit_logits`` runs it.
    """
    from scai.inference.calibration import softmax
    from scai.inference.exit_loop import carry_forward

    if pooling not in ("head", "gap"):
        raise ConfigError(f"pooling={pooling!r} is not allowed; use 'head' or 'gap'")
    Z = np.asarray(X, dtype=np.float32) if preprocessed else est.transform_input(X, axis)
    net = est.network_
    modules = _exit_modules(net)
    if len(modules) != net.n_exits:
        raise DataValueError(f"{net.name}: found {len(modules)} exit heads for {net.n_exits} exits")
    store: list[list[np.ndarray]] = [[] for _ in modules]
    handles = []
    for k, m in enumerate(modules):
        def hook(module: Any, inputs: tuple[Any, ...], k: int = k) -> None:
            store[k].append(_pooled(module, inputs[0], pooling).detach().double().numpy())
        handles.append(m.register_forward_pre_hook(hook))
    try:
        logits = est.exit_logits(Z, preprocessed=True)
    finally:
        for h in handles:
            h.remove()
    probs = carry_forward(np.stack([softmax(l, t) for l, t in zip(logits, est.temperatures_)]),
                          getattr(net, "uses", None))
    feats = [np.concatenate(s, axis=0) for s in store]
    return ExitBatch(logits=np.asarray(logits, dtype=np.float64), probs=probs, features=feats)
