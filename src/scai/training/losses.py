"""Training losses: self-distillation across exits plus the PA ponder cost (paper eq. 5 and 13).

Losses live here, not in the models, so a network stays an ordinary ``nn.Module`` and the
distillation recipe can change without touching the architecture (as in timm).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from scai.errors import ConfigError, DataValueError

__all__ = ["DistillMode", "DISTILL_MODES", "exit_losses"]

DistillMode = Literal["last", "next", "none"]
DISTILL_MODES: tuple[str, ...] = ("last", "next", "none")


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

    Returns
    -------
    dict
        ``"total"`` (the scalar to back-propagate), ``"ce_last"``, ``"exit_<l>"`` for each
        earlier exit, ``"ponder"``. Components are detached-friendly scalars for logging.
    """
    if mode not in DISTILL_MODES:
        raise ConfigError(f"mode must be one of {DISTILL_MODES}; got {mode!r}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0; got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be between 0 and 1; got {alpha}")
    if not logits:
        raise DataValueError("logits must hold at least one exit")

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
    out["total"] = total + tau * ponder_value
    return out
