"""Binned exit heads: pooling equals adaptive average pooling, MACs match an independent counter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from scai.models import create_model
from scai.models.base import ModelConfigError
from scai.models.layers import bin_pool_matrix


@pytest.mark.parametrize("length, bins", [(10, 3), (435, 8), (7, 7), (5, 1)])
def test_bin_pool_matrix_equals_adaptive_avg_pool(length, bins):
    x = torch.randn(2, 3, length)
    want = torch.nn.functional.adaptive_avg_pool1d(x, bins)
    got = torch.matmul(x, bin_pool_matrix(length, bins))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_bins_larger_than_block_are_refused():
    with pytest.raises(ModelConfigError, match="head_bins"):
        bin_pool_matrix(4, 5)


@pytest.mark.parametrize("name", ["scai", "scai_plus", "resnet1d", "drsn_cw"])
def test_binned_head_macs_match_flop_counter(name):
    net = create_model(name, 96, 3, head_bins=4, channels=(4, 6, 8), stem_stride=2).eval()
    if hasattr(net, "set_execution"):
        net.set_execution("dense")
    x = torch.randn(2, 1, 96)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.forward_exits(x)
    assert counter.get_total_flops() == 2 * 2 * net.exit_macs()[-1]  # FLOPs = 2 x MACs, batch of 2
    plain = create_model(name, 96, 3, head_bins=1, channels=(4, 6, 8), stem_stride=2)
    assert net.exit_macs()[-1] > plain.exit_macs()[-1]


def test_binned_head_separates_position():
    """Same peak shape at two positions: GAP features cannot tell them apart, binned ones can."""
    net = create_model("scai", 64, 2, head_bins=4, channels=(4,), units_per_block=1, stem_stride=1).eval()
    a = torch.zeros(1, 1, 64)
    b = torch.zeros(1, 1, 64)
    a[..., 10] = 1.0
    b[..., 50] = 1.0
    with torch.no_grad():
        fa = net.run_stage(0, a)[0]
        fb = net.run_stage(0, b)[0]
    pool = net.exits[0].pool
    np.testing.assert_allclose(fa.mean(-1).numpy(), fb.mean(-1).numpy(), atol=1e-5)  # GAP: identical
    assert not np.allclose((fa @ pool).numpy(), (fb @ pool).numpy())
