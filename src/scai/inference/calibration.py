"""Per-exit temperature scaling, so that an exit's confidence means what it says.

Early exits decide on confidence (the largest softmax probability). Networks trained with
cross-entropy are usually over-confident, and early exits more so, which makes thresholds set on
one exit hard to compare with another's. Temperature scaling (Guo et al., 2017) divides each
exit's logits by one scalar ``T_l`` fitted on validation data to minimise the negative
log-likelihood; it never changes an exit's predicted class, only its confidence. The
:class:`~scai.inference.Predictor` fits it by default when it is calibrated.
"""

from __future__ import annotations

import math

import numpy as np

from scai.errors import DataValueError, LabelError

__all__ = ["softmax", "fit_temperatures", "nll"]

#: Search range for a temperature; beyond it the NLL is flat for practical purposes.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis of ``logits / temperature``.

    Parameters
    ----------
    logits : ndarray, shape (..., n_classes)
    temperature : float or ndarray
        A scalar, or one value per exit (shape ``(n_exits,)``) when ``logits`` is
        ``(n_exits, n, n_classes)``. Must be > 0.

    Returns
    -------
    ndarray
        Float64 probabilities with the shape of ``logits``.
    """
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(temperature, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise DataValueError(f"temperature={temperature!r} is not allowed; use finite values > 0")
    if t.ndim == 1:
        if z.ndim != 3 or t.shape[0] != z.shape[0]:
            raise DataValueError(
                f"temperature has shape {t.shape}; with logits of shape {z.shape} expected a scalar "
                "or one value per exit of (n_exits, n, n_classes) logits"
            )
        t = t[:, None, None]
    elif t.ndim > 1:
        raise DataValueError(f"temperature has shape {t.shape}; expected a scalar or (n_exits,)")
    z = z / t
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``y`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(y)), y]))


def fit_temperatures(
    val_logits: np.ndarray,
    val_y: np.ndarray,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> np.ndarray:
    """Fit one temperature per exit by minimising validation NLL.

    The search runs over ``log T`` (bounded, :func:`scipy.optimize.minimize_scalar`): NLL is
    smooth and unimodal in ``log T`` for practical logits, and the log keeps the search symmetric
    between sharpening and softening.

    Parameters
    ----------
    val_logits : ndarray, shape (n_exits, n, n_classes)
        Raw (unscaled) logits of every exit on validation data.
    val_y : ndarray of int, shape (n,)
        True class indices.
    bounds : (float, float)
        Smallest and largest temperature allowed.

    Returns
    -------
    ndarray, shape (n_exits,)
        Temperatures; divide logits by them before the softmax.
    """
    from scipy.optimize import minimize_scalar  # scipy is heavy to import; only needed here

    logits = np.asarray(val_logits, dtype=np.float64)
    if logits.ndim != 3:
        raise DataValueError(f"val_logits has shape {logits.shape}; expected (n_exits, n_samples, n_classes)")
    if not np.all(np.isfinite(logits)):
        raise DataValueError("val_logits must be finite")
    n_exits, n, n_classes = logits.shape
    y = np.asarray(val_y)
    if y.shape != (n,):
        raise LabelError(f"val_y has shape {y.shape}; expected ({n},) to match val_logits")
    if n == 0:
        raise LabelError("val_y is empty; temperature scaling needs validation samples")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise LabelError(f"val_y must hold integer class indices in [0, {n_classes - 1}]")
    lo, hi = bounds
    if not (0 < lo < 1 < hi):
        raise DataValueError(f"bounds={bounds!r} is not allowed; use 0 < low < 1 < high")
    temps = np.ones(n_exits)
    for k in range(n_exits):
        res = minimize_scalar(
            lambda s, z=logits[k]: nll(z, y, math.exp(s)),
            bounds=(math.log(lo), math.log(hi)),
            method="bounded",
            options={"xatol": 1e-4},
        )
        t = math.exp(float(res.x))
        # Never return something worse than no scaling (guards flat or degenerate objectives).
        temps[k] = t if nll(logits[k], y, t) <= nll(logits[k], y, 1.0) else 1.0
    return temps
