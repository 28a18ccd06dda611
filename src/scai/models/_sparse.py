"""Sparse inference path of ``PABlock``: run each unit only where it is needed.

Layout. The block works channels-last on one long sequence of shape (rows, C): every sample
padded with ``halo`` zero rows on each side and the samples laid end to end. A unit's convs are
then single oneDNN calls on a batch-1 sequence (``_conv``) and the zero pad rows give each sample
its own zero padding.

Working set. Positions only ever halt, never restart. Before each unit the working set shrinks
to D = dilate(active, 2r) (r = kernel // 2, so a halo of 2 for conv3 -> conv3): the rows the
active outputs depend on. The next unit runs on those rows only, exactly like the dense masked
step (compute, keep where active, update the halting state). Inside D the neighbours of an
active row are its true neighbours (all of a-2r..a+2r are in D and consecutive); rows at the
edge of a run, whose packed neighbours belong to another run, are computed but never used, and
conv1 outputs on pad rows are zeroed as conv2's zero padding requires. Rows that leave the set
are finished: their block output, N and R are stored then. With the usual contiguous bands the
halo adds a few rows per band, and shrinking happens once or twice per block, so the per-unit
work is close to the active MACs and there is no per-unit gather/scatter.

Halting. The 3-tap conv of the halting head needs x_s at a-1..a+1, which lie in D as well; the
global average pool is a running per-sample sum updated with the residuals (zero where nothing
changed), so it sees the whole (partially copied) map without a full pass.

Batch norm is folded into the unit convs (eval mode), so a unit is conv-bias-ReLU-conv-bias.
Shrinking costs a gather, so "auto" shrinks only when at least 10 % of the rows can go
(``AUTO_SHRINK``) and leaves tiny batches to the dense path (``AUTO_MIN_ROWS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scai.models._pa_common import PABlockLike, PAResult, apply_compute_scale, macs_from_counts
from scai.models.layers import ResidualUnit

__all__ = ["pa_block_sparse", "AUTO_SHRINK", "SPARSE_SHRINK", "AUTO_MIN_ROWS"]

#: "auto" drops finished rows from the working set once the rows still needed are at most this
#: fraction of it (measured break-even, see benchmarks/pa_sparse.py); "sparse" uses SPARSE_SHRINK.
AUTO_SHRINK = 0.9
SPARSE_SHRINK = 1.0
#: "auto" runs the dense path when a block has fewer rows (batch x length) than this: there the
#: cost is per-operation overhead, which the sparse path has more of (measured at batch 1).
AUTO_MIN_ROWS = 1024


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


def _folded(unit: ResidualUnit) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """BN-folded conv weights of ``unit`` as channels_last (C, C, 1, k) tensors, plus biases.

    Cached on the unit and recomputed when any parameter or buffer changed (version counters).
    """
    tensors = list(unit.parameters()) + list(unit.buffers())
    key = tuple((id(t), t._version) for t in tensors)
    cached = getattr(unit, "_sparse_cache", None)
    if cached is None or cached[0] != key:
        w1, b1, w2, b2 = unit.folded()
        w1, w2 = (w.unsqueeze(2).contiguous(memory_format=torch.channels_last) for w in (w1, w2))
        cached = (key, (w1, b1, w2, b2))
        object.__setattr__(unit, "_sparse_cache", cached)  # plain attribute: not a buffer
    return cached[1]


def _halting_weight(conv: torch.nn.Conv1d) -> Tensor:
    """The (1, C, 3) weight of a halting head's local conv as a channels_last (1, C, 1, 3) tensor (cached)."""
    key = (id(conv.weight), conv.weight._version)
    cached = getattr(conv, "_sparse_cache", None)
    if cached is None or cached[0] != key:
        w = conv.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        cached = (key, w)
        object.__setattr__(conv, "_sparse_cache", cached)
    return cached[1]


def _per_sample_sum(rows: Tensor, B: int, lengths: Tensor | None) -> Tensor:
    """Sum (T, C) working rows per sample -> (B, C); rows are grouped by sample, in order.

    Before the first shrink every sample has the same number of rows and a reshape does it;
    after, a segment sum (3x faster than ``index_add_`` on CPU, which was 10 % of a block).
    """
    if lengths is None:
        return rows.view(B, -1, rows.shape[1]).sum(dim=1)
    return torch.segment_reduce(rows, "sum", lengths=lengths)


@torch.no_grad()
def pa_block_sparse(block: PABlockLike, x0: Tensor, mode: str = "sparse") -> PAResult:
    """Eval-mode forward of ``block`` computing units only on a shrinking working set of rows.

    Parameters
    ----------
    block : PABlock
        Any ``PABlockLike`` (units, halting heads, eps, forced_halting).
    x0 : Tensor (B, C, W)
        Block input.
    mode : {"sparse", "auto"}
        When to drop finished rows from the working set: "sparse" whenever any can go
        (``SPARSE_SHRINK``), "auto" only when at least ``1 - AUTO_SHRINK`` of them can (below
        that a gather costs more than it saves). ``PABlock`` sends "auto" blocks with fewer than
        ``AUTO_MIN_ROWS`` rows to the dense path before calling this.

    Returns
    -------
    PAResult
        Same values as the dense path (to float rounding).
    """
    B, C, W = x0.shape
    n_units = len(block.units)
    r = block.units[0].conv1.kernel_size[0] // 2
    halo = max(2 * r, 1)  # the halting conv needs one neighbour even for kernel 1
    Wp = W + 2 * halo
    N = B * Wp
    dev, dt = x0.device, x0.dtype
    shrink_at = SPARSE_SHRINK if mode == "sparse" else AUTO_SHRINK

    # Working set: rows (positions) still needed, in order; it starts as every row of every
    # sample and only shrinks. All state below is indexed by working-set row.
    rows = torch.arange(N, device=dev)
    x = F.pad(x0, (halo, halo)).permute(0, 2, 1).reshape(N, C)  # a copy: x_s, channels-last
    real = torch.zeros(B, Wp, dtype=torch.bool, device=dev)
    real[:, halo : halo + W] = True
    real = real.view(N, 1).to(dt)  # 0 on the zero pad rows, 1 on real positions
    pad_rows = torch.nonzero(real.view(N) == 0).squeeze(1)  # ~1 % of rows: zeroed by index, not by a full multiply
    sample = torch.arange(B, device=dev).repeat_interleave(Wp)
    active = real.view(N) > 0
    cum = torch.zeros(N, dtype=dt, device=dev)  # sum of halting scores so far
    rem = torch.ones(N, dtype=dt, device=dev)  # R: starts at 1 (DESIGN fix of Algorithm 1)
    rem_at_halt = torch.zeros(N, dtype=dt, device=dev)
    steps = torch.zeros(N, dtype=dt, device=dev)  # N, units run so far
    out = torch.zeros(N, C, dtype=dt, device=dev)  # sum_s p_s x_s
    forced = None
    if block.forced_halting is not None:
        forced = F.pad(block.forced_halting.to(dt), (halo, halo)).reshape(n_units - 1, N)
    gsum = x0.sum(dim=-1)  # (B, C) running sum for the halting heads' global average pool
    per_sample: Tensor | None = None  # working rows per sample, once the set has shrunk

    # Final per-position results of rows that left the working set (every row leaves once).
    final_out = torch.empty(N, C, dtype=dt, device=dev)
    final_steps = torch.empty(N, dtype=dt, device=dev)
    final_rem = torch.empty(N, dtype=dt, device=dev)

    def retire(idx: Tensor) -> None:  # store the finished results of working rows idx
        final_out.index_copy_(0, rows[idx], out[idx])
        final_steps.index_copy_(0, rows[idx], steps[idx])
        final_rem.index_copy_(0, rows[idx], rem_at_halt[idx])

    for s, unit in enumerate(block.units):
        if not bool(active.any()):
            break
        # Shrink to the rows the active outputs depend on: dilate(active, 2r). Working rows are
        # true neighbours wherever it matters (the set always contains these neighbourhoods).
        needed = _dilate(active, halo)
        n_needed = int(needed.sum())
        if n_needed < rows.numel() and n_needed <= shrink_at * rows.numel():
            retire(torch.nonzero(~needed).squeeze(1))
            keep = torch.nonzero(needed).squeeze(1)
            rows, x, real, sample, active = rows[keep], x[keep], real[keep], sample[keep], active[keep]
            pad_rows = torch.nonzero(real.view(-1) == 0).squeeze(1)
            cum, rem, rem_at_halt, steps, out = cum[keep], rem[keep], rem_at_halt[keep], steps[keep], out[keep]
            if forced is not None:
                forced = forced[:, keep]
            per_sample = torch.bincount(sample, minlength=B)  # rows stay grouped by sample
        act = active.to(dt)
        n_active = int(active.sum())

        # The unit, on every working row (conv-bias-ReLU-conv-bias, BN folded), kept where active.
        w1, b1, w2, b2 = _folded(unit)
        z = _conv(x, w1, b1, r).relu_().index_fill_(0, pad_rows, 0.0)  # conv2 sees zero padding
        res = _conv(z, w2, b2, r)
        # keep the residual only where the unit runs: zero the few idle rows by index, or
        # multiply by the mask when many are idle
        if 4 * n_active >= 3 * act.numel():
            res.index_fill_(0, torch.nonzero(~active).squeeze(1), 0.0)
        else:
            res.mul_(act.unsqueeze(1))
        x = x.add_(res)

        if s < n_units - 1:
            head = block.halting[s]
            # the halting head's 3-tap conv over the packed rows: the neighbours of an active row
            # are its true neighbours; other rows' values are never used (2x faster than x @ W)
            local = _conv(x, _halting_weight(head.local), head.local.bias, 1).view(-1)
            gsum += _per_sample_sum(res, B, per_sample)  # res is zero where nothing changed
            glob = (gsum / W) @ head.glob.weight[0]  # (B,)
            if forced is not None:
                h = forced[s]
            elif per_sample is None:  # every sample still has its Wp rows: broadcast, no gather
                h = torch.sigmoid((local.view(B, Wp) + glob.view(B, 1)).view(-1))
            else:
                h = torch.sigmoid(local + glob[sample])
            h = apply_compute_scale(h, block.compute_scale)  # as PABlock.halting_score does
        else:
            h = torch.ones_like(cum)

        # Halting bookkeeping: the dense path's step, restricted to the working rows.
        h = h * act
        cum = cum + h
        halt = active & (cum >= 1.0 - block.eps)
        out.addcmul_(x, torch.where(halt, rem, h).unsqueeze(1))
        rem_at_halt = torch.where(halt, rem, rem_at_halt)
        rem = rem - h
        steps = steps + act
        active = active & ~halt

    if per_sample is None:  # the set never shrank: the working rows are every row, in order
        final_out, final_steps, final_rem = out, steps, rem_at_halt
    else:  # store the rows still in the set (all of them: no gathers of the working state)
        final_out.index_copy_(0, rows, out)
        final_steps.index_copy_(0, rows, steps)
        final_rem.index_copy_(0, rows, rem_at_halt)

    def unflat(t: Tensor) -> Tensor:  # (B*Wp, ...) -> (B, W, ...) without the pad rows
        return t.view(B, Wp, *t.shape[1:])[:, halo : halo + W]

    features = unflat(final_out).permute(0, 2, 1) + x0
    steps_bw = unflat(final_steps).contiguous()
    ponder = (steps_bw + unflat(final_rem)).mean(dim=1)
    n_active = [(steps_bw > u).sum(dim=1) for u in range(n_units)]  # unit u ran where N > u
    return PAResult(features, ponder, steps_bw, macs_from_counts(block, n_active))
