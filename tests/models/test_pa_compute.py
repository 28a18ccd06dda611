"""The inference compute knob of SCAI+ (``set_compute``): halting, MACs, both paths, errors."""

from __future__ import annotations

import pytest
import torch

from scai.models import create_model
from scai.models.pa_block import PABlock


def one_block(units: int = 3, h: float = 0.6) -> torch.nn.Module:
    """SCAI+ with one PA block of 2 channels over 32 positions, halting scores forced to ``h``."""
    torch.manual_seed(0)
    net = create_model("scai_plus", 32, 2, channels=(2,), units_per_block=units, stem_stride=1, head_bins=1).eval()
    net.blocks[0].forced_halting = torch.full((units - 1, 3, 32), h)
    return net


@pytest.mark.parametrize(
    "scale, n_units",
    [
        (1.0, 2),  # h = 0.6: 0.6, then 1.2 >= 0.98 -> N = 2
        (0.5, 1),  # h' = min(1.2, 1) = 1 -> halts after unit 1
        (2.0, 3),  # h' = 0.3: 0.3, 0.6 < 0.98 -> runs all 3 units
        (1.2, 2),  # h' = 0.5: 0.5, 1.0 -> N = 2
        (1.25, 3),  # h' = 0.48: 0.48, 0.96 < 0.98 -> N = 3
    ],
)
@torch.no_grad()
def test_knob_moves_halting_and_the_counted_macs(scale, n_units):
    net = one_block()
    net.set_compute(scale)
    assert net.compute_scale == scale
    out = net.forward_detailed(torch.randn(3, 1, 32))
    assert torch.equal(out.units_executed[0], torch.full((3, 32), float(n_units)))
    assert torch.allclose(out.units_fraction, torch.full((3,), n_units / 3))
    # hand count: stem k7 1->2 at 32 positions; each unit 2 convs of 3 taps 2->2; the halting
    # conv 3 taps 2->1 after every unit but the last, its fc 2->1 once per unit that ran; head 2x2
    stem, unit, halt, fc, head = 32 * 2 * 7, 2 * 3 * 2 * 2, 3 * 2, 2, 2 * 2
    block = sum(32 * (unit + (halt if s < 2 else 0)) + (fc if s < 2 else 0) for s in range(n_units))
    assert torch.equal(out.macs[:, 0], torch.full((3,), stem + block + head, dtype=torch.int64))
    assert net.exit_macs() == [stem + 3 * 32 * unit + 2 * (32 * halt + fc) + head]  # the bound does not move


@torch.no_grad()
def test_knob_is_monotone_and_one_is_the_trained_model():
    torch.manual_seed(3)
    net = create_model("scai_plus", 128, 3, channels=(4, 8)).eval()
    for block in net.blocks:
        for head in block.halting:
            head.local.bias.data.fill_(-0.2)  # natural halting after 2-3 units, varying by position
    x = torch.randn(8, 1, 128)
    trained = net.forward_detailed(x)
    assert torch.equal(net.set_compute(1.0).forward_detailed(x).logits[-1], trained.logits[-1])
    previous = None
    for scale in (0.3, 0.6, 1.0, 1.5, 3.0):
        out = net.set_compute(scale).forward_detailed(x)
        if previous is not None:  # more compute per position and per sample, never less
            for a, b in zip(previous.units_executed, out.units_executed):
                assert torch.all(b >= a)
            assert torch.all(out.macs >= previous.macs)
        previous = out
    assert float(net.set_compute(0.3).forward_detailed(x).units_fraction.mean()) < float(trained.units_fraction.mean())
    assert float(net.set_compute(3.0).forward_detailed(x).units_fraction.mean()) > float(trained.units_fraction.mean())


@pytest.mark.parametrize("mode", ["sparse", "auto"])
@torch.no_grad()
def test_sparse_path_follows_the_knob(mode, monkeypatch):
    import scai.models._sparse as sparse

    monkeypatch.setattr(sparse, "AUTO_MIN_ROWS", 0)
    torch.manual_seed(1)
    net = create_model("scai_plus", 128, 3, channels=(4, 8)).eval()
    for block in net.blocks:
        for head in block.halting:
            head.local.bias.data.fill_(0.2)
    x = torch.randn(6, 1, 128)
    for scale in (0.5, 2.0):
        net.set_compute(scale)
        dense = net.set_execution("dense").forward_detailed(x)
        fast = net.set_execution(mode).forward_detailed(x)
        assert (dense.logits[-1] - fast.logits[-1]).abs().max() <= 1e-5
        assert torch.equal(dense.macs, fast.macs)
        for a, b in zip(dense.units_executed, fast.units_executed):
            assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2", True])
def test_bad_scales_are_refused(bad):
    net = create_model("scai_plus", 128, 3, channels=(4, 8))
    with pytest.raises(ValueError, match="compute scale"):
        net.set_compute(bad)
    assert all(b.compute_scale == 1.0 for b in net.blocks if isinstance(b, PABlock))


def test_scai_has_no_knob():
    net = create_model("scai", 128, 3, channels=(4, 8))
    assert net.set_compute(1.0) is net and net.compute_scale == 1.0
    with pytest.raises(ValueError, match="no position-adaptive blocks"):
        net.set_compute(0.5)
