"""Fitting the MiniRocket exit (:class:`scai.models.rocket.RocketExit`).

The transform's parameters come from aeon's ``MiniRocket`` (the ``rocket`` extra; the maintained
implementation): dilations, features per dilation and the biases (quantiles of random training
spectra's convolution outputs; no labels are used). The head is aeon's MiniRocket classifier's:
a ``RidgeClassifierCV`` (alphas 1e-3..1e3) on features scaled by their standard deviation; the
scale is folded into the head's weights, so the exit is PPV features, one matrix product and a
bias. Ridge scores are not probabilities; the estimator's temperature scaling calibrates them.

``input_affine=(scale, mean)`` fits the exit on ``Z * scale + mean`` (the spectra before the
pipeline's standardisation) and records the affine, which the exit then applies itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scai.errors import ConfigError

__all__ = ["DEFAULT_ROCKET_FEATURES", "RocketFit", "fit_rocket_exit", "fit_rocket_head", "rocket_available"]

#: aeon's (and the MiniRocket paper's) default number of features.
DEFAULT_ROCKET_FEATURES = 10_000
_ALPHAS = np.logspace(-3, 3, 10)


def rocket_available() -> bool:
    """Whether aeon (the ``rocket`` extra) can be imported."""
    try:
        from aeon.transformations.collection.convolution_based import MiniRocket  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class RocketFit:
    """A fitted MiniRocket exit: transform parameters, head, and the training features."""

    dilations: list[int]
    features_per_dilation: list[int]
    biases: np.ndarray  # (F,) float32
    weight: np.ndarray  # (C, F) float32, the feature scale folded in
    bias: np.ndarray  # (C,) float32
    alpha: float  # the ridge penalty RidgeClassifierCV chose
    fit_time_s: float
    features: np.ndarray = field(repr=False)  # (n, F) training features (for out-of-fold heads)
    input_scale: np.ndarray | None = field(default=None, repr=False)  # (W,) the input affine, or None
    input_mean: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"dilations": self.dilations, "features_per_dilation": self.features_per_dilation,
                "n_features": int(self.biases.shape[0]), "alpha": self.alpha, "fit_time_s": self.fit_time_s,
                "input_affine": self.input_scale is not None}

    def module(self, in_length: int, n_classes: int) -> Any:
        """The fitted :class:`scai.models.rocket.RocketExit`."""
        from scai.models.rocket import RocketExit

        m = RocketExit(in_length, n_classes, self.dilations, self.features_per_dilation,
                       input_affine=self.input_scale is not None)
        m.set_weights(self.biases, self.weight, self.bias, self.input_scale, self.input_mean)
        return m


def fit_rocket_head(features: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge head on PPV features: (weight (C, F), bias (C,), alpha), scores as (n, C) logits.

    Binary ridge scores one decision value d; the logits are [-d/2, d/2] (argmax = ridge's class).
    """
    from sklearn.linear_model import RidgeClassifierCV

    Fz = np.asarray(features, dtype=np.float64)
    scale = Fz.std(axis=0)
    scale[scale == 0] = 1.0  # StandardScaler(with_mean=False) leaves constant features alone
    ridge = RidgeClassifierCV(alphas=_ALPHAS).fit(Fz / scale, np.asarray(y))
    coef = np.atleast_2d(ridge.coef_) / scale
    intercept = np.atleast_1d(ridge.intercept_)
    classes = np.asarray(ridge.classes_, dtype=np.int64)
    weight = np.zeros((n_classes, Fz.shape[1]))
    bias = np.full(n_classes, -1e4)  # a class absent from this fit's labels never wins
    if coef.shape[0] == 1:  # binary
        a, b = classes
        weight[a], weight[b] = -coef[0] / 2, coef[0] / 2
        bias[a], bias[b] = -intercept[0] / 2, intercept[0] / 2
    else:
        weight[classes], bias[classes] = coef, intercept
    return weight.astype(np.float32), bias.astype(np.float32), float(ridge.alpha_)


def fit_rocket_exit(
    Z: np.ndarray, y: np.ndarray, n_classes: int, *, n_features: int = DEFAULT_ROCKET_FEATURES, seed: int = 0,
    input_affine: tuple[np.ndarray, np.ndarray] | None = None,
) -> RocketFit:
    """Fit the MiniRocket transform (aeon) on ``Z`` (n, W) and a ridge head on its features.

    ``input_affine=(scale, mean)`` (per point, or scalars): fit on ``Z * scale + mean`` instead,
    and record the affine for the exit to apply.
    """
    if not rocket_available():
        raise ConfigError("the MiniRocket exit needs aeon; install it with `pip install scai[rocket]`, or pass rocket='none'")
    from aeon.transformations.collection.convolution_based import MiniRocket

    from scai.models.rocket import RocketExit

    t0 = time.perf_counter()
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    scale = mean = None
    if input_affine is not None:
        W = Z.shape[1]
        scale = np.ascontiguousarray(np.broadcast_to(np.asarray(input_affine[0], np.float32), (W,)))
        mean = np.ascontiguousarray(np.broadcast_to(np.asarray(input_affine[1], np.float32), (W,)))
        Z = np.ascontiguousarray(Z * scale + mean, dtype=np.float32)
    trf = MiniRocket(n_kernels=int(n_features), random_state=int(seed), n_jobs=1).fit(Z[:, None, :])
    _, _, dilations, per_dilation, biases = trf.parameters
    RocketExit(Z.shape[1], n_classes, dilations, per_dilation)  # checks that the exit can run them
    # aeon's (numba) transform for the training features: the torch exit computes the same
    # features (tests compare them) but more slowly
    feats = np.asarray(trf.transform(Z[:, None, :]), dtype=np.float32)
    weight, bias, alpha = fit_rocket_head(feats, y, n_classes)
    return RocketFit([int(d) for d in dilations], [int(f) for f in per_dilation], np.asarray(biases, np.float32),
                     weight, bias, alpha, time.perf_counter() - t0, feats, scale, mean)
