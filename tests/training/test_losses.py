"""Self-distillation losses checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scai.training import exit_losses


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _np_kl(teacher: np.ndarray, student: np.ndarray, T: float) -> float:
    lp_t = _np_log_softmax(teacher / T)
    lp_s = _np_log_softmax(student / T)
    return float((np.exp(lp_t) * (lp_t - lp_s)).sum(axis=1).mean() * T * T)


def _np_ce(z: np.ndarray, y: np.ndarray) -> float:
    return float(-_np_log_softmax(z)[np.arange(len(y)), y].mean())


@pytest.fixture
def batch() -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 3, generator=g, requires_grad=True) for _ in range(3)]
    return logits, torch.tensor([0, 1, 2, 1, 0])


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_last_mode_matches_hand_computation(batch, T):
    logits, y = batch
    z = [t.detach().numpy() for t in logits]
    out = exit_losses(logits, y, mode="last", temperature=T, tau=0.0)
    expected_exit0 = _np_kl(z[2], z[0], T)
    expected_exit1 = _np_kl(z[2], z[1], T)
    assert out["exit_0"].item() == pytest.approx(expected_exit0, rel=1e-5)
    assert out["exit_1"].item() == pytest.approx(expected_exit1, rel=1e-5)
    assert out["ce_last"].item() == pytest.approx(_np_ce(z[2], y.numpy()), rel=1e-5)
    assert out["total"].item() == pytest.approx(expected_exit0 + expected_exit1 + _np_ce(z[2], y.numpy()), rel=1e-5)


def test_next_mode_uses_following_exit_as_teacher(batch):
    logits, y = batch
    z = [t.detach().numpy() for t in logits]
    out = exit_losses(logits, y, mode="next", tau=0.0)
    assert out["exit_0"].item() == pytest.approx(_np_kl(z[1], z[0], 1.0), rel=1e-5)
    assert out["exit_1"].item() == pytest.approx(_np_kl(z[2], z[1], 1.0), rel=1e-5)


def test_none_mode_is_cross_entropy_everywhere(batch):
    logits, y = batch
    z = [t.detach().numpy() for t in logits]
    out = exit_losses(logits, y, mode="none", tau=0.0)
    assert out["total"].item() == pytest.approx(sum(_np_ce(zi, y.numpy()) for zi in z), rel=1e-5)


def test_teacher_is_detached(batch):
    """Distillation terms must not push the last exit towards the students."""
    logits, y = batch
    out = exit_losses(logits, y, mode="last", tau=0.0)
    (out["exit_0"] + out["exit_1"]).backward()
    assert logits[2].grad is None or torch.count_nonzero(logits[2].grad) == 0
    assert torch.count_nonzero(logits[0].grad) > 0


def test_alpha_mixes_own_cross_entropy(batch):
    logits, y = batch
    z = [t.detach().numpy() for t in logits]
    out = exit_losses(logits, y, mode="last", alpha=0.25, tau=0.0)
    want = 0.75 * _np_kl(z[2], z[0], 1.0) + 0.25 * _np_ce(z[0], y.numpy())
    assert out["exit_0"].item() == pytest.approx(want, rel=1e-5)


def test_ponder_weighted_by_tau(batch):
    logits, y = batch
    ponder = torch.tensor(7.0)
    with_p = exit_losses(logits, y, ponder=ponder, tau=0.1)["total"].item()
    without = exit_losses(logits, y, tau=0.1)["total"].item()
    assert with_p - without == pytest.approx(0.7, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "bogus"}, "mode must be one of"), ({"temperature": 0.0}, "temperature"), ({"alpha": 2.0}, "alpha")],
)
def test_bad_arguments_are_named(batch, kwargs, match):
    logits, y = batch
    with pytest.raises(ValueError, match=match):
        exit_losses(logits, y, **kwargs)


def test_single_exit_is_plain_cross_entropy():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    out = exit_losses([z], torch.tensor([0, 1]), tau=0.0)
    want = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.e / (1 + math.e))) / 2
    assert out["total"].item() == pytest.approx(want, rel=1e-6)
