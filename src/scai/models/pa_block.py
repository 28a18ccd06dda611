"""Position-adaptive residual block (PA-ResNet, paper section 3.2 and Algorithm 1, as fixed by DESIGN).

For every position i along the spectrum the block decides how many of its S residual units to run.
After unit s (s < S) a halting score

    h_s = sigmoid(conv3x1(x_s) + fc(gap(x_s)) + b)        (one output channel)

mixes local (3-tap conv) and global (average-pooled) information; the last unit forces h_S = 1.
N(i) = min{n : h_1 + ... + h_n >= 1 - eps}; the remainder R = 1 - (h_1 + ... + h_{N-1}) starts at 1
(Algorithm 1 initialises it to 0, which is wrong: eq. 12). The block output is

    sum_s p_s x_s + x_0,   p_s = h_s (s < N), R (s = N), 0 (s > N)

(the weighted units plus the block-level residual). A halted position is copied forward
unchanged, so unit s+1 sees the previous value there. Ponder cost per position is N + R (N carries
no gradient, R does).

Two execution paths give the same result (eval mode, <= 1e-5):

* dense (masked): every unit runs on the whole map and ``torch.where`` keeps the active rows;
  differentiable, used for training and ONNX export;
* sparse: each unit runs only at active positions (see ``scai.models._sparse``); what makes fewer
  active positions cost less wall time. "auto" chooses per unit from the active rows' cost.

MACs per sample: unit s costs (its per-position MACs + the halting conv's 3C) times the number of
positions active in unit s, plus C for the halting fc when any position of that sample is active.
The halo rows the sparse kernel recomputes are an implementation overhead and are not counted.

Compute knob (inference, no retraining): ``compute_scale`` c divides every halting score,
h' = min(h / c, 1). c > 1 makes positions halt later (more units), c < 1 earlier, c = 1 is the
trained model. The cumulative scores scale by 1/c, so N at every position is monotone in c and so
are the per-sample MACs counted above; both paths apply it the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import scai.models._sparse as _sparse
from scai.models._pa_common import PAResult, apply_compute_scale, macs_from_counts
from scai.models.base import ModelConfigError
from scai.models.layers import Conv1d, Linear, ResidualUnit

__all__ = ["HaltingHead", "PABlock", "PAResult", "check_compute_scale"]


#: Where ``PABlock.init_halting`` starts the halting heads: this many logits below the N* boundary
#: (negative: above it, inside N*'s interval).
HALTING_INIT_MARGIN = -0.1


def check_compute_scale(scale: float) -> float:
    """``scale`` as a float, refused unless finite and > 0."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ModelConfigError(f"compute scale must be a number > 0; got {scale!r}")
    value = float(scale)
    if not (value > 0 and value < float("inf")):
        raise ModelConfigError(f"compute scale must be finite and > 0 (1 = as trained); got {scale}")
    return value



class HaltingHead(nn.Module):
    """h = sigmoid(conv3x1(x) + fc(gap(x)) + b): one score in (0, 1) per position.

    The conv's bias is the ``b`` of the formula; the fc has no bias of its own.
    """

    def __init__(self, channels: int, bias_init: float = -1.0) -> None:
        super().__init__()
        self.local = Conv1d(channels, 1, 3, padding=1, bias=True)
        self.glob = Linear(channels, 1, bias=False)
        nn.init.constant_(self.local.bias, bias_init)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, W) -> (B, W)."""
        return torch.sigmoid(self.local(x).squeeze(1) + self.glob(x.mean(dim=-1)))

    def macs_per_position(self) -> int:
        return self.local.macs(1)

    def macs(self, length: int) -> int:
        return self.local.macs(length) + self.glob.macs()


class PABlock(nn.Module):
    """S residual units with per-position halting.

    Parameters
    ----------
    channels : int
    units : int
        S, the number of residual units (>= 1).
    kernel_size : int
        Kernel of the unit convs (odd).
    eps : float
        Halting threshold: a position halts once its cumulative score reaches 1 - eps.
    halting_bias_init : float
        Initial ``b`` of every halting head; negative means "compute more units at first".

    Attributes
    ----------
    execution : str
        "dense", "sparse" or "auto". Sparse/auto apply in eval mode with autograd off
        (``torch.no_grad``/``inference_mode``); otherwise the dense path runs.
    forced_halting : Tensor or None
        Testing/benchmark hook: (S-1, B, W) halting scores used instead of the heads' outputs
        (the heads are still evaluated, so timing stays honest).
    compute_scale : float
        The inference compute knob (module docstring): halting scores are divided by it; 1.0 =
        as trained. Set it through ``ScaiNetwork.set_compute``; it is not saved with the weights.
    """

    def __init__(
        self,
        channels: int,
        units: int,
        kernel_size: int = 3,
        eps: float = 0.02,
        halting_bias_init: float = -1.0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.eps = float(eps)
        self.units = nn.ModuleList(ResidualUnit(channels, kernel_size) for _ in range(units))
        self.halting = nn.ModuleList(HaltingHead(channels, halting_bias_init) for _ in range(units - 1))
        self.execution = "dense"
        self.forced_halting: Tensor | None = None
        self.compute_scale = 1.0

    # ---- cost --------------------------------------------------------------------------
    def unit_macs_per_position(self, s: int) -> int:
        """MACs of unit s at one position, its halting conv included."""
        m = self.units[s].macs(1)
        return m + (self.halting[s].macs_per_position() if s < len(self.halting) else 0)

    def macs(self, length: int) -> int:
        """Full-compute MACs of one sample (every position runs every unit)."""
        return sum(u.macs(length) for u in self.units) + sum(h.macs(length) for h in self.halting)

    def _macs_from_counts(self, n_active: list[Tensor]) -> Tensor:
        """Per-sample MACs from the number of active positions of each unit (list of (B,) int64)."""
        return macs_from_counts(self, n_active)

    def init_halting(self, target: float, margin: float = HALTING_INIT_MARGIN) -> None:
        """Set every halting head's bias so that an untrained network runs about ``target * S`` units.

        With constant scores h a position halts after N units where (N - 1) h < 1 - eps <= N h.
        The bias is put ``-margin`` logits above the boundary h = (1 - eps) / N* of
        N* = round(target * S) (clamped to 1..S), i.e. just inside N*'s interval: with the heads'
        conv and fc weights (left as they are) most positions start at N* and the ones whose
        score lies a little lower at N* + 1, so positions stay next to the boundary where a
        small change of the scores moves a unit in or out. Measured on ucr_meat (default SCAI+,
        target 0.5, 50 epochs): a bias in the middle of N*'s interval met the target with every
        position at exactly N* (nothing adapts); one ``0.1`` logits below the boundary adapted more
        but stayed at 0.55 of the units (a few hundred Adam steps move a bias ~0.1); this one
        gave 0.51 with 3-10 % of the positions of blocks 2-4 running more units. Used by the
        trainer when it trains to a compute target (``ponder_target``): a set of 60 spectra
        then reaches it instead of walking there from sigmoid(-1) (0.87 after 50 epochs).
        """
        if not 0.0 < float(target) <= 1.0:
            raise ModelConfigError(f"halting target must be in (0, 1]; got {target}")
        n_units = len(self.units)
        if n_units < 2:
            return
        n = min(max(round(float(target) * n_units), 1), n_units)
        limit = 1.0 - self.eps
        # n == S: no position should halt before the last unit; start well inside that interval
        h = limit / (n_units - 1) / 2 if n == n_units else limit / n
        bias = float(torch.logit(torch.tensor(h, dtype=torch.float64))) - (0.0 if n == n_units else float(margin))
        with torch.no_grad():
            for head in self.halting:
                head.local.bias.fill_(bias)

    # ---- forward -----------------------------------------------------------------------
    def halting_score(self, s: int, x: Tensor) -> Tensor:
        h = self.halting[s](x)
        if self.forced_halting is not None:
            h = self.forced_halting[s].to(h)
        return apply_compute_scale(h, self.compute_scale)

    def forward(self, x: Tensor) -> PAResult:
        # The sparse path is inference-only: eval mode without autograd (it has no backward).
        if not self.training and self.execution != "dense" and not torch.is_grad_enabled() and not _exporting():
            # read through the module, so that tests can lower the threshold
            if self.execution == "sparse" or x.shape[0] * x.shape[2] >= _sparse.AUTO_MIN_ROWS:
                return _sparse.pa_block_sparse(self, x, self.execution)
        return self._forward_dense(x)

    def _forward_dense(self, x0: Tensor) -> PAResult:
        """Masked dense path: every unit on the whole map, active rows kept (differentiable)."""
        B, _, W = x0.shape
        n_units = len(self.units)
        active = torch.ones(B, W, dtype=torch.bool, device=x0.device)
        cum = x0.new_zeros(B, W)  # sum of halting scores so far
        rem = x0.new_ones(B, W)  # R: starts at 1 (DESIGN fix of Algorithm 1)
        rem_at_halt = x0.new_zeros(B, W)
        steps = x0.new_zeros(B, W)  # N
        out = torch.zeros_like(x0)
        x = x0
        n_active: list[Tensor] = []
        dynamic = not _exporting()
        for s, unit in enumerate(self.units):
            if dynamic and s > 0 and not bool(active.any()):
                break
            n_active.append(active.sum(dim=1))
            mask = active.unsqueeze(1)
            x = torch.where(mask, unit(x), x)
            h = self.halting_score(s, x) if s < n_units - 1 else torch.ones_like(cum)
            act = active.to(x.dtype)
            cum = cum + h * act
            halt = active & (cum >= 1.0 - self.eps)
            go_on = active & ~halt
            p = torch.where(go_on, h, torch.where(halt, rem, torch.zeros_like(rem)))
            out = out + p.unsqueeze(1) * x
            rem_at_halt = torch.where(halt, rem, rem_at_halt)
            rem = torch.where(go_on, rem - h, rem)
            steps = steps + act
            active = go_on
        ponder = (steps + rem_at_halt).mean(dim=1)
        # units per position: value N, gradient that of N + R (straight-through, as units_fraction),
        # so a loss can weight the compute spent at each position (training.losses.allocation_penalty)
        units = steps + (rem_at_halt - rem_at_halt.detach())
        return PAResult(out + x0, ponder, units, macs_from_counts(self, n_active))


def _exporting() -> bool:
    """True while traced/exported/compiled: no data-dependent branches, dense path only."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
