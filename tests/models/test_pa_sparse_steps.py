"""Sparse PA path (``scai.models._sparse``): full and gather steps equal the dense masked path.

The dense masked path is the reference (it is checked against a position-by-position Algorithm 1
in test_pa_block.py). Here: batch 1, 32 and 256, odd lengths, several compute knob scales,
blocks where every / no position halts early, both kinds of step actually taken, and the cached
folded weights following in-place changes of the module.
"""

from __future__ import annotations

import pytest
import torch

import scai.models._sparse as sparse
from scai.models.pa_block import PABlock


def make_block(channels: int, kernel_size: int = 3, seed: int = 0) -> PABlock:
    torch.manual_seed(seed)
    block = PABlock(channels, 4, kernel_size=kernel_size).eval()
    for m in block.modules():  # non-trivial folded batch norm
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    for head in block.halting:  # natural halting after 1-4 units, varying along the axis
        head.local.bias.data.fill_(0.0)
        head.local.weight.data.mul_(3.0)
    return block


def assert_same(block: PABlock, x: torch.Tensor, mode: str) -> None:
    block.execution = "dense"
    d = block(x)
    block.execution = mode
    s = block(x)
    assert (d.features - s.features).abs().max().item() <= 1e-5
    assert torch.equal(d.units_executed, s.units_executed)
    assert torch.equal(d.macs, s.macs)
    assert torch.allclose(d.ponder, s.ponder, atol=1e-6)


@pytest.fixture
def steps(monkeypatch):
    """Let "auto" use the sparse path at any size, and count the steps the path takes."""
    monkeypatch.setattr(sparse, "AUTO_MIN_ROWS", 0)
    calls = {"gathered": 0, "conv": 0}
    gathered, conv = sparse._gathered, sparse._conv

    def counting_gathered(*a):
        calls["gathered"] += 1
        return gathered(*a)

    def counting_conv(*a):
        calls["conv"] += 1
        return conv(*a)

    monkeypatch.setattr(sparse, "_gathered", counting_gathered)
    monkeypatch.setattr(sparse, "_conv", counting_conv)
    return calls


@pytest.mark.parametrize("batch,width", [(1, 57), (32, 45), (256, 23)])
@pytest.mark.parametrize("scale", [0.7, 1.0, 1.6])
@pytest.mark.parametrize("mode", ["sparse", "auto"])
@torch.no_grad()
def test_sparse_equals_dense_batches_and_scales(batch, width, scale, mode, steps):
    block = make_block(8)
    block.compute_scale = scale
    x = torch.randn(batch, 8, width)
    assert_same(block, x, mode)
    units = block(x).units_executed
    assert len(set(units.flatten().tolist())) > 1  # positions really differ
    if mode == "sparse":  # some position halted after unit 1: later units gather
        assert steps["gathered"] > 0


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@torch.no_grad()
def test_gather_and_full_steps_in_one_block(kernel_size, steps):
    """A band that keeps running next to positions that halt after unit 1, every sample its own."""
    B, C, W = 6, 6, 41
    block = make_block(C, kernel_size)
    h = torch.full((3, B, W), 0.0)
    h[0] = 0.99  # halt after unit 1 ...
    for b in range(B):
        h[0, b, 3 * b : 3 * b + 5] = 0.0  # ... except a band at a different place per sample
    h[1:, :, ::7] = 0.6  # and some of the band halts later
    block.forced_halting = h
    x = torch.randn(B, C, W)
    for mode in ("sparse", "auto"):
        steps["gathered"] = steps["conv"] = 0
        assert_same(block, x, mode)
        assert steps["gathered"] > 0 and steps["conv"] > 0  # unit 1 full, later units gathered


@pytest.mark.parametrize("mode", ["sparse", "auto"])
@pytest.mark.parametrize("halting, units", [(1.0, 1), (0.0, 4)], ids=["all-halt-after-unit-1", "none-halts-early"])
@torch.no_grad()
def test_blocks_where_all_or_none_of_the_positions_halt(mode, halting, units, steps):
    """All halt after unit 1 (nothing left to run) or none halts early (every unit on the full
    map): either way no gather step runs and the answer is the dense path's."""
    B, C, W = 32, 8, 33
    block = make_block(C)
    block.forced_halting = torch.full((3, B, W), halting)
    x = torch.randn(B, C, W)
    assert_same(block, x, mode)
    r = block(x)
    assert torch.all(r.units_executed == units)
    assert steps["gathered"] == 0


@torch.no_grad()
def test_cached_weights_follow_in_place_changes(steps):
    block = make_block(8)
    x = torch.randn(4, 8, 31)
    assert_same(block, x, "sparse")
    block.units[1].bn1.running_var.mul_(3.0)  # in place: the version counter moves
    block.halting[0].local.weight.add_(0.5)
    assert_same(block, x, "sparse")
    block.units[2].conv2.weight = torch.nn.Parameter(torch.randn_like(block.units[2].conv2.weight))  # replaced
    assert_same(block, x, "sparse")


def test_auto_keeps_the_dense_path_for_small_blocks():
    """Below AUTO_MIN_ROWS rows "auto" runs the dense path (no sparse-path step at all)."""
    block = make_block(8)
    block.execution = "auto"
    calls = []
    original = sparse.pa_block_sparse
    try:
        sparse.pa_block_sparse = lambda *a: calls.append(1) or original(*a)
        with torch.no_grad():
            block(torch.randn(1, 8, sparse.AUTO_MIN_ROWS - 1))
            assert not calls
            block(torch.randn(2, 8, sparse.AUTO_MIN_ROWS // 2))
            assert calls
    finally:
        sparse.pa_block_sparse = original


@pytest.mark.parametrize("mode", ["sparse", "auto"])
@torch.no_grad()
def test_features_are_contiguous_and_the_input_is_left_alone(mode, steps):
    """The block output is a contiguous (B, C, W) map (the next stage's conv and the exit loop's
    row gathers read it as such) and the input is not written, though unit 1 reuses a copy of it."""
    block = make_block(8)
    x = torch.randn(16, 8, 37)
    before = x.clone()
    block.execution = mode
    r = block(x)
    assert r.features.shape == (16, 8, 37) and r.features.is_contiguous()
    assert torch.equal(x, before)


@torch.no_grad()
def test_single_unit_blocks_and_empty_batches(steps):
    """A one-unit block (unit 1 is also the last: every position halts there with R = 1) and a
    batch of no spectra take the sparse path's edge cases; both answer as the dense path."""
    torch.manual_seed(0)
    one = PABlock(6, 1).eval()
    x = torch.randn(3, 6, 19)
    assert_same(one, x, "sparse")
    assert torch.all(one(x).units_executed == 1)
    assert torch.allclose(one(x).ponder, torch.full((3,), 2.0))  # N + R = 1 + 1
    block = make_block(6)
    block.execution = "sparse"
    empty = block(torch.randn(0, 6, 19))
    assert empty.features.shape == (0, 6, 19) and empty.units_executed.shape == (0, 19) and empty.macs.shape == (0,)
