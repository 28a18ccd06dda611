"""A tiny stand-in multi-exit network that follows the stage contract of docs/CONTRACTS.md.

It lets the Predictor be tested without the real models: three stages (conv -> pool -> exit
head), static MACs computed next to the layers, and a position-adaptive-like variant whose
per-sample cost depends on the input. Each stage records the batch sizes it saw, so tests can
check that exited samples were really dropped.
"""

from __future__ import annotations

import numpy as np
import pytest

try:  # the policy tests must run without torch; only the Predictor tests need it
    import torch
except ImportError:  # pragma: no cover
    torch = None

_Module = torch.nn.Module if torch is not None else object


class TinyMultiExit(_Module):
    """Stage k: Conv1d(k=3, same) -> ReLU -> AvgPool(2) -> exit head (global mean -> Linear)."""

    def __init__(self, in_length: int = 32, n_classes: int = 3, n_exits: int = 3, width: int = 4,
                 adaptive: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.name = "tiny"
        self.in_length = in_length
        self.n_classes = n_classes
        self.n_exits = n_exits
        self.width = width
        self.adaptive = adaptive
        self.execution = "dense"
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(1 if k == 0 else width, width, 3, padding=1) for k in range(n_exits)
        )
        self.heads = torch.nn.ModuleList(torch.nn.Linear(width, n_classes) for _ in range(n_exits))
        self.seen: list[list[int]] = [[] for _ in range(n_exits)]

    # MACs next to the layers: conv at the stage's input length, then the head.
    def stage_macs(self, i: int) -> int:
        length = self.in_length // (2**i)
        cin = 1 if i == 0 else self.width
        return self.width * cin * 3 * length + self.width * self.n_classes

    def exit_macs(self) -> list[int]:
        return list(np.cumsum([self.stage_macs(i) for i in range(self.n_exits)]).astype(int))

    def set_execution(self, mode: str) -> "TinyMultiExit":
        assert mode in ("dense", "sparse", "auto")
        self.execution = mode
        return self

    def _stage(self, i, x):
        self.seen[i].append(int(x.shape[0]))
        h = torch.relu(self.convs[i](x))
        logits = self.heads[i](h.mean(dim=2)) * (1.0 + 2.0 * i)  # deeper exits more decisive
        full = self.stage_macs(i)
        if self.adaptive:
            # PA-like: conv cost scales with the fraction of active (positive) positions.
            active = (h > 0).float().mean(dim=(1, 2))
            conv = full - self.width * self.n_classes
            macs = (active * conv).floor().to(torch.int64) + self.width * self.n_classes
        else:
            macs = torch.full((x.shape[0],), full, dtype=torch.int64)
        return torch.nn.functional.avg_pool1d(h, 2), logits, macs

    def run_stage(self, i, features, return_macs=False):
        f, z, m = self._stage(i, features)
        return (f, z, m) if return_macs else (f, z)

    def forward_exits(self, x, stop_at=None):
        out = []
        for i in range(self.n_exits if stop_at is None else stop_at + 1):
            x, z, _ = self._stage(i, x)
            out.append(z)
        return out

    def forward(self, x):
        return self.forward_exits(x)[-1]

    def stage_costs(self, x):
        """(B, n_exits) cumulative MACs actually spent, by running all stages."""
        macs = []
        for i in range(self.n_exits):
            x, _, m = self._stage(i, x)
            macs.append(m)
        return torch.cumsum(torch.stack(macs, 1), 1)


@pytest.fixture
def tiny_net():
    pytest.importorskip("torch")
    return TinyMultiExit()


@pytest.fixture
def tiny_pa_net():
    pytest.importorskip("torch")
    return TinyMultiExit(adaptive=True, seed=1)


@pytest.fixture
def spectra():
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 32)).astype(np.float32)
