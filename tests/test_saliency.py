"""Band importance when the answering exit has no gradient (a MiniRocket exit's PPV counts)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from scai.report.saliency import band_importance


class _TwoExits(nn.Module):
    """Exit 0: a linear map of the spectrum; exit 1: a piecewise-constant count, like MiniRocket's."""

    n_exits = 2
    uses = [True, True]

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.from_numpy(weight))

    def forward_exits(self, x: torch.Tensor, stop_at: int | None = None) -> list[torch.Tensor]:
        z0 = self.lin(x[:, 0])
        z1 = (x[:, 0, :, None] > 0).float().mean(dim=1).expand(-1, z0.shape[1]).detach()
        return [z0, z1]


def test_a_gradient_free_answering_exit_falls_back_to_the_exit_before_it():
    W = np.array([[1.0, -2.0, 0.0, 4.0], [0.5, 0.0, -1.0, 0.0]], dtype=np.float32)
    est = SimpleNamespace(network_=_TwoExits(W), pipeline_=SimpleNamespace())
    Z = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 0, 0, 1, 1])
    axis, imp = band_importance(est, Z, y)
    expected = np.abs(W[y]).mean(axis=0)  # d logit_y / d x = W[y] for the linear exit 0
    np.testing.assert_allclose(imp, expected / expected.max(), rtol=1e-6)
    np.testing.assert_array_equal(axis, np.arange(4.0))
