"""Training losses: self-distillation across exits plus the PA ponder cost (paper eq. 5 and 13).

Beyond the paper, a compute target for PA blocks (``ponder_target``): the share of the S units
each position should run on average. The paper's tau * ponder term barely moves the halting heads
(tau = 1e-5; SCAI+ ran 86-96 % of its units), so a penalty on the deviation of the units executed
from the target is added (``target_penalty``; its forms are ``TARGET_PENALTIES``), where u is
the batch mean of ``NetworkOutput.units_fraction``: its value counts units executed (N), its gradient is that of
(N + R) / S. Using N for the value is what makes the trained network hit the target in units
actually run: (N + R - 1) / S alone can sit up to 1/S below it.

Losses live here, not in the models, so a network stays an ordinary ``nn.Module`` and the
distillation recipe can change without touching the architecture (as in timm).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scai.errors import ConfigError, DataValueError

__all__ = [
    "ALLOCATION_WEIGHT",
    "DISTILL_MODES",
    "TARGET_PENALTIES",
    "TARGET_WEIGHT",
    "DistillMode",
    "allocation_penalty",
    "allocation_weights",
    "exit_losses",
    "target_penalty",
]

DistillMode = Literal["last", "next", "none"]
DISTILL_MODES: tuple[str, ...] = ("last", "next", "none")
#: "abs" (the default): w |u - t|; "squared": w (u - t)^2; "hinge": w max(u - t, 0) (only above
#: the target). benchmarks/pa_target.py chose "abs": it lands on the target, squared settles
#: above it (its pull fades as it nears it), hinge below it (nothing stops it going under).
TARGET_PENALTIES: tuple[str, ...] = ("abs", "squared", "hinge")
#: Weight of the compute-target penalty (benchmarks/pa_target.py; the task losses are ~0.1-1).
TARGET_WEIGHT = 10.0


def target_penalty(units_fraction: Tensor, target: float, kind: str = "abs", weight: float = TARGET_WEIGHT) -> Tensor:
    """Compute-target penalty on the batch mean of ``units_fraction`` ((B,), see the module docstring).

    The gradient with respect to a halting score h_s (s < N) of a position has the sign of
    (u - target) times d(N + R)/dh_s = -1: above the target it raises the scores (halt earlier),
    below it lowers them.
    """
    if kind not in TARGET_PENALTIES:
        raise ConfigError(f"target penalty must be one of {TARGET_PENALTIES}; got {kind!r}")
    gap = units_fraction.mean() - float(target)
    if kind == "squared":
        return weight * gap.square()
    if kind == "hinge":
        return weight * torch.relu(gap)
    return weight * gap.abs()


#: Weight of the position-weighted allocation penalty (``allocation_penalty``). On the synthetic
#: band set of tests/training/test_ponder_target.py (target 0.5) weights 1 and 5 moved almost no
#: unit (band minus elsewhere, blocks 1/2: 0.13/0.01 and 0.39/0.12 units; uniform 0.12/0.02); 20
#: moved them (0.49/0.81) at the same mean and accuracy.
ALLOCATION_WEIGHT = 20.0


def allocation_weights(scores: np.ndarray, lengths: list[int]) -> list[Tensor]:
    """Per-position weights of each PA block from a per-input-position informativeness score.

    ``scores`` (L,) is, for example, the classes' ANOVA F along the preprocessed spectrum. Its
    ranks are scaled to [0, 1] and centred, ``c = 0.5 - rank / (L - 1)``: positive where the
    spectrum says least about the class, negative where it says most. Each block of length W
    gets them by relative position (the block's positions spread evenly over the input, as
    ``scai.bench.allocation`` maps them back), re-centred to mean 0 there.
    """
    from scipy.stats import rankdata

    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if s.ndim != 1 or len(s) < 2:
        raise DataValueError(f"allocation scores must be a 1-D array of >= 2 positions; got shape {s.shape}")
    c = 0.5 - (rankdata(s) - 1) / (len(s) - 1)
    grid = np.linspace(0.0, 1.0, len(s))
    out = []
    for w in lengths:
        cw = np.interp(np.linspace(0.0, 1.0, int(w)), grid, c)
        out.append(torch.from_numpy((cw - cw.mean()).astype(np.float32)))
    return out


def allocation_penalty(units_executed: list[Tensor], weights: list[Tensor], n_units: list[int],
                       weight: float = ALLOCATION_WEIGHT) -> Tensor:
    """``weight`` x mean over PA blocks of mean over (sample, position) of c_i N_i / S.

    ``units_executed``: ``NetworkOutput.units_executed`` (value N, gradient of N + R per
    position); ``weights``: :func:`allocation_weights` (mean 0 per block). As the weights sum to
    zero the penalty only moves units between positions -- from where c > 0 (little class
    information) to where c < 0 -- and leaves the mean to the compute target.
    """
    if not (len(units_executed) == len(weights) == len(n_units)):
        raise DataValueError(f"allocation_penalty: {len(units_executed)} blocks of units, {len(weights)} of weights")
    terms = [(u * c.to(u)).mean() / s for u, c, s in zip(units_executed, weights, n_units)]
    return weight * torch.stack(terms).mean()


def _kd(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 (Hinton et al.)."""
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher.detach() / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def exit_losses(
    logits: list[Tensor],
    y: Tensor,
    *,
    ponder: Tensor | None = None,
    mode: str = "last",
    temperature: float = 1.0,
    alpha: float = 0.0,
    tau: float = 1e-5,
    ponder_target: float | None = None,
    units_fraction: Tensor | None = None,
    penalty: str = "abs",
    target_weight: float = TARGET_WEIGHT,
) -> dict[str, Tensor]:
    """Loss of a multi-exit network for one batch.

    Parameters
    ----------
    logits
        One ``(B, n_classes)`` tensor per exit, shallowest first.
    y
        ``(B,)`` class indices.
    ponder
        Scalar ponder cost summed over PA blocks (``NetworkOutput.ponder``); ``None`` for none.
    mode
        ``"last"`` (paper, default): every earlier exit is taught by the last exit's detached
        softmax; ``"next"``: each exit is taught by the next one (the paper's rejected
        alternative); ``"none"``: cross-entropy at every exit (the paper's "w/o KD" ablation).
    temperature
        Distillation temperature T; the KL term is scaled by T^2 so its gradient scale does
        not depend on T.
    alpha
        Weight of an exit's own cross-entropy mixed into its distillation loss:
        ``(1 - alpha) * KD + alpha * CE``. ``alpha=0, T=1`` is the paper.
    tau
        Weight of the ponder cost (paper: 1e-5).
    ponder_target
        Share of the S units each PA position should run on average, in (0, 1]; ``None`` (the
        paper) adds no target penalty. Needs ``units_fraction``; networks without PA blocks
        (``units_fraction=None``) get no penalty.
    units_fraction
        ``NetworkOutput.units_fraction``: (B,) units executed / S, gradient of (N + R) / S.
    penalty, target_weight
        Form and weight of the target penalty (``target_penalty``).

    Returns
    -------
    dict
        ``"total"`` (the scalar to back-propagate), ``"ce_last"``, ``"exit_<l>"`` for each
        earlier exit, ``"ponder"``, and with a target ``"target"`` (the penalty) and
        ``"units"`` (the batch's mean units fraction). Components are detached-friendly scalars
        for logging.
    """
    if mode not in DISTILL_MODES:
        raise ConfigError(f"mode must be one of {DISTILL_MODES}; got {mode!r}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0; got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be between 0 and 1; got {alpha}")
    if not logits:
        raise DataValueError("logits must hold at least one exit")
    if ponder_target is not None and not 0.0 < ponder_target <= 1.0:
        raise ConfigError(f"ponder_target must be in (0, 1] or None (the paper); got {ponder_target}")

    out: dict[str, Tensor] = {}
    last = logits[-1]
    ce_last = F.cross_entropy(last, y)
    out["ce_last"] = ce_last
    total = ce_last
    for level, student in enumerate(logits[:-1]):
        ce = F.cross_entropy(student, y)
        if mode == "none":
            term = ce
        else:
            teacher = last if mode == "last" else logits[level + 1]
            kd = _kd(student, teacher, temperature)
            term = (1.0 - alpha) * kd + alpha * ce if alpha > 0 else kd
        out[f"exit_{level}"] = term
        total = total + term
    ponder_value = ponder if ponder is not None else torch.zeros((), device=last.device)
    out["ponder"] = ponder_value
    total = total + tau * ponder_value
    if ponder_target is not None and units_fraction is not None:
        out["target"] = target_penalty(units_fraction, ponder_target, penalty, target_weight)
        out["units"] = units_fraction.detach().mean()
        total = total + out["target"]
    out["total"] = total
    return out
