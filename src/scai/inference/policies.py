"""Exit policies of an early-exit network, as pure functions of per-exit outputs (paper 3.3.1).

Every function here takes the per-exit softmax probabilities ``probs`` with shape
``(n_exits, n, n_classes)`` and the cumulative cost of reaching each exit ``costs`` (MACs), either
``(n_exits,)`` for a static network or ``(n, n_exits)`` per sample for position-adaptive (PA)
networks whose cost depends on the input. They never run a network, so they serve offline
evaluation (accuracy-vs-budget curves) and the edge runtime alike, which is why this module needs
only NumPy.

* :func:`anytime` -- each sample has a budget; it answers with the deepest exit that fits.
* :func:`threshold` -- a sample answers at the first exit that is confident enough.
* :func:`calibrate_budgeted_batch` -- MSDNet's dynamic evaluation, solved for a mean budget:
  picks the thresholds on validation data.
* :func:`budgeted_batch` -- applies those thresholds to a batch and keeps the batch within its
  budget: when the batch runs ahead of its budget, the most confident samples still running
  are made to leave (:func:`batch_guard`), so a batch whose confidences differ from the
  validation set's cannot overspend.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scai.errors import BudgetError, DataValueError
from scai.inference.budget import as_macs_vector
from scai.inference.exit_loop import PrecomputedStages, run_exit_loop
from scai.inference.thresholds import Thresholds, as_thresholds

__all__ = [
    "PolicyResult",
    "BatchCalibration",
    "anytime",
    "threshold",
    "calibrate_budgeted_batch",
    "budgeted_batch",
    "batch_guard",
    "exit_shares",
    "as_cost_matrix",
    "FullRule",
    "ThresholdRule",
    "AnytimeRule",
    "BatchRule",
    "EdgeRule",
    "default_budget",
]


@dataclass(frozen=True)
class PolicyResult:
    """What a policy decided for each sample.

    Attributes
    ----------
    exit : ndarray of int, shape (n,)
        0-based exit that answered.
    prediction : ndarray of int, shape (n,)
        Class index predicted by that exit.
    confidence : ndarray of float, shape (n,)
        Largest probability at that exit.
    macs : ndarray of float, shape (n,)
        Cumulative MACs spent to reach that exit.
    flagged : ndarray of bool, shape (n,)
        The answer broke the policy's promise: under :func:`anytime`, even exit 1 did not fit
        the budget. Always ``False`` under :func:`threshold`.
    """

    exit: np.ndarray
    prediction: np.ndarray
    confidence: np.ndarray
    macs: np.ndarray
    flagged: np.ndarray

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.exit.shape[0])

    @property
    def mean_macs(self) -> float:
        """Mean MACs per sample actually spent."""
        return float(np.mean(self.macs)) if self.n else 0.0

    def accuracy(self, y: np.ndarray) -> float:
        """Fraction of samples whose prediction equals ``y``."""
        y = np.asarray(y)
        if y.shape != self.prediction.shape:
            raise DataValueError(
                f"y has shape {y.shape}; expected {self.prediction.shape} to match the predictions"
            )
        return float(np.mean(self.prediction == y)) if self.n else float("nan")

    def exit_shares(self, n_exits: int) -> np.ndarray:
        """Fraction of samples answered by each of ``n_exits`` exits."""
        counts = np.bincount(self.exit, minlength=n_exits).astype(np.float64)
        return counts / max(self.n, 1)


@dataclass(frozen=True)
class BatchCalibration:
    """Thresholds that make a validation set meet a mean budget (budgeted batch inference).

    Attributes
    ----------
    thresholds : ndarray, shape (n_exits,)
        Confidence a sample needs to leave at each exit: ``inf`` means nobody leaves there, the
        last entry is ``0`` (the last exit always answers).
    expected_mean_cost : float
        Mean MACs per sample measured by applying ``thresholds`` back to the validation set;
        the estimate of what the test set will spend.
    q : float
        Exit probability of the geometric share law ``q_l = z (1-q)^(l-1) q``. It is 1 when
        everything leaves at exit 1 and falls as the budget grows; below 0 (``1-q > 1``) the
        shares grow with depth, which budgets above the uniform-share cost need (MSDNet's code
        does the same); ``-inf`` means everything runs to the last exit.
    exit_shares : ndarray, shape (n_exits,)
        Planned fraction of samples leaving at each exit (``q_l``).
    planned_mean_cost : float
        ``sum_l q_l C_l`` with ``C_l`` the mean validation cost of exit ``l``.
    budget : float
        The target mean MACs per sample.
    feasible : bool
        ``False`` when the budget is below the cost of exit 1 (everything then exits at 1).
    val_exit_shares : ndarray, shape (n_exits,)
        Fraction of validation samples that actually left at each exit with ``thresholds``.
    exit_costs : ndarray, shape (n_exits,)
        Mean cumulative cost ``C_l`` of each exit on validation (what the solve used); the
        batch guard prices the work still ahead with it.
    compute_scale : float
        The PA blocks' compute knob (:mod:`scai.models.knob`) the thresholds were calibrated at
        and the exit loop runs the network at; 1.0 = as trained (:func:`scai.inference.knob.solve_budget`
        chooses it together with the thresholds).
    """

    thresholds: np.ndarray
    expected_mean_cost: float
    q: float
    exit_shares: np.ndarray
    planned_mean_cost: float = float("nan")
    budget: float = float("nan")
    feasible: bool = True
    val_exit_shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exit_costs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    compute_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; infinite thresholds ("nobody leaves here") become ``None``."""
        return {
            "budget_macs": float(self.budget),
            "thresholds": [float(t) if math.isfinite(t) else None for t in self.thresholds],
            "expected_mean_cost": float(self.expected_mean_cost),
            "planned_mean_cost": float(self.planned_mean_cost),
            "q": float(self.q) if math.isfinite(self.q) else None,
            "exit_shares": [float(s) for s in self.exit_shares],
            "val_exit_shares": [float(s) for s in self.val_exit_shares],
            "exit_costs": [float(c) for c in self.exit_costs],
            "feasible": bool(self.feasible),
            "compute_scale": float(self.compute_scale),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchCalibration:
        """Inverse of :meth:`to_dict` (``None`` thresholds and ``q`` become infinities)."""
        th = np.array([np.inf if t is None else float(t) for t in d["thresholds"]], dtype=np.float64)
        return cls(
            thresholds=th,
            expected_mean_cost=float(d["expected_mean_cost"]),
            q=-np.inf if d.get("q") is None else float(d["q"]),
            exit_shares=np.asarray(d["exit_shares"], dtype=np.float64),
            planned_mean_cost=float(d.get("planned_mean_cost", float("nan"))),
            budget=float(d["budget_macs"]),
            feasible=bool(d.get("feasible", True)),
            val_exit_shares=np.asarray(d.get("val_exit_shares", []), dtype=np.float64),
            exit_costs=np.asarray(d.get("exit_costs", []), dtype=np.float64),
            compute_scale=float(d.get("compute_scale", 1.0)),
        )


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _check_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise DataValueError(f"{name} has shape {probs.shape}; expected (n_exits, n_samples, n_classes)")
    if probs.shape[0] < 1 or probs.shape[2] < 1:
        raise DataValueError(f"{name} has shape {probs.shape}; expected at least one exit and one class")
    if not np.issubdtype(probs.dtype, np.floating) or not np.all(np.isfinite(probs)):
        raise DataValueError(f"{name} must hold finite floating-point probabilities")
    return probs


def as_cost_matrix(costs: np.ndarray, n_exits: int, n: int, name: str = "costs") -> np.ndarray:
    """Return cumulative costs as a float64 ``(n, n_exits)`` matrix.

    Accepts ``(n_exits,)`` (static network, broadcast to every sample) or ``(n, n_exits)``.
    Costs must be finite, non-negative and non-decreasing along the exits (they are cumulative).
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape == (n_exits,):
        costs = np.broadcast_to(costs, (n, n_exits))
    elif costs.shape != (n, n_exits):
        raise DataValueError(
            f"{name} has shape {costs.shape}; expected ({n_exits},) or ({n}, {n_exits}) for "
            f"{n_exits} exits and {n} samples"
        )
    if not np.all(np.isfinite(costs)) or np.any(costs < 0):
        raise DataValueError(f"{name} must be finite and non-negative")
    if n_exits > 1 and np.any(np.diff(costs, axis=1) < 0):
        raise DataValueError(f"{name} must be cumulative (non-decreasing from exit to exit)")
    return costs


def _result(probs: np.ndarray, costs: np.ndarray, exits: np.ndarray, flagged: np.ndarray) -> PolicyResult:
    idx = np.arange(probs.shape[1])
    chosen = probs[exits, idx]  # (n, n_classes)
    return PolicyResult(
        exit=exits.astype(np.int64),
        prediction=np.argmax(chosen, axis=1).astype(np.int64),
        confidence=np.max(chosen, axis=1).astype(np.float64) if chosen.shape[0] else np.zeros(0),
        macs=costs[idx, exits].astype(np.float64),
        flagged=flagged.astype(bool),
    )


# ---------------------------------------------------------------------------------------------
# Policies


def _replay(probs: np.ndarray, costs: np.ndarray, rule: Any) -> PolicyResult:
    """Run ``rule`` over stored per-exit outputs through the one exit loop, as one batch."""
    n = probs.shape[1]
    res = run_exit_loop(PrecomputedStages(probs, costs), np.arange(n), rule, temperatures=None, batch_size=max(n, 1))
    return _result(probs, costs, res.exit, flagged=res.flagged)


def anytime(probs: np.ndarray, costs: np.ndarray, budget: Any) -> PolicyResult:
    """Answer each sample with the deepest exit whose cumulative cost fits its budget.

    Parameters
    ----------
    probs : ndarray, shape (n_exits, n, n_classes)
    costs : ndarray, shape (n_exits,) or (n, n_exits)
        Cumulative MACs to reach each exit.
    budget : float, ndarray of shape (n,) or Budget in MACs
        MACs per sample. A sample whose budget is below exit 0's cost still gets exit 0's answer
        (a classifier must answer), with ``flagged=True``.

    Returns
    -------
    PolicyResult
    """
    probs = _check_probs(probs)
    n_exits, n, _ = probs.shape
    costs = as_cost_matrix(costs, n_exits, n)
    b = as_macs_vector(budget, n)
    # Offline, each sample's real cost of its next stage is known: look ahead with it.
    next_cost = np.concatenate([np.diff(costs, axis=1), np.full((n, 1), np.inf)], axis=1)
    return _replay(probs, costs, AnytimeRule(b, next_cost))


def threshold(probs: np.ndarray, costs: np.ndarray, thresholds: Any) -> PolicyResult:
    """Answer each sample at the first exit whose confidence reaches its threshold.

    Parameters
    ----------
    probs : ndarray, shape (n_exits, n, n_classes)
    costs : ndarray, shape (n_exits,) or (n, n_exits)
    thresholds : Thresholds or array-like, length n_exits - 1 or n_exits
        Confidence (largest probability) needed to leave at each exit, ``>=`` comparison. The
        last exit always answers, so its threshold, when given, is ignored.

    Returns
    -------
    PolicyResult
        ``flagged`` is all ``False``.
    """
    probs = _check_probs(probs)
    n_exits, n, _ = probs.shape
    costs = as_cost_matrix(costs, n_exits, n)
    return _replay(probs, costs, ThresholdRule(_as_vector(thresholds, n_exits)))


# ---------------------------------------------------------------------------------------------
# Budgeted batch calibration


def default_budget(exit_macs: Any) -> float:
    """The budget a model's default thresholds are calibrated for: midway between the cost of
    exit 1 and of the last exit (mean MACs per spectrum)."""
    macs = np.asarray(exit_macs, dtype=np.float64)
    return float(0.5 * (macs[0] + macs[-1]))


def exit_shares(q: float, n_exits: int) -> np.ndarray:
    """Geometric exit shares ``q_l = z (1-q)^(l-1) q`` normalised to sum to 1.

    ``q`` may be below 0 (shares growing with depth) and ``-inf`` (everything at the last exit).
    """
    if q >= 1.0:
        shares = np.zeros(n_exits)
        shares[0] = 1.0
        return shares
    if q == -np.inf:
        shares = np.zeros(n_exits)
        shares[-1] = 1.0
        return shares
    # q cancels in the normalisation; work in logs of r = 1 - q for stability at extreme r.
    logits = np.arange(n_exits) * math.log(1.0 - q)
    logits -= logits.max()
    w = np.exp(logits)
    return w / w.sum()


def _thresholds_for_shares(conf: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Thresholds that make cumulative fractions ``cumsum(shares)`` of all samples leave.

    ``conf`` is (n_exits, n). At each exit, the confidences of the samples still running are
    sorted; the threshold is the confidence of the last sample needed to reach the cumulative
    target. Targets are cumulative (and rounded up) so rounding and ties never push more
    samples than planned into deeper, costlier exits.
    """
    n_exits, n = conf.shape
    th = np.full(n_exits, np.inf)
    th[-1] = 0.0
    running = np.ones(n, dtype=bool)
    targets = np.ceil(np.cumsum(shares) * n - 1e-9).astype(np.int64)
    for k in range(n_exits - 1):
        n_running = int(running.sum())
        need = int(targets[k]) - (n - n_running)
        if need <= 0 or n_running == 0:
            continue  # threshold stays inf: nobody leaves here
        c = np.sort(conf[k, running])[::-1]
        th[k] = c[min(need, n_running) - 1]
        running &= ~(conf[k] >= th[k])
    return th


def calibrate_budgeted_batch(val_probs: np.ndarray, val_costs: np.ndarray, budget: Any) -> BatchCalibration:
    """Choose exit thresholds so that the mean cost per sample meets ``budget``.

    MSDNet's dynamic evaluation (paper 3.3.1) solved for the budget: exit shares follow
    ``q_l = z (1-q)^(l-1) q``; ``q`` is found by bisection so that the planned mean cost
    ``sum_l q_l C_l`` meets the budget, where ``C_l`` is the mean cumulative cost of exit ``l``
    on the validation set (for PA networks, whose cost varies per sample, the mean is what the
    solve uses). Each threshold is then set on the validation set so that a fraction ``q_l``
    of *all* samples leaves at exit ``l``.

    Parameters
    ----------
    val_probs : ndarray, shape (n_exits, n, n_classes)
        Validation probabilities (temperature-scaled if the predictor will scale them).
    val_costs : ndarray, shape (n_exits,) or (n, n_exits)
    budget : float or Budget
        Target mean MACs per sample. Below exit 0's cost everything leaves at exit 0
        (``feasible=False``, with a warning); at or above the full cost everything runs to the
        end.

    Returns
    -------
    BatchCalibration
        ``expected_mean_cost`` is measured by applying the thresholds back to validation.
    """
    val_probs = _check_probs(val_probs, "val_probs")
    n_exits, n, _ = val_probs.shape
    if n == 0:
        raise DataValueError("val_probs holds no samples; budgeted batch calibration needs validation data")
    costs = as_cost_matrix(val_costs, n_exits, n, "val_costs")
    b = float(as_macs_vector(budget, 1)[0])
    mean_costs = costs.mean(axis=0)

    feasible = True
    if b <= mean_costs[0] or n_exits == 1:
        q = 1.0
        feasible = b >= mean_costs[0] * (1 - 1e-12)  # tolerate round-off in budget grids
        if not feasible:
            warnings.warn(
                f"budget={b:,.0f} MACs is below exit 0's mean cost {mean_costs[0]:,.0f}; "
                "every sample will leave at exit 1",
                stacklevel=2,
            )
    elif b >= mean_costs[-1]:
        q = -np.inf
    else:
        # Planned cost rises with r = 1 - q (shares shift to deeper exits); bisect on log r and
        # keep the side that stays within the budget.
        lo, hi = -60.0, 60.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if exit_shares(1.0 - math.exp(mid), n_exits) @ mean_costs <= b:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-12:
                break
        q = 1.0 - math.exp(lo)
    shares = exit_shares(q, n_exits)
    conf = val_probs.max(axis=2)
    if q == 1.0:
        th = np.zeros(n_exits)  # everyone leaves at exit 1
    else:
        th = _thresholds_for_shares(conf, shares)
    applied = threshold(val_probs, costs, Thresholds(th))
    return BatchCalibration(
        thresholds=th,
        expected_mean_cost=applied.mean_macs,
        q=float(q),
        exit_shares=shares,
        planned_mean_cost=float(shares @ mean_costs),
        budget=b,
        feasible=feasible,
        val_exit_shares=applied.exit_shares(n_exits),
        exit_costs=mean_costs,
    )


def batch_guard(
    conf: np.ndarray,
    exit_index: int,
    batch_spent: float,
    n_batch: int,
    calibration: BatchCalibration,
    exit_bounds: np.ndarray | None = None,
) -> np.ndarray:
    """Which still-running samples must leave at ``exit_index`` to keep the batch in budget.

    The batch may spend ``n_batch * budget`` MACs in all. ``batch_spent`` is what it has spent
    so far (every sample's MACs up to its exit, or up to ``exit_index`` for the ``len(conf)``
    samples that the thresholds would let run on). Each of those is priced at the work the
    calibration plans for a sample that goes on from here,
    ``E = sum_{l > k} w_l (C_l - C_k)`` with ``w`` the planned shares of the deeper exits,
    renormalised. When ``len(conf) * E`` exceeds what is left, the most confident samples leave
    until the rest fits. At the second-to-last exit ``E`` is exactly the cost of the last stage,
    so a batch's mean cost stays within the budget up to the per-sample variation of
    position-adaptive stages. ``exit_bounds`` (the full-compute cumulative MACs of every exit, an
    upper bound of what a sample can spend) removes that variation: a sample that goes on is
    priced at no less than the most the next stage can cost it, so the batch never spends more
    than its budget (a PA network trained to a compute target spends about half its full stage
    cost, with more variation per sample).

    Parameters
    ----------
    conf : ndarray, shape (m,)
        Confidences at exit ``exit_index`` of the samples that would run on.
    exit_index : int
        0-based exit just computed (must not be the last).
    batch_spent : float
        MACs spent by the whole batch so far, as described above.
    n_batch : int
        Samples in the batch (those already gone included).
    calibration : BatchCalibration
        From :func:`calibrate_budgeted_batch`; needs ``exit_costs`` and ``exit_shares``.

    Returns
    -------
    ndarray of bool, shape (m,)
        ``True`` for samples the guard sends out here.
    """
    conf = np.asarray(conf, dtype=np.float64).reshape(-1)
    c = np.asarray(calibration.exit_costs, dtype=np.float64)
    k = int(exit_index)
    if c.size < 2 or not 0 <= k < c.size - 1:
        raise BudgetError(f"exit_index={exit_index} is not a non-final exit of a {c.size}-exit calibration")
    if not math.isfinite(calibration.budget):
        return np.zeros(conf.shape[0], dtype=bool)
    shares = np.asarray(calibration.exit_shares, dtype=np.float64)[k + 1 :]
    ahead = c[k + 1 :] - c[k]
    w = shares / shares.sum() if shares.sum() > 0 else np.eye(ahead.size)[0]  # plan sends none: next exit
    per_sample = float(w @ ahead)
    if exit_bounds is not None:
        bounds = np.asarray(exit_bounds, dtype=np.float64)
        per_sample = max(per_sample, float(bounds[k + 1] - bounds[k]))
    left = n_batch * calibration.budget - batch_spent
    if per_sample <= 0:
        return np.zeros(conf.shape[0], dtype=bool)
    may_continue = max(int(math.floor(left / per_sample + 1e-9)), 0)
    forced = np.zeros(conf.shape[0], dtype=bool)
    n_out = conf.shape[0] - may_continue
    if n_out > 0:
        forced[np.argsort(-conf, kind="stable")[:n_out]] = True
    return forced


def budgeted_batch(probs: np.ndarray, costs: np.ndarray, calibration: BatchCalibration,
                   exit_bounds: np.ndarray | None = None) -> PolicyResult:
    """Budgeted batch inference over one batch: calibrated thresholds plus :func:`batch_guard`.

    Parameters
    ----------
    probs : ndarray, shape (n_exits, n, n_classes)
        The batch's per-exit probabilities (scaled as they were at calibration).
    costs : ndarray, shape (n_exits,) or (n, n_exits)
        The batch's cumulative MACs per exit.
    calibration : BatchCalibration
        From :func:`calibrate_budgeted_batch` on validation data.
    exit_bounds : ndarray, shape (n_exits,), optional
        Full-compute cumulative MACs per exit (see :func:`batch_guard`); ``Predictor`` passes them.

    Returns
    -------
    PolicyResult
        ``flagged`` marks the samples the guard sent out before their threshold was reached.
    """
    probs = _check_probs(probs)
    n_exits, n, _ = probs.shape
    costs = as_cost_matrix(costs, n_exits, n)
    return _replay(probs, costs, BatchRule(calibration, n_exits, exit_bounds))


# ---------------------------------------------------------------------------------------------
# Exit rules of the one exit loop (scai.inference.exit_loop)


def _as_vector(thresholds: Any, n_exits: int) -> np.ndarray:
    return as_thresholds(thresholds, n_exits).values


class FullRule:
    """Every sample runs to the last exit (the static network's answer)."""

    holds_features = False
    #: The compute knob the exit loop runs the network at (:mod:`scai.models.knob`); None leaves
    #: it as it is set. A rule calibrated at a knob setting (budgeted batch) carries its own.
    compute_scale: float | None = None

    def start(self, n_batch: int) -> Any:
        return None

    def may_run(self, k: int, spent: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.ones(rows.shape[0], dtype=bool)

    def leaves(
        self, k: int, conf: np.ndarray, spent: np.ndarray, rows: np.ndarray, state: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(conf.shape[0], dtype=bool), np.full(conf.shape[0], "last", dtype=object)

    def final(self, spent: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.full(rows.shape[0], "last", dtype=object)

    def gone(self, state: Any, spent_leaving: np.ndarray) -> None:
        return None


class ThresholdRule(FullRule):
    """Leave at the first exit whose confidence reaches its threshold.

    Parameters
    ----------
    thresholds : ndarray, shape (n_exits,)
        From :func:`~scai.inference.thresholds.parse_thresholds` (``inf`` = never leave there).
    """

    def __init__(self, thresholds: np.ndarray, compute_scale: float | None = None) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.compute_scale = compute_scale

    def leaves(
        self, k: int, conf: np.ndarray, spent: np.ndarray, rows: np.ndarray, state: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        return conf >= self.thresholds[k], np.full(conf.shape[0], "confident", dtype=object)


class AnytimeRule(FullRule):
    """Stop before a stage whenever what a sample has spent plus that stage's cost exceeds its budget.

    Parameters
    ----------
    budget : ndarray, shape (n,)
        MACs per sample (global row order), ``inf`` for none.
    next_cost : ndarray, shape (n_exits,) or (n, n_exits)
        Cost of the stage after each exit (``inf`` after the last): the full-compute cost for a
        real run, each sample's own cost when replaying stored outputs.
    """

    def __init__(self, budget: np.ndarray, next_cost: np.ndarray) -> None:
        self.budget = np.asarray(budget, dtype=np.float64)
        self.next_cost = np.asarray(next_cost, dtype=np.float64)

    def _next(self, k: int, rows: np.ndarray) -> np.ndarray:
        return self.next_cost[rows, k] if self.next_cost.ndim == 2 else np.full(rows.shape[0], self.next_cost[k])

    def leaves(
        self, k: int, conf: np.ndarray, spent: np.ndarray, rows: np.ndarray, state: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        b = self.budget[rows]
        return spent + self._next(k, rows) > b, np.where(spent > b, "over_budget", "budget").astype(object)

    def final(self, spent: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.where(spent > self.budget[rows], "over_budget", "last").astype(object)


class _GuardState:
    def __init__(self, n_batch: int) -> None:
        self.n_batch = n_batch
        self.gone_macs = 0.0  # MACs of the batch's samples that have left


class BatchRule(ThresholdRule):
    """Budgeted batch: the calibration's thresholds plus :func:`batch_guard` per forward batch.

    The exit loop holds some confident samples (unknown, or an ambiguous set); ``guards_held``
    tells it to ask again with them as ``held``: they count as staying, so the guard may send
    them out (reason ``guard``) to keep the batch within its budget, the policy's promise.
    """

    guards_held = True

    def __init__(self, calibration: BatchCalibration, n_exits: int, exit_bounds: np.ndarray | None = None) -> None:
        if exit_bounds is not None and np.asarray(exit_bounds).shape != (n_exits,):
            raise BudgetError(f"exit_bounds has {np.asarray(exit_bounds).size} values; expected {n_exits}")
        self.exit_bounds = None if exit_bounds is None else np.asarray(exit_bounds, dtype=np.float64)
        if np.asarray(calibration.exit_costs).shape != (n_exits,):
            raise BudgetError(
                f"calibration has {np.asarray(calibration.exit_costs).size} exit costs; expected {n_exits}"
            )
        super().__init__(_as_vector(calibration.thresholds, n_exits))
        self.calibration = calibration
        self.compute_scale = float(calibration.compute_scale)

    def start(self, n_batch: int) -> _GuardState:
        return _GuardState(n_batch)

    def leaves(
        self, k: int, conf: np.ndarray, spent: np.ndarray, rows: np.ndarray, state: _GuardState,
        held: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        leave = conf >= self.thresholds[k]
        if held is not None:  # confident but held by the exit loop: they stay, unless the guard says otherwise
            leave &= ~np.asarray(held, dtype=bool)
        reason = np.full(conf.shape[0], "confident", dtype=object)
        stay = np.flatnonzero(~leave)
        forced = batch_guard(conf[stay], k, state.gone_macs + float(spent.sum()), state.n_batch, self.calibration,
                             self.exit_bounds)
        leave[stay[forced]] = True
        reason[stay[forced]] = "guard"
        return leave, reason

    def gone(self, state: _GuardState, spent_leaving: np.ndarray) -> None:
        state.gone_macs += float(np.sum(spent_leaving))


class EdgeRule(ThresholdRule):
    """The edge device: thresholds, and a stage runs only while the sample's total stays within ``bmax``.

    A sample the next stage does not fit stops unsettled (``settled=False``) with its features
    held, for the edge client to offload.
    """

    holds_features = True

    def __init__(self, thresholds: np.ndarray, bmax: float, stage_macs: np.ndarray) -> None:
        super().__init__(thresholds)
        self.bmax = float(bmax)
        self.stage_macs = np.asarray(stage_macs, dtype=np.float64)

    def may_run(self, k: int, spent: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return spent + self.stage_macs[k] <= self.bmax
