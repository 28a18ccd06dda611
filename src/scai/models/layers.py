"""Layers that know their own cost.

Every layer here has ``macs(length) -> int``: the multiply-accumulates (MACs) of one sample whose
input has ``length`` positions. Per-exit cost tables are sums of these numbers, so the formula sits
next to the layer it describes.

MAC convention (the same as ``torch.utils.flop_counter.FlopCounterMode`` and fvcore, which tests
check against): only convolutions and linear layers are counted, one MAC per weight use
(``out_positions * out_channels * in_channels/groups * kernel``). Bias adds, batch norm,
activations, pooling and residual adds are not counted. FLOPs = 2 x MACs wherever FLOPs are shown.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scai.models.base import ModelConfigError

__all__ = [
    "Conv1d",
    "Linear",
    "BatchNorm1d",
    "ConvBN",
    "ResidualUnit",
    "ExitHead",
    "fold_bn",
]


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` with its output length and MACs."""

    def out_length(self, length: int) -> int:
        """Output positions for ``length`` input positions."""
        (k,), (s,), (d,) = self.kernel_size, self.stride, self.dilation
        pad = self.padding[0] if isinstance(self.padding, tuple) else 0
        return (length + 2 * pad - d * (k - 1) - 1) // s + 1

    def macs(self, length: int) -> int:
        """MACs of one sample: out_positions * out_channels * in_channels/groups * kernel."""
        per_position = self.out_channels * (self.in_channels // self.groups) * self.kernel_size[0]
        return self.out_length(length) * per_position


class Linear(nn.Linear):
    """``nn.Linear`` with its MACs (applied once per sample)."""

    def macs(self, length: int = 1) -> int:
        """MACs of one sample: in_features * out_features (``length`` is ignored)."""
        return self.in_features * self.out_features


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d``; not counted (0 MACs), see the module docstring."""

    def macs(self, length: int) -> int:
        """Always 0: normalisation is folded into the preceding conv at inference."""
        return 0


def fold_bn(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one conv, using the running statistics (eval mode).

    Returns
    -------
    weight : Tensor (out, in, k)
    bias : Tensor (out,)
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * scale[:, None, None]
    return weight, (bias - bn.running_mean) * scale + bn.bias


def _fold_at_inference(module: nn.Module) -> bool:
    """True in eval mode without autograd, where folding BN into the conv is exact and cheaper.

    Export and training keep the plain conv-BN graph (autograd on, or training mode).
    """
    return not module.training and not torch.is_grad_enabled() and not torch.jit.is_tracing()


class ConvBN(nn.Module):
    """Conv1d (no bias) followed by batch norm and optionally ReLU; the stem and transitions."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True
    ) -> None:
        super().__init__()
        self.conv = Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = BatchNorm1d(out_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if _fold_at_inference(self):
            w, b = fold_bn(self.conv, self.bn)
            x = F.conv1d(x, w, b, stride=self.conv.stride, padding=self.conv.padding)
        else:
            x = self.bn(self.conv(x))
        return torch.relu(x) if self.relu else x

    def out_length(self, length: int) -> int:
        return self.conv.out_length(length)

    def macs(self, length: int) -> int:
        return self.conv.macs(length)


class ResidualUnit(nn.Module):
    """x + F(x) with F = conv-BN-ReLU-conv-BN ("same" padding, stride 1, identity skip).

    ``residual(x)`` returns F(x) alone; ``folded()`` gives the two convs with batch norm folded in,
    which the sparse PA path uses (eval mode only).
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ModelConfigError(f"kernel_size must be odd to keep the length; got {kernel_size}")
        pad = kernel_size // 2
        self.conv1 = Conv1d(channels, channels, kernel_size, padding=pad, bias=False)
        self.bn1 = BatchNorm1d(channels)
        self.conv2 = Conv1d(channels, channels, kernel_size, padding=pad, bias=False)
        self.bn2 = BatchNorm1d(channels)

    def residual(self, x: Tensor) -> Tensor:
        if _fold_at_inference(self):
            # Inference: batch norm folded into the convs saves two memory passes per unit.
            w1, b1, w2, b2 = self.folded()
            pad = self.conv1.padding
            return F.conv1d(torch.relu(F.conv1d(x, w1, b1, padding=pad)), w2, b2, padding=pad)
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)

    def folded(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(w1, b1, w2, b2): the unit as conv-bias-ReLU-conv-bias with BN folded (eval mode)."""
        w1, b1 = fold_bn(self.conv1, self.bn1)
        w2, b2 = fold_bn(self.conv2, self.bn2)
        return w1, b1, w2, b2

    def macs(self, length: int) -> int:
        return self.conv1.macs(length) + self.conv2.macs(length)


def bin_pool_matrix(length: int, bins: int) -> Tensor:
    """(length, bins) matrix whose product with a feature map averages it over ``bins`` segments.

    The segments are those of ``adaptive_avg_pool1d``; as a matmul the pooling exports to ONNX
    for any length (adaptive pooling exports only when ``bins`` divides the length).
    """
    if bins < 1 or bins > length:
        raise ModelConfigError(f"head_bins must be between 1 and the block length {length}; got {bins}")
    pool = torch.zeros(length, bins)
    for j in range(bins):
        start, end = (j * length) // bins, -((-(j + 1) * length) // bins)
        pool[start:end, j] = 1.0 / (end - start)
    return pool


class ExitHead(nn.Module):
    """Classifier after a block: average pooling, optional hidden layer, linear.

    Parameters
    ----------
    channels, n_classes : int
    hidden : int
        Width of an optional hidden Linear+ReLU layer; 0 means pool -> Linear.
    dropout : float
        Dropout before the last linear layer (training only).
    bins : int
        1 = global average pooling (the paper's head). ``bins > 1`` averages over that many
        equal segments of the spectral axis and concatenates them, so an exit keeps coarse
        knowledge of *where* along the spectrum a feature fired (needs ``length``; a block
        shorter than ``bins`` gets one bin per position).
    length : int, optional
        Length of the block output the head sees; required when ``bins > 1``.
    """

    def __init__(
        self, channels: int, n_classes: int, hidden: int = 0, dropout: float = 0.0, bins: int = 1,
        length: int | None = None,
    ) -> None:
        super().__init__()
        self.bins = int(bins)
        self.channels = channels
        if self.bins > 1:
            if length is None:
                raise ModelConfigError("an exit head with bins > 1 needs the block length")
            self.bins = min(self.bins, int(length))  # a short block gets one bin per position
            self.register_buffer("pool", bin_pool_matrix(int(length), self.bins), persistent=False)
        features = channels * self.bins
        self.hidden = Linear(features, hidden) if hidden > 0 else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = Linear(hidden if hidden > 0 else features, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        z = torch.matmul(x, self.pool).flatten(1) if self.bins > 1 else x.mean(dim=-1)
        if self.hidden is not None:
            z = torch.relu(self.hidden(z))
        return self.fc(self.dropout(z))

    def macs(self, length: int) -> int:
        """Global average pooling is not counted (no multiplies); binned pooling is a matmul."""
        pool = self.channels * length * self.bins if self.bins > 1 else 0
        return pool + (self.hidden.macs() if self.hidden is not None else 0) + self.fc.macs()
