"""The one early-exit loop: run stages, let samples leave, return what each answered and cost.

Every place that runs a multi-exit model goes through :func:`run_exit_loop`: the PyTorch
:class:`~scai.inference.Predictor` (and through it ``scai predict`` and the estimator), the
computing-centre server (``/v1/predict`` and ``/v1/continue``), the edge client's ONNX stages, and
the offline policies of :mod:`scai.inference.policies`, which replay precomputed per-exit
outputs through :class:`PrecomputedStages`. What differs between them is only

* the **stage runner** (:class:`StageRunner`): PyTorch stages, ONNX Runtime sessions, or stored
  outputs; it turns a batch's features into the next features, logits and MACs spent; and
* the **exit rule** (:class:`ExitRule`, implemented in :mod:`~scai.inference.policies`): whether
  a sample may run the next stage (the edge's ``Bmax``) and whether it leaves after a stage
  (threshold, anytime look-ahead, budgeted batch with its guard, or nowhere but the end).

A runner may carry an exit combination (``stages.combination``, an
:class:`~scai.inference.combination.ExitCombination`): the loop then turns each stage's logits into
the exit's combined logits, keeping one running state of ``n_classes`` values per sample (what
an edge device sends with its features when it offloads: ``prior_state``).

With an unknown-class hook (``unknown=``, :class:`scai.inference.reliability.UnknownHook`) the loop
scores every exit a sample reaches and records, per sample, the score and ``unknown`` flag of the
exit that answered. The hold is decided here, after the rule, so that every rule keeps its own
logic: a sample the rule lets leave as ``confident`` stays when it is flagged unknown at that exit
(``hold``), and runs on; one that reaches the last exit so answers with reason ``unknown``. With an
ambiguity hook (``ambiguous=``, :class:`scai.inference.reliability.AmbiguityHook`) a sample whose
conformal set at that exit holds more than one class stays the same way (reason ``ambiguous`` at
the last exit). Budget and guard exits are not held (the budget is the rule's promise): under the
budgeted batch a held sample counts as staying, so the guard may still send it out (reason
``guard``) to keep the batch within its budget. A skipped exit keeps the score and flag of the exit whose answer it repeats. Every result says why a sample
was held (``held``: ``""``, ``"unknown"``, ``"ambiguous"`` or ``"unknown+ambiguous"``), wherever it
then answered or stopped (an edge's Bmax stops a held sample unsettled: it is offloaded).

This module imports NumPy only, so the edge runtime uses it without PyTorch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from scai.errors import DataValueError
from scai.inference.calibration import softmax

__all__ = [
    "REASONS",
    "FLAG_REASONS",
    "StageRunner",
    "ExitRule",
    "ExitResult",
    "PrecomputedStages",
    "run_exit_loop",
    "carry_forward",
    "HELD",
]

#: Why a sample left where it did.
#: ``confident``: its confidence reached the exit's threshold; ``last``: it reached the last exit;
#: ``budget``: the next stage would not fit its anytime budget; ``over_budget``: even the exit it
#: answered at cost more than its budget; ``guard``: the budgeted-batch guard sent it out to keep
#: the batch within its mean budget; ``unsettled``: the edge's Bmax stopped it before any exit was
#: confident (it is offloaded or answered by the best local exit); ``not_run``: not even the
#: first stage fitted Bmax; ``unknown``: confident enough to leave earlier but flagged unknown there,
#: so it ran on to the last exit (an unknown-class hook with ``hold``); ``ambiguous``: confident
#: enough to leave earlier but its conformal set there held more than one class, so it ran on to
#: the last exit (an ambiguity hook; ``unknown`` wins when it was held for both).
REASONS: tuple[str, ...] = ("confident", "last", "budget", "over_budget", "guard", "unsettled", "not_run", "unknown",
                            "ambiguous")
#: Values of :attr:`ExitResult.held`: why a confident sample was kept from leaving at some exit
#: (``""``: it never was).
HELD: tuple[str, ...] = ("", "unknown", "ambiguous", "unknown+ambiguous")
#: Reasons that break a policy's promise; a result with one of them has ``flagged=True``.
FLAG_REASONS: frozenset[str] = frozenset({"over_budget", "guard", "unsettled", "not_run"})


class StageRunner(Protocol):
    """What the exit loop needs from a model: its stages, one at a time.

    ``run(k, features)`` runs stage ``k`` on a batch and returns ``(features_k, logits_k, macs)``
    with logits as float64 ``(b, n_classes)`` and the MACs each sample spent in that stage as
    float64 ``(b,)``. ``take(features, keep)`` keeps the rows where the bool mask ``keep`` is
    True; ``inputs(X)`` turns a NumPy batch into what ``run`` takes for the first stage run;
    ``rows(features, mask)`` returns those rows as a NumPy array (offload payloads).
    """

    n_exits: int
    n_classes: int
    #: Optional per-exit flags (a cascade's ``uses``); a skipped exit answers with the answer
    #: of the last used exit before it. Absent or None: every exit answers for itself.
    uses: Any
    #: Optional :class:`~scai.inference.combination.ExitCombination` (None: none).
    combination: Any

    def inputs(self, X: np.ndarray, start_stage: int) -> Any: ...

    def run(self, k: int, features: Any) -> tuple[Any, np.ndarray, np.ndarray]: ...

    def take(self, features: Any, keep: np.ndarray) -> Any: ...

    def rows(self, features: Any, mask: np.ndarray) -> np.ndarray: ...


class ExitRule(Protocol):
    """Decides, stage by stage, who runs on and who leaves (see :mod:`scai.inference.policies`).

    ``rows`` are the global indices (into the whole input) of the samples still running;
    ``spent`` is what each has spent so far, including ``prior_macs`` of the loop. ``leaves`` is
    asked after every stage but the last and returns ``(leave mask, reason per sample)``;
    ``final`` gives the reasons at the last exit, where everyone leaves.
    """

    #: The rule may stop samples before a stage without an answer (the edge's Bmax), in which
    #: case the loop keeps their last features for offloading.
    holds_features: bool

    def start(self, n_batch: int) -> Any: ...

    def may_run(self, k: int, spent: np.ndarray, rows: np.ndarray) -> np.ndarray: ...

    def leaves(
        self, k: int, conf: np.ndarray, spent: np.ndarray, rows: np.ndarray, state: Any
    ) -> tuple[np.ndarray, np.ndarray]: ...
    # A rule with ``guards_held = True`` (the budgeted batch) is asked again with
    # ``held=`` (bool mask of the confident samples the loop holds) and decides with them staying.

    def final(self, spent: np.ndarray, rows: np.ndarray) -> np.ndarray: ...

    def gone(self, state: Any, spent_leaving: np.ndarray) -> None: ...


@dataclass
class ExitResult:
    """What the exit loop decided for each sample, with what it cost.

    Attributes
    ----------
    class_index : ndarray of int64, shape (n,)
        Predicted class (for ``settled=False``: the best local answer, ``-1`` when nothing ran).
    exit : ndarray of int64, shape (n,)
        0-based exit where the sample left (``-1`` when nothing ran). At an exit the model skips
        (``uses``), the answer is that of the last used exit before it.
    confidence : ndarray of float64, shape (n,)
        Largest (temperature-scaled) probability at that exit.
    probabilities : ndarray of float64, shape (n, n_classes)
    macs : ndarray of float64, shape (n,)
        MACs spent in this loop (``prior_macs`` not included).
    reason : ndarray of str, shape (n,)
        One of :data:`REASONS`.
    settled : ndarray of bool, shape (n,)
        False when the rule stopped the sample without an answer it stands behind (edge Bmax).
    last_stage : ndarray of int64, shape (n,)
        Last stage run on the sample (``start_stage - 1`` when none).
    elapsed_s : ndarray of float64, shape (n,)
        Seconds from the loop's start to the sample's answer.
    held_features : dict of int to ndarray
        Unsettled samples' features of their last stage (only when the rule holds features).
    held_state : dict of int to ndarray
        With an exit combination: those samples' combined logits of their last stage, which the
        stage after it needs (``prior_state`` of the loop that continues them).
    unknown_score : ndarray of float64, shape (n,)
        With an unknown-class hook: the score at the exit that answered (NaN without a hook, or
        where nothing ran).
    unknown : ndarray of bool, shape (n,)
        Score above that exit's threshold (False without a hook).
    held : ndarray of str, shape (n,)
        Why the sample was kept from leaving as ``confident`` at an earlier exit and ran on
        (:data:`HELD`): ``"unknown"`` (flagged unknown there), ``"ambiguous"`` (its conformal set
        there held more than one class), both, or ``""`` (never held). A held sample that an
        edge's Bmax then stopped is ``settled=False`` (offloaded).
    """

    class_index: np.ndarray
    exit: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    macs: np.ndarray
    reason: np.ndarray
    settled: np.ndarray
    last_stage: np.ndarray
    elapsed_s: np.ndarray
    held_features: dict[int, np.ndarray] = field(default_factory=dict)
    held_state: dict[int, np.ndarray] = field(default_factory=dict)
    wall_time_s: float = 0.0
    unknown_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    @property
    def flagged(self) -> np.ndarray:
        """True where the answer broke the policy's promise (see :data:`FLAG_REASONS`)."""
        return np.isin(self.reason, list(FLAG_REASONS))

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.exit.shape[0])


class PrecomputedStages:
    """A stage runner over stored per-exit outputs (offline policy evaluation).

    Parameters
    ----------
    probs : ndarray, shape (n_exits, n, n_classes)
        Per-exit probabilities (already temperature-scaled); run the loop with
        ``temperatures=None`` so they are used as they are.
    costs : ndarray, shape (n, n_exits)
        Cumulative MACs per sample.
    """

    def __init__(self, probs: np.ndarray, costs: np.ndarray) -> None:
        self.probs = probs
        self.stage_costs = np.diff(costs, axis=1, prepend=0.0)
        self.n_exits = int(probs.shape[0])
        self.n_classes = int(probs.shape[2])
        self.uses = None  # stored outputs are already carried forward (carry_forward)
        self.combination = None  # ... and combined

    def inputs(self, X: np.ndarray, start_stage: int) -> np.ndarray:
        return np.asarray(X, dtype=np.int64)  # the "features" are the sample indices

    def run(self, k: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return features, self.probs[k, features], self.stage_costs[features, k]

    def take(self, features: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return features[keep]

    def rows(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return features[mask]


def carry_forward(probs: np.ndarray, uses: Any) -> np.ndarray:
    """Per-exit outputs ``(n_exits, n, C)`` with each skipped exit replaced by the last used one's.

    What :func:`run_exit_loop` does sample by sample, for stored outputs (offline policies).
    """
    out = np.array(probs, copy=True)
    if uses is None:
        return out
    flags = [bool(u) for u in uses]
    if len(flags) != out.shape[0]:
        raise DataValueError(f"uses has {len(flags)} flags for {out.shape[0]} exits")
    for k in range(1, out.shape[0]):
        if not flags[k]:
            out[k] = out[k - 1]
    return out


def run_exit_loop(
    stages: StageRunner,
    X: np.ndarray,
    rule: ExitRule,
    *,
    temperatures: np.ndarray | None,
    batch_size: int = 256,
    start_stage: int = 0,
    prior_macs: float = 0.0,
    prior_state: np.ndarray | None = None,
    unknown: Any = None,
    ambiguous: Any = None,
) -> ExitResult:
    """Run ``stages`` on ``X`` batch by batch, letting each sample leave where ``rule`` says.

    Parameters
    ----------
    stages : StageRunner
    X : ndarray
        Stage-0 input ``(n, W)``, or features of stage ``start_stage - 1``.
    rule : ExitRule
        From :mod:`scai.inference.policies` (``full_rule``, ``threshold_rule``,
        ``anytime_rule``, ``batch_rule``, ``edge_rule``).
    temperatures : ndarray of shape (n_exits,), or None
        Per-exit temperatures applied to each stage's logits; ``None`` takes the stage outputs as
        probabilities already (:class:`PrecomputedStages`).
    batch_size : int
        Samples per forward batch; the budgeted-batch guard keeps each such batch in budget.
    start_stage : int
        First stage to run (the server continues an edge's features at ``stage + 1``).
    prior_macs : float
        MACs already spent on each sample before this loop (the edge's stages); the rules count
        them, the returned ``macs`` do not.
    prior_state : ndarray of shape (n, n_classes), optional
        With an exit combination and ``start_stage > 0``: each sample's combined logits of stage
        ``start_stage - 1`` (the edge's ``held_state``).
    unknown : UnknownHook, optional
        Unknown-class scores per exit (:class:`scai.inference.reliability.UnknownHook`: ``raw``, ``final``, ``anchored``,
        ``thresholds``, ``needs_features``, ``hold``); see the module docstring.
    ambiguous : AmbiguityHook, optional
        Conformal sets per exit (:class:`scai.inference.reliability.AmbiguityHook`:
        ``ambiguous(k, probs)`` is True where the set at exit ``k`` holds more than one class);
        such a sample does not leave as ``confident`` there.

    The compute knob: a rule with a ``compute_scale`` (a budgeted-batch calibration's) runs a
    stage runner that has ``compute(scale)`` (a context manager: :class:`~scai.inference.predictor.TorchStages`)
    at that setting of the PA blocks; runners without one run as they are.

    Returns
    -------
    ExitResult
    """
    knob = getattr(stages, "compute", None)
    scale = getattr(rule, "compute_scale", None)
    args = (stages, X, rule, temperatures, batch_size, start_stage, prior_macs, prior_state, unknown, ambiguous)
    if knob is None or scale is None:
        return _loop(*args)
    with knob(scale):
        return _loop(*args)


def _loop(
    stages: StageRunner, X: np.ndarray, rule: ExitRule, temperatures: np.ndarray | None, batch_size: int,
    start_stage: int, prior_macs: float, prior_state: np.ndarray | None, unknown: Any, ambiguous: Any,
) -> ExitResult:
    """The body of :func:`run_exit_loop`, with the network's knob already set."""
    n = int(np.shape(X)[0])
    L, C = int(stages.n_exits), int(stages.n_classes)
    if not 0 <= start_stage < L:
        raise DataValueError(f"start_stage={start_stage} is not a stage of a {L}-stage model")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataValueError(f"batch_size={batch_size!r} is not allowed; use a positive int")
    out = ExitResult(
        class_index=np.full(n, -1, dtype=np.int64),
        exit=np.full(n, -1, dtype=np.int64),
        confidence=np.zeros(n),
        probabilities=np.zeros((n, C)),
        macs=np.zeros(n),
        reason=np.full(n, "last", dtype=object),
        settled=np.ones(n, dtype=bool),
        last_stage=np.full(n, start_stage - 1, dtype=np.int64),
        elapsed_s=np.zeros(n),
        unknown_score=np.full(n, np.nan),
        unknown=np.zeros(n, dtype=bool),
    )
    cur_score, cur_flag = np.full(n, np.nan), np.zeros(n, dtype=bool)  # of the last used exit
    first_raw = np.full(n, np.nan)  # exit 0's raw unknown-class score: an anchored detector adds it
    if unknown is not None and getattr(unknown, "anchored", False) and start_stage > 0:
        raise DataValueError(
            f"continuing at stage {start_stage} needs exit 0's unknown-class score, which stage features do not "
            "carry (this model's detector adds it at every exit); run from the spectrum instead"
        )
    held_unknown = np.zeros(n, dtype=bool)  # a confident leave was refused as unknown
    held_ambiguous = np.zeros(n, dtype=bool)  # ... as ambiguous (a conformal set of 2+ classes)
    best_conf = np.full(n, -1.0)
    uses = getattr(stages, "uses", None)
    used = np.ones(L, dtype=bool) if uses is None else np.asarray([bool(u) for u in uses], dtype=bool)
    current = np.zeros((n, C))  # the answer of the last used exit, per sample
    has_current = np.zeros(n, dtype=bool)
    comb = getattr(stages, "combination", None)
    combined = None  # per sample, the combined logits of the last stage run
    if comb is not None:
        if comb.n_exits != L or comb.n_classes != C:
            raise DataValueError(f"the exit combination is for {comb.n_exits} exits x {comb.n_classes} classes; "
                                 f"the stages have {L} x {C}")
        combined = np.zeros((n, C))
        if start_stage > 0:
            ps = None if prior_state is None else np.asarray(prior_state, dtype=np.float64)
            if ps is None or ps.shape != (n, C) or not np.all(np.isfinite(ps)):
                raise DataValueError(
                    f"continuing at stage {start_stage} needs the combined logits of exit {start_stage - 1} "
                    f"(prior_state of shape ({n}, {C}), finite); got "
                    f"{None if ps is None else ps.shape}"
                )
            combined[:] = ps
    t0 = time.perf_counter()
    for start in range(0, n, int(batch_size)):
        stop = min(start + int(batch_size), n)
        active = np.arange(start, stop)
        feats: Any = stages.inputs(X[start:stop], start_stage)
        cost = np.zeros(stop - start)
        state = rule.start(stop - start)
        for k in range(start_stage, L):
            runs = rule.may_run(k, prior_macs + cost, active)
            if not runs.all():
                stopped = active[~runs]
                out.settled[stopped] = False
                out.reason[stopped] = np.where(out.last_stage[stopped] < start_stage, "not_run", "unsettled")
                out.macs[stopped] = cost[~runs]
                out.elapsed_s[stopped] = time.perf_counter() - t0
                if rule.holds_features and k > start_stage:
                    held = stages.rows(feats, ~runs)
                    for j, i in enumerate(stopped.tolist()):
                        out.held_features[i] = held[j]
                        if combined is not None:
                            out.held_state[i] = combined[i].copy()
                feats, active, cost = stages.take(feats, runs), active[runs], cost[runs]
                if active.size == 0:
                    break
            feats, z, m = stages.run(k, feats)
            cost = cost + np.broadcast_to(np.asarray(m, dtype=np.float64), cost.shape)
            if combined is not None:  # the exit's combined logits, from the previous exit's
                z = comb.step(k, combined[active] if k > 0 else None, z)
                combined[active] = z
            p = np.asarray(z, dtype=np.float64) if temperatures is None else softmax(z, float(temperatures[k]))
            if used[k]:
                current[active], has_current[active] = p, True
            else:  # a skipped exit answers with the last used exit's answer
                carried = has_current[active]
                p = np.where(carried[:, None], current[active], p)
            conf = p.max(axis=1)
            if unknown is not None:
                if used[k] or not has_current[active].all():
                    f_np = stages.rows(feats, np.ones(active.size, dtype=bool)) if unknown.needs_features else None
                    r_k = np.asarray(unknown.raw(k, f_np, np.asarray(z, dtype=np.float64), p), dtype=np.float64)
                    if k == 0:
                        first_raw[active] = r_k
                    s_k = np.asarray(unknown.final(k, r_k, first_raw[active]), dtype=np.float64)
                    flag_k = s_k > float(unknown.thresholds[k])
                    if not used[k]:  # carried where an earlier used exit answered
                        c_ = has_current[active]
                        s_k, flag_k = np.where(c_, cur_score[active], s_k), np.where(c_, cur_flag[active], flag_k)
                else:
                    s_k, flag_k = cur_score[active], cur_flag[active]
                cur_score[active], cur_flag[active] = s_k, flag_k
            out.last_stage[active] = k
            better = (conf >= best_conf[active]) & bool(used[k])  # best local answer so far (edge fallback)
            bi = active[better]
            best_conf[bi], out.exit[bi], out.confidence[bi] = conf[better], k, conf[better]
            out.probabilities[bi] = p[better]
            if unknown is not None:
                out.unknown_score[bi], out.unknown[bi] = s_k[better], flag_k[better]
            if k == L - 1:
                leave, reason = np.ones(active.size, dtype=bool), rule.final(prior_macs + cost, active)
                last = reason == "last"
                reason = np.where(last & held_unknown[active], "unknown",
                                  np.where(last & held_ambiguous[active], "ambiguous", reason)).astype(object)
            else:
                leave, reason = rule.leaves(k, conf, prior_macs + cost, active, state)
                confident = leave & (reason == "confident")
                stay = np.zeros(active.size, dtype=bool)
                if unknown is not None and unknown.hold:
                    stay_u = confident & flag_k
                    held_unknown[active[stay_u]] = True
                    stay |= stay_u
                if ambiguous is not None and confident.any():
                    stay_a = confident & np.asarray(ambiguous.ambiguous(k, p), dtype=bool)
                    held_ambiguous[active[stay_a]] = True
                    stay |= stay_a
                if stay.any():
                    if getattr(rule, "guards_held", False):  # the budgeted batch: its guard counts them as staying
                        leave, reason = rule.leaves(k, conf, prior_macs + cost, active, state, held=stay)
                    else:
                        leave = leave & ~stay
            if leave.any():
                idx = active[leave]
                if unknown is not None:
                    out.unknown_score[idx], out.unknown[idx] = s_k[leave], flag_k[leave]
                out.exit[idx], out.confidence[idx], out.probabilities[idx] = k, conf[leave], p[leave]
                out.macs[idx] = cost[leave]
                out.reason[idx] = reason[leave]
                out.elapsed_s[idx] = time.perf_counter() - t0
                rule.gone(state, prior_macs + cost[leave])
                if leave.all():
                    break
                keep = ~leave
                feats, active, cost = stages.take(feats, keep), active[keep], cost[keep]
    out.class_index = np.where(out.exit >= 0, np.argmax(out.probabilities, axis=1), -1).astype(np.int64)
    out.held = np.asarray(HELD, dtype=object)[held_unknown.astype(int) + 2 * held_ambiguous.astype(int)]
    out.wall_time_s = time.perf_counter() - t0
    return out
