"""ResNet-1D baseline: static, one exit, depth = number of residual units.

Same stem, unit (conv-BN-ReLU-conv-BN + identity) and transitions as SCAI, but no early exits and
no block-level residual: ``depth`` units are split as evenly as possible over the stages given by
``channels`` (earlier stages get the extra units), a transition conv between stages, then global
average pooling + linear. Registered as ``resnet1d`` (depth 8) and ``resnet1d_4/8/12/16``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from scai.models._registry import register_model
from scai.models.base import ModelConfigError, MultiExitNetwork, StageResult, check_backbone_config, constant_macs
from scai.models.layers import ConvBN, ExitHead, ResidualUnit

__all__ = ["ResNet1DConfig", "StaticBackbone", "ResNet1D", "split_depth"]


@dataclass(frozen=True)
class ResNet1DConfig:
    """Architecture of the static ResNet-1D / DRSN baselines."""

    depth: int = 8  # total number of residual units
    channels: tuple[int, ...] = (12, 24, 36, 48)  # width of each stage
    kernel_size: int = 3  # kernel of the unit convs (odd)
    stem_kernel: int = 7  # kernel of the stem conv (odd)
    stem_stride: int = 4  # stride of the stem conv
    transition_kernel: int = 3  # kernel of the conv between stages (odd)
    transition_stride: int = 2  # stride of the conv between stages
    head_hidden: int = 0  # hidden width of the classifier head; 0 = GAP -> linear
    dropout: float = 0.2  # dropout before the last linear layer (same head as SCAI's exits)
    head_bins: int = 16  # exit head averages over this many segments of the axis; 1 = GAP

    def __post_init__(self) -> None:
        check_backbone_config(self, ("depth", "stem_stride", "transition_stride"))


def split_depth(depth: int, n_stages: int) -> list[int]:
    """Units per stage: as even as possible, earlier stages first (e.g. 6 over 4 -> 2,2,1,1)."""
    return [depth // n_stages + (1 if i < depth % n_stages else 0) for i in range(n_stages)]


class StaticBackbone(MultiExitNetwork):
    """Stem, stages of units separated by transition convs, one exit head. Subclasses give the unit."""

    config: ResNet1DConfig

    def __init__(self, name: str, in_length: int, n_classes: int, config: ResNet1DConfig) -> None:
        super().__init__(name, in_length, n_classes, config, n_exits=1)
        c = config.channels
        layers: list[nn.Module] = [ConvBN(1, c[0], config.stem_kernel, config.stem_stride)]
        for i, n_units in enumerate(split_depth(config.depth, len(c))):
            if i > 0:
                layers.append(ConvBN(c[i - 1], c[i], config.transition_kernel, config.transition_stride,
                                     relu=False))
            layers.extend(self.make_unit(c[i], config.kernel_size) for _ in range(n_units))
        self.layers = nn.ModuleList(layers)
        self.final = self.make_final(c[-1])
        self._lengths = [in_length]  # input length of each layer, then the output length
        for layer in self.layers:
            length = layer.out_length(self._lengths[-1]) if hasattr(layer, "out_length") else self._lengths[-1]
            if length < 1:
                raise ModelConfigError(
                    f"in_length={in_length} is too short for {name}: a stage would have length "
                    f"{length}; use a longer spectrum or fewer strides"
                )
            self._lengths.append(length)
        self.exit = ExitHead(c[-1], n_classes, config.head_hidden, config.dropout, config.head_bins, self._lengths[-1])

    def make_unit(self, channels: int, kernel_size: int) -> nn.Module:
        return ResidualUnit(channels, kernel_size)

    def make_final(self, channels: int) -> nn.Module:
        return nn.Identity()

    def stage_macs(self, i: int) -> int:
        self._check_stage(i)
        body = sum(layer.macs(w) for layer, w in zip(self.layers, self._lengths))
        return body + self.exit.macs(self._lengths[-1])

    def stage_shapes(self) -> list[tuple[int, int]]:
        return [(self.config.channels[-1], self._lengths[-1])]

    def _stage(self, i: int, features: Tensor) -> StageResult:
        x = features
        for layer in self.layers:
            x = layer(x)
        x = self.final(x)
        return StageResult(x, self.exit(x), constant_macs(self.stage_macs(0), x.shape[0], x.device))


class ResNet1D(StaticBackbone):
    """Plain ResNet-1D with SCAI's residual unit."""


def _build(name: str, in_length: int, n_classes: int, config: ResNet1DConfig) -> ResNet1D:
    return ResNet1D(name, in_length, n_classes, config)


register_model("resnet1d", _build, ResNet1DConfig, description="static ResNet-1D, depth configurable")
for _depth in (4, 8, 12, 16):
    register_model(f"resnet1d_{_depth}", _build, ResNet1DConfig, defaults={"depth": _depth},
                   fixed=("depth",), description=f"static ResNet-1D with {_depth} units")
