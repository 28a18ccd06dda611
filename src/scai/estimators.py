"""``SCAIClassifier``: the scikit-learn front of scai.

The estimator owns everything between raw spectra and a trained multi-exit network: input
validation, the spectral-axis contract, the preprocessing pipeline, label encoding, the
validation split, training, per-exit temperature scaling, and saving/loading a model
directory. The network itself is built in ``fit`` from the registry (``scai.models``).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from tqdm.auto import tqdm
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from scai.data.frames import frame_input
from scai.errors import (
    AxisError,
    BudgetError,
    ConfigError,
    DataValueError,
    LabelError,
    ModelFileError,
    NotFittedError,
    ScaiError,
    ScaiTypeError,
)
from scai.inference import (
    fit_temperatures,
    parse_budget,
    softmax,
)
from scai.inference.budget import Budget
from scai.inference.combination import ExitCombination, fit_combination
from scai.inference.exit_loop import carry_forward
from scai.inference.knob import solve_budget
from scai.inference.policies import default_budget
from scai.inference.predictor import PredictionBatch, Predictor
from scai.inference.thresholds import Thresholds, parse_thresholds
from scai.model_dir import (
    WEIGHTS,
    ModelDir,
    ModelFiles,
    load_state_checked,
    row_digests,
    save_model_dir,
)
from scai.models import MultiExitNetwork, create_model
from scai.models.cascade import Cascade, CascadeSpec, LinearExit
from scai.models.knob import compute_scale, knob_scales
from scai.models.rocket import RocketExit
from scai.preprocessing import (
    AUTO_CANDIDATES,
    PIPELINE_KINDS,
    Pipeline,
    Standardize,
    align_to_axis,
    default_pipeline,
    preprocessing_from_json,
    preprocessing_to_json,
)
from scai.preprocessing.cost import PreprocessingCost
from scai.training import History, TrainConfig, Trainer
from scai.training.cross_fit import (
    FoldOutput,
    NetworkSpec,
    choose_epoch,
    default_n_jobs,
    oof_curve,
    oof_logits,
    run_folds,
    start_folds,
    stratified_folds,
    tail_size,
)
from scai.training.linear_exit import PLS_MAX_COMPONENTS, LinearExitFit, fit_linear_exit
from scai.training.rocket_exit import RocketFit, fit_rocket_exit, fit_rocket_head, rocket_available

__all__ = ["SCAIClassifier", "load"]

_POLICIES = ("full", "anytime", "threshold", "batch")
EXIT0_KINDS = ("auto", "logistic", "pls", "none")
ROCKET_KINDS = ("auto", "none")
#: MiniRocket's kernels have 9 taps: shorter spectra get no MiniRocket exit.
ROCKET_MIN_POINTS = 9
#: What a user may pass as a budget (parsed by scai.inference.parse_budget) or a threshold
#: (parsed by scai.inference.thresholds.parse_thresholds).
BudgetLike = Union[str, float, int, Budget]
ThresholdLike = Union[float, str, "list[float | None]", np.ndarray, Thresholds]


def _as_2d_float(X: ArrayLike, name: str = "X") -> np.ndarray:
    """Validate spectra with scikit-learn's ``check_array``, then name the first NaN/inf cell."""
    try:
        arr = check_array(X, dtype=np.float32, ensure_all_finite=False, input_name=name)
    except TypeError as exc:
        raise ScaiTypeError(f"{name} must be numeric (n_samples, n_points): {exc}") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataValueError(
            f"{name} holds {int(bad.sum())} NaN/inf value(s), first at row {row}, column {col}; "
            "clean or interpolate them first (scai.data.read(..., nan_policy='interpolate'))"
        )
    return arr


class SCAIClassifier(ClassifierMixin, BaseEstimator):
    """Early-exit spectral classifier (SCAI / SCAI+) with a scikit-learn interface.

    Parameters
    ----------
    model
        Registered network name (see ``scai.models.list_models()``): ``"scai_plus"`` (default,
        early exits + position-adaptive blocks), ``"scai"``, ``"resnet1d"``, ``"drsn_cs"``, ...
    model_config
        Keyword overrides of the network family's configuration dataclass.
    train_config
        Keyword overrides of :class:`scai.training.TrainConfig` (epochs, patience, lr, distill
        mode, ...). ``random_state`` overrides its seed.
    preprocessing
        ``"auto"`` (default): of :data:`scai.preprocessing.AUTO_CANDIDATES` (the Raman pipeline,
        a first-derivative + SNV pipeline for FTIR/NIR/UV and index axes, smoothing + SNV, SNV,
        none), the one whose exit 0 scores best in inner cross-validation on the training part
        (``preprocessing_selection_`` says which and why; it is stored with the model). A kind
        (``"raman"``, ``"deriv"``, ``"ftir"``, ``"snv"``, ``"none"``, see
        :func:`scai.preprocessing.default_pipeline`), or a :class:`scai.preprocessing.Pipeline`.
    standardize
        Append :class:`scai.preprocessing.Standardize` (fitted on the training part) to the
        pipeline, so the network sees each spectrum's deviation from the mean training
        spectrum: ``"global"`` (default) divides by one overall spread, ``"feature"`` z-scores
        every wavenumber (which also inflates noise-only regions), ``"none"`` (or ``False``)
        leaves the pipeline's output as it is. It is saved with the pipeline. Why it is on:
        docs/training.md.
    val_fraction
        Share of the training data held out (stratified, seeded) for early stopping and
        calibration when ``fit`` gets no explicit validation set.
    calibrate
        Fit one temperature per exit on the validation set so that confidences are comparable
        across exits (used by threshold and budgeted-batch policies).
    random_state
        Seed for the split, weight initialisation and shuffling.
    verbose
        Show a progress bar during training.
    exit0
        Exit 0, a linear chemometric classifier on the preprocessed spectrum put in front of
        every multi-exit network (:class:`scai.models.Cascade`): ``"auto"`` (default) picks
        logistic regression or PLS-DA by inner cross-validation, ``"logistic"`` / ``"pls"``
        force one, ``"none"`` leaves the network as the paper has it. Deeper exits whose
        held-out accuracy does not beat every earlier exit are skipped (they repeat the answer
        before them), and network stages after the last useful exit are dropped.
    skip_exits
        Skip deeper exits that do not beat every earlier exit on held-out data (default). With
        ``False`` the cascade keeps every exit (tests, or to study each exit).
    cross_fit
        Folds K of cross-fitting (default 5; capped at the smallest class count): when ``fit``
        gets no explicit validation set, the network is trained K times on K - 1 folds, and the
        out-of-fold predictions of all training spectra choose the epoch count, the exits the
        cascade uses, the temperatures and the thresholds; then exit 0 and the network are
        fitted on all of it (:mod:`scai.training.cross_fit`). ``cross_fit_`` records what it
        chose and what it cost. ``0`` (or ``1``): the single validation split of
        ``val_fraction`` (the paper's protocol).
    n_jobs
        Cross-fitting folds trained at once, in worker processes of one thread each
        (default: the cores this process may use, at most K).
    rocket
        ``"auto"`` (default): when the ``bench`` extra (aeon) is installed and exit 0 is not
        already perfect out of fold, a MiniRocket exit (:class:`scai.models.rocket.RocketExit`:
        10 000 PPV features of fixed random convolutions on the spectrum before standardisation,
        and a ridge head) is fitted; it joins the cascade after exit 0 when, combined with exit 0
        (``combine_exits``), its held-out accuracy beats exit 0's; otherwise it is left out (never
        run). ``"none"``: no MiniRocket exit (the paper). Measured in docs/models.md: on
        ucr_strawberry it lifts test accuracy from 0.965 to 0.981-0.986; where exit 0 is already
        as good it is left out.
    combine_exits
        Under cross-fitting with exit 0 (default ``True``): each deeper exit answers with a
        learned combination of its own log-probabilities and the combined answer of the exit
        before it, fitted on the out-of-fold logits (:mod:`scai.inference.combination`); exits
        are then used or skipped on the combined out-of-fold accuracy. ``False``: every exit
        answers for itself.
    ood
        Unknown-class detector fitted at the end of ``fit`` (:mod:`scai.inference.ood`):
        ``"auto"`` (default: the relative Mahalanobis distance of each exit's pooled features,
        measured best in docs/ood.md; a MiniRocket exit is scored like exit 0, on the spectrum),
        ``"relative_mahalanobis"``, ``"mahalanobis"``, ``"energy"``, ``"msp"``, or ``"none"``. Every prediction then carries ``unknown_score`` and
        ``unknown``; how it is calibrated: :func:`scai.inference.reliability.fit_reliability`.
        A spectrum flagged unknown at an exit where it is confident does not leave there: it runs
        deeper (``predict_detailed(on_unknown="deeper")``, the default; ``held="unknown"``).
    reject_rate
        Share of held-out in-distribution spectra flagged unknown at each exit (the
        false-reject rate the thresholds are set to), in [0, 1).
    domain_confidence
        Confidence of the input-domain check's Hotelling T² and Q limits
        (:mod:`scai.inference.domain`); ``None``: no domain check (the raw checks still run).
    confidence_levels
        Levels of the conformal prediction sets calibrated on held-out data
        (:mod:`scai.inference.conformal`, needs MAPIE); ``None`` or empty: none.
    """

    def __init__(
        self,
        *,
        model: str = "scai_plus",
        model_config: dict[str, Any] | None = None,
        train_config: dict[str, Any] | None = None,
        preprocessing: str | Pipeline | None = "auto",
        standardize: str | bool = "global",
        val_fraction: float = 0.1,
        calibrate: bool = True,
        random_state: int = 0,
        verbose: bool = False,
        exit0: str = "auto",
        skip_exits: bool = True,
        cross_fit: int = 5,
        n_jobs: int | None = None,
        rocket: str = "auto",
        combine_exits: bool = True,
        ood: str = "auto",
        reject_rate: float = 0.05,
        domain_confidence: float | None = 0.99,
        confidence_levels: tuple[float, ...] | None = (0.9, 0.95),
    ) -> None:
        self.model = model
        self.model_config = model_config
        self.train_config = train_config
        self.preprocessing = preprocessing
        self.standardize = standardize
        self.val_fraction = val_fraction
        self.calibrate = calibrate
        self.random_state = random_state
        self.verbose = verbose
        self.exit0 = exit0
        self.skip_exits = skip_exits
        self.cross_fit = cross_fit
        self.n_jobs = n_jobs
        self.rocket = rocket
        self.combine_exits = combine_exits
        self.ood = ood
        self.reject_rate = reject_rate
        self.domain_confidence = domain_confidence
        self.confidence_levels = confidence_levels

    # ------------------------------------------------------------------ fitting
    def _make_pipeline(self, kind: str | None = None) -> Pipeline:
        spec = self.preprocessing if kind is None else kind
        if spec is None or (isinstance(spec, str) and spec == "none"):
            pipe = Pipeline([])
        elif isinstance(spec, str):
            pipe = default_pipeline(spec)
        elif isinstance(spec, Pipeline):
            pipe = clone(spec)
        else:
            raise ScaiTypeError(
                f"preprocessing must be 'auto', a pipeline kind ({', '.join(PIPELINE_KINDS)}) or a "
                f"scai.preprocessing.Pipeline; got {type(spec).__name__}"
            )
        scale = {True: "feature", "feature": "feature", "global": "global"}.get(self.standardize)  # type: ignore[call-overload]
        if scale is not None:
            pipe = Pipeline([*pipe.steps, Standardize(scale=scale)])
        elif self.standardize not in (False, None, "none"):
            raise ConfigError(
                f"standardize={self.standardize!r} is not allowed; use 'global', 'feature' or 'none'"
            )
        return pipe

    def _train_config(self) -> TrainConfig:
        overrides = dict(self.train_config or {})
        overrides.setdefault("seed", self.random_state)
        overrides.setdefault("progress", self.verbose)
        return TrainConfig.from_dict(overrides)

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        axis: ArrayLike | None = None,
        *,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        axis_unit: str | None = None,
    ) -> SCAIClassifier:
        """Fit on raw spectra ``X`` (n, W) with labels ``y``; returns ``self``.

        NumPy/SciPy BLAS runs on one thread meanwhile (``threadpoolctl``): the fit's linear algebra
        is many small problems, where BLAS threads beside torch's cost more than they give.
        ``fit_time_s_``: the whole fit's wall time."""
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(X, y, axis, X_val=X_val, y_val=y_val, axis_unit=axis_unit)
        self.fit_time_s_ = time.perf_counter() - t0
        return self

    def _fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        axis: ArrayLike | None,
        *,
        X_val: ArrayLike | None,
        y_val: ArrayLike | None,
        axis_unit: str | None,
    ) -> None:
        if y is None:
            raise LabelError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X, axis = frame_input(X, axis)
        X = _as_2d_float(X)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != len(X):
            raise LabelError(f"Mismatch in number of cases. Found X = {len(X)} and y = {len(y)}")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self._check_class_counts(y_idx)
        self.n_features_in_ = X.shape[1]
        self.axis_ = self._validated_axis(axis, X.shape[1])
        self.axis_unit_ = axis_unit or ("index" if axis is None else "unknown")

        folds = self._n_folds() if X_val is None else 0
        if X_val is not None:
            X_tr, y_tr = X, y_idx
            X_val, axis_val = frame_input(X_val, None, self.axis_, "X_val")
            X_va_raw = self._aligned(_as_2d_float(X_val, "X_val"), axis if axis_val is None else axis_val)
            y_va = self._encode(np.asarray(y_val), "y_val")
        elif folds >= 2:  # cross-fitting: every training spectrum is held out once
            X_tr, y_tr, X_va_raw, y_va = X, y_idx, None, None
        else:
            tr, va = self._split(y_idx)
            X_tr, y_tr, X_va_raw, y_va = X[tr], y_idx[tr], X[va], y_idx[va]

        self.preprocessing_selection_: dict[str, Any] | None = None
        if isinstance(self.preprocessing, str) and self.preprocessing == "auto":
            self.pipeline_, Z_tr, exit0_fit = self._auto_pipeline(X_tr, y_tr)
        else:
            self.pipeline_, exit0_fit = self._make_pipeline(), None
            Z_tr = np.asarray(self.pipeline_.fit_transform(X_tr, axis=self.axis_), dtype=np.float32)
        # fingerprints of the spectra fitted on, so that evaluating on them can be flagged (training_rows.json)
        self.fitted_row_digests_ = row_digests(X) + ([] if X_val is None else row_digests(X_va_raw))
        # what preprocessing costs per spectrum: counted MACs, and ms timed on (up to 256) training spectra
        self.preprocessing_cost_ = self.pipeline_.cost(X=X_tr[:256], repeats=1, clock="cpu")
        train_cfg = self._train_config()
        torch.manual_seed(train_cfg.seed)
        if self.exit0 not in EXIT0_KINDS:
            raise ConfigError(f"exit0={self.exit0!r} is not allowed; use one of {EXIT0_KINDS}")
        self.network_ = create_model(self.model, Z_tr.shape[1], len(self.classes_), **(self.model_config or {}))
        # one epoch cap for every training of this fit (folds and refit share its schedule): the
        # training budget on the spectra a network trains on (a fold's part under cross-fitting)
        n_fit = len(Z_tr) - len(Z_tr) // folds if X_va_raw is None and folds >= 2 else len(Z_tr)
        net_macs = int(self.network_.exit_macs()[-1])
        self.train_config_ = train_cfg.resolved(n_fit, net_macs)
        self.epoch_cap_ = {"max_epochs": train_cfg.max_epochs, "train_budget": train_cfg.train_budget,
                           "n_train": int(n_fit), "net_macs": net_macs, "epochs": self.train_config_.max_epochs}
        self.exit0_: dict[str, Any] | None = None
        self.cross_fit_: dict[str, Any] | None = None
        knob_va: dict[float, np.ndarray] | None = None  # held-out logits per compute-knob scale
        if X_va_raw is None:
            logits_va, knob_va = self._fit_cross(Z_tr, y_tr, exit0_fit, folds)
            y_va = y_tr
            Z_va = Z_tr
        else:
            Z_va = np.asarray(self.pipeline_.transform(X_va_raw), dtype=np.float32)
            self.history_ = Trainer(self.train_config_).fit(self.network_, Z_tr, y_tr, Z_va, y_va)
            self.network_.eval()
            if self._wants_exit0():
                self.network_ = self._add_exit0(self.network_, Z_tr, y_tr, Z_va, y_va, exit0_fit)
            logits_va = None
        self.exit_macs_ = [int(m) for m in self.network_.exit_macs()]
        final_logits, macs_va = self._detailed(Z_va)  # one pass of the final model over the held-out spectra
        if logits_va is None:
            logits_va = final_logits
        # What calibration rests on: held-out logits per exit (out-of-fold under cross-fitting),
        # their labels, and the final model's per-sample MACs on the same spectra.
        self.validation_ = {
            "y": np.asarray(y_va, dtype=np.int64),
            "logits": np.asarray(logits_va, dtype=np.float32),
            "macs": macs_va,
        }
        self.validation_.update(self._knob_outputs(Z_va, knob_va, macs_va))
        self.temperatures_ = (
            np.asarray(fit_temperatures(self.validation_["logits"], self.validation_["y"]), dtype=np.float64)
            if self.calibrate else np.ones(len(self.exit_macs_))
        )
        self.thresholds_: dict[str, Any] = {}
        self.default_budget_: float | None = None
        if self.calibrate and len(self.exit_macs_) > 1:
            # The model's default thresholds (threshold policy, edge, server): a budgeted-batch
            # calibration at the default budget, stored with the model.
            self.default_budget_ = default_budget(self.exit_macs_)
            self.calibrate_batch(self.default_budget_)
        self._fit_reliability(Z_tr, y_tr, None if X_va_raw is None else Z_va, folds if X_va_raw is None else 0)

    def _fit_reliability(self, Z_tr: np.ndarray, y_tr: np.ndarray, Z_va: np.ndarray | None, n_folds: int) -> None:
        """Unknown-class detector, input-domain check and conformal sets on held-out data
        (``reliability_``; see :func:`scai.inference.reliability.fit_reliability`). Under
        cross-fitting the folds are those of the network's cross-fitting (same seed)."""
        from scai.inference.ood import FEATURE_SCORES, exit_batch
        from scai.inference.reliability import exit_pooling, fit_reliability

        if self.ood == "none" and self.domain_confidence is None and not self.confidence_levels:
            self.reliability_ = None
            return
        probs_va, _ = self.validation_outputs()
        pooling = exit_pooling(self.network_)
        wants_features = self.ood in ("auto", *FEATURE_SCORES) and pooling is not None
        train_f = held_f = None
        if wants_features:
            train_f = exit_batch(self, Z_tr, preprocessed=True).features
            held_f = None if Z_va is None else exit_batch(self, Z_va, preprocessed=True).features
        folds = None
        if Z_va is None:
            folds = stratified_folds(y_tr, max(int(n_folds), 2), self.random_state)
        self.reliability_ = fit_reliability(
            ood=self.ood, reject_rate=float(self.reject_rate), domain_confidence=self.domain_confidence,
            confidence_levels=self.confidence_levels, heldout_logits=self.validation_["logits"],
            heldout_probs=probs_va, heldout_y=self.validation_["y"], Z_train=Z_tr, train_features=train_f,
            y_train=y_tr, pooling=pooling if wants_features else None, Z_heldout=Z_va, heldout_features=held_f,
            folds=folds, uses=getattr(self.network_, "uses", None),
            anchor=getattr(self.network_, "combination", None) is not None,
        )

    def _n_folds(self) -> int:
        k = self.cross_fit
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"cross_fit={k!r} is not allowed; use a number of folds >= 2, or 0 for one validation split")
        return int(k) if k >= 2 else 0

    def _wants_exit0(self) -> bool:
        return self.exit0 != "none" and self.network_.n_exits > 1

    def _fit_cross(
        self, Z: np.ndarray, y: np.ndarray, exit0_fit: LinearExitFit | None, n_folds: int
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        """Cross-fitting (see ``cross_fit``); sets ``network_``, ``history_``, ``exit0_``,
        ``cross_fit_`` and returns the out-of-fold logits (n_exits, n, C) of the final model, and
        per compute-knob scale (:data:`scai.models.knob.KNOB_SCALES`, when the network has PA
        blocks and is used) the same logits with its PA blocks at that scale."""
        t0 = time.perf_counter()
        n, C = len(y), len(self.classes_)
        folds = stratified_folds(y, n_folds, self.random_state)
        n_jobs = default_n_jobs(len(folds)) if self.n_jobs is None else int(self.n_jobs)
        if n_jobs == -1:
            n_jobs = default_n_jobs(len(folds))
        if n_jobs < 1:
            raise ConfigError(f"n_jobs={self.n_jobs!r} is not allowed; use a number of processes >= 1, or -1 for all cores")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            n_jobs = 1  # under torchrun: worker processes would lack the process group (docs/distributed.md)
        record: dict[str, Any] = {"folds": len(folds), "n_jobs": n_jobs, "n": int(n), "seed": int(self.random_state)}
        with_exit0 = self._wants_exit0()
        oof0 = None
        if with_exit0:
            if exit0_fit is None:
                exit0_fit = self._fit_exit0(Z, y, self.exit0)
            oof0 = np.zeros((n, C), dtype=np.float32)
            # nested: each fold fits exit 0 of the kind the full fit chose, its C / k by inner CV on the
            # fold's part. One kind keeps the out-of-fold logits on one scale, as the final exit's are
            # (a fold that flipped to the other kind on a one-spectrum tie put logistic decision values
            # beside PLS scores and spoilt the exit combination fitted on them).
            for tr, va in tqdm(folds, desc="exit 0 out of fold", unit="fold", disable=not self.verbose, leave=False):
                oof0[va] = self._fit_exit0(Z[tr], y[tr], exit0_fit.kind, capped=self.exit0 == "auto").logits(Z[va])
        hit0 = None if oof0 is None else oof0.argmax(axis=1) == y
        outputs: list[FoldOutput] = []
        reason = None
        refit: tuple[History, float] | None = None  # trained beside the last folds
        epoch = 0
        rocket_fit, oof_r = None, None
        if hit0 is not None and self.skip_exits and bool(hit0.all()):
            reason = "exit 0 made no out-of-fold error, so no network exit can beat it"
        elif with_exit0 and self._wants_rocket():
            rocket_fit = self._fit_rocket(Z, y)
            oof_r = np.zeros((n, C), dtype=np.float32)
            for tr, va in folds:
                w, b, _ = fit_rocket_head(rocket_fit.features[tr], y[tr], C)
                oof_r[va] = rocket_fit.features[va] @ w.T + b
            record["rocket_s"] = rocket_fit.fit_time_s
        # what a network exit must beat: the best exit before it, out of fold (with a MiniRocket
        # exit, also its combination with exit 0, judged on held-out folds as _select_exits does)
        hit_r = None
        if oof_r is not None:
            hit_r = oof_r.argmax(axis=1) == y
            if self.combine_exits:
                judged = self._select_exits(np.stack([oof0, oof_r]), y, folds)[0]  # type: ignore[list-item]
                hit_c = judged[1].argmax(axis=1) == y
                hit_r = hit_c if hit_c.sum() > hit_r.sum() else hit_r
        best_pre = None if hit0 is None else max(int(hit0.sum()), -1 if hit_r is None else int(hit_r.sum()))
        if reason is None and self.skip_exits and best_pre == n:
            reason = "an exit before the network made no out-of-fold error, so no network exit can beat it"
        if reason is None:
            spec = NetworkSpec(self.model, Z.shape[1], C, dict(self.model_config or {}))

            def network_adds_nothing(done: list[FoldOutput]) -> str | None:
                rows = np.concatenate([o.val_idx for o in done])
                curve = oof_curve(done, y)
                best_net = int(round(float(curve["acc"].max()) * len(rows)))
                hits0 = int(hit0[rows].sum())  # type: ignore[index]
                hits_r = int(hit_r[rows].sum()) if hit_r is not None else -1
                if best_net <= max(hits0, hits_r):
                    before = f"exit 0 {hits0}/{len(rows)}" + (f", the MiniRocket exit {hits_r}/{len(rows)}" if hit_r is not None else "")
                    return (f"on the first {len(done)} folds the network's best exit at its best epoch got "
                            f"{best_net}/{len(rows)} right, {before}")
                return None

            stop = network_adds_nothing if hit0 is not None and self.skip_exits else None
            tail = tail_size(len(folds), n_jobs)  # folds trained for the chosen epochs beside the refit
            head = folds[: len(folds) - tail]
            outputs, reason = run_folds(spec, self.train_config_.to_dict(), Z, y, head, n_jobs=n_jobs,
                                        stop_after_first_round=stop, progress=self.verbose)
            if tail and reason is None and stop is not None and len(head) <= max(2, n_jobs):
                reason = stop(outputs)  # run_folds had only its first round: ask here
            if tail and reason is None:
                epoch = choose_epoch(outputs, y)
                pending = start_folds(spec, self.train_config_.to_dict(), Z, y, folds[len(head):], len(head), epoch)
                refit = self._refit(Z, y, epoch, threads=1)
                outputs += pending.result()
                record["epochs_chosen_on_folds"] = len(head)
            record["fold_time_s"] = [round(o.fit_time_s, 2) for o in outputs]
            record["fold_epochs"] = [o.epochs_run for o in outputs]
            record["fold_best_epochs"] = [o.best_epoch for o in outputs]
        record["cross_fit_s"] = time.perf_counter() - t0 - (refit[1] if refit is not None else 0.0)
        trained = reason is None
        if refit is None:
            epoch = choose_epoch(outputs, y) if trained else 0
        net_oof = oof_logits(outputs, n, epoch) if trained else np.zeros((0, n, C), np.float32)
        # the network's out-of-fold logits at each compute-knob scale (its folds kept them per epoch)
        net_knob = {s: oof_logits(outputs, n, epoch, s) for s in (outputs[0].scales if trained else ())}
        pre = [] if oof0 is None else [oof0] + ([oof_r] if oof_r is not None else [])
        oof = np.concatenate([np.stack(pre), net_oof]) if pre else net_oof
        knob = {s: np.concatenate([np.stack(pre), z]) if pre else z for s, z in net_knob.items()}
        acc = [float(np.mean(z.argmax(axis=1) == y)) for z in oof]
        uses = None
        combination = None
        if with_exit0:
            assert exit0_fit is not None
            plain, plain_knob = oof, knob
            oof, acc, uses, combination, knob = self._select_exits(plain, y, folds, plain_knob)
            if rocket_fit is not None:  # never run a MiniRocket exit that adds nothing (skip_exits or not)
                keep = acc[1] > acc[0]
                record["rocket"] = {**rocket_fit.to_dict(), "oof_accuracy": acc[1], "used": keep}
                if not keep:
                    rocket_fit, plain = None, np.delete(plain, 1, axis=0)
                    plain_knob = {s: np.delete(z, 1, axis=0) for s, z in plain_knob.items()}
                    oof, acc, uses, combination, knob = self._select_exits(plain, y, folds, plain_knob)
            n_pre = 1 + (rocket_fit is not None)
            if combination is not None:
                record["combination"] = {**combination.to_dict(),
                                         "oof_accuracy_plain": [float(np.mean(z.argmax(axis=1) == y)) for z in plain]}
                combination = combination.padded(self.network_.n_exits + n_pre)  # network exits left out answer for themselves
            if trained and not any(uses[n_pre:]):
                reason = "no network exit beat the exits before it out of fold"
            uses += [False] * (self.network_.n_exits + n_pre - len(uses))
        refit_s = 0.0
        self.history_ = History()
        if reason is None:
            self.history_, refit_s = refit if refit is not None else self._refit(Z, y, epoch)
            curve = oof_curve(outputs, y)
            for rec in self.history_.epochs:  # the validation curve is the pooled out-of-fold one
                e = rec["epoch"] - 1
                rec.update(val_acc=curve["acc"][e].tolist(), val_loss=curve["loss"][e].tolist())
        self.network_.eval()
        if with_exit0:
            cascade = self._cascade(self.network_, exit0_fit, rocket_fit)
            if combination is not None:
                cascade = cascade.combined(combination)
            cascade = cascade.cut(uses)
            self.network_ = cascade
            self.exit0_ = {**exit0_fit.to_dict(), "validation_accuracy": acc, "validation": "out-of-fold",
                           "uses": cascade.uses, "network_trained": reason is None}
            oof = oof[: cascade.n_exits]
            knob = {s: z[: cascade.n_exits] for s, z in knob.items()} if any(cascade.uses[n_pre:]) else {}
        if reason is not None:
            knob = {}
        if knob:
            record["knob_oof_accuracy"] = {f"{s:g}": [float(np.mean(z.argmax(axis=1) == y)) for z in v]
                                           for s, v in knob.items()}
        record.update(
            epochs=epoch or None,
            oof_accuracy=acc,
            network="trained on all spectra" if reason is None else f"not trained: {reason}",
            refit_s=refit_s,
            wall_s=time.perf_counter() - t0,
        )
        self.history_.fit_time_s = record["wall_s"]
        self.history_.best_epoch = epoch if reason is None else -1
        self.cross_fit_ = record
        return oof, knob

    def _refit(self, Z: np.ndarray, y: np.ndarray, epochs: int, threads: int | None = None) -> tuple[History, float]:
        """Train ``network_`` on all spectra for ``epochs`` epochs; (history, seconds).
        ``threads``: torch threads while folds train beside it (restored after)."""
        cfg = self.train_config_ if threads is None else replace(self.train_config_, threads=threads)
        old = torch.get_num_threads()
        t1 = time.perf_counter()
        try:
            history = Trainer(cfg).fit(self.network_, Z, y, None, None, epochs=epochs)
        finally:
            torch.set_num_threads(old)
        return history, time.perf_counter() - t1

    def _wants_rocket(self) -> bool:
        """Whether to fit a MiniRocket exit: ``rocket="auto"``, aeon installed, and spectra of at
        least 9 points (its kernels' length; shorter spectra simply get none)."""
        if self.rocket not in ROCKET_KINDS:
            raise ConfigError(f"rocket={self.rocket!r} is not allowed; use one of {ROCKET_KINDS}")
        return self.rocket == "auto" and self.network_.in_length >= ROCKET_MIN_POINTS and rocket_available()

    def _fit_rocket(self, Z: np.ndarray, y: np.ndarray) -> RocketFit:
        """The MiniRocket exit on the spectra before the pipeline's standardisation (it undoes it
        itself): per-point z-scoring distorts the shapes its convolutions look for."""
        last = self.pipeline_[len(self.pipeline_) - 1] if len(self.pipeline_) else None
        affine = (last.scale_, last.mean_) if isinstance(last, Standardize) else None
        return fit_rocket_exit(Z, y, len(self.classes_), seed=self.random_state, input_affine=affine)

    def _select_exits(
        self, oof: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
        knob: dict[float, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[float], list[bool], ExitCombination | None, dict[float, np.ndarray]]:
        """Which exits to use, from the out-of-fold logits ``(n_exits, n, C)``.

        With ``combine_exits`` and more than one exit, the exit combination is fitted on all of
        them (the model's), and judged on held-out data: on each of ``folds`` it is refitted on
        the other folds' logits and applied to that fold's, so that its few weights cannot make
        an exit look better than it is (on 30 spectra they would). ``knob``: the same logits with
        the network at other compute-knob scales; each fold's combination (fitted on the other
        folds' logits at the trained scale, as the model's is) is applied to them too. Returns
        (held-out logits, their accuracy per exit, uses, combination or None, held-out knob logits).
        """
        combination = None
        knob = dict(knob or {})
        if self.combine_exits and len(oof) > 1:
            combination = fit_combination(oof, y)
            judged = np.empty(oof.shape, dtype=np.float32)
            judged_knob = {s: np.empty(z.shape, dtype=np.float32) for s, z in knob.items()}
            for tr, va in folds:
                fold_comb = fit_combination(oof[:, tr], y[tr])
                judged[:, va] = fold_comb.apply(oof[:, va])
                for s, z in knob.items():
                    judged_knob[s][:, va] = fold_comb.apply(z[:, va])
            oof, knob = judged, judged_knob
        acc = [float(np.mean(z.argmax(axis=1) == y)) for z in oof]
        return oof, acc, self._uses(acc), combination, knob

    def _uses(self, acc: list[float]) -> list[bool]:
        """Per exit, whether its held-out accuracy is strictly above every earlier exit's (or all,
        with ``skip_exits=False``)."""
        uses, best = [True], acc[0]
        for a in acc[1:]:
            uses.append(a > best or not self.skip_exits)
            best = max(best, a)
        return uses

    def _cascade(self, network: MultiExitNetwork, fit: LinearExitFit, rocket_fit: RocketFit | None = None) -> Cascade:
        rank = None if fit.projection is None else int(fit.projection.shape[0])
        head = LinearExit(network.in_length, len(self.classes_), rank=rank)
        head.set_weights(fit.weight, fit.bias, projection=fit.projection, head=fit.head)
        rocket = None if rocket_fit is None else rocket_fit.module(network.in_length, len(self.classes_))
        spec = CascadeSpec(kind=fit.kind, rank=rank, rocket=None if rocket is None else rocket.spec())
        return Cascade(network, head, spec, rocket=rocket).eval()

    def _fit_exit0(self, Z: np.ndarray, y: np.ndarray, kind: str, capped: bool | None = None) -> LinearExitFit:
        """Exit 0 by inner CV. Under ``kind="auto"`` (or ``capped=True``) PLS-DA may use at most as
        many components as keep it within twice the MACs of logistic regression on standardised
        input, the classical anchor (W*(C+1): scaling and weights): W*k + k*C <= 2*W*(C+1). Exit 0 so
        stays the cheap end of the curve; ``"pls"`` asked for explicitly keeps the usual range."""
        W, C = Z.shape[1], len(self.classes_)
        capped = kind == "auto" if capped is None else capped
        cap = max(1, (2 * W * (C + 1) - C) // (W + C)) if capped else PLS_MAX_COMPONENTS
        try:
            return fit_linear_exit(Z, y, kind=kind, seed=self.random_state, n_classes=C,
                                   max_components=min(PLS_MAX_COMPONENTS, cap))
        except ScaiError:
            raise
        except (ValueError, np.linalg.LinAlgError) as exc:  # degenerate input reaching scikit-learn/SciPy
            raise DataValueError(
                f"exit 0 could not be fitted on the preprocessed spectra ({len(Z)} x {W} points: {exc}); spectra "
                "need enough points that vary between samples -- check the file, or try --preprocessing none"
            ) from None

    def _auto_pipeline(self, X_tr: np.ndarray, y_tr: np.ndarray) -> tuple[Pipeline, np.ndarray, LinearExitFit]:
        """``preprocessing="auto"``: the candidate pipeline whose exit 0 has the best inner-CV accuracy.

        Candidates are :data:`scai.preprocessing.AUTO_CANDIDATES`, each followed by the
        standardisation; only the training part is used. Ties go to the pipeline the kind of
        axis suggests (``raman`` for a physical axis, ``deriv`` for a point index), then to the
        candidates' order. Returns the fitted pipeline, its output and its exit-0 fit.
        """
        prefer = "deriv" if self.axis_unit_ == "index" else "raman"
        order = [prefer, *[k for k in AUTO_CANDIDATES if k != prefer]]
        kind = self.exit0 if self.exit0 != "none" else "auto"
        scores: dict[str, float | None] = {}
        best: tuple[float, str, Pipeline, np.ndarray, LinearExitFit] | None = None
        for name in tqdm(order, desc="choosing preprocessing (exit 0's inner CV)", unit="pipeline",
                         disable=not self.verbose, leave=False):
            pipe = self._make_pipeline(name)
            try:
                Z = np.asarray(pipe.fit_transform(X_tr, axis=self.axis_), dtype=np.float32)
                fit = self._fit_exit0(Z, y_tr, kind)
            except (ScaiError, ValueError, np.linalg.LinAlgError) as exc:  # a pipeline that cannot run on this data
                scores[name] = None
                warnings.warn(f"preprocessing='auto': candidate {name!r} skipped ({exc})", stacklevel=3)
                continue
            acc = fit.cv_accuracy if fit.cv_accuracy is not None else 0.0
            scores[name] = acc
            if best is None or acc > best[0]:
                best = (acc, name, pipe, Z, fit)
        if best is None:
            raise ConfigError("preprocessing='auto': no candidate pipeline could run on this data; pass one explicitly")
        acc, name, pipe, Z, fit = best
        self.preprocessing_selection_ = {
            "chosen": name,
            "inner_cv_accuracy": scores,
            "rule": f"best inner-CV accuracy of exit 0 ({fit.cv_folds} folds) on the training part; "
                    f"ties: {prefer!r} (axis {self.axis_unit_}), then {list(AUTO_CANDIDATES)}",
        }
        return pipe, Z, fit

    def _add_exit0(
        self,
        network: MultiExitNetwork,
        Z_tr: np.ndarray,
        y_tr: np.ndarray,
        Z_va: np.ndarray,
        y_va: np.ndarray,
        fit: LinearExitFit | None = None,
    ) -> Cascade:
        """Fit exit 0 on the training part, put it in front, and skip exits that add nothing.

        An exit is used when its held-out (validation) accuracy is strictly above that of every
        exit before it; later network stages than the last used exit are dropped. ``fit``: the
        exit-0 fit that chose the preprocessing, reused.
        """
        if fit is None:
            fit = self._fit_exit0(Z_tr, y_tr, self.exit0)
        rocket_fit = self._fit_rocket(Z_tr, y_tr) if self._wants_rocket() else None
        cascade = self._cascade(network, fit, rocket_fit)
        with torch.inference_mode():
            logits = cascade.forward_detailed(torch.from_numpy(Z_va).unsqueeze(1)).logits
        acc = [float(np.mean(z.numpy().argmax(axis=1) == y_va)) for z in logits]
        if rocket_fit is not None and not acc[1] > acc[0]:  # never run a MiniRocket exit that adds nothing
            cascade, acc = self._cascade(network, fit), acc[:1] + acc[2:]
        cascade = cascade.cut(self._uses(acc)).eval()
        self.exit0_ = {**fit.to_dict(), "validation_accuracy": acc, "validation": "split", "uses": cascade.uses,
                       "network_trained": True}
        return cascade

    def _check_class_counts(self, y_idx: np.ndarray) -> None:
        if len(self.classes_) < 2:
            raise LabelError(f"training needs at least 2 classes; got 1 class ({_jsonable(self.classes_[0])!r})")
        counts = np.bincount(y_idx, minlength=len(self.classes_))
        if counts.min() < 2:
            bad = self.classes_[int(np.argmin(counts))]
            raise LabelError(f"class {_jsonable(bad)!r} has {counts.min()} sample(s); every class needs at least 2 to train")

    def _split(self, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction!r} is not allowed; use a number between 0 and 1")
        idx = np.arange(len(y_idx))
        n_val = max(int(round(self.val_fraction * len(idx))), len(self.classes_))
        stratify = y_idx if n_val < len(idx) - len(self.classes_) else None
        if stratify is None or np.bincount(y_idx).min() < 2:
            stratify = None
        tr, va = train_test_split(idx, test_size=n_val, random_state=self.random_state, stratify=stratify)
        return np.sort(tr), np.sort(va)

    def _encode(self, y: np.ndarray, name: str = "y") -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes_.tolist())}
        out = np.empty(len(y), dtype=np.int64)
        for i, label in enumerate(y.tolist()):
            if label not in lookup:
                raise LabelError(
                    f"{name}[{i}] = {label!r} is not a class the model knows; known classes: {self.classes_.tolist()}"
                )
            out[i] = lookup[label]
        return out

    # ------------------------------------------------------------------ axis contract
    @staticmethod
    def _validated_axis(axis: ArrayLike | None, width: int) -> np.ndarray:
        if axis is None:
            return np.arange(width, dtype=np.float64)
        axis = np.asarray(axis, dtype=np.float64)
        if axis.shape != (width,):
            raise AxisError(f"axis has length {axis.size} but X has {width} points per spectrum")
        if not np.all(np.isfinite(axis)):
            raise AxisError("axis holds NaN/inf values")
        if np.unique(axis).size != axis.size:
            raise AxisError("axis holds duplicate values")
        if np.any(np.diff(axis) <= 0):
            raise AxisError("axis must be strictly increasing; sort the columns first (scai.data.read does)")
        return axis

    def _aligned(self, X: np.ndarray, axis: ArrayLike | None) -> np.ndarray:
        """Put raw spectra on the model's training axis (resampling when needed)."""
        return align_to_axis(X, axis, self.axis_, owner=type(self).__name__)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) or scai.load(dir) first"
            )

    def check_axis_unit(self, unit: str | None, source: str = "the spectra") -> None:
        """Refuse spectra whose axis unit is known and not the model's (a Raman model given an NIR
        file in nm). Nothing is checked when either unit is unknown or a point index."""
        self._check_fitted()
        vague = (None, "", "unknown", "index")
        mine = getattr(self, "axis_unit_", "unknown")
        if unit in vague or mine in vague or _unit_key(unit) == _unit_key(mine):
            return
        raise AxisError(f"{source}: the axis is in {unit}, but the model was trained on spectra in {mine}; "
                        "these are another kind of spectra (give spectra measured like the training ones, or "
                        "retrain with them)")

    def transform_input(self, X: ArrayLike, axis: ArrayLike | None = None) -> np.ndarray:
        """Raw spectra -> the network's preprocessed input (n, W')."""
        self._check_fitted()
        X, axis = frame_input(X, axis, self.axis_)
        X = self._aligned(_as_2d_float(X), axis)
        return np.asarray(self.pipeline_.transform(X), dtype=np.float32)

    def _detailed(self, Z: np.ndarray, batch_size: int = 512, network: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Dense pass over preprocessed input: per-exit logits (n_exits, n, C) and MACs (n, n_exits)
        of ``network_`` (or of ``network``, e.g. a cascade's own network)."""
        net = self.network_ if network is None else network
        logits: list[np.ndarray] = []
        macs: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(Z), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(Z[start : start + batch_size], dtype=np.float32)).unsqueeze(1)
                out = net.forward_detailed(xb)
                logits.append(np.stack([t.numpy() for t in out.logits]))
                macs.append(out.macs.double().numpy())
        return np.concatenate(logits, axis=1), np.concatenate(macs, axis=0)

    def exit_logits(self, X: ArrayLike, axis: ArrayLike | None = None, *, preprocessed: bool = False) -> np.ndarray:
        """Per-exit logits, shape (n_exits, n, n_classes), computed at every exit."""
        self._check_fitted()
        Z = np.asarray(X, dtype=np.float32) if preprocessed else self.transform_input(X, axis)
        return self._detailed(Z)[0]

    def exit_outputs(self, X: ArrayLike, axis: ArrayLike | None = None, *, preprocessed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per-exit probabilities (n_exits, n, C), temperature-scaled, and cumulative MACs per sample (n, n_exits)."""
        self._check_fitted()
        Z = np.asarray(X, dtype=np.float32) if preprocessed else self.transform_input(X, axis)
        logits, macs = self._detailed(Z)
        probs = np.stack([softmax(l, t) for l, t in zip(logits, self.temperatures_)])
        return carry_forward(probs, getattr(self.network_, "uses", None)), macs

    def exit_proba(self, X: ArrayLike, axis: ArrayLike | None = None, *, preprocessed: bool = False) -> np.ndarray:
        """Per-exit class probabilities (n_exits, n, n_classes) after temperature scaling."""
        return self.exit_outputs(X, axis, preprocessed=preprocessed)[0]

    def predictor(self, sparse: str = "auto") -> Predictor:
        """A :class:`scai.inference.Predictor` that really stops computing at the chosen exit."""
        self._check_fitted()
        return Predictor(
            self.network_,
            temperatures=self.temperatures_,
            class_names=[str(c) for c in self.classes_],
            sparse=sparse,
            reliability=getattr(self, "reliability_", None),
            preprocessing_ms=self._preprocessing_ms(),
        )

    def _preprocessing_ms(self) -> float | None:
        cost = getattr(self, "preprocessing_cost_", None)
        return None if cost is None else cost.ms

    def predict_detailed(
        self,
        X: ArrayLike,
        axis: ArrayLike | None = None,
        *,
        policy: str = "full",
        budget: BudgetLike | None = None,
        threshold: ThresholdLike | None = None,
        batch_size: int = 256,
        on_unknown: str | None = None,
        confidence_level: float | None = None,
        on_ambiguous: str | None = None,
    ) -> PredictionBatch:
        """Run a policy with real early exit; returns per-sample prediction, exit, confidence, MACs.

        ``budget`` is the anytime budget per spectrum (``"150k"``, ``"25%"``, ``"2ms"``) or the
        mean budget of ``policy="batch"``; ``threshold`` is the threshold policy's confidence
        (one value or one per exit). An option the policy does not use is refused.

        Every result carries ``unknown_score`` / ``unknown`` and ``out_of_domain`` /
        ``domain_reason`` (see :class:`~scai.inference.PredictionBatch`); ``on_unknown`` is what a
        sample flagged unknown at an exit where it is confident does: ``"deeper"`` (the default,
        :data:`scai.inference.reliability.DEFAULT_ON_UNKNOWN`) runs it on, so an unknown spectrum
        never leaves early as confident, ``"answer"`` lets it leave flagged; ``confidence_level``
        (e.g. 0.95) adds the conformal sets, and ``on_ambiguous="deeper"`` (default ``"answer"``)
        also runs on a sample whose set there holds more than one class. ``held`` says why a
        sample was held (``"unknown"``, ``"ambiguous"``, both, or ``""``).
        """
        if policy not in _POLICIES:
            raise BudgetError(f"policy={policy!r} is not allowed; use one of {_POLICIES}")
        if threshold is not None and policy != "threshold":
            raise BudgetError(f"threshold is only used by policy 'threshold'; got policy={policy!r}")
        if budget is not None and policy not in ("anytime", "batch"):
            raise BudgetError(f"budget is only used by policies 'anytime' and 'batch'; got policy={policy!r}")
        raw, Z = self.prepare_input(X, axis)
        pred = self.predictor()
        extra = {"on_unknown": on_unknown, "confidence_level": confidence_level, "raw": raw, "batch_size": batch_size,
                 "on_ambiguous": on_ambiguous}
        if policy == "full":
            return pred.predict(Z, policy="full", **extra)
        if policy == "anytime":
            if budget is None:
                raise BudgetError("policy 'anytime' needs a budget, e.g. budget='150k' (MACs), '25%' or '2ms'")
            return pred.predict(Z, policy="anytime", budget=parse_budget(budget), **extra)
        if policy == "threshold":
            if threshold is None:
                raise BudgetError("policy 'threshold' needs threshold=P (0..1) or one value per exit")
            return pred.predict(Z, policy="threshold", thresholds=self._threshold_vector(threshold), **extra)
        if budget is None:
            raise BudgetError("policy 'batch' needs a mean budget per spectrum, e.g. budget='200k' or '25%'")
        calibration = self.calibrate_batch(budget, store=False)["calibration"]
        return pred.predict(Z, policy="batch", calibration=calibration, **extra)

    def prepare_input(self, X: ArrayLike, axis: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw spectra -> (raw spectra on the model's axis, preprocessed input); the first is
        what the raw domain checks look at."""
        self._check_fitted()
        X, axis = frame_input(X, axis, self.axis_)
        raw = self._aligned(_as_2d_float(X), axis)
        return raw, np.asarray(self.pipeline_.transform(raw), dtype=np.float32)

    def predict_sets(
        self, X: ArrayLike, axis: ArrayLike | None = None, *, confidence_level: float = 0.95
    ) -> list[list[Any]]:
        """Conformal prediction sets of the final exit at a calibrated ``confidence_level``: per
        spectrum, the plausible class labels (an empty list: no class is plausible, unknown)."""
        res = self.predict_detailed(X, axis, policy="full", confidence_level=confidence_level)
        assert res.prediction_set is not None
        return [self.classes_[row].tolist() for row in res.prediction_set]

    def _threshold_vector(self, threshold: ThresholdLike) -> np.ndarray:
        """A user's threshold(s) as the (n_exits,) vector the predictor takes."""
        return parse_thresholds(threshold, len(self.exit_macs_)).values

    def calibrate_batch(self, budget: BudgetLike, *, store: bool = True) -> dict[str, Any]:
        """Budgeted-batch thresholds for a mean per-spectrum budget, calibrated on the stored validation split.

        ``budget`` is MACs (``"200k"``, ``2e5``, a :class:`~scai.inference.Budget`) or a share of
        the full path (``"25%"``). On a network with PA blocks the compute knob is solved for
        together with the thresholds (:func:`scai.inference.knob.solve_budget`): the setting
        whose calibration answers the held-out spectra best within the budget. Returns
        ``{"budget_macs", "thresholds", "expected_mean_macs", "compute_scale", "calibration",
        "knob"}`` (``knob``: the solver's row per setting); the :class:`~scai.inference.BatchCalibration`
        is what ``Predictor.predict(policy="batch")`` takes to keep each batch within the budget,
        and it runs the network at the chosen setting.
        """
        self._check_fitted()
        b = parse_budget(budget)
        if b.unit == "ms":
            raise BudgetError(f"budgeted batch takes a budget in MACs (e.g. '200k') or a share ('25%'), not {b}")
        value = b.to_macs(self.exit_macs_)
        cal, table = solve_budget(self.knob_outputs(), self.validation_["y"], value,
                                  exit_bounds=np.asarray(self.exit_macs_, dtype=np.float64))
        thresholds = np.asarray(cal.thresholds, dtype=np.float64)
        # inf = "nobody leaves at this exit"; JSON has no inf, so the stored copy uses null.
        if store:  # kept in config.json on save; a server asking per request passes store=False
            self.thresholds_[f"{value:g}"] = {
                "budget_macs": value,
                "thresholds": Thresholds(thresholds).to_json(),
                "expected_mean_macs": float(cal.expected_mean_cost),
                "compute_scale": float(cal.compute_scale),
            }
        return {
            "budget_macs": value,
            "thresholds": thresholds,
            "expected_mean_macs": float(cal.expected_mean_cost),
            "compute_scale": float(cal.compute_scale),
            "calibration": cal,
            "knob": table,
        }

    def validation_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-exit probabilities, per-sample cumulative MACs) on the held-out spectra calibration
        rests on: the out-of-fold predictions under cross-fitting, else the validation split."""
        self._check_fitted()
        probs = np.stack([softmax(z, t) for z, t in zip(self.validation_["logits"], self.temperatures_)])
        return carry_forward(probs, getattr(self.network_, "uses", None)), np.asarray(self.validation_["macs"])

    def knob_outputs(self) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """(scale, per-exit probabilities, per-sample cumulative MACs) on the held-out spectra at
        every compute-knob setting kept at fit time, the trained one (1.0) first."""
        probs, costs = self.validation_outputs()
        outputs = [(1.0, probs, costs)]
        uses = getattr(self.network_, "uses", None)
        v = self.validation_
        for i, s in enumerate(np.asarray(v.get("knob_scales", []), dtype=np.float64)):
            p = np.stack([softmax(z, t) for z, t in zip(v["knob_logits"][i], self.temperatures_)])
            outputs.append((float(s), carry_forward(p, uses), np.asarray(v["knob_macs"][i])))
        return outputs

    def _knob_outputs(
        self, Z_va: np.ndarray, knob_oof: dict[float, np.ndarray] | None, macs_va: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``validation_`` entries at each compute-knob setting: ``knob_scales`` (S,),
        ``knob_logits`` (S, n_exits, n, C) -- ``knob_oof`` under cross-fitting, else the final
        model's on ``Z_va`` -- and the final model's per-sample MACs ``knob_macs`` (S, n, n_exits).
        Empty without PA blocks. ``macs_va``: the MACs at the trained setting; the exits before a
        cascade's network cost the same at every setting, so with out-of-fold logits only the
        network runs again (not exit 0 or the MiniRocket exit)."""
        scales = tuple(knob_oof) if knob_oof is not None else knob_scales(self.network_)
        if not scales:
            return {}
        logits, macs = [], []
        for s in scales:
            if knob_oof is not None and isinstance(self.network_, Cascade):
                k0, net = self.network_.net_start, self.network_.network
                with compute_scale(net, s):
                    m_net = self._detailed(Z_va, network=net)[1]
                m = macs_va.copy()
                m[:, k0:] = macs_va[:, k0 - 1 : k0] + m_net[:, : m.shape[1] - k0]
                logits.append(knob_oof[s])
            else:
                with compute_scale(self.network_, s):
                    z, m = self._detailed(Z_va)
                logits.append(knob_oof[s] if knob_oof is not None else z)
            macs.append(m)
        return {"knob_scales": np.asarray(scales, dtype=np.float64),
                "knob_logits": np.stack(logits).astype(np.float32), "knob_macs": np.stack(macs)}

    def predict_proba(self, X: ArrayLike, axis: ArrayLike | None = None) -> np.ndarray:
        """Final-exit class probabilities (temperature-scaled)."""
        return self.exit_proba(X, axis)[-1]

    def predict(
        self,
        X: ArrayLike,
        axis: ArrayLike | None = None,
        *,
        policy: str = "full",
        budget: BudgetLike | None = None,
        threshold: ThresholdLike | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Class labels. With ``policy=`` (and its ``budget=`` / ``threshold=``) runs that inference
        policy with real early exit; see :meth:`predict_detailed`."""
        self._check_fitted()
        if policy != "full" or budget is not None or threshold is not None:
            result = self.predict_detailed(
                X, axis, policy=policy, budget=budget, threshold=threshold, batch_size=batch_size
            )
            return self.classes_[np.asarray(result.class_index)]
        return self.classes_[np.argmax(self.predict_proba(X, axis), axis=1)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the model directory (see :mod:`scai.model_dir`): config.json, weights, the
        preprocessed validation split and the training history, atomically."""
        self._check_fitted()
        config = {
            "model_name": self.network_.name,
            "in_length": int(self.network_.in_length),
            "n_classes": int(self.network_.n_classes),
            "model_config": asdict(self.network_.config),
            "cascade": self._cascade_record(),
            "preprocessing_selection": getattr(self, "preprocessing_selection_", None),
            "cross_fit": getattr(self, "cross_fit_", None),
            "preprocessing_cost": None if getattr(self, "preprocessing_cost_", None) is None
            else self.preprocessing_cost_.to_dict(),
            **self._reliability_record(),
            "class_names": [_jsonable(c) for c in self.classes_.tolist()],
            "class_dtype": self.classes_.dtype.kind,
            "axis": self.axis_.tolist(),
            "axis_unit": self.axis_unit_,
            "n_features_in": int(self.n_features_in_),
            "preprocessing": json.loads(self.pipeline_.to_json()),
            "exit_macs": self.exit_macs_,
            "mac_convention": "multiply-accumulates; FLOPs = 2 x MACs",
            "temperatures": np.asarray(self.temperatures_).tolist(),
            "thresholds": self.thresholds_,
            "default_budget": self.default_budget_,
            "train_config": self.train_config_.to_dict(),
            "estimator_params": {**self.get_params(deep=False), "preprocessing": preprocessing_to_json(self.preprocessing)},
            "history_summary": {
                "best_epoch": self.history_.best_epoch,
                "epochs_run": len(self.history_.epochs),
                "fit_time_s": self.history_.fit_time_s,
                "epoch_cap": getattr(self, "epoch_cap_", None),
                "estimator_fit_s": getattr(self, "fit_time_s_", None),
            },
        }
        files = ModelFiles(config=config, state_dict=self.network_.state_dict(), validation=self.validation_)
        return save_model_dir(directory, files, history=self.history_,
                              fitted_rows=getattr(self, "fitted_row_digests_", None))

    def _reliability_record(self) -> dict[str, Any]:
        rel = getattr(self, "reliability_", None)
        return {"ood": None, "domain": None, "conformal": None} if rel is None else rel.to_config()

    @property
    def first_exit_number(self) -> int:
        """How tables and CSVs number the first exit: 0 for a cascade's linear exit 0 (the
        network's exits then keep the paper's numbers 1..L), 1 for a network alone."""
        return 0 if isinstance(getattr(self, "network_", None), Cascade) else 1

    def _cascade_record(self) -> dict[str, Any] | None:
        net = self.network_
        if not isinstance(net, Cascade):
            return None
        comb = None if net.combination is None else net.combination.to_dict()
        return {**net.spec.to_dict(), "uses": list(net.uses), "n_exits": int(net.n_exits),
                "fit": self.exit0_ or {}, "combination": comb}

    @classmethod
    def load(cls, directory: str | Path) -> SCAIClassifier:
        """Rebuild a fitted classifier from a model directory (never unpickles)."""
        mdir = ModelDir(directory)
        files = mdir.load()
        c = files.config
        params = dict(c.get("estimator_params", {}))
        params["preprocessing"] = preprocessing_from_json(params.get("preprocessing", "auto"))
        est = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
        try:
            est.network_ = create_model(c["model_name"], int(c["in_length"]), int(c["n_classes"]), **c["model_config"])
            casc = c.get("cascade")
            est.exit0_ = None
            if casc:
                spec = CascadeSpec.from_dict(casc)
                head = LinearExit(int(c["in_length"]), int(c["n_classes"]), rank=spec.rank)
                rocket = None if spec.rocket is None else RocketExit(int(c["in_length"]), int(c["n_classes"]), **spec.rocket)
                comb = casc.get("combination")
                comb = None if comb is None else ExitCombination.from_dict(comb, f"{directory}: cascade.combination")
                est.network_ = Cascade(est.network_, head, spec, uses=casc["uses"], n_exits=int(casc["n_exits"]),
                                       rocket=rocket, combination=comb)
                est.exit0_ = dict(casc.get("fit") or {})
            est.preprocessing_selection_ = c.get("preprocessing_selection")
            cost = c.get("preprocessing_cost")  # older model dirs: counted MACs only, nothing timed
            est.preprocessing_cost_ = None if cost is None else PreprocessingCost.from_dict(cost, f"{directory}/config.json preprocessing_cost")
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{directory}: config.json describes a network this scai cannot build ({exc})") from exc
        load_state_checked(est.network_, files.state_dict, str(mdir.file(WEIGHTS)))
        est.network_.eval()
        kind = c.get("class_dtype", "U")
        names = c["class_names"]
        est.classes_ = np.asarray(names, dtype=np.int64 if kind in "iu" else (np.float64 if kind == "f" else str))
        est.axis_ = np.asarray(c["axis"], dtype=np.float64)
        est.axis_unit_ = c.get("axis_unit", "unknown")
        est.n_features_in_ = int(c.get("n_features_in", est.axis_.size))
        est.pipeline_ = Pipeline.from_json(json.dumps(c["preprocessing"]))
        if est.preprocessing_cost_ is None:
            est.preprocessing_cost_ = est.pipeline_.cost(measure=False)
        est.exit_macs_ = [int(m) for m in c["exit_macs"]]
        if est.exit_macs_ != [int(m) for m in est.network_.exit_macs()]:
            raise ModelFileError(f"{directory}: per-exit MACs in config.json do not match the rebuilt network")
        est.temperatures_ = np.asarray(c.get("temperatures", [1.0] * len(est.exit_macs_)), dtype=np.float64)
        est.thresholds_ = dict(c.get("thresholds", {}))
        est.default_budget_ = c.get("default_budget")
        est.train_config_ = TrainConfig.from_dict(c.get("train_config", {}))
        summary = c.get("history_summary") or {}
        est.epoch_cap_, est.fit_time_s_ = summary.get("epoch_cap"), summary.get("estimator_fit_s")
        history = mdir.history()
        est.history_ = History.from_dict(history) if history is not None else History()
        est.validation_ = {k: np.asarray(v) for k, v in files.validation.items()}
        est.cross_fit_ = c.get("cross_fit")
        from scai.inference.reliability import Reliability

        est.reliability_ = Reliability.from_config(c, f"{directory}/config.json")
        if "logits" not in est.validation_ and "X" in est.validation_:  # written before cross-fitting
            Z = est.validation_.pop("X")
            est.validation_["logits"], est.validation_["macs"] = est._detailed(Z)
        return est

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


def _unit_key(unit: str) -> str:
    """Spellings of one unit compare equal: "cm-1", "cm^-1", "1/cm", "CM-1"."""
    u = str(unit).strip().lower().replace(" ", "").replace("^", "").replace("⁻¹", "-1")
    return {"1/cm": "cm-1", "wavenumbers": "cm-1", "wavenumber": "cm-1", "nanometers": "nm", "nanometer": "nm"}.get(u, u)


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def load(directory: str | Path) -> SCAIClassifier:
    """Load a model directory written by :meth:`SCAIClassifier.save` or ``scai train``."""
    return SCAIClassifier.load(directory)

