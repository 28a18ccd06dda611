"""Augmentation: each perturbation does what it says, and labels are never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scai.training import Augmentation


def _batch():
    x = torch.arange(4 * 10, dtype=torch.float32).view(4, 1, 10)
    return x, torch.tensor([0, 1, 0, 1])


def test_off_by_default_and_input_untouched():
    assert not Augmentation().enabled
    x, y = _batch()
    before = x.clone()
    out = Augmentation(noise_std=0.1, max_shift=2, scale_std=0.1, mix_same_class=0.5).apply(x, np.random.default_rng(0), y)
    assert torch.equal(x, before) and out.shape == x.shape and not torch.equal(out, x)


def test_shift_moves_the_spectrum_and_repeats_edges():
    x, _ = _batch()
    out = Augmentation(max_shift=3).apply(x, np.random.default_rng(1))
    for i in range(4):
        row, src = out[i, 0].numpy(), x[i, 0].numpy()
        shifts = [s for s in range(-3, 4) if np.array_equal(row, src[np.clip(np.arange(10) - s, 0, 9)])]
        assert shifts, f"row {i} is not a clipped shift of its input"


def test_scale_is_one_factor_per_spectrum():
    x, _ = _batch()
    x = x + 1.0
    out = Augmentation(scale_std=0.2).apply(x, np.random.default_rng(2))
    ratio = (out / x).squeeze(1)
    np.testing.assert_allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-6)


def test_same_class_mix_is_a_blend_of_two_spectra_of_that_class():
    x, y = _batch()
    out = Augmentation(mix_same_class=0.5).apply(x, np.random.default_rng(3), y)
    for i in range(4):
        mates = [j for j in range(4) if y[j] == y[i]]
        ok = False
        for j in mates:  # out_i = (1 - lam) x_i + lam x_j with 0 <= lam <= 0.5
            d = x[j, 0] - x[i, 0]
            if torch.all(d == 0):
                ok |= torch.allclose(out[i, 0], x[i, 0])
                continue
            k = int(torch.argmax(d.abs()))
            lam = float((out[i, 0, k] - x[i, 0, k]) / d[k])
            ok |= 0 <= lam <= 0.5 + 1e-6 and torch.allclose(out[i, 0], (1 - lam) * x[i, 0] + lam * x[j, 0], atol=1e-4)
        assert ok, f"row {i} is not a blend with a spectrum of class {int(y[i])}"
    with pytest.raises(ValueError, match="labels"):
        Augmentation(mix_same_class=0.3).apply(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mix_same_class"):
        Augmentation(mix_same_class=0.8)


def test_drift_adds_a_tilt_and_bow_scaled_to_each_spectrum():
    x, _ = _batch()
    x = x + torch.sin(torch.arange(10.0))  # spectra with structure, std > 0
    out = Augmentation(drift_std=0.5).apply(x, np.random.default_rng(4))
    t = np.linspace(-1, 1, 10)
    basis = np.stack([t, 2 * t**2 - 1], axis=1)  # the documented tilt and bow
    for i in range(4):
        diff = (out[i, 0] - x[i, 0]).numpy().astype(np.float64)
        coef, *_ = np.linalg.lstsq(basis, diff, rcond=None)
        np.testing.assert_allclose(basis @ coef, diff, atol=1e-4)  # nothing but a tilt and a bow
        assert np.abs(coef).max() > 0
    with pytest.raises(ValueError, match="drift_std"):
        Augmentation(drift_std=-0.1)
    assert Augmentation(drift_std=0.1).enabled
