"""Optional training-time augmentation for spectra (off by default).

Four physically plausible perturbations: detector noise, a small wavenumber shift (calibration
drift between instruments), a multiplicative intensity change (laser power drift) and a slow
baseline drift (a random tilt and bow, as fluorescence or scattering backgrounds leave after
imperfect baseline removal); plus same-class mixing, which blends each spectrum with another of its class in the batch (a
label-preserving mixup: a blend of two spectra of one class is a plausible spectrum of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scai.errors import ConfigError

__all__ = ["Augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Random perturbations applied to each training batch."""

    noise_std: float = 0.0  # std of additive Gaussian noise, relative to each spectrum's std
    max_shift: int = 0  # largest shift along the axis, in points (edge values are repeated)
    scale_std: float = 0.0  # std of the multiplicative intensity factor around 1
    mix_same_class: float = 0.0  # blend weight of a same-class partner drawn from U(0, this); <= 0.5
    drift_std: float = 0.0  # std of a random linear + quadratic baseline's end-point height, relative to each spectrum's std

    def __post_init__(self) -> None:
        if self.noise_std < 0 or self.scale_std < 0 or self.max_shift < 0 or self.drift_std < 0:
            raise ConfigError(
                f"noise_std={self.noise_std}, scale_std={self.scale_std}, max_shift={self.max_shift}, "
                f"drift_std={self.drift_std}: each must be >= 0"
            )
        if not 0.0 <= self.mix_same_class <= 0.5:
            raise ConfigError(f"mix_same_class must be in [0, 0.5]; got {self.mix_same_class}")

    @property
    def enabled(self) -> bool:
        return (self.noise_std > 0 or self.max_shift > 0 or self.scale_std > 0 or self.mix_same_class > 0
                or self.drift_std > 0)

    def apply(self, x: Tensor, rng: np.random.Generator, y: Tensor | None = None) -> Tensor:
        """Return a perturbed copy of ``x`` (B, 1, W); ``x`` itself is not modified.

        ``y`` (the batch's class indices) is needed for ``mix_same_class``.
        """
        b = x.shape[0]
        out = x.clone()
        if self.mix_same_class > 0:
            if y is None:
                raise ConfigError("mix_same_class needs the batch labels: apply(x, rng, y)")
            out = _mix_same_class(out, np.asarray(y), self.mix_same_class, rng)
        if self.max_shift > 0:
            shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=b)
            width = x.shape[-1]
            base = np.arange(width)
            idx = np.clip(base[None, :] - shifts[:, None], 0, width - 1)
            out = torch.gather(out, 2, torch.from_numpy(idx).unsqueeze(1))
        if self.scale_std > 0:
            scale = torch.from_numpy(rng.normal(1.0, self.scale_std, size=(b, 1, 1)).astype(np.float32))
            out = out * scale
        if self.drift_std > 0:  # tilt + bow: t and 2t^2 - 1 (Chebyshev) on t in [-1, 1] along the axis
            width = x.shape[-1]
            t = torch.linspace(-1.0, 1.0, width, dtype=out.dtype)
            coef = torch.from_numpy(rng.normal(0.0, self.drift_std, size=(b, 2)).astype(np.float32))
            drift = coef[:, :1] * t + coef[:, 1:] * (2 * t * t - 1)
            out = out + drift.unsqueeze(1) * out.std(dim=-1, keepdim=True)
        if self.noise_std > 0:
            std = out.std(dim=-1, keepdim=True)
            noise = torch.from_numpy(rng.standard_normal(out.shape).astype(np.float32))
            out = out + noise * std * self.noise_std
        return out


def _mix_same_class(x: Tensor, y: np.ndarray, strength: float, rng: np.random.Generator) -> Tensor:
    """Blend each spectrum with a random same-class spectrum of the batch (itself if alone)."""
    partner = np.arange(len(y))
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        partner[members] = rng.choice(members, size=members.size)
    lam = torch.from_numpy(rng.uniform(0.0, strength, size=(len(y), 1, 1)).astype(np.float32))
    return (1 - lam) * x + lam * x[torch.from_numpy(partner)]
