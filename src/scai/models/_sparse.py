"""Sparse inference path of ``PABlock``: run each unit only at active positions.

Layout. The whole block works channels-last on one long sequence ``flat`` of shape (B*Wp, C):
every sample padded with ``halo`` zero rows on each side and the samples laid end to end.
Gathers and scatters then move whole rows, and a unit's convolutions are ordinary oneDNN calls
on a sequence with batch 1 (see ``_conv``); the zero pad rows give each sample its own padding.

Sparsity. For a unit with active positions A, the output at a in A needs conv1 at a-r..a+r and
so x at a-2r..a+2r (r = kernel // 2; halo 2 for kernel 3). We gather the rows of
D = dilate(A, 2r) into a packed sequence (keeping their order) and run both convs on it. Packed
neighbours of an active row are its true neighbours, because all of a-2r..a+2r are in D and
are consecutive; the rows at the edges of a run, where packed neighbours come from another
run, are computed but never used. conv1 outputs at pad rows are zeroed, which is what conv2's
zero padding sees in the dense path. So only |D| rows are computed instead of B*W, with no
per-run bookkeeping.

Halting. The 3-tap conv of the halting head needs x_s at a-1..a+1, which lie in D as well; the
global average pool is kept as a running per-sample sum updated with the residuals of the changed
rows, so it sees the whole (partially copied) map without a full pass.

Batch norm is folded into the unit convs (eval mode), so a unit is conv-bias-ReLU-conv-bias.
"auto" runs a unit on all rows (no gather) when the active fraction is above ``AUTO_SPARSE_BELOW``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from scai.models.pa_block import PABlock, PAResult

__all__ = ["pa_block_sparse", "AUTO_SPARSE_BELOW"]

#: "auto" gathers active neighbourhoods when at most this fraction of positions is active
#: (measured break-even, see benchmarks/pa_sparse.py); above it a unit runs on every row.
AUTO_SPARSE_BELOW = 0.6


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """Boolean (N,) mask grown by ``radius`` positions on each side."""
    if radius == 0:
        return mask
    m = mask.view(1, 1, -1).to(torch.float32)
    return F.max_pool1d(m, 2 * radius + 1, stride=1, padding=radius).view(-1) > 0


def _conv(rows: Tensor, weight4: Tensor, bias: Tensor | None, pad: int) -> Tensor:
    """1-D "same" conv over a channels-last sequence ``rows`` (T, C_in) -> (T, C_out).

    Runs as a conv2d of height 1 in channels_last memory format: oneDNN's fastest CPU path for
    these small widths, and no transposes, since (T, C) memory *is* that layout.
    """
    T, c_in = rows.shape
    x4 = rows.view(1, 1, T, c_in).permute(0, 3, 1, 2)  # (1, C, 1, T), channels_last strides
    y4 = F.conv2d(x4, weight4, bias, padding=(0, pad))
    return y4.permute(0, 2, 3, 1).reshape(T, -1)  # a view when oneDNN kept channels_last


def _weight4(w: Tensor) -> Tensor:
    return w.unsqueeze(2).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def pa_block_sparse(block: PABlock, x0: Tensor, mode: str = "sparse") -> PAResult:
    """Eval-mode forward of ``block`` computing units only where positions are active.

    Parameters
    ----------
    block : PABlock
    x0 : Tensor (B, C, W)
        Block input.
    mode : {"sparse", "auto"}
        "sparse" always gathers active neighbourhoods; "auto" does so only when the active
        fraction of a unit is at most ``AUTO_SPARSE_BELOW``.

    Returns
    -------
    PAResult
        Same values as the dense path (to float rounding).
    """
    from scai.models.pa_block import PAResult

    B, C, W = x0.shape
    n_units = len(block.units)
    r = block.units[0].conv1.kernel_size[0] // 2
    halo = max(2 * r, 1)  # the halting conv needs one neighbour even for kernel 1
    Wp = W + 2 * halo
    N = B * Wp
    dev, dt = x0.device, x0.dtype

    flat = F.pad(x0, (halo, halo)).permute(0, 2, 1).reshape(N, C)  # a copy: rows = positions
    real = torch.zeros(B, Wp, dtype=torch.bool, device=dev)
    real[:, halo : halo + W] = True
    real = real.view(N)
    sample = torch.arange(B, device=dev).repeat_interleave(Wp)

    active = real.clone()
    cum = torch.zeros(N, dtype=dt, device=dev)
    rem = torch.ones(N, dtype=dt, device=dev)  # R starts at 1
    rem_at_halt = torch.zeros(N, dtype=dt, device=dev)
    steps = torch.zeros(N, dtype=dt, device=dev)
    out = torch.zeros(N, C, dtype=dt, device=dev)
    gsum = x0.sum(dim=-1)  # (B, C) running sum for the halting heads' global average pool
    forced = None
    if block.forced_halting is not None:
        forced = F.pad(block.forced_halting.to(dt), (halo, halo)).reshape(n_units - 1, N)

    n_active: list[Tensor] = []
    for s, unit in enumerate(block.units):
        a_rows = torch.nonzero(active).squeeze(1)
        n = a_rows.numel()
        if n == 0:
            break
        n_active.append(active.view(B, Wp).sum(dim=1))
        w1, b1, w2, b2 = unit.folded()
        if mode == "sparse" or n <= AUTO_SPARSE_BELOW * B * W:
            rows = torch.nonzero(_dilate(active, halo)).squeeze(1)
            pos = torch.nonzero(active[rows]).squeeze(1)  # where the active rows sit in `rows`
            packed = flat.index_select(0, rows)
            keep = real[rows]
        else:  # every row: no gather
            pos, packed, keep = a_rows, flat, real
        z = _conv(packed, _weight4(w1), b1, r).relu_().mul_(keep.unsqueeze(1))
        res = _conv(z, _weight4(w2), b2, r).index_select(0, pos)
        x_new = packed.index_select(0, pos).add_(res)  # (n, C)
        flat.index_copy_(0, a_rows, x_new)

        if s < n_units - 1:
            head = block.halting[s]
            if packed is not flat:
                packed.index_copy_(0, pos, x_new)  # the halting conv sees the updated map
            taps = packed @ head.local.weight[0]  # (T, 3): tap j of the 3-tap conv at every row
            local = taps[pos - 1, 0] + taps[pos, 1] + taps[pos + 1, 2] + head.local.bias
            gsum.index_add_(0, sample[a_rows], res)
            glob = (gsum / W) @ head.glob.weight[0]  # (B,)
            h = torch.sigmoid(local + glob[sample[a_rows]])
            if forced is not None:
                h = forced[s].index_select(0, a_rows)
        else:
            h = torch.ones(n, dtype=dt, device=dev)

        c = cum[a_rows] + h
        halt = c >= 1.0 - block.eps
        r_a = rem[a_rows]
        p = torch.where(halt, r_a, h)
        out.index_copy_(0, a_rows, out.index_select(0, a_rows).addcmul_(x_new, p.unsqueeze(1)))
        rem_at_halt[a_rows] = torch.where(halt, r_a, rem_at_halt[a_rows])
        rem[a_rows] = torch.where(halt, r_a, r_a - h)
        cum[a_rows] = c
        steps[a_rows] += 1
        active[a_rows[halt]] = False

    def unflat(t: Tensor) -> Tensor:  # (B*Wp, ...) -> (B, W, ...) without the pad rows
        return t.view(B, Wp, *t.shape[1:])[:, halo : halo + W]

    features = unflat(out).permute(0, 2, 1) + x0
    steps_bw = unflat(steps)
    ponder = (steps_bw + unflat(rem_at_halt)).mean(dim=1)
    return PAResult(features, ponder, steps_bw.contiguous(), block._macs_from_counts(n_active))
