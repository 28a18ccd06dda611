"""What the two execution paths of a position-adaptive block share.

``pa_block`` (the module, its dense masked path) and ``_sparse`` (the sparse inference path)
both return a ``PAResult`` and count MACs with ``macs_from_counts``. Both live here, below both
paths, so that ``pa_block`` imports ``_sparse`` and neither imports the other back.
``PABlockLike`` is the part of ``PABlock`` the sparse path and the MACs count read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

__all__ = ["PABlockLike", "PAResult", "apply_compute_scale", "macs_from_counts"]


@dataclass
class PAResult:
    """Output of a PA block for a batch."""

    features: Tensor  # (B, C, W) block output incl. the block-level residual
    ponder: Tensor  # (B,) mean over positions of N + R
    units_executed: Tensor  # (B, W) float: N per position
    macs: Tensor  # int64 (B,) MACs spent per sample


class PABlockLike(Protocol):
    """A PA block as the sparse path and the MACs count see it (``PABlock`` is one)."""

    units: nn.ModuleList  # S ``ResidualUnit``s
    halting: nn.ModuleList  # S - 1 ``HaltingHead``s (``local`` 3-tap conv, ``glob`` linear)
    eps: float  # a position halts once its summed halting scores reach 1 - eps
    forced_halting: Tensor | None  # (S-1, B, W) scores overriding the heads (tests, benchmarks)
    compute_scale: float  # inference compute knob: halting scores are divided by it (1 = as trained)

    def unit_macs_per_position(self, s: int) -> int:
        """MACs of unit s at one position, its halting conv included."""
        ...


def apply_compute_scale(h: Tensor, scale: float) -> Tensor:
    """Halting scores under the inference compute knob: min(h / scale, 1); ``h`` itself at 1."""
    return h if scale == 1.0 else torch.clamp(h / scale, max=1.0)


def macs_from_counts(block: PABlockLike, n_active: list[Tensor]) -> Tensor:
    """Per-sample MACs of ``block`` from the number of active positions of each unit.

    ``n_active[s]`` is an int64 (B,) tensor: positions where unit s ran. Unit s costs its
    per-position MACs (halting conv included) at each of them, plus the halting head's fc once
    per sample where any position is active.
    """
    total = torch.zeros_like(n_active[0])
    for s, n in enumerate(n_active):
        total = total + n * block.unit_macs_per_position(s)
        if s < len(block.halting):
            total = total + (n > 0).to(n.dtype) * block.halting[s].glob.macs()
    return total
