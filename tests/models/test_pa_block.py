"""Position-adaptive block: halting semantics, ponder cost and hand-counted MACs."""

from __future__ import annotations

import pytest
import torch

from scai.models import create_model
from scai.models.pa_block import PABlock


def make_block(channels: int = 4, units: int = 3, seed: int = 0) -> PABlock:
    torch.manual_seed(seed)
    block = PABlock(channels, units).eval()
    for m in block.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return block


def unit_outputs(block: PABlock, x0: torch.Tensor) -> list[torch.Tensor]:
    """x_1..x_S when every position runs every unit."""
    xs, x = [], x0
    for unit in block.units:
        x = unit(x)
        xs.append(x)
    return xs


def reference(block: PABlock, x0: torch.Tensor, h_forced: torch.Tensor):
    """Algorithm 1 with R initialised to 1, one position at a time (slow and obvious)."""
    B, C, W = x0.shape
    S = len(block.units)
    out = torch.zeros_like(x0)
    ponder = torch.zeros(B, W)
    steps = torch.zeros(B, W)
    active = torch.ones(B, W, dtype=torch.bool)
    cum, rem = torch.zeros(B, W), torch.ones(B, W)
    x = x0
    for s in range(S):
        # Units see the whole map; halted positions are copied forward unchanged.
        x = torch.where(active.unsqueeze(1), block.units[s](x), x)
        for b in range(B):
            for i in range(W):
                if not active[b, i]:
                    continue
                h = 1.0 if s == S - 1 else float(h_forced[s, b, i])
                cum[b, i] += h
                steps[b, i] += 1
                if cum[b, i] < 1 - block.eps:
                    out[b, :, i] += h * x[b, :, i]
                    rem[b, i] -= h
                else:
                    out[b, :, i] += rem[b, i] * x[b, :, i]
                    ponder[b, i] = steps[b, i] + rem[b, i]
                    active[b, i] = False
    return out + x0, ponder, steps


@torch.no_grad()
def test_remainder_starts_at_one():
    """Fails with the paper's Algorithm 1 (R initialised to 0)."""
    block = make_block(units=2)
    x0 = torch.randn(1, 4, 6)
    x1, x2 = unit_outputs(block, x0)
    # Halting at unit 1 (h1 = 0.99 >= 1 - eps): N = 1, R = 1, output = x1 (+ block input).
    block.forced_halting = torch.full((1, 1, 6), 0.99)
    r = block(x0)
    assert torch.allclose(r.features, x1 + x0, atol=1e-6)
    assert torch.allclose(r.ponder, torch.tensor([2.0]))  # N + R = 1 + 1
    # h1 = 0.3: N = 2, R = 1 - 0.3 = 0.7, output = 0.3 x1 + 0.7 x2.
    block.forced_halting = torch.full((1, 1, 6), 0.3)
    r = block(x0)
    assert torch.allclose(r.features, 0.3 * x1 + 0.7 * x2 + x0, atol=1e-6)
    assert torch.allclose(r.ponder, torch.tensor([2.7]))
    assert torch.equal(r.units_executed, torch.full((1, 6), 2.0))


@torch.no_grad()
def test_matches_reference_algorithm_and_ponder_is_n_plus_r():
    block = make_block(units=4)
    x0 = torch.randn(3, 4, 10)
    g = torch.Generator().manual_seed(5)
    h = torch.rand(3, 3, 10, generator=g) * 0.8  # varied N per position
    h[:, 0, :3] = 0.995  # some positions halt after unit 1 in sample 0
    block.forced_halting = h
    r = block(x0)
    out, ponder, steps = reference(block, x0, h)
    assert torch.allclose(r.features, out, atol=1e-5)
    assert torch.allclose(r.ponder, ponder.mean(dim=1), atol=1e-6)
    assert torch.equal(r.units_executed, steps)
    assert len(set(steps.flatten().tolist())) > 1


def test_ponder_gradient_flows_through_r_only():
    """d(N + R)/d h_s = -1 for s < N: the halting bias gets gradient -(N-1) per position."""
    block = make_block(units=3).train()
    for head in block.halting:
        head.local.weight.data.zero_()
        head.glob.weight.data.zero_()
        head.local.bias.data.fill_(-3.0)  # h = sigmoid(-3) everywhere: N = 3 at every position
    x0 = torch.randn(2, 4, 5)
    r = block(x0)
    r.ponder.mean().backward()
    dh_db = torch.sigmoid(torch.tensor(-3.0)) * (1 - torch.sigmoid(torch.tensor(-3.0)))
    for head in block.halting:
        assert torch.allclose(head.local.bias.grad, -dh_db.reshape(1), atol=1e-6)
    assert torch.allclose(r.ponder, torch.full((2,), 3 + 1 - 2 * torch.sigmoid(torch.tensor(-3.0)).item()))


@torch.no_grad()
def test_pa_macs_hand_count():
    # in_length 64, stem k7 s4 -> 16 positions x 4 channels; transition s2 -> 8 positions x 8 channels.
    net = create_model("scai_plus", 64, 3, channels=(4, 8), units_per_block=3, head_bins=1).eval()
    B = 2
    h1 = torch.zeros(2, B, 16)  # block 1: (S-1, B, W)
    h1[0, 0, :8] = 0.99  # sample 0: positions 0-7 halt after unit 1; everything else runs 3 units
    net.blocks[0].forced_halting = h1
    h2 = torch.zeros(2, B, 8)
    h2[1, 1, :] = 0.99  # block 2, sample 1: every position halts after unit 2
    h2[0, 1, :] = 0.5
    net.blocks[1].forced_halting = h2
    out = net.forward_detailed(torch.randn(B, 1, 64))

    stem = 16 * 4 * 1 * 7  # positions * out * in * kernel
    head1 = 4 * 3  # exit head: channels * classes
    unit1 = 2 * 3 * 4 * 4  # per position: two convs of 3 taps, 4 -> 4 channels
    halt1 = 3 * 4  # per position: halting conv 4 -> 1, 3 taps
    fc1 = 4  # per sample and unit: halting fc 4 -> 1
    # sample 0, block 1: unit 1 on 16 positions, units 2 and 3 on 8; halting heads after units 1, 2.
    s0_b1 = 16 * (unit1 + halt1) + fc1 + 8 * (unit1 + halt1) + fc1 + 8 * unit1
    s1_b1 = 16 * (unit1 + halt1) + fc1 + 16 * (unit1 + halt1) + fc1 + 16 * unit1
    trans = 8 * 8 * 4 * 3
    head2 = 8 * 3
    unit2, halt2, fc2 = 2 * 3 * 8 * 8, 3 * 8, 8
    s0_b2 = 2 * (8 * (unit2 + halt2) + fc2) + 8 * unit2
    s1_b2 = 2 * (8 * (unit2 + halt2) + fc2)  # unit 3 never runs
    expected = torch.tensor([
        [stem + s0_b1 + head1, stem + s0_b1 + head1 + trans + s0_b2 + head2],
        [stem + s1_b1 + head1, stem + s1_b1 + head1 + trans + s1_b2 + head2],
    ])
    assert torch.equal(out.macs, expected)
    full_b1 = 3 * 16 * unit1 + 2 * (16 * halt1 + fc1)  # every position runs every unit
    full_b2 = 3 * 8 * unit2 + 2 * (8 * halt2 + fc2)
    assert net.exit_macs() == [stem + full_b1 + head1, stem + full_b1 + head1 + trans + full_b2 + head2]
    assert torch.equal(out.units_executed[1][1], torch.full((8,), 2.0))


@pytest.mark.parametrize("eps", [0.0, 0.02, 0.3])
@torch.no_grad()
def test_eps_threshold(eps):
    block = make_block(units=2)
    block.eps = eps
    block.forced_halting = torch.full((1, 1, 3), 0.75)
    r = block(torch.randn(1, 4, 3))
    assert r.units_executed[0, 0].item() == (1.0 if 0.75 >= 1 - eps else 2.0)


def randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def mixed_scores(units: int, batch: int, width: int, seed: int = 0) -> torch.Tensor:
    """Forced halting scores giving each sample a different active fraction (0 % .. 100 %)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(units - 1, batch, width, generator=g) * 0.5
    for b in range(batch):
        band = round(width * b / max(batch - 1, 1))  # sample b keeps a band of b/(B-1) positions
        start = int(torch.randint(0, width - band + 1, (1,), generator=g))
        h[0, b] = 0.99
        h[0, b, start : start + band] = 0.0
    h[1:, 0, ::4] = 0.7  # scattered halting too
    return h


@pytest.fixture
def small_auto(monkeypatch):
    """Let "auto" use the sparse path on tiny test inputs too."""
    import scai.models._sparse as sparse

    monkeypatch.setattr(sparse, "AUTO_MIN_ROWS", 0)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("mode", ["sparse", "auto"])
@torch.no_grad()
def test_sparse_equals_dense_block(kernel_size, mode, small_auto):
    torch.manual_seed(0)
    block = PABlock(6, 4, kernel_size=kernel_size).eval()
    randomise_bn(block)
    for head in block.halting:
        head.local.bias.data.fill_(0.2)  # natural (unforced) halting after 2-3 units
    x0 = torch.randn(6, 6, 29)
    for forced in (None, mixed_scores(4, 6, 29)):
        block.forced_halting = forced
        block.execution = "dense"
        d = block(x0)
        block.execution = mode
        s = block(x0)
        assert (d.features - s.features).abs().max() <= 1e-5
        assert torch.allclose(d.ponder, s.ponder, atol=1e-6)
        assert torch.equal(d.units_executed, s.units_executed)
        assert torch.equal(d.macs, s.macs)
        assert len(set(d.units_executed.flatten().tolist())) > 1


@pytest.mark.parametrize("mode", ["sparse", "auto"])
@torch.no_grad()
def test_sparse_equals_dense_network(mode, small_auto):
    torch.manual_seed(1)
    net = create_model("scai_plus", 128, 3, channels=(4, 8, 8)).eval()
    randomise_bn(net)
    B = 6
    for block, (_, w) in zip(net.blocks, net.stage_shapes()):
        block.forced_halting = mixed_scores(len(block.units), B, w, seed=w)
    x = torch.randn(B, 1, 128)
    dense = net.set_execution("dense").forward_detailed(x)
    sparse = net.set_execution(mode).forward_detailed(x)
    assert net.sparse
    for a, b in zip(dense.logits, sparse.logits):
        assert (a - b).abs().max() <= 1e-5
    assert torch.equal(dense.macs, sparse.macs)
    assert torch.allclose(dense.ponder, sparse.ponder, atol=1e-6)
    # stage by stage on the sparse path equals the full forward
    feats = x
    for i in range(net.n_exits):
        feats, logits, macs = net.run_stage(i, feats, return_macs=True)
        assert (logits - sparse.logits[i]).abs().max() <= 1e-6
    # training mode always uses the dense, differentiable path
    net.train()
    with torch.enable_grad():
        assert net.forward_detailed(x).logits[-1].requires_grad


def test_set_execution_rejects_unknown_mode():
    net = create_model("scai_plus", 128, 3, channels=(4, 8))
    with pytest.raises(ValueError, match="dense"):
        net.set_execution("fast")
    assert net.sparse and net.blocks[0].execution == "auto"  # the default
    assert not net.set_execution("dense").sparse and net.blocks[0].execution == "dense"
