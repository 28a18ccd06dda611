"""Deep residual shrinkage networks (Zhao et al. 2020), DRSN-CS and DRSN-CW baselines.

Residual shrinkage unit (pre-activation)::

    r = conv(ReLU(BN(conv(ReLU(BN(x))))))
    a = mean over positions of |r|                      (B, C) -- of |r|, not r
    alpha = sigmoid(FC(ReLU(BN(FC(a)))))                 CS: (B, 1), CW: (B, C)
    tau = mean_c(a) * alpha   (CS, channel-shared)   or   a * alpha   (CW, channel-wise)
    y = x + sign(r) * max(|r| - tau, 0)

Same stem, stage layout and transitions as ``resnet1d`` (depth = number of units), with a final
BN-ReLU before the head as in pre-activation ResNets. Registered as ``drsn_cs``/``drsn_cw``
(depth 8) and ``drsn_cs_4/8/12/16``, ``drsn_cw_4/8/12/16``. MACs: the two convs plus the two
threshold FCs (C*C + C*1 for CS, 2*C*C for CW).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scai.models._registry import register_model
from scai.models.layers import BatchNorm1d, Conv1d, Linear
from scai.models.resnet1d import ResNet1DConfig, StaticBackbone

__all__ = ["DRSNConfig", "ShrinkageUnit", "DRSN"]

#: DRSN uses the same architecture fields as ResNet-1D.
DRSNConfig = ResNet1DConfig


class ShrinkageUnit(nn.Module):
    """Residual shrinkage unit with a learned soft threshold.

    Parameters
    ----------
    channels, kernel_size : int
    channel_wise : bool
        False: one threshold per sample and unit (DRSN-CS); True: one per channel (DRSN-CW).
    """

    def __init__(self, channels: int, kernel_size: int = 3, channel_wise: bool = False) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.channel_wise = channel_wise
        self.bn1 = BatchNorm1d(channels)
        self.conv1 = Conv1d(channels, channels, kernel_size, padding=pad, bias=False)
        self.bn2 = BatchNorm1d(channels)
        self.conv2 = Conv1d(channels, channels, kernel_size, padding=pad, bias=False)
        self.fc1 = Linear(channels, channels)
        self.fc_bn = BatchNorm1d(channels)
        self.fc2 = Linear(channels, channels if channel_wise else 1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv1(torch.relu(self.bn1(x)))
        r = self.conv2(torch.relu(self.bn2(r)))
        a = r.abs().mean(dim=-1)  # (B, C)
        alpha = torch.sigmoid(self.fc2(torch.relu(self.fc_bn(self.fc1(a)))))
        tau = a * alpha if self.channel_wise else a.mean(dim=1, keepdim=True) * alpha
        return x + torch.sign(r) * torch.relu(r.abs() - tau.unsqueeze(-1))

    def macs(self, length: int) -> int:
        return self.conv1.macs(length) + self.conv2.macs(length) + self.fc1.macs() + self.fc2.macs()


class _FinalBNReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(x))


class DRSN(StaticBackbone):
    """DRSN-CS (``channel_wise=False``) or DRSN-CW (``channel_wise=True``)."""

    def __init__(self, name: str, in_length: int, n_classes: int, config: ResNet1DConfig,
                 channel_wise: bool) -> None:
        self.channel_wise = channel_wise  # plain attribute, read by make_unit during __init__
        super().__init__(name, in_length, n_classes, config)

    def make_unit(self, channels: int, kernel_size: int) -> nn.Module:
        return ShrinkageUnit(channels, kernel_size, self.channel_wise)

    def make_final(self, channels: int) -> nn.Module:
        return _FinalBNReLU(channels)


def _builder(channel_wise: bool):
    def build(name: str, in_length: int, n_classes: int, config: ResNet1DConfig) -> DRSN:
        return DRSN(name, in_length, n_classes, config, channel_wise)

    return build


for _kind, _cw in (("cs", False), ("cw", True)):
    _label = "channel-wise" if _cw else "channel-shared"
    register_model(f"drsn_{_kind}", _builder(_cw), DRSNConfig,
                   description=f"static DRSN ({_label} thresholds), depth configurable")
    for _depth in (4, 8, 12, 16):
        register_model(f"drsn_{_kind}_{_depth}", _builder(_cw), DRSNConfig, defaults={"depth": _depth},
                       fixed=("depth",), description=f"static DRSN ({_label}) with {_depth} units")
