"""The multi-exit network contract shared by every registered model.

A network is a chain of *stages*; stage ``i`` ends with exit ``i``:

    stage 0 = stem + block 1 + exit 1;  stage k = transition + block k+1 + exit k+1.

Static baselines (ResNet-1D, DRSN) are a single stage with one exit. Subclasses implement
``_stage(i, features) -> StageResult`` and ``stage_macs(i)``; everything else (``forward``,
``forward_exits``, ``forward_detailed``, ``run_stage``, ``exit_macs``) is derived here, so the
stage-by-stage path and the full forward are the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from scai.errors import DataValueError, ModelConfigError

__all__ = [
    "NetworkOutput",
    "StageResult",
    "MultiExitNetwork",
    "ModelConfig",
    "BackboneConfig",
    "ModelConfigError",
    "EXECUTION_MODES",
]


class ModelConfig(Protocol):
    """The frozen dataclass configuring a registered network (``model_config_class(name)``).

    ``dataclasses.asdict(config)`` round-trips through ``create_model``.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]


class BackboneConfig(ModelConfig, Protocol):
    """The fields every conv backbone config shares (``ScaiConfig``, ``ResNet1DConfig``).

    Read-only, as the configs are frozen dataclasses.
    """

    @property
    def channels(self) -> tuple[int, ...]: ...
    @property
    def kernel_size(self) -> int: ...
    @property
    def stem_kernel(self) -> int: ...
    @property
    def stem_stride(self) -> int: ...
    @property
    def transition_kernel(self) -> int: ...
    @property
    def transition_stride(self) -> int: ...
    @property
    def head_hidden(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def head_bins(self) -> int: ...


def check_backbone_config(config: BackboneConfig, at_least_one: tuple[str, ...]) -> None:
    """Validate the fields every conv backbone config shares (normalises ``channels`` to a tuple).

    ``at_least_one`` names integer fields that must be >= 1 (strides, depths, unit counts).
    """
    object.__setattr__(config, "channels", tuple(int(c) for c in config.channels))
    if not config.channels or min(config.channels) < 1:
        raise ModelConfigError(f"channels must be a non-empty tuple of positive ints; got {config.channels}")
    for key in at_least_one:
        if int(getattr(config, key)) < 1:
            raise ModelConfigError(f"{key} must be >= 1; got {getattr(config, key)}")
    for key in ("kernel_size", "stem_kernel", "transition_kernel"):
        k = getattr(config, key)
        if int(k) < 1 or int(k) % 2 == 0:
            raise ModelConfigError(f"{key} must be a positive odd integer; got {k}")
    if config.head_hidden < 0:
        raise ModelConfigError(f"head_hidden must be >= 0; got {config.head_hidden}")
    if int(config.head_bins) < 1:
        raise ModelConfigError(f"head_bins must be >= 1; got {config.head_bins}")
    if not 0.0 <= config.dropout < 1.0:
        raise ModelConfigError(f"dropout must be in [0, 1); got {config.dropout}")


#: Execution modes of position-adaptive (PA) blocks; static layers ignore them.
EXECUTION_MODES = ("dense", "sparse", "auto")


@dataclass
class NetworkOutput:
    """Everything training and reports need from one forward pass.

    Attributes
    ----------
    logits : list of Tensor
        One (B, n_classes) tensor per exit.
    ponder : Tensor
        Scalar: sum over PA blocks of the batch mean of the per-sample mean over positions of
        N + R. Zero for networks without PA blocks.
    macs : Tensor
        int64 (B, n_exits): cumulative MACs actually spent per sample to reach each exit.
    units_executed : list of Tensor or None
        PA networks: one float (B, W_block) tensor per block, units executed per position. Its
        value is N; its gradient is that of N + R (straight-through), for losses that weight
        the compute spent at each position (``training.losses.allocation_penalty``).
    units_fraction : Tensor or None
        PA networks: (B,) share of the units run per sample, the mean over PA blocks of
        mean(N) / S. Its value counts units executed (N); its gradient is that of
        mean(N + R) / S (N has none), so a compute target can be trained on it.
    """

    logits: list[Tensor]
    ponder: Tensor
    macs: Tensor
    units_executed: list[Tensor] | None = None
    units_fraction: Tensor | None = None


@dataclass
class StageResult:
    """What one stage returns internally (see ``MultiExitNetwork._stage``)."""

    features: Tensor  # (B, C, W_i) output features of the block
    logits: Tensor  # (B, n_classes) exit logits
    macs: Tensor  # int64 (B,) MACs spent by this stage per sample, exit head included
    ponder: Tensor | None = None  # (B,) mean over positions of N + R (PA stages only)
    units_executed: Tensor | None = None  # (B, W_i) float (PA stages only)
    units_fraction: Tensor | None = None  # (B,) mean(N) / S, gradient of mean(N + R) / S (PA stages only)


class MultiExitNetwork(nn.Module):
    """Base class: a chain of stages, each ending with an exit.

    Attributes
    ----------
    name : str
        Registered name that built it.
    in_length : int
        Spectrum length W the network expects, input shape (B, 1, W).
    n_classes : int
    config : ModelConfig
        The family's frozen dataclass; ``dataclasses.asdict(config)`` round-trips through
        ``create_model``.
    n_exits : int
        Number of exits (= number of stages).
    """

    name: str
    in_length: int
    n_classes: int
    config: ModelConfig
    n_exits: int

    def __init__(self, name: str, in_length: int, n_classes: int, config: ModelConfig, n_exits: int) -> None:
        super().__init__()
        self.name = name
        self.in_length = int(in_length)
        self.n_classes = int(n_classes)
        self.config = config
        self.n_exits = int(n_exits)
        self.execution = "auto"

    # ---- to implement ---------------------------------------------------------------------
    def _stage(self, i: int, features: Tensor) -> StageResult:
        raise NotImplementedError

    def stage_macs(self, i: int) -> int:
        """MACs of stage ``i`` for one sample at full compute (exit head included)."""
        raise NotImplementedError

    def stage_shapes(self) -> list[tuple[int, int]]:
        """(channels, length) of the features each stage outputs (the offload payload)."""
        raise NotImplementedError

    # ---- derived API ----------------------------------------------------------------------
    @property
    def sparse(self) -> bool:
        """True when PA blocks may use the sparse path (mode "sparse" or "auto", eval only)."""
        return self.execution != "dense"

    def set_execution(self, mode: str) -> MultiExitNetwork:
        """Choose how PA blocks run in eval mode: "dense" (masked), "sparse" or "auto".

        "auto" (the default) picks dense or sparse per block and unit from the batch size and the
        measured fraction of active positions. Sparse/auto apply only in eval mode with autograd
        off (``torch.no_grad``/``inference_mode``); training always uses the dense masked path. Networks without PA blocks accept and ignore
        the mode. Returns ``self``.
        """
        if mode not in EXECUTION_MODES:
            raise ModelConfigError(f"execution mode must be one of {EXECUTION_MODES}; got {mode!r}")
        self.execution = mode
        for m in self.modules():
            if m is not self and hasattr(m, "execution"):
                m.execution = mode
        return self

    def exit_macs(self) -> list[int]:
        """Cumulative MACs of one sample to reach each exit at full compute (heads passed included)."""
        out, total = [], 0
        for i in range(self.n_exits):
            total += self.stage_macs(i)
            out.append(total)
        return out

    def _check_stage(self, i: int) -> None:
        if not 0 <= i < self.n_exits:
            raise ModelConfigError(f"stage index must be in [0, {self.n_exits - 1}]; got {i}")

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.in_length:
            raise DataValueError(
                f"input must have shape (batch, 1, {self.in_length}); got {tuple(x.shape)}"
            )

    def run_stage(
        self, i: int, features: Tensor, return_macs: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """Run stage ``i`` alone.

        Stage 0 takes the (B, 1, W) input; stage i > 0 takes stage i-1's features. Returns
        ``(features, logits)`` or, with ``return_macs``, ``(features, logits, macs)`` where
        ``macs`` is int64 (B,): what this stage actually spent per sample.
        """
        self._check_stage(i)
        if i == 0:
            self._check_input(features)
        r = self._stage(i, features)
        return (r.features, r.logits, r.macs) if return_macs else (r.features, r.logits)

    def forward_exits(self, x: Tensor, stop_at: int | None = None) -> list[Tensor]:
        """Logits of exits 0..stop_at (all exits when None)."""
        last = self.n_exits - 1 if stop_at is None else stop_at
        self._check_stage(last)
        self._check_input(x)
        logits = []
        for i in range(last + 1):
            r = self._stage(i, x)
            x = r.features
            logits.append(r.logits)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Final-exit logits (B, n_classes): an ordinary classifier for ONNX and scikit-learn."""
        return self.forward_exits(x)[-1]

    def forward_detailed(self, x: Tensor) -> NetworkOutput:
        """All exits plus ponder cost, per-sample MACs and (PA) units executed per position."""
        self._check_input(x)
        logits, macs, ponders, units, fractions = [], [], [], [], []
        for i in range(self.n_exits):
            r = self._stage(i, x)
            x = r.features
            logits.append(r.logits)
            macs.append(r.macs)
            if r.ponder is not None:
                ponders.append(r.ponder.mean())
            if r.units_executed is not None:
                units.append(r.units_executed)
            if r.units_fraction is not None:
                fractions.append(r.units_fraction)
        ponder = torch.stack(ponders).sum() if ponders else x.new_zeros(())
        return NetworkOutput(
            logits=logits,
            ponder=ponder,
            macs=torch.cumsum(torch.stack(macs, dim=1), dim=1),
            units_executed=units or None,
            units_fraction=torch.stack(fractions).mean(dim=0) if fractions else None,
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, in_length={self.in_length}, n_classes={self.n_classes}"


def constant_macs(macs: int, batch: int, device: torch.device) -> Tensor:
    """int64 (B,) tensor filled with a static stage's MACs."""
    return torch.full((batch,), int(macs), dtype=torch.int64, device=device)
