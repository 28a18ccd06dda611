"""Sparse inference path of ``PABlock``: run each unit only where it is needed.

Layout. The block works channels-last on one long sequence of shape (rows, C): every sample
padded with ``halo`` zero rows on each side (halo = 2r for kernel 2r + 1, at least 1) and the
samples laid end to end. The feature map ``x`` and the weighted sum ``out`` stay this size for
the whole block; the rows of a sample's pad stay zero, so they are each sample's zero padding.

Active list. Positions only ever halt, never restart, and a position active before unit s has
run exactly units 1..s-1. So the per-position state is a sorted list ``A`` of the active rows
with their summed halting scores and remainders; halted rows leave it and their N and R are
stored then. Each unit is one of two steps, chosen per unit:

* full step (many rows active, e.g. unit 1, where every position runs): the unit's two convs
  run on every row as single oneDNN calls (conv2d of height 1 in ``channels_last`` format, BN
  folded into the weights) and the residual is kept at the active rows;
* gather step (few rows active): conv1 runs only on the rows conv2 reads, D = dilate(A, r), and
  conv2 only on A, each as one GEMM (``addmm``) on taps gathered with ``index_select`` (im2col:
  (rows, k*C) x (k*C, C)); the residuals are added into ``x`` at A by ``index_add_``. Its MACs
  are |D| + |A| rows of a conv instead of 2 x all rows, and it touches no other row.

"auto" takes the gather step when ``GATHER_COST`` * (|D| + |A|) < 2 * rows (measured: per row,
a gathered GEMM costs about that much more than a full-map conv); "sparse" takes it whenever any
position has halted, so that tests reach it. The halting head's 3-tap conv needs x at a-1..a+1
(taken from the full map, inactive neighbours included, as the dense path sees them); the global
average pool is a running per-sample sum updated with the residuals. Bookkeeping (summed scores,
remainders, ``out``) touches the active rows only in gather steps. Unit 1 (every position runs)
does its halting step on the whole map and starts ``out`` as x0 in x0's own buffer, so the
active list is built once, after it, and the block-level residual costs no extra pass; the block
returns a contiguous (B, C, W) map.

Nothing here changes what is computed: the same units at the same positions as the dense masked
path (results equal to float rounding, tested <= 1e-5), and MACs are counted from the units
that ran, not from the rows this path computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scai.models._pa_common import PABlockLike, PAResult, apply_compute_scale, macs_from_counts
from scai.models.layers import ResidualUnit

__all__ = ["pa_block_sparse", "AUTO_MIN_ROWS", "GATHER_COST"]

#: "auto" runs the dense path when a block has fewer rows (batch x length) than this: there the
#: cost is per-operation overhead, which the sparse path has more of (measured at batch 1).
AUTO_MIN_ROWS = 1024
#: Cost of one row of a gathered GEMM relative to one row of a full-map conv (benchmarks/pa_sparse.py
#: --trained, one thread): "auto" gathers when GATHER_COST * (|D| + |A|) < 2 * rows.
GATHER_COST = 1.5


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """Boolean (N,) mask grown by ``radius`` positions on each side (shifted ORs: 4x faster than
    a max pool on the float mask at these sizes)."""
    grown = mask.clone()
    for d in range(1, radius + 1):
        grown[d:] |= mask[:-d]
        grown[:-d] |= mask[d:]
    return grown


def _conv(rows: Tensor, weight4: Tensor, bias: Tensor | None, pad: int) -> Tensor:
    """1-D "same" conv over a channels-last sequence ``rows`` (T, C_in) -> (T, C_out).

    Runs as a conv2d of height 1 in channels_last memory format: oneDNN's fastest CPU path for
    these small widths, and no transposes, since (T, C) memory *is* that layout.
    """
    T, c_in = rows.shape
    x4 = rows.view(1, 1, T, c_in).permute(0, 3, 1, 2)  # (1, C, 1, T), channels_last strides
    y4 = F.conv2d(x4, weight4, bias, padding=(0, pad))
    return y4.permute(0, 2, 3, 1).reshape(T, -1)  # a view when oneDNN kept channels_last


def _gathered(rows: Tensor, centres: Tensor, taps: Tensor) -> Tensor:
    """im2col: (n, k*C) rows ``rows[centres + t]`` for the k taps t, tap-major within a row."""
    idx = (centres.unsqueeze(1) + taps).view(-1)
    return rows.index_select(0, idx).view(centres.numel(), -1)


def _as_matrix(w: Tensor) -> Tensor:
    """(C_out, C_in, k) conv weight -> (k*C_in, C_out) GEMM matrix matching ``_gathered`` rows."""
    return w.permute(2, 1, 0).reshape(-1, w.shape[0]).contiguous()


def _unit_weights(unit: ResidualUnit) -> tuple[Tensor, ...]:
    """BN-folded weights of ``unit``: channels_last (C, C, 1, k) conv weights, biases and the
    (k*C, C) GEMM matrices of the gather step: (w1, b1, w2, b2, m1, m2)."""
    w1, b1, w2, b2 = (t.detach() for t in unit.folded())
    c1, c2 = (w.unsqueeze(2).contiguous(memory_format=torch.channels_last) for w in (w1, w2))
    return c1, b1, c2, b2, _as_matrix(w1), _as_matrix(w2)


#: The halting head's full-map conv runs with its one output channel padded by zero channels to
#: this many: oneDNN is 25-30 % faster at 8 outputs than at 1 (C = 12/24, batch 32 and 256).
HEAD_CONV_OUT = 8


def _head_weights(head: torch.nn.Module) -> tuple[Tensor, ...]:
    """A halting head's local conv as a channels_last (HEAD_CONV_OUT, C, 1, 3) weight (channel 0
    the head's, the others zero) with its bias, as a (3C,) vector, its bias (1,), and the global
    fc's (C,) weight."""
    w, b = head.local.weight.detach(), head.local.bias.detach()
    w8 = torch.zeros(HEAD_CONV_OUT, *w.shape[1:], dtype=w.dtype, device=w.device)
    w8[0] = w[0]
    b8 = torch.zeros(HEAD_CONV_OUT, dtype=b.dtype, device=b.device)
    b8[0] = b[0]
    return (w8.unsqueeze(2).contiguous(memory_format=torch.channels_last), b8, _as_matrix(w).view(-1), b,
            head.glob.weight.detach()[0])


def _state(module: torch.nn.Module) -> list[tuple[dict, str, object, int]]:
    """(dict, name, object, version) for every submodule, parameter and buffer below ``module``:
    what ``_fresh`` compares to tell that the cached weights still describe the module."""
    entries = []
    for m in module.modules():
        for d in (m._modules, m._parameters, m._buffers):
            entries += [(d, n, o, o._version if isinstance(o, Tensor) else 0) for n, o in d.items()]
    return entries


def _fresh(entries: list[tuple[dict, str, object, int]]) -> bool:
    """True while no recorded submodule/tensor was replaced and no tensor was written in place."""
    return all(d.get(n) is o and (not isinstance(o, Tensor) or o._version == v) for d, n, o, v in entries)


def _weights(block: PABlockLike) -> tuple[list[tuple[Tensor, ...]], list[tuple[Tensor, ...]]]:
    """Per-unit and per-head weights of ``block`` in this path's layouts, cached on the block and
    rebuilt when any of its submodules, parameters or buffers was replaced or changed (version
    counters). One check per block call: ~15 us, where keying on ``parameters()`` per unit took
    10 % of a batch-32 forward."""
    module: torch.nn.Module = block  # type: ignore[assignment]
    cached = getattr(module, "_sparse_weights", None)
    if cached is None or not _fresh(cached[0]):
        weights = ([_unit_weights(u) for u in block.units], [_head_weights(h) for h in block.halting])
        cached = (_state(module), weights)
        object.__setattr__(module, "_sparse_weights", cached)  # plain attribute: not a buffer
    return cached[1]


def _geometry(B: int, W: int, halo: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The real-row mask (B*Wp,) and the sorted pad rows of the padded layout, by arithmetic
    (a ``nonzero`` over every row costs ~0.2 ms per call at batch 256, 435 positions)."""
    Wp = W + 2 * halo
    real = torch.zeros(B, Wp, dtype=torch.bool, device=device)
    real[:, halo : halo + W] = True
    offsets = torch.cat([torch.arange(halo, device=device), torch.arange(halo + W, Wp, device=device)])
    pad_rows = (torch.arange(B, device=device).unsqueeze(1) * Wp + offsets).view(-1)
    return real.view(-1), pad_rows


@torch.no_grad()
def pa_block_sparse(block: PABlockLike, x0: Tensor, mode: str = "sparse") -> PAResult:
    """Eval-mode forward of ``block`` computing each unit only where its outputs are used.

    Parameters
    ----------
    block : PABlock
        Any ``PABlockLike`` (units, halting heads, eps, forced_halting, compute_scale).
    x0 : Tensor (B, C, W)
        Block input.
    mode : {"sparse", "auto"}
        When a unit takes the gather step (module docstring): "sparse" as soon as any position
        has halted, "auto" when it is cheaper by ``GATHER_COST``. ``PABlock`` sends "auto"
        blocks with fewer than ``AUTO_MIN_ROWS`` rows to the dense path before calling this.

    Returns
    -------
    PAResult
        Same values as the dense path (to float rounding); ``features`` contiguous (B, C, W),
        the layout the next stage's conv and the exit loop's row gathers are fastest on.
    """
    B, C, W = x0.shape
    n_units = len(block.units)
    r = block.units[0].conv1.kernel_size[0] // 2
    halo = max(2 * r, 1)  # conv1 -> conv2 reach 2r; the halting conv needs one neighbour
    Wp = W + 2 * halo
    N = B * Wp
    dev, dt = x0.device, x0.dtype
    taps = torch.arange(-r, r + 1, device=dev)
    taps_halting = torch.arange(-1, 2, device=dev)
    limit = 1.0 - block.eps

    x = torch.zeros(B, Wp, C, dtype=dt, device=dev)  # x_s, channels-last, zero pad rows
    x[:, halo : halo + W].copy_(x0.transpose(1, 2))
    x = x.view(N, C)
    real, pad_rows = _geometry(B, W, halo, dev)
    real_f = real.to(dt)
    n_real = B * W
    forced = None
    if block.forced_halting is not None:
        forced = F.pad(block.forced_halting.to(dt), (halo, halo)).reshape(n_units - 1, N)
    gsum = x0.sum(dim=-1)  # (B, C) running sum for the halting heads' global average pool
    scale = block.compute_scale
    unit_w, head_w = _weights(block)

    if n_real == 0:  # nothing to run: the block is the identity
        return _result(block, x0, x, torch.zeros(N, dtype=dt, device=dev), torch.zeros(N, dtype=dt, device=dev),
                       B, W, halo)
    # Unit 1 runs at every position: a full step whose bookkeeping is on the whole map (no
    # active-row lists yet), and ``out`` starts as x0 in x's own buffer (the block residual).
    out, x, gsum, act, cum, rem, steps_rows, rem_rows = _first_unit(
        x, unit_w[0], head_w[0] if n_units > 1 else None, gsum, forced, real, pad_rows, scale, limit, B, W, r)

    for s in range(1, n_units):
        n_act = act.numel()
        if n_act == 0:
            break
        w1, b1, w2, b2, m1, m2 = unit_w[s]
        last = s == n_units - 1
        gather = False
        if n_act < n_real:
            mask = torch.zeros(N, dtype=torch.bool, device=dev).index_fill_(0, act, True)
            near = _dilate(mask, r)  # the rows conv2 reads at A: where conv1 must run
            gather = mode == "sparse" or GATHER_COST * (int(near.sum()) + n_act) < 2 * N
        sample = torch.div(act, Wp, rounding_mode="floor")  # the sample of each active row

        if gather:
            # conv1 at D = dilate(A, r), conv2 at A, each one GEMM on gathered taps
            near_rows = torch.nonzero(near).squeeze(1)
            z = torch.addmm(b1, _gathered(x, near_rows, taps), m1).relu_()
            z.mul_(real_f.index_select(0, near_rows).unsqueeze(1))  # zero on pad rows: conv2's padding
            # place of row a in z is cumsum(near)[a] - 1, and a-r..a+r are consecutive there
            res = torch.addmm(b2, _gathered(z, torch.cumsum(near, 0).index_select(0, act), taps - 1), m2)
            x.index_add_(0, act, res)
            if not last:
                gsum.index_add_(0, sample, res)
        else:
            z = _conv(x, w1, b1, r).relu_().index_fill_(0, pad_rows, 0.0)  # conv2 sees zero padding
            res = _conv(z, w2, b2, r)
            if n_act == n_real:
                res.index_fill_(0, pad_rows, 0.0)  # pad rows stay zero
            else:
                res.mul_(mask.unsqueeze(1).to(dt))  # kept only where the unit runs
            x.add_(res)
            if not last:
                gsum += res.view(B, Wp, C).sum(dim=1)

        if last:
            h = torch.ones(n_act, dtype=dt, device=dev)  # the last unit halts every position
        else:  # the head runs even under forced scores, so that timings stay honest
            wl8, bl8, wl, bl, wg = head_w[s]
            if gather:  # the 3-tap conv at A only: x at a-1..a+1 from the full map
                local = torch.mv(_gathered(x, act, taps_halting), wl) + bl
            else:
                local = _conv(x, wl8, bl8, 1)[:, 0].index_select(0, act)
            glob = (gsum / W) @ wg  # (B,)
            h = torch.sigmoid(local + glob.index_select(0, sample))
            if forced is not None:
                h = forced[s].index_select(0, act)
            h = apply_compute_scale(h, scale)  # as PABlock.halting_score does

        # Halting bookkeeping: the dense path's step on the active rows.
        cum = cum + h
        halt = cum >= limit
        p = torch.where(halt, rem, h)
        if gather:
            out.index_add_(0, act, x.index_select(0, act) * p.unsqueeze(1))
        else:
            out.addcmul_(x, torch.zeros(N, dtype=dt, device=dev).index_copy_(0, act, p).unsqueeze(1))
        rem_halt = rem
        rem = rem - h
        halted = torch.nonzero(halt).squeeze(1)
        if halted.numel():
            done = act.index_select(0, halted)
            steps_rows.index_fill_(0, done, float(s + 1))
            rem_rows.index_copy_(0, done, rem_halt.index_select(0, halted))
            if halted.numel() < n_act:
                going = torch.nonzero(~halt).squeeze(1)
                act, cum, rem = act.index_select(0, going), cum.index_select(0, going), rem.index_select(0, going)
            else:
                act = act[:0]

    return _result(block, x0, out, steps_rows, rem_rows, B, W, halo)


def _first_unit(
    x: Tensor, weights: tuple[Tensor, ...], head: tuple[Tensor, ...] | None, gsum: Tensor, forced: Tensor | None,
    real: Tensor, pad_rows: Tensor, scale: float, limit: float, B: int, W: int, r: int,
) -> tuple[Tensor, ...]:
    """Unit 1 of a block, where every position runs, with its halting step on the whole map.

    Returns ``(out, x, gsum, act, cum, rem, steps_rows, rem_rows)``: ``out`` = x0 + p_1 x_1 in
    the input's buffer (the block-level residual is added here, not at the end, which saved a
    strided pass over the map), x = x_1 and the active rows with their state after unit 1.
    The halting scores are computed on every row (the pad rows' values are finite and never
    used: x_1 is zero there); the values at the real rows are those of the active-row step.
    """
    N, C = x.shape
    Wp = N // B
    w1, b1, w2, b2, _, _ = weights
    z = _conv(x, w1, b1, r).relu_().index_fill_(0, pad_rows, 0.0)  # conv2 sees zero padding
    res = _conv(z, w2, b2, r).index_fill_(0, pad_rows, 0.0)  # pad rows stay zero
    x1 = x + res
    if head is None:  # a single-unit block: unit 1 is the last one and halts everything (p = R = 1)
        ones = real.to(x.dtype)
        return x.add_(x1), x1, gsum, torch.zeros(0, dtype=torch.long, device=x.device), ones[:0], ones[:0], ones, ones
    gsum += res.view(B, Wp, C).sum(dim=1)
    wl8, bl8, _, _, wg = head
    glob = (gsum / W) @ wg  # (B,)
    h = torch.sigmoid(_conv(x1, wl8, bl8, 1)[:, 0].view(B, Wp) + glob.unsqueeze(1)).view(N)
    if forced is not None:
        h = forced[0]
    h = apply_compute_scale(h, scale)
    halt = h >= limit  # cum = h after unit 1, R = 1
    out = x.addcmul_(x1, torch.where(halt, 1.0, h).unsqueeze(1))  # p_1 = R = 1 where it halts, else h
    done = real & halt
    steps_rows = done.to(x.dtype)  # N = 1 where a position halts after unit 1 ...
    rem_rows = steps_rows.clone()  # ... with R = 1
    act = torch.nonzero(real & ~halt).squeeze(1)
    cum = h.index_select(0, act)
    return out, x1, gsum, act, cum, 1.0 - cum, steps_rows, rem_rows


def _result(block: PABlockLike, x0: Tensor, out: Tensor, steps_rows: Tensor, rem_rows: Tensor,
            B: int, W: int, halo: int) -> PAResult:
    """The block's ``PAResult`` from the padded channels-last ``out`` (x0 included) and the
    per-row N and R."""
    Wp = W + 2 * halo

    def unflat(t: Tensor) -> Tensor:  # (B*Wp, ...) -> (B, W, ...) without the pad rows
        return t.view(B, Wp, *t.shape[1:])[:, halo : halo + W]

    features = unflat(out).permute(0, 2, 1).contiguous()
    steps_bw = unflat(steps_rows).contiguous()
    ponder = (steps_bw + unflat(rem_rows)).mean(dim=1)
    n_active = [(steps_bw > u).sum(dim=1) for u in range(len(block.units))]  # unit u ran where N > u
    return PAResult(features, ponder, steps_bw, macs_from_counts(block, n_active))
