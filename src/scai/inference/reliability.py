"""What a fitted model knows about when not to answer, in one object every runtime applies.

:class:`Reliability` bundles the three components of :mod:`scai.inference.ood`,
:mod:`scai.inference.domain` and :mod:`scai.inference.conformal` as the model stores them
(``config.json`` fields ``ood``, ``domain``, ``conformal``; the same records in the ONNX
manifest), and applies them where the answers are made:

* the **unknown-class score** at every exit, inside the exit loop
  (:func:`scai.inference.exit_loop.run_exit_loop`, ``unknown=``): the score of each exit a sample
  reaches, from the exit's logits, probabilities or pooled features (:func:`pool_features`
  recomputes what the exit head pools, in NumPy, so the edge needs no PyTorch);
* the **input-domain check** on the preprocessed spectra (and raw checks on the raw ones) before
  the network: ``out_of_domain`` and the reasons;
* the **conformal set** of the answering exit at a calibrated confidence level.

How the estimator fits them honestly (held-out or out-of-fold data) is in
:func:`fit_reliability`. This module imports NumPy, SciPy and scikit-learn only (MAPIE only
while calibrating the conformal sets).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scai.errors import ConfigError, DataValueError, ModelFileError
from scai.inference.conformal import ConformalSets
from scai.inference.domain import DomainCheck, float_spectra, raw_reasons
from scai.inference.ood import (
    FEATURE_SCORES,
    UnknownDetector,
    calibrate_threshold,
    energy_score,
    msp_score,
)

__all__ = [
    "AmbiguityHook",
    "DEFAULT_ON_AMBIGUOUS",
    "DEFAULT_ON_UNKNOWN",
    "ON_AMBIGUOUS",
    "ON_UNKNOWN",
    "OOD_CHOICES",
    "Reliability",
    "UnknownHook",
    "fit_reliability",
    "pool_features",
    "pool_matrix",
    "set_mask",
]

#: ``ood=`` choices of the estimator: a score, "auto" (the measured default) or "none".
OOD_CHOICES: tuple[str, ...] = ("auto", "relative_mahalanobis", "mahalanobis", "energy", "msp", "none")
#: What a policy does with a sample flagged unknown at an exit where it is confident enough to
#: leave: ``"deeper"`` (the default) runs it on (the next exit decides again; at the last exit it
#: answers with reason ``"unknown"``; on the edge, a sample Bmax then stops is offloaded), and
#: every output says so (``held="unknown"``); ``"answer"`` lets it leave with ``unknown=True``.
#: An unknown spectrum must not leave early as confident, so "deeper" is the default everywhere
#: (Python, ``scai predict``, the server, the edge); tests/deploy/test_exit_parity.py checks the
#: runtimes against a reference that models the hold by hand.
ON_UNKNOWN: tuple[str, ...] = ("deeper", "answer")
DEFAULT_ON_UNKNOWN = "deeper"
#: What a policy does with a sample whose conformal set (at the requested ``confidence_level`` /
#: ``sets``) holds more than one class at an exit where it is confident enough to leave:
#: ``"deeper"`` runs it on like an unknown one (reason ``"ambiguous"`` at the last exit, offloaded
#: by an edge whose Bmax stops it; ``held="ambiguous"``), ``"answer"`` (the default) lets it leave.
#: "deeper" needs a confidence level: without sets there is no set to be ambiguous.
ON_AMBIGUOUS: tuple[str, ...] = ("deeper", "answer")
DEFAULT_ON_AMBIGUOUS = "answer"


def pool_matrix(length: int, bins: int) -> np.ndarray:
    """(length, bins) binned-average matrix, the segments of :func:`scai.models.layers.bin_pool_matrix`."""
    if not 1 <= bins <= length:
        raise ConfigError(f"bins must be between 1 and the feature length {length}; got {bins}")
    return _pool_matrix(int(length), int(bins)).copy()


@functools.lru_cache(maxsize=64)
def _pool_matrix(length: int, bins: int) -> np.ndarray:
    pool = np.zeros((length, bins))
    for j in range(bins):
        start, end = (j * length) // bins, -((-(j + 1) * length) // bins)
        pool[start:end, j] = 1.0 / (end - start)
    pool.setflags(write=False)
    return pool


def pool_features(features: Any, bins: int) -> np.ndarray:
    """What an exit classifies, from its stage's features (B, C, W): ``bins=0`` flattens (exit 0,
    the linear exit on the spectrum), ``1`` averages over positions, ``b > 1`` averages over ``b``
    equal segments and concatenates them channel by channel (the exit head's pooling).

    Float32 features are pooled in float32, as the exit head pools them, then widened: no
    float64 copy of the whole feature map. Returns float64."""
    x = np.asarray(features)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if bins == 0:
        return x.reshape(x.shape[0], -1).astype(np.float64, copy=False)
    if x.ndim != 3:
        raise DataValueError(f"stage features must be (n, channels, length); got shape {x.shape}")
    if bins == 1:
        return x.mean(axis=-1).astype(np.float64, copy=False)
    n, c, w = x.shape
    b = min(int(bins), w)
    if b < 1:
        raise ConfigError(f"bins must be between 1 and the feature length {w}; got {bins}")
    pooled = np.ascontiguousarray(x).reshape(n * c, w) @ _pool_matrix(w, b).astype(x.dtype, copy=False)
    return pooled.reshape(n, c * b).astype(np.float64, copy=False)


def exit_pooling(network: Any) -> list[int] | None:
    """Per exit, the pooling of :func:`pool_features` its classifier applies (0 for the exits
    before the network, exit 0 and a MiniRocket exit, which see the spectrum itself); None when
    an exit's features are not pooled stage features."""
    from scai.inference.ood import _exit_modules
    from scai.models.layers import ExitHead

    try:
        modules = _exit_modules(network)
    except (AttributeError, TypeError):
        return None
    if len(modules) != int(network.n_exits):
        return None
    out = []
    for k, m in enumerate(modules):
        if isinstance(m, ExitHead):
            out.append(max(int(m.bins), 1))
        elif k < int(getattr(network, "net_start", 1)):
            out.append(0)
        else:
            return None
    return out


@dataclass
class UnknownHook:
    """What :func:`~scai.inference.exit_loop.run_exit_loop` needs to score unknowns at each exit.

    ``raw(k, features, logits, probs)`` returns the raw score of a batch at exit ``k``:
    ``features`` the stage's features as NumPy (only when ``needs_features``), ``logits`` the
    exit's (combined) logits, ``probs`` its temperature-scaled probabilities; ``final(k, raw_k,
    raw_0)`` the score the threshold applies to, which for an anchored detector adds exit 0's raw
    score of the same spectra (``anchored``: the loop keeps it from stage 0 on). A sample is
    flagged unknown when its score is above ``thresholds[k]``; ``hold`` keeps flagged samples
    from leaving as confident.
    """

    reliability: Reliability
    hold: bool = True

    @property
    def thresholds(self) -> np.ndarray:
        assert self.reliability.detector is not None
        return self.reliability.detector.thresholds_

    @property
    def needs_features(self) -> bool:
        return self.reliability.score in FEATURE_SCORES

    @property
    def anchored(self) -> bool:
        return self.reliability.anchored

    def raw(self, k: int, features: Any, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return self.reliability.exit_score(k, features, logits, probs)

    def final(self, k: int, raw_k: np.ndarray, raw_0: np.ndarray) -> np.ndarray:
        assert self.reliability.detector is not None
        return self.reliability.detector.combine_exit(k, raw_k, raw_0)


def set_mask(probabilities: Any, quantile: Any) -> np.ndarray:
    """Bool (n, C): the LAC conformal set, the classes whose score ``1 - p`` is within the
    calibrated quantile (``quantile`` a scalar or one value per row)."""
    P = np.asarray(probabilities, dtype=np.float64)
    q = np.asarray(quantile, dtype=np.float64)
    return (1.0 - P) - (q[:, None] if q.ndim == 1 else q) <= 1e-8


@dataclass
class AmbiguityHook:
    """What :func:`~scai.inference.exit_loop.run_exit_loop` needs to hold ambiguous samples.

    ``quantiles[k]`` is exit ``k``'s conformal quantile at the requested confidence level;
    ``ambiguous(k, probs)`` is True where the set at exit ``k`` holds more than one class.
    """

    quantiles: np.ndarray
    confidence_level: float

    def ambiguous(self, k: int, probs: np.ndarray) -> np.ndarray:
        return set_mask(probs, float(self.quantiles[k])).sum(axis=1) > 1


@dataclass
class Reliability:
    """A model's unknown-class detector, input-domain check and conformal sets, as stored.

    Any of the three may be None (not fitted, or a model written before scai stored them);
    ``record`` says what was fitted on what, and why something was not.
    """

    detector: UnknownDetector | None = None
    pooling: list[int] | None = None
    domain: DomainCheck | None = None
    conformal: ConformalSets | None = None
    record: dict[str, Any] = field(default_factory=dict)
    #: The held-out scores (n_exits, n) the thresholds were set on, so that another false-reject
    #: rate needs no refit (:meth:`at_reject_rate`); None in a record written without them.
    heldout_scores: np.ndarray | None = None

    def at_reject_rate(self, reject_rate: float) -> Reliability:
        """A copy whose unknown-class thresholds flag ``reject_rate`` of the stored held-out scores."""
        import copy

        if self.detector is None:
            raise ConfigError("reject_rate: this model stores no unknown-class detector")
        if self.heldout_scores is None:
            raise ConfigError("reject_rate: this model's detector stores no held-out scores to recalibrate on; "
                              "refit with SCAIClassifier(reject_rate=...) instead")
        det = copy.copy(self.detector)
        det.thresholds_ = np.array([calibrate_threshold(s, reject_rate) for s in self.heldout_scores])
        det.reject_rate = float(reject_rate)
        return Reliability(det, self.pooling, self.domain, self.conformal, self.record, self.heldout_scores)

    @property
    def anchored(self) -> bool:
        """Whether a later exit's unknown score adds exit 0's (an anchored detector, docs/ood.md)."""
        return bool(self.detector is not None and self.detector.anchored)

    @property
    def score(self) -> str | None:
        return None if self.detector is None else self.detector.score_name

    def hook(self, on_unknown: str = DEFAULT_ON_UNKNOWN) -> UnknownHook | None:
        """The exit loop's ``unknown=`` argument (None without a detector)."""
        if on_unknown not in ON_UNKNOWN:
            raise ConfigError(f"on_unknown={on_unknown!r} is not allowed; use one of {ON_UNKNOWN}")
        return None if self.detector is None else UnknownHook(self, hold=on_unknown == "deeper")

    def ambiguity_hook(self, on_ambiguous: str = DEFAULT_ON_AMBIGUOUS,
                       confidence_level: float | None = None) -> AmbiguityHook | None:
        """The exit loop's ``ambiguous=`` argument: None unless ``on_ambiguous="deeper"``, which
        needs a ``confidence_level`` the model calibrated."""
        if on_ambiguous not in ON_AMBIGUOUS:
            raise ConfigError(f"on_ambiguous={on_ambiguous!r} is not allowed; use one of {ON_AMBIGUOUS}")
        if on_ambiguous == "answer":
            return None
        if confidence_level is None:
            raise ConfigError("on_ambiguous='deeper' holds samples whose conformal set has more than one class; "
                              "it needs the sets' confidence level (confidence_level=0.95, --sets 0.95, sets=0.95)")
        if self.conformal is None:
            raise ConfigError("on_ambiguous='deeper': this model stores no conformal calibration; it was trained "
                              "before scai stored one")
        q = self.conformal.quantiles_[:, self.conformal._level_index(confidence_level)]
        return AmbiguityHook(np.asarray(q, dtype=np.float64), float(confidence_level))

    def exit_score(self, k: int, features: Any, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Raw unknown-class score of a batch at exit ``k`` (higher = more unknown); an anchored
        detector's thresholds apply to :meth:`UnknownDetector.combine_exit` of it."""
        det = self.detector
        if det is None:
            raise ConfigError("this model stores no unknown-class detector")
        if det.score_name == "msp":
            return msp_score(probs)
        if det.score_name == "energy":
            return energy_score(logits)
        assert det.scorers_ is not None and self.pooling is not None
        return det.scorers_[k].score(pool_features(features, self.pooling[k]))

    def domain_reasons(self, Z: np.ndarray, raw: np.ndarray | None = None) -> list[str]:
        """Per spectrum, why it is out of domain ("" when in domain): the raw checks (which need no
        model) and, when the model stores one, Hotelling T² and Q. float32 ``Z`` is read as it is
        (the domain check converts as it computes, exactly), and all-finite ``Z`` is not copied."""
        Z = float_spectra(Z)
        finite = np.isfinite(Z).all(axis=1)
        reasons = raw_reasons(raw) if raw is not None else [[] for _ in range(len(Z))]
        if len(reasons) != len(Z):
            raise DataValueError(f"Mismatch in number of cases. Found Z = {len(Z)} and raw = {len(reasons)}")
        for i in np.flatnonzero(~finite):
            reasons[i].append("preprocessing produced NaN/inf")
        if self.domain is not None and finite.any():
            for i, r in zip(np.flatnonzero(finite), self.domain.flag(Z if finite.all() else Z[finite])):
                reasons[i].extend(r)
        return ["; ".join(r) for r in reasons]

    def sets(self, exit_: np.ndarray, probabilities: np.ndarray, confidence_level: float) -> np.ndarray:
        """Bool (n, C): the conformal set of each sample at the exit that answered it."""
        if self.conformal is None:
            raise ConfigError("this model stores no conformal calibration; it was trained before scai stored one")
        exit_ = np.asarray(exit_, dtype=np.int64)
        q = self.conformal.quantiles_[:, self.conformal._level_index(confidence_level)]
        return set_mask(probabilities, q[np.clip(exit_, 0, None)])

    # ------------------------------------------------------------------ storage
    def to_config(self) -> dict[str, Any]:
        """``{"ood", "domain", "conformal"}`` for config.json / the manifest (None: not fitted)."""
        ood = None
        if self.detector is not None:
            ood = {**self.detector.to_dict(), "pooling": self.pooling,
                   "calibration": self.record.get("ood", {}).get("calibration"),
                   "heldout_scores": None if self.heldout_scores is None else self.heldout_scores.tolist()}
        dom = None if self.domain is None else {**self.domain.to_dict(),
                                                "calibration": self.record.get("domain", {}).get("calibration")}
        return {"ood": ood, "domain": dom, "conformal": None if self.conformal is None else self.conformal.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str = "config.json") -> Reliability:
        """Rebuild from config.json or a manifest; fields that are absent give None components."""
        det = pooling = dom = conf = held = None
        record: dict[str, Any] = {}
        try:
            if config.get("ood"):
                det = UnknownDetector.from_dict(config["ood"])
                pooling = config["ood"].get("pooling")
                if det.score_name in FEATURE_SCORES and (pooling is None or len(pooling) != det.n_exits_):
                    raise ModelFileError(f"pooling {pooling!r} does not give one entry per exit ({det.n_exits_})")
                record["ood"] = {"calibration": config["ood"].get("calibration")}
                if config["ood"].get("heldout_scores") is not None:
                    held = np.asarray(config["ood"]["heldout_scores"], dtype=np.float64)
                    if held.ndim != 2 or held.shape[0] != det.n_exits_ or not np.all(np.isfinite(held)):
                        raise ModelFileError(f"ood.heldout_scores has shape {held.shape}; expected ({det.n_exits_}, n), finite")
            if config.get("domain"):
                dom = DomainCheck.from_dict(config["domain"])
                record["domain"] = {"calibration": config["domain"].get("calibration")}
            if config.get("conformal"):
                conf = ConformalSets.from_dict(config["conformal"])
        except ModelFileError as exc:
            raise ModelFileError(f"{where}: {exc}") from None
        missing = [k for k in ("ood", "domain", "conformal") if k not in config]
        if missing:
            record["absent"] = (f"{where} has no {', '.join(missing)} record(s) (written before scai stored them): "
                                "those flags are not given")
        return cls(det, pooling, dom, conf, record, held)


def _scores(score: str, logits: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return msp_score(probs) if score == "msp" else energy_score(logits)


def fit_reliability(
    *,
    ood: str,
    reject_rate: float,
    domain_confidence: float | None,
    confidence_levels: Sequence[float] | None,
    heldout_logits: np.ndarray,
    heldout_probs: np.ndarray,
    heldout_y: np.ndarray,
    Z_train: np.ndarray,
    train_features: list[np.ndarray] | None,
    y_train: np.ndarray,
    pooling: list[int] | None,
    Z_heldout: np.ndarray | None = None,
    heldout_features: list[np.ndarray] | None = None,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    uses: Sequence[bool] | None = None,
    anchor: bool = False,
) -> Reliability:
    """Fit the three components on what ``SCAIClassifier.fit`` has at its end.

    ``heldout_*`` are the held-out logits (n_exits, n, C; already combined), probabilities
    (temperature-scaled, carried forward) and labels calibration rests on: out-of-fold under
    cross-fitting, else the validation split. Under cross-fitting (``folds`` given, the same
    folds; ``Z_heldout`` and ``heldout_features`` None) the held-out spectra *are* the training
    spectra, so what needs features is calibrated fold by fold:

    * Mahalanobis: the final network's features of the training spectra, with the scorer fitted
      on K-1 folds and scoring the held-out fold (the scorer's own fit is held out; the network's
      is not, its out-of-fold features do not exist: the fold networks are gone);
    * the domain check: PCA and limits fitted on K-1 folds, T² and Q of the held-out fold; the
      final check is fitted on every spectrum, its limits raised to those held-out quantiles.

    Logit scores (energy, msp) and the conformal quantiles use the held-out logits directly.

    ``anchor``: a feature score adds exit 0's standardised score at every exit
    (:meth:`UnknownDetector.set_anchor`). The estimator asks for it where the network has an exit
    combination: its exits already build on exit 0, and its stage features are never continued
    elsewhere (the server refuses them; the edge offloads raw spectra), so every exit loop that
    scores a spectrum has run exit 0 on it.
    """
    if ood not in OOD_CHOICES:
        raise ConfigError(f"ood={ood!r} is not allowed; use one of {OOD_CHOICES}")
    record: dict[str, Any] = {}
    n_exits = int(heldout_logits.shape[0])
    det: UnknownDetector | None = None
    held: np.ndarray | None = None
    score = ood
    if ood == "auto":
        score = "relative_mahalanobis" if pooling is not None else "energy"
    if score in FEATURE_SCORES and (pooling is None or train_features is None):
        raise ConfigError(f"ood={score!r} needs exit features this network does not expose (a MiniRocket exit); "
                          "use ood='energy' or 'msp'")
    if score != "none":
        det = UnknownDetector(score=score, reject_rate=reject_rate)
        det._check_params()
        if score in FEATURE_SCORES:
            assert train_features is not None
            det.scorers_ = [det.new_scorer().fit(f, y_train) for f in train_features]
            if heldout_features is not None:  # a validation split: the final model's features of it
                held = np.stack([s.score(f) for s, f in zip(det.scorers_, heldout_features)])
                how = f"scorer fitted on the training part's features, thresholds on the validation split ({held.shape[1]})"
            else:
                assert folds is not None
                held = np.zeros((n_exits, len(y_train)))
                for tr, va in folds:
                    for k, f in enumerate(train_features):
                        s = det.new_scorer().fit(f[tr], y_train[tr])
                        held[k, va] = s.score(f[va])
                how = (f"scorer fitted on the final network's features of every training spectrum; thresholds on "
                       f"{len(folds)}-fold held-out scores of those features (the scorer held out, the network not)")
        else:
            held = _scores(score, np.asarray(heldout_logits, np.float64), heldout_probs)
            how = f"thresholds on the {'out-of-fold' if folds is not None else 'validation-split'} logits ({held.shape[1]})"
        held = _carry(held, uses)
        det.n_exits_ = n_exits
        if anchor and score in FEATURE_SCORES and n_exits > 1:  # exit k's score adds exit 0's (docs/ood.md)
            det.set_anchor(held)
            held = det.combine(held)
            how += "; every exit's score adds exit 0's, standardised on the same held-out scores"
        det.thresholds_ = np.array([calibrate_threshold(s, reject_rate) for s in held])
        record["ood"] = {"calibration": how, "heldout_reject_rate": [float(np.mean(s > t)) for s, t in zip(held, det.thresholds_)]}
    rel_domain: DomainCheck | None = None
    if domain_confidence is not None:
        Z = np.asarray(Z_train, dtype=np.float64)
        if len(Z) < 3:
            record["domain"] = {"calibration": None, "not_fitted": f"needs at least 3 training spectra; got {len(Z)}"}
        else:
            rel_domain = DomainCheck(confidence=float(domain_confidence)).fit(Z)
            if Z_heldout is not None:
                rel_domain.calibrate(Z_heldout)
                how = f"limits raised to the validation split's quantiles ({len(Z_heldout)} spectra)"
            elif folds is not None and all(len(tr) >= 3 for tr, _ in folds):
                t2, q = np.zeros(len(Z)), np.zeros(len(Z))
                for tr, va in folds:
                    fold = DomainCheck(confidence=float(domain_confidence), n_components=rel_domain.n_components_).fit(Z[tr])
                    t2[va], q[va] = fold.statistics(Z[va])
                rel_domain.raise_limits(t2, q, f"theory, raised to {len(folds)}-fold held-out quantiles ({len(Z)} spectra)")
                how = f"limits raised to {len(folds)}-fold held-out quantiles of T2 and Q ({len(Z)} spectra)"
            else:
                how = "limits from the training eigenvalues only (no held-out spectra)"
            record["domain"] = {"calibration": how}
    conformal: ConformalSets | None = None
    if confidence_levels:
        try:
            conformal = ConformalSets(confidence_levels).fit(heldout_probs, heldout_y)
            record["conformal"] = {"calibration": f"{conformal.n_calibration_} held-out spectra", "too_few": conformal.too_few_}
        except ImportError as exc:  # MAPIE is the 'conformal' extra
            record["conformal"] = {"not_fitted": f"MAPIE is not installed ({exc}); pip install 'scai[conformal]'"}
    return Reliability(det, pooling if score in FEATURE_SCORES else None, rel_domain, conformal, record, held)


def _carry(scores: np.ndarray, uses: Sequence[bool] | None) -> np.ndarray:
    """A skipped exit answers with the last used exit's answer, so it keeps that exit's scores."""
    out = np.array(scores, dtype=np.float64, copy=True)
    if uses is not None:
        for k in range(1, out.shape[0]):
            if not uses[k]:
                out[k] = out[k - 1]
    return out

