"""SCAI (early exits, plain residual blocks) and SCAI+ (early exits + position-adaptive blocks).

Architecture (paper section 3.1, DESIGN "Model")::

    x (B, 1, W) -> stem conv/stride -> [block 1] -> exit 1
                -> transition conv/stride -> [block 2] -> exit 2 -> ... -> exit L

A block holds S residual units (conv-BN-ReLU-conv-BN + identity); its output is added to its
input (block-level residual). SCAI+ replaces each block by a ``PABlock`` that runs a different
number of units at each position. Every exit averages the block output over ``head_bins`` equal
segments of the axis (default 16; 1 = the paper's global average pooling), then dropout + linear.

Defaults (chosen for IoT budgets and fast training on 2 CPU cores): stem kernel 7 stride 4 to 12
channels, L = 4 blocks of widths (12, 24, 36, 48), S = 4 units, kernel 3, transitions kernel 3
stride 2, exit heads with 16 bins. MACs per spectrum at full compute for the default
configuration and 2 classes, at 1000 and 1738 input points (SCAI+ adds its halting heads; its
adaptive cost is lower when positions halt early):

=========  ============  ===========  ============  ===========
model      exit 1, 1000  full, 1000   exit 1, 1738  full, 1738
=========  ============  ===========  ============  ===========
scai       0.933 M       6.94 M       1.62 M        12.02 M
scai_plus  0.960 M       7.03 M       1.67 M        12.17 M
=========  ============  ===========  ============  ===========

(``python -c "import scai.models as m; print(m.create_model('scai', 1000, 2).exit_macs())"``;
``tests/models/test_doc_tables.py`` checks the table.) Cost of the units of a block of width C
over length W_l: S * 2 * 3 * C^2 * W_l MACs; a binned exit head adds C * W_l * bins for its
pooling matmul plus its linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scai.models._registry import register_model
from scai.models.base import ModelConfigError, MultiExitNetwork, StageResult, check_backbone_config, constant_macs
from scai.models.layers import ConvBN, ExitHead, ResidualUnit
from scai.models.knob import current_scale, set_compute_scale
from scai.models.pa_block import PABlock

__all__ = ["ScaiConfig", "ScaiPlusConfig", "ResidualBlock", "ScaiNetwork"]


@dataclass(frozen=True)
class ScaiConfig:
    """Architecture of SCAI (early exits, plain residual blocks)."""

    channels: tuple[int, ...] = (12, 24, 36, 48)  # width of each block; its length is L (= exits)
    units_per_block: int = 4  # S, residual units per block
    kernel_size: int = 3  # kernel of the unit convs (odd)
    stem_kernel: int = 7  # kernel of the stem conv (odd)
    stem_stride: int = 4  # stride of the stem conv: divides the length before block 1
    transition_kernel: int = 3  # kernel of the conv between blocks (odd)
    transition_stride: int = 2  # stride of the conv between blocks
    head_hidden: int = 0  # hidden width of the exit heads; 0 = GAP -> linear (paper)
    dropout: float = 0.2  # dropout before each exit's last linear layer (paper: none stated)
    head_bins: int = 16  # exit heads average over this many segments of the axis; 1 = GAP (paper)

    def __post_init__(self) -> None:
        check_backbone_config(self, ("units_per_block", "stem_stride", "transition_stride"))


@dataclass(frozen=True)
class ScaiPlusConfig(ScaiConfig):
    """Architecture of SCAI+: SCAI with position-adaptive (PA) blocks."""

    halting_eps: float = 0.02  # a position halts once its summed halting scores reach 1 - eps
    halting_bias_init: float = -1.0  # initial bias b of the halting heads (sigmoid(-1) = 0.27)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.halting_eps < 1.0:
            raise ModelConfigError(f"halting_eps must be in [0, 1); got {self.halting_eps}")


class ResidualBlock(nn.Module):
    """S plain residual units plus the block-level residual: Block(x) + x."""

    def __init__(self, channels: int, units: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.units = nn.ModuleList(ResidualUnit(channels, kernel_size) for _ in range(units))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for unit in self.units:
            x = unit(x)
        return x + x0

    def macs(self, length: int) -> int:
        return sum(u.macs(length) for u in self.units)


class ScaiNetwork(MultiExitNetwork):
    """SCAI / SCAI+ network; one stage per block, one exit per stage.

    Stage 0 = stem + block 1 + exit 1; stage k = transition k + block k+1 + exit k+1.
    """

    config: ScaiConfig  # ScaiPlusConfig for SCAI+

    def __init__(self, name: str, in_length: int, n_classes: int, config: ScaiConfig) -> None:
        super().__init__(name, in_length, n_classes, config, n_exits=len(config.channels))
        self.adaptive = isinstance(config, ScaiPlusConfig)
        c = config.channels
        self.stem = ConvBN(1, c[0], config.stem_kernel, config.stem_stride)
        self.transitions = nn.ModuleList(
            ConvBN(c[i - 1], c[i], config.transition_kernel, config.transition_stride, relu=False)
            for i in range(1, len(c))
        )
        blocks: list[nn.Module] = []
        for ch in c:
            if self.adaptive:
                assert isinstance(config, ScaiPlusConfig)
                blocks.append(
                    PABlock(ch, config.units_per_block, config.kernel_size, config.halting_eps,
                            config.halting_bias_init)
                )
            else:
                blocks.append(ResidualBlock(ch, config.units_per_block, config.kernel_size))
        self.blocks = nn.ModuleList(blocks)
        # Input length of each stage's first layer and length of each block.
        self._in_lengths, self._block_lengths = [], []
        length = in_length
        for i in range(len(c)):
            self._in_lengths.append(length)
            length = self._entry(i).out_length(length)
            if length < 1:
                raise ModelConfigError(
                    f"in_length={in_length} is too short for {name}: block {i + 1} would have "
                    f"length {length}; use a longer spectrum or fewer strides"
                )
            self._block_lengths.append(length)
        self.exits = nn.ModuleList(
            ExitHead(ch, n_classes, config.head_hidden, config.dropout, config.head_bins, w)
            for ch, w in zip(c, self._block_lengths)
        )
        self.set_execution("auto")  # propagate the default to the PA blocks

    def set_compute(self, scale: float) -> ScaiNetwork:
        """Set the inference compute knob of every PA block (no retraining); returns ``self``.

        The halting scores are divided by ``scale``: ``scale > 1`` runs more units per position,
        ``scale < 1`` fewer, ``1.0`` (the default) is the trained model. The per-sample MACs of
        ``forward_detailed``/``run_stage`` follow it, as they count the units that ran;
        ``exit_macs()`` stays the full-compute bound. It is runtime state, not saved. SCAI (no PA
        blocks) accepts only 1.0.
        """
        set_compute_scale(self, scale)
        return self

    @property
    def compute_scale(self) -> float:
        """The compute knob set by ``set_compute`` (1.0 = as trained)."""
        return current_scale(self)

    def _entry(self, i: int) -> ConvBN:
        return self.stem if i == 0 else self.transitions[i - 1]

    def stage_macs(self, i: int) -> int:
        self._check_stage(i)
        w = self._block_lengths[i]
        return self._entry(i).macs(self._in_lengths[i]) + self.blocks[i].macs(w) + self.exits[i].macs(w)

    def stage_shapes(self) -> list[tuple[int, int]]:
        return list(zip(self.config.channels, self._block_lengths))

    def _stage(self, i: int, features: Tensor) -> StageResult:
        x = self._entry(i)(features)
        B = x.shape[0]
        entry_macs = self._entry(i).macs(self._in_lengths[i]) + self.exits[i].macs(x.shape[-1])
        if self.adaptive:
            r = self.blocks[i](x)
            n_units = len(self.blocks[i].units)
            # value: units executed; gradient: that of the ponder cost N + R (N has none)
            fraction = r.units_executed.detach().mean(dim=1) / n_units + (r.ponder - r.ponder.detach()) / n_units
            return StageResult(r.features, self.exits[i](r.features), r.macs + entry_macs,
                               r.ponder, r.units_executed, fraction)
        x = self.blocks[i](x)
        return StageResult(x, self.exits[i](x), constant_macs(self.stage_macs(i), B, x.device))


def _build(name: str, in_length: int, n_classes: int, config: ScaiConfig) -> ScaiNetwork:
    return ScaiNetwork(name, in_length, n_classes, config)


register_model("scai", _build, ScaiConfig, description="early exits, plain residual blocks")
register_model("scai_plus", _build, ScaiPlusConfig, description="early exits + position-adaptive blocks")
