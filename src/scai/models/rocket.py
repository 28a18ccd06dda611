"""A MiniRocket exit: fixed random convolutions, PPV pooling and a linear head, in PyTorch.

MiniRocket (Dempster et al., KDD 2021) turns a series into the proportions of positive values
(PPV) of 84 fixed length-9 kernels (weights -1, with +2 at three of the nine taps) at several
dilations, each against a few biases taken as quantiles of one training series' convolution
output; a ridge classifier on the standardised features decides. On small FTIR/NIR sets it is
often the strongest classical anchor (benchmarks/results/frontier).

The transform's parameters (dilations, features per dilation, biases) are fitted by the
maintained implementation, aeon's ``MiniRocket`` (the ``rocket`` extra), in
:func:`scai.training.rocket_exit.fit_rocket_exit`; this module only *runs* it, as ordinary
torch ops (conv1d, comparison, mean, linear) so that it exports to ONNX and runs on the edge
like every other stage. :class:`RocketExit` reproduces aeon's transform (tests compare them).

The exit may undo the pipeline's final standardisation first (``input_affine``: ``x * scale +
mean`` per point, W MACs): the cascade's stages all take the standardised spectrum, but MiniRocket's
convolutions need the spectrum's shape, which per-point z-scoring distorts (on ucr_strawberry seed 0
its test accuracy was 0.970 on the z-scored input and 0.984 on the unscaled one; docs/models.md).

MACs per spectrum: the optional input affine, W; the convolutions, 84 * 9 * W per dilation; the
PPV comparisons, one per position and feature (counted as one MAC each, W or W - 8d positions);
the head, F * C.

Eager inference on CPU runs the features compiled by numba where it is installed (``scai[fast]``;
:func:`ppv_rows`): each spectrum's nine shifted copies and one kernel's convolution stay in cache while
its biases are compared, where the PyTorch ops write and re-read a (84, W) convolution output for every
bias. Same features as aeon's transform (the same sums in the same order). 256 milk spectra of
1738 points, 9,996 features, one thread: 17.2 ms per spectrum in PyTorch ops, 4.4 ms compiled,
3.2 ms in aeon's transform (benchmarks/rocket_speed.py). Traced for ONNX, without numba, or with
``SCAI_NUMBA=0``, the PyTorch ops run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scai._jit import jit
from scai.errors import ModelConfigError

__all__ = ["KERNEL_TAPS", "RocketExit", "compiled_ppv", "ppv_rows", "rocket_kernels"]

#: MiniRocket's 84 kernels: the 3 taps (of 9) whose weight is +2 (the others are -1).
KERNEL_TAPS: tuple[tuple[int, int, int], ...] = tuple(combinations(range(9), 3))

#: :data:`KERNEL_TAPS` as an (84, 3) array, for :func:`ppv_rows`.
_TAPS = np.array(KERNEL_TAPS, dtype=np.int64)


#: Spectra per chunk of the eager-mode transform (a chunk's 84 x W convolution output stays in cache;
#: 8 x 84 x 1738 floats are 4.7 MB; measured 2x faster PPV pooling than whole batches of 256).
CHUNK = 8


def rocket_kernels() -> Tensor:
    """The (84, 1, 9) weights: -1 everywhere, +2 at each kernel's three taps."""
    w = -torch.ones(len(KERNEL_TAPS), 1, 9)
    for k, taps in enumerate(KERNEL_TAPS):
        w[k, 0, list(taps)] = 2.0
    return w


def _dilated_conv(x: Tensor, kernels: Tensor, d: int, W: int) -> Tensor:
    """``conv1d(x, kernels, padding=4d, dilation=d)`` for (B, 1, W) input and (84, 1, 9) kernels as one
    matrix product over the 9 shifted copies of the zero-padded input (about 2x faster on CPU than
    oneDNN's conv for a single input channel; the same sums in the same order)."""
    xp = F.pad(x[:, 0], (4 * d, 4 * d))
    shifted = torch.stack([xp[:, i * d : i * d + W] for i in range(9)], dim=1)  # (B, 9, W)
    return torch.matmul(kernels[:, 0], shifted)


def ppv_rows(X: np.ndarray, dilations: np.ndarray, features_per_dilation: np.ndarray, biases: np.ndarray,
             taps: np.ndarray, out: np.ndarray) -> None:
    """MiniRocket's PPV features of every row of ``X`` (n, W) float32 into ``out`` (n, F) float32.

    The convolution of kernel k at dilation d is ``-sum of the 9 taps + 3 x (its 3 taps)`` on the
    zero-padded spectrum (weights -1 and +2), summed as aeon's transform sums it: the -1 part over the
    centre, then the taps at -4d..-d, then +d..+4d; then the three +3 taps in order. Kernel k at the
    j-th dilation pools every position when j + k is even, else the W - 8d unpadded ones. Plain loops:
    numba compiles them (:func:`compiled_ppv`); run uncompiled they are only a slow reference.
    """
    n, W = X.shape
    A = np.empty(W, dtype=np.float32)
    G = np.empty((9, W), dtype=np.float32)
    C = np.empty(W, dtype=np.float32)
    three = np.float32(3.0)
    for r in range(n):
        x = X[r]
        f0 = 0
        for j in range(dilations.shape[0]):
            d = dilations[j]
            nf = features_per_dilation[j]
            for t in range(W):
                A[t] = -x[t]
            for i in (0, 1, 2, 3, 5, 6, 7, 8):
                shift = (i - 4) * d
                for t in range(max(0, -shift), min(W, W - shift)):
                    A[t] = A[t] - x[t + shift]
            for i in range(9):  # 3 x, shifted, zero outside (no branch in the loops: they vectorise)
                shift = (i - 4) * d
                lo, hi = max(0, -shift), min(W, W - shift)
                for t in range(lo):
                    G[i, t] = 0.0
                for t in range(lo, hi):
                    G[i, t] = three * x[t + shift]
                for t in range(hi, W):
                    G[i, t] = 0.0
            for k in range(taps.shape[0]):
                Ga, Gb, Gc = G[taps[k, 0]], G[taps[k, 1]], G[taps[k, 2]]
                for t in range(W):
                    C[t] = A[t] + Ga[t] + Gb[t] + Gc[t]
                lo, hi = (0, W) if (j + k) % 2 == 0 else (4 * d, W - 4 * d)
                for f in range(nf):
                    # np.sum of the comparison: the kernel ran 1.9x faster than with a counting loop
                    out[r, f0 + f] = np.sum(C[lo:hi] > biases[f0 + f]) / (hi - lo)
                f0 += nf


@functools.cache
def compiled_ppv() -> Callable[..., None] | None:
    """:func:`ppv_rows` compiled by numba, or ``None`` (see :func:`scai._jit.jit`)."""
    return jit(ppv_rows)


class RocketExit(nn.Module):
    """MiniRocket features and a linear head on the (B, 1, W) input.

    Parameters
    ----------
    in_length : int
        W, points per spectrum.
    n_classes : int
    dilations : sequence of int
        One entry per dilation used.
    features_per_dilation : sequence of int
        Biases (features) per kernel at each dilation.
    input_affine : bool
        Whether the input is first mapped back by ``x * input_scale + input_mean`` (per point;
        both stored with the weights), e.g. to undo the pipeline's standardisation.
    """

    def __init__(self, in_length: int, n_classes: int, dilations: Any, features_per_dilation: Any,
                 input_affine: bool = False) -> None:
        super().__init__()
        self.in_length, self.n_classes = int(in_length), int(n_classes)
        self.dilations = [int(d) for d in dilations]
        self.features_per_dilation = [int(f) for f in features_per_dilation]
        if not self.dilations or len(self.dilations) != len(self.features_per_dilation):
            raise ModelConfigError("RocketExit needs one features_per_dilation entry per dilation (at least one)")
        if any(d < 1 or 8 * d > self.in_length - 1 for d in self.dilations):
            raise ModelConfigError(f"RocketExit dilations {self.dilations} do not fit W={self.in_length} (need 8d <= W-1)")
        if any(f < 1 for f in self.features_per_dilation):
            raise ModelConfigError("RocketExit needs at least one feature per kernel and dilation")
        self.n_features = len(KERNEL_TAPS) * sum(self.features_per_dilation)
        self.register_buffer("kernels", rocket_kernels(), persistent=False)
        self.biases = nn.Parameter(torch.zeros(self.n_features), requires_grad=False)
        self.weight = nn.Parameter(torch.zeros(self.n_classes, self.n_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(self.n_classes), requires_grad=False)
        self.input_affine = bool(input_affine)
        if self.input_affine:
            self.input_scale = nn.Parameter(torch.ones(self.in_length), requires_grad=False)
            self.input_mean = nn.Parameter(torch.zeros(self.in_length), requires_grad=False)

    def spec(self) -> dict[str, Any]:
        """What config.json stores to rebuild the module (the arrays live in model.safetensors)."""
        out: dict[str, Any] = {"dilations": list(self.dilations), "features_per_dilation": list(self.features_per_dilation)}
        if self.input_affine:
            out["input_affine"] = True
        return out

    @property
    def macs(self) -> int:
        """Multiply-accumulates per spectrum (PPV comparisons counted as one each)."""
        W, K = self.in_length, len(KERNEL_TAPS)
        conv = K * 9 * W * len(self.dilations)
        compare = 0
        for j, (d, nf) in enumerate(zip(self.dilations, self.features_per_dilation)):
            for k in range(K):
                positions = W if (j + k) % 2 == 0 else W - 8 * d
                compare += nf * positions
        affine = W if self.input_affine else 0
        return int(affine + conv + compare + self.n_features * self.n_classes)

    def set_weights(self, biases: Any, weight: Any, bias: Any, input_scale: Any = None, input_mean: Any = None) -> None:
        """Copy the fitted arrays in; ``input_scale``/``input_mean`` only (and both) with ``input_affine``."""
        if self.input_affine != (input_scale is not None) or (input_scale is None) != (input_mean is None):
            raise ModelConfigError(
                "RocketExit: give input_scale and input_mean exactly when the exit was built with input_affine=True"
            )
        with torch.no_grad():
            self.biases.copy_(torch.as_tensor(np.asarray(biases, dtype=np.float32)))
            self.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
            self.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
            if self.input_affine:
                for param, value in ((self.input_scale, input_scale), (self.input_mean, input_mean)):
                    param.copy_(torch.from_numpy(np.array(np.broadcast_to(np.asarray(value, np.float32), (self.in_length,)))))

    def features(self, x: Tensor) -> Tensor:
        """(B, 1, W) -> (B, F) PPV features in aeon's order (dilation, kernel, bias).

        In eager mode on CPU with numba, :func:`ppv_rows` computes them compiled; otherwise the
        PyTorch ops of :meth:`_features` run, in eager mode in chunks of :data:`CHUNK` spectra so that
        a chunk's convolution output (CHUNK x 84 x W floats) stays in cache while its biases are
        compared; traced for ONNX as one batch (the graph keeps a dynamic batch dimension).
        """
        x = x.reshape(x.shape[0], 1, -1).float()
        if self.input_affine:
            x = torch.addcmul(self.input_mean, x, self.input_scale)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._features(x)
        kernel = compiled_ppv()
        if kernel is not None and x.device.type == "cpu" and not x.requires_grad:
            out = np.empty((x.shape[0], self.n_features), dtype=np.float32)
            kernel(np.ascontiguousarray(x[:, 0].detach().numpy()), np.asarray(self.dilations, dtype=np.int64),
                   np.asarray(self.features_per_dilation, dtype=np.int64), self.biases.detach().numpy(), _TAPS, out)
            return torch.from_numpy(out)
        if x.shape[0] <= CHUNK:
            return self._features(x)
        return torch.cat([self._features(part) for part in x.split(CHUNK)], dim=0)

    def _features(self, x: Tensor) -> Tensor:
        K = len(KERNEL_TAPS)
        out: list[Tensor] = []
        start = 0
        for j, (d, nf) in enumerate(zip(self.dilations, self.features_per_dilation)):
            C = _dilated_conv(x, self.kernels, d, self.in_length)  # (B, 84, W), zero padded
            b = self.biases[start : start + K * nf].reshape(K, nf)
            start += K * nf
            # MiniRocket alternates: kernel k at dilation j pools every position when j + k is even,
            # else only the unpadded middle. Each kernel is compared on the positions it pools only.
            full_k, part_k = (0, 1) if j % 2 == 0 else (1, 0)
            full, part = C[:, full_k::2], C[:, part_k::2, 4 * d : self.in_length - 4 * d]
            b_full, b_part = b[full_k::2], b[part_k::2]
            pooled = []
            for f in range(nf):  # one bias at a time keeps memory at B x 84 x W
                pf = (full > b_full[:, f : f + 1]).float().mean(dim=2)  # (B, 42)
                pp = (part > b_part[:, f : f + 1]).float().mean(dim=2)
                pair = (pf, pp) if full_k == 0 else (pp, pf)  # back to kernel order 0, 1, 2, ...
                pooled.append(torch.stack(pair, dim=2).reshape(x.shape[0], K))
            out.append(torch.stack(pooled, dim=2).reshape(x.shape[0], K * nf))
        return torch.cat(out, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.features(x), self.weight, self.bias)
