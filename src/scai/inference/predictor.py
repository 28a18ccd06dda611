"""Real early exit: run a multi-exit network stage by stage and drop samples as they leave.

The policies in :mod:`scai.inference.policies` decide offline from every exit's output, which is
what evaluation needs but saves no compute. :class:`Predictor` runs the network through its
stage contract (``network.run_stage(i, features, return_macs=True)``, see ``docs/CONTRACTS.md``)
and removes a sample from the batch as soon as it has answered, so the later, costlier stages
only see the samples that still need them. The loop itself is :func:`scai.inference.exit_loop.run_exit_loop`
(shared with the server, the edge client and the offline policies); this module supplies the
PyTorch stage runner (:class:`TorchStages`) and turns policy arguments into exit rules. With the
same thresholds it reaches exactly the decisions of :func:`~scai.inference.threshold` applied to
``forward_exits`` outputs.

``scai.inference`` imports this module (and so PyTorch) only when ``Predictor`` is first used.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch

from scai.errors import BudgetError, ConfigError, DataValueError, LabelError
from scai.inference.budget import Budget, as_macs_vector, parse_budget
from scai.inference.calibration import fit_temperatures, softmax
from scai.inference.exit_loop import run_exit_loop
from scai.inference.policies import (
    AnytimeRule,
    BatchCalibration,
    BatchRule,
    FullRule,
    PolicyResult,
    ThresholdRule,
    calibrate_budgeted_batch,
)
from scai.inference.thresholds import as_thresholds
from scai.models.knob import compute_scale, current_scale

__all__ = ["Predictor", "PredictionBatch", "TorchStages"]

Policy = Literal["threshold", "anytime", "batch", "full"]
_POLICIES = ("threshold", "anytime", "batch", "full")
_MODES = ("auto", "sparse", "dense")


@dataclass(frozen=True)
class PredictionBatch:
    """Per-sample answers of :meth:`Predictor.predict`, with what they cost.

    Attributes
    ----------
    prediction : ndarray, shape (n,)
        Class names when the predictor knows them, else class indices.
    class_index : ndarray of int, shape (n,)
    exit : ndarray of int, shape (n,)
        0-based exit that answered.
    confidence : ndarray of float, shape (n,)
        Largest (temperature-scaled) probability at that exit.
    probabilities : ndarray of float, shape (n, n_classes)
        Temperature-scaled probabilities at that exit.
    macs : ndarray of float, shape (n,)
        MACs actually spent on each sample (the sum of what its stages reported).
    flagged : ndarray of bool, shape (n,)
        Anytime policy: even exit 1 did not fit the sample's budget. Batch policy: the batch
        guard sent the sample out before its threshold was reached.
    wall_time_s : float
        Wall-clock time of the whole call.
    policy : str
    thresholds : ndarray or None
        Thresholds used by the threshold policy.
    budget_macs : ndarray or None
        Per-sample budget in MACs used by the anytime policy.
    budget_conversion : str
        How the budget was turned into MACs (``"none"``, ``"macs"`` or the measured
        milliseconds-to-MACs table).
    reason : ndarray of str, shape (n,)
        Why each sample left where it did (:data:`~scai.inference.exit_loop.REASONS`).
    held : ndarray of str, shape (n,), or None
        Why a sample was kept from leaving as confident at an earlier exit and ran deeper
        (:data:`~scai.inference.exit_loop.HELD`): ``"unknown"`` (flagged unknown there, with
        ``on_unknown="deeper"``), ``"ambiguous"`` (its conformal set there held more than one
        class, with ``on_ambiguous="deeper"``), both, or ``""`` (not held).
    unknown_score : ndarray of float, shape (n,), or None
        Unknown-class score at the answering exit (higher = more unknown; see
        :mod:`scai.inference.ood`); None when the model stores no detector.
    unknown : ndarray of bool, shape (n,), or None
        The score is above that exit's threshold (calibrated to the model's false-reject rate).
    out_of_domain : ndarray of bool, shape (n,), or None
        The spectrum failed the input-domain check (raw checks, Hotelling T², Q); None when
        the predictor was given neither a domain check nor raw spectra.
    domain_reason : ndarray of str, shape (n,), or None
        Why (``""`` when in domain).
    prediction_set : ndarray of bool, shape (n, n_classes), or None
        With ``confidence_level``: the conformal set at the answering exit (empty = unknown).
    confidence_level : float or None
    notes : tuple of str
        What the model could not say (a component it does not store).
    """

    prediction: np.ndarray
    class_index: np.ndarray
    exit: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    macs: np.ndarray
    flagged: np.ndarray
    wall_time_s: float
    policy: str
    thresholds: np.ndarray | None = None
    budget_macs: np.ndarray | None = None
    budget_conversion: str = "none"
    reason: np.ndarray | None = None
    held: np.ndarray | None = None
    unknown_score: np.ndarray | None = None
    unknown: np.ndarray | None = None
    out_of_domain: np.ndarray | None = None
    domain_reason: np.ndarray | None = None
    prediction_set: np.ndarray | None = None
    confidence_level: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def mean_macs(self) -> float:
        """Mean MACs per sample actually spent."""
        return float(np.mean(self.macs)) if self.macs.size else 0.0

    def accuracy(self, y: np.ndarray) -> float:
        """Accuracy against class indices or class names."""
        y = np.asarray(y)
        if y.shape != self.class_index.shape:
            raise LabelError(f"y has shape {y.shape}; expected {self.class_index.shape}")
        ref = self.class_index if np.issubdtype(y.dtype, np.integer) else self.prediction
        return float(np.mean(ref == y)) if y.size else float("nan")

    def to_policy_result(self) -> PolicyResult:
        """The same decisions as a :class:`PolicyResult` (class indices)."""
        return PolicyResult(self.exit, self.class_index, self.confidence, self.macs, self.flagged)


class TorchStages:
    """The stage runner of a PyTorch multi-exit network (``run_stage`` of docs/CONTRACTS.md).

    Runs under ``torch.inference_mode``; features stay tensors between stages, logits and MACs
    come back as float64 NumPy arrays.
    """

    def __init__(self, network: Any) -> None:
        self.network = network
        self.n_exits = int(network.n_exits)
        self.n_classes = int(network.n_classes)
        self.uses = getattr(network, "uses", None)  # a cascade's skipped exits
        self.combination = getattr(network, "combination", None)  # ... and its exit combination

    def inputs(self, X: np.ndarray, start_stage: int) -> Any:
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        return x.unsqueeze(1) if start_stage == 0 and x.ndim == 2 else x

    def run(self, k: int, features: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            features, logits, macs = self.network.run_stage(k, features, return_macs=True)
        z = logits.detach().to("cpu").double().numpy()
        m = macs.detach().to("cpu").double().numpy() if isinstance(macs, torch.Tensor) else np.asarray(macs, float)
        return features, z, np.broadcast_to(m, (z.shape[0],)).astype(np.float64)

    def compute(self, scale: float) -> Any:
        """Context manager: the network's PA blocks at compute-knob ``scale`` (:mod:`scai.models.knob`)."""
        return compute_scale(self.network, scale)

    def take(self, features: Any, keep: np.ndarray) -> Any:
        idx = torch.from_numpy(np.flatnonzero(keep))
        if isinstance(features, (tuple, list)):
            return type(features)(f.index_select(0, idx) for f in features)
        return features.index_select(0, idx)

    def rows(self, features: Any, mask: np.ndarray) -> np.ndarray:
        return self.take(features, mask).detach().to("cpu").numpy()


class Predictor:
    """Answer spectra with a multi-exit network, spending compute only where it is needed.

    Parameters
    ----------
    network : torch.nn.Module
        A multi-exit network following the stage contract of ``docs/CONTRACTS.md``
        (``n_exits``, ``in_length``, ``n_classes``, ``run_stage``, ``exit_macs``). It is put in
        eval mode and, when it has ``set_execution``, in the requested execution mode.
    temperatures : array-like of shape (n_exits,), optional
        Per-exit temperatures (see :func:`~scai.inference.fit_temperatures`). ``None`` means 1
        until :meth:`calibrate` fits them (it does by default).
    class_names : sequence of str, optional
        Names reported in :attr:`PredictionBatch.prediction`.
    sparse : {"auto", "sparse", "dense"} or bool
        Execution mode of position-adaptive networks (``network.set_execution``); ignored by
        networks without one. ``True``/``False`` mean ``"sparse"``/``"dense"``.
    threads : int, optional
        Torch intra-op threads while predicting (restored afterwards); ``None`` leaves it.
    thresholds : array-like, optional
        Default thresholds of the threshold policy; :meth:`calibrate` sets them.
    reliability : Reliability, optional
        The model's unknown-class detector, domain check and conformal sets
        (:class:`scai.inference.reliability.Reliability`); every prediction then carries them.
    preprocessing_ms : float, optional
        Milliseconds per spectrum the preprocessing takes before the network (the model's
        ``preprocessing_cost_``); a budget in ms then covers both, and the network gets what is
        left. ``None``: a ms budget is the network's alone.
    """

    def __init__(
        self,
        network: Any,
        *,
        temperatures: Sequence[float] | np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        sparse: str | bool = "auto",
        threads: int | None = None,
        thresholds: Sequence[float] | np.ndarray | None = None,
        reliability: Any = None,
        preprocessing_ms: float | None = None,
    ) -> None:
        for attr in ("n_exits", "run_stage", "exit_macs", "in_length", "n_classes"):
            if not hasattr(network, attr):
                raise TypeError(
                    f"network {type(network).__name__} has no {attr!r}; expected a multi-exit network "
                    "following the stage contract (docs/CONTRACTS.md)"
                )
        self.network = network
        self.n_exits = int(network.n_exits)
        self.exit_macs = np.asarray(network.exit_macs(), dtype=np.float64)
        if self.exit_macs.shape != (self.n_exits,):
            raise ValueError(
                f"network.exit_macs() has {self.exit_macs.size} values; expected n_exits={self.n_exits}"
            )
        if temperatures is None:
            self.temperatures = np.ones(self.n_exits)
        else:
            t = np.asarray(temperatures, dtype=np.float64).reshape(-1)
            if t.shape != (self.n_exits,) or np.any(~np.isfinite(t)) or np.any(t <= 0):
                raise DataValueError(
                    f"temperatures={temperatures!r} is not allowed; use {self.n_exits} finite values > 0"
                )
            self.temperatures = t
        names = class_names if class_names is not None else getattr(network, "class_names", None)
        if names is not None and len(names) != int(network.n_classes):
            raise LabelError(
                f"class_names has {len(names)} names; expected n_classes={int(network.n_classes)}"
            )
        self.class_names = tuple(str(c) for c in names) if names is not None else None
        if isinstance(sparse, bool):
            sparse = "sparse" if sparse else "dense"
        if sparse not in _MODES:
            raise ConfigError(f"sparse={sparse!r} is not allowed; use one of {_MODES} or a bool")
        self.execution_mode = sparse
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r} is not allowed; use a positive int or None")
        self.threads = threads
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if preprocessing_ms is not None and (not np.isfinite(preprocessing_ms) or preprocessing_ms < 0):
            raise ConfigError(f"preprocessing_ms={preprocessing_ms!r} is not allowed; use a finite number >= 0 or None")
        self.preprocessing_ms = None if preprocessing_ms is None else float(preprocessing_ms)
        self.calibration_: BatchCalibration | None = None
        self.reliability = reliability
        self._latency_cache: dict[int, np.ndarray] = {}
        network.eval()
        if hasattr(network, "set_execution"):
            network.set_execution(sparse)

    # -----------------------------------------------------------------------------------------
    # helpers

    @contextmanager
    def _torch_threads(self) -> Iterator[None]:
        old = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if self.threads is not None:
                torch.set_num_threads(old)

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        W = int(self.network.in_length)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != W:
            raise DataValueError(f"X has shape {X.shape}; expected (n_samples, {W}) preprocessed spectra")
        if not np.issubdtype(X.dtype, np.number):
            raise DataValueError(f"X has dtype {X.dtype}; expected float32 spectra")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if not np.all(np.isfinite(X)):
            bad = int(np.argwhere(~np.isfinite(X))[0, 0])
            raise DataValueError(f"X row {bad} contains NaN or inf; expected finite values")
        return X

    @staticmethod
    def _check_batch_size(batch_size: int) -> int:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} is not allowed; use a positive int")
        return int(batch_size)

    def _stage(self, i: int, features: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Run stage ``i``; return features, float64 logits (B, C) and MACs spent (B,)."""
        features, logits, macs = self.network.run_stage(i, features, return_macs=True)
        b = logits.shape[0]
        z = logits.detach().to("cpu").double().numpy()
        m = macs.detach().to("cpu").double().numpy() if hasattr(macs, "detach") else np.asarray(macs, float)
        return features, z, np.broadcast_to(m, (b,)).astype(np.float64)

    # -----------------------------------------------------------------------------------------
    # full pass, calibration, latency

    def exit_outputs(self, X: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Run every stage on every sample: logits of all exits and cumulative MACs.

        Returns
        -------
        logits : ndarray, shape (n_exits, n, n_classes), float64
            Each exit's logits before temperature scaling (combined with the earlier exits'
            when the network has an exit combination, as the exit loop answers with).
        costs : ndarray, shape (n, n_exits), float64
            Cumulative MACs actually spent per sample to reach each exit.
        """
        X = self._check_X(X)
        batch_size = self._check_batch_size(batch_size)
        n = X.shape[0]
        logits = np.zeros((self.n_exits, n, int(self.network.n_classes)))
        costs = np.zeros((n, self.n_exits))
        with self._torch_threads(), torch.inference_mode():
            for start in range(0, n, batch_size):
                sl = slice(start, min(start + batch_size, n))
                feats: Any = torch.from_numpy(X[sl]).unsqueeze(1)
                spent = np.zeros(sl.stop - sl.start)
                for k in range(self.n_exits):
                    feats, z, m = self._stage(k, feats)
                    spent = spent + m
                    logits[k, sl] = z
                    costs[sl, k] = spent
        comb = getattr(self.network, "combination", None)
        return (logits if comb is None else comb.apply(logits)), costs

    def calibrate(
        self,
        X_val: np.ndarray,
        y_val: np.ndarray,
        budget: str | float | Budget,
        *,
        fit_temperature: bool = True,
        batch_size: int = 256,
    ) -> BatchCalibration:
        """Fit temperatures (by default) and budgeted-batch thresholds on validation data.

        Temperatures are fitted first so that the thresholds are set on the same scaled
        confidences the predictor will compare them with. The result's thresholds become the
        default of :meth:`predict`.

        Parameters
        ----------
        X_val : ndarray, shape (n, W)
        y_val : ndarray of int, shape (n,)
        budget : str, float or Budget
            Target mean cost per spectrum (MACs, or milliseconds converted with
            :meth:`measure_stage_latency`).
        fit_temperature : bool
            Fit per-exit temperature scaling (on by default; see
            :func:`~scai.inference.fit_temperatures`).
        """
        logits, costs = self.exit_outputs(X_val, batch_size)
        if fit_temperature:
            self.temperatures = fit_temperatures(logits, np.asarray(y_val))
        b = parse_budget(budget)
        budget_macs, _ = self.budget_to_macs(b, batch_size=batch_size)
        probs = softmax(logits, self.temperatures)
        # calibrated at the knob the network is set to (set_compute), so the loop runs it there
        cal = replace(calibrate_budgeted_batch(probs, costs, float(budget_macs)), compute_scale=current_scale(self.network))
        self.thresholds = cal.thresholds
        self.calibration_ = cal
        return cal

    def measure_stage_latency(
        self, batch_size: int = 256, *, X: np.ndarray | None = None, repeats: int = 5, refresh: bool = False
    ) -> np.ndarray:
        """Milliseconds per spectrum that each stage takes on this machine, at ``batch_size``.

        Measured once per batch size and cached; millisecond budgets are converted with the
        cached table. Pass ``X`` (representative spectra) to re-measure on real data, which
        matters for position-adaptive networks whose speed depends on the input; without it,
        standard normal noise is used. Median over ``repeats`` after one warm-up pass.

        Returns
        -------
        ndarray, shape (n_exits,)
        """
        batch_size = self._check_batch_size(batch_size)
        if X is None and not refresh and batch_size in self._latency_cache:
            return self._latency_cache[batch_size].copy()
        W = int(self.network.in_length)
        if X is None:
            data = np.random.default_rng(0).standard_normal((batch_size, W)).astype(np.float32)
        else:
            data = np.resize(self._check_X(X), (batch_size, W)).astype(np.float32)
        times = np.zeros((max(int(repeats), 1), self.n_exits))
        with self._torch_threads(), torch.inference_mode():
            x = torch.from_numpy(data).unsqueeze(1)
            for r in range(-1, times.shape[0]):  # r = -1 is the warm-up
                feats: Any = x
                for k in range(self.n_exits):
                    t0 = time.perf_counter()
                    feats, _, _ = self.network.run_stage(k, feats, return_macs=True)
                    dt = time.perf_counter() - t0
                    if r >= 0:
                        times[r, k] = dt
        ms = np.median(times, axis=0) * 1e3 / batch_size
        self._latency_cache[batch_size] = ms
        return ms.copy()

    def set_stage_latency(self, ms: Any, batch_size: int = 256) -> None:
        """Use these per-stage ms per spectrum (a stored :class:`~scai.inference.latency.LatencyTable`)
        instead of measuring, so millisecond budgets convert the same way on every run."""
        ms = np.asarray(ms, dtype=np.float64)
        if ms.shape != (self.n_exits,) or not np.all(np.isfinite(ms)) or np.any(ms < 0):
            raise DataValueError(f"stage latencies must be {self.n_exits} finite numbers >= 0; got {ms.tolist()}")
        self._latency_cache[self._check_batch_size(batch_size)] = ms.copy()

    def budget_to_macs(self, budget: Any, *, batch_size: int = 256) -> tuple[np.ndarray | float, str]:
        """Turn a budget (a :class:`Budget`, a string, MACs or a per-sample MAC array) into MACs.

        Milliseconds are converted with :meth:`Budget.to_macs` through the stage latencies of
        :meth:`measure_stage_latency`; a share (``"25%"``) through the full path's MACs.

        Returns
        -------
        budget_macs : float or ndarray
        conversion : str
            ``"macs"``, or how the budget was converted.
        """
        if isinstance(budget, np.ndarray) and budget.ndim == 1:
            return as_macs_vector(budget, budget.shape[0]), "macs"
        b = parse_budget(budget)
        if b.unit == "macs":
            return b.value, "macs"
        if b.unit == "fraction":
            macs = b.to_macs(self.exit_macs)
            return macs, f"{b} -> {macs:,.0f} MACs (full path {self.exit_macs[-1]:,.0f} MACs)"
        ms = self.measure_stage_latency(batch_size)
        pre = ""
        if self.preprocessing_ms is not None:  # the budget covers preprocessing too
            left = b.value - self.preprocessing_ms
            if left <= 0:
                raise BudgetError(f"budget {b.value:g} ms per spectrum: preprocessing alone takes "
                                  f"{self.preprocessing_ms:.3g} ms; raise the budget or use a cheaper preprocessing")
            pre = f" ({b.value:g} ms less {self.preprocessing_ms:.3g} ms of preprocessing)"
            b = Budget(left, "ms")
        macs = b.to_macs(self.exit_macs, ms)
        conversion = (
            f"{b.value:g} ms{pre} -> {macs:,.0f} MACs via stage latencies (measured on this machine, or a stored table) at batch "
            f"{batch_size}: cumulative ms/spectrum per exit "
            + ", ".join(f"{c:.4g}" for c in np.cumsum(ms))
        )
        return macs, conversion

    # -----------------------------------------------------------------------------------------
    # prediction

    def rule(
        self,
        policy: Policy,
        n: int,
        *,
        thresholds: Any = None,
        budget: Any = None,
        batch_size: int = 256,
        calibration: BatchCalibration | None = None,
    ) -> tuple[Any, np.ndarray | None, np.ndarray | None, str]:
        """The exit rule of ``policy`` for ``n`` samples, with the thresholds and budgets it uses.

        Returns ``(rule, thresholds, budget_macs, budget_conversion)``; arguments a policy does
        not use are refused rather than ignored.
        """
        if policy not in _POLICIES:
            raise BudgetError(f"policy={policy!r} is not allowed; use one of {_POLICIES}")
        L = self.n_exits
        if thresholds is not None and policy != "threshold":
            raise BudgetError(f"thresholds are only used by policy 'threshold'; got policy={policy!r}")
        if budget is not None and policy not in ("anytime",):
            hint = " (budgeted batch takes its budget through calibrate() or calibration=)" if policy == "batch" else ""
            raise BudgetError(f"budget is only used by policy 'anytime'; got policy={policy!r}{hint}")
        if calibration is not None and policy != "batch":
            raise BudgetError(f"calibration is only used by policy 'batch'; got policy={policy!r}")
        if policy == "full":
            return FullRule(), None, None, "none"
        if policy == "threshold":
            raw = thresholds if thresholds is not None else self.thresholds
            if raw is None:
                raise BudgetError(
                    "thresholds=None and the predictor is not calibrated; pass thresholds or call "
                    "calibrate() first, or use policy='anytime' or 'full'"
                )
            th = as_thresholds(raw, L).values
            return ThresholdRule(th), th, None, "none"
        if policy == "batch":
            cal = calibration if calibration is not None else self.calibration_
            if cal is None:
                raise BudgetError(
                    "policy='batch' needs a calibration; call calibrate(X_val, y_val, budget) first "
                    "or pass calibration="
                )
            rule = BatchRule(cal, L, exit_bounds=self.exit_macs)  # full-compute bounds: the budget holds per batch
            return rule, rule.thresholds, np.full(n, float(cal.budget)), "none"
        if budget is None:
            raise BudgetError("budget=None is not allowed with policy='anytime'; pass e.g. '150k', '25%' or '3ms'")
        value, conversion = self.budget_to_macs(budget, batch_size=batch_size)
        budget_macs = as_macs_vector(value, n)
        # Static cost of each next stage at full compute: the anytime look-ahead.
        next_cost = np.append(np.diff(self.exit_macs), np.inf)
        return AnytimeRule(budget_macs, next_cost), None, budget_macs, conversion

    def predict(
        self,
        X: np.ndarray,
        policy: Policy = "threshold",
        thresholds: Any = None,
        budget: Any = None,
        batch_size: int = 256,
        calibration: BatchCalibration | None = None,
        *,
        on_unknown: str | None = None,
        confidence_level: float | None = None,
        raw: np.ndarray | None = None,
        on_ambiguous: str | None = None,
    ) -> PredictionBatch:
        """Classify spectra, letting each sample leave at its exit.

        Parameters
        ----------
        X : ndarray, shape (n, W)
            Preprocessed spectra (float32).
        policy : {"threshold", "anytime", "batch", "full"}
            ``"threshold"``: leave at the first exit whose confidence >= its threshold (given,
            or calibrated). ``"anytime"``: a sample stops before the next stage whenever what it
            has spent plus that stage's full-compute cost (from ``network.exit_macs()``) would
            exceed its budget, so it never exceeds it unless exit 1 alone does (then flagged).
            ``"batch"``: budgeted batch; each forward batch of ``batch_size`` spectra uses the
            calibration's thresholds and :func:`~scai.inference.batch_guard`, so its mean cost
            stays within the calibrated budget. ``"full"``: every sample runs to the last exit.
        thresholds : Thresholds or array-like, optional
            Overrides the calibrated thresholds (one value, n_exits - 1 or n_exits values).
        budget : str, float, Budget or ndarray of shape (n,)
            Anytime budget per spectrum: MACs, a share of the full path (``"25%"``) or a latency
            such as ``"3ms"``.
        batch_size : int
            Samples per forward batch; also the batch size latencies are measured at.
        calibration : BatchCalibration, optional
            For ``policy="batch"``; defaults to the one :meth:`calibrate` made.
        on_unknown : {"deeper", "answer"}, optional
            With a reliability record: what a sample flagged unknown at an exit where it is
            confident does (:data:`scai.inference.reliability.ON_UNKNOWN`): ``"deeper"`` (the
            default, :data:`~scai.inference.reliability.DEFAULT_ON_UNKNOWN`) runs it on
            (``held="unknown"``; reason ``"unknown"`` when it reaches the last exit),
            ``"answer"`` lets it leave flagged.
        confidence_level : float, optional
            Also return the conformal set at this calibrated level (``prediction_set``).
        raw : ndarray, shape (n, W_raw), optional
            The raw spectra ``X`` was preprocessed from, for the raw domain checks.
        on_ambiguous : {"answer", "deeper"}, optional
            ``"deeper"``: a sample whose conformal set at ``confidence_level`` holds more than
            one class at an exit where it is confident runs on (``held="ambiguous"``; reason
            ``"ambiguous"`` at the last exit); needs ``confidence_level``. Default ``"answer"``
            (:data:`~scai.inference.reliability.DEFAULT_ON_AMBIGUOUS`).

        Returns
        -------
        PredictionBatch
        """
        from scai.inference.reliability import DEFAULT_ON_AMBIGUOUS, DEFAULT_ON_UNKNOWN, Reliability

        X = self._check_X(X)
        batch_size = self._check_batch_size(batch_size)
        rule, th, budget_macs, conversion = self.rule(
            policy, X.shape[0], thresholds=thresholds, budget=budget, batch_size=batch_size, calibration=calibration
        )
        rel = self.reliability
        hook = None if rel is None else rel.hook(on_unknown or DEFAULT_ON_UNKNOWN)
        if confidence_level is not None and (rel is None or rel.conformal is None):
            raise ConfigError("confidence_level needs a model with a conformal calibration; this one stores none")
        ambiguity = (rel or Reliability()).ambiguity_hook(on_ambiguous or DEFAULT_ON_AMBIGUOUS, confidence_level)
        with self._torch_threads():
            res = run_exit_loop(TorchStages(self.network), X, rule, temperatures=self.temperatures, batch_size=batch_size,
                                unknown=hook, ambiguous=ambiguity)
        cls = res.class_index
        names = np.asarray(self.class_names)[cls] if self.class_names is not None else cls
        notes: list[str] = []
        if rel is None or rel.detector is None:
            notes.append("no unknown-class detector stored with this model: unknown_score/unknown not given")
        if rel is not None and rel.domain is None:
            notes.append("no input-domain check stored with this model: only the raw checks ran")
        reasons = None
        if rel is not None or raw is not None:
            reasons = np.asarray((rel or Reliability()).domain_reasons(X, raw), dtype=str)
        sets = None if confidence_level is None else rel.sets(res.exit, res.probabilities, confidence_level)  # type: ignore[union-attr]
        return PredictionBatch(
            prediction=names,
            class_index=cls,
            exit=res.exit,
            confidence=res.confidence,
            probabilities=res.probabilities,
            macs=res.macs,
            flagged=res.flagged,
            wall_time_s=res.wall_time_s,
            policy=policy,
            thresholds=th,
            budget_macs=budget_macs,
            budget_conversion=conversion,
            reason=res.reason.astype(str),
            held=res.held.astype(str),
            unknown_score=res.unknown_score if hook is not None else None,
            unknown=res.unknown if hook is not None else None,
            out_of_domain=None if reasons is None else reasons != "",
            domain_reason=reasons,
            prediction_set=sets,
            confidence_level=confidence_level,
            notes=tuple(notes),
        )

    def __repr__(self) -> str:
        return (
            f"Predictor({type(self.network).__name__}, n_exits={self.n_exits}, "
            f"exit_macs={[int(c) for c in self.exit_macs]}, mode={self.execution_mode!r}, "
            f"calibrated={self.thresholds is not None})"
        )
