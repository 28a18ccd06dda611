"""Exits that build on the exits before them: a learned, cascading combination of exit logits.

A deeper exit of an early-exit network does not always know more than a shallower one; on small
spectral data sets the linear exit 0 is often the best single exit. Following the idea of
Zero-Time-Waste (Wołczyk et al., 2021), exit ``k`` answers with a combination of its own
log-probabilities and the answer of the exit before it, fitted on held-out (out-of-fold) logits:

    s_0 = z_0
    s_k = a_k * s_{k-1} + b_k * log_softmax(z_k) + c_k        (k >= 1, a_k, b_k >= 0)

``s_k`` are the exit's new logits (temperatures, thresholds and policies use them as before), so
exit ``k`` sees every earlier exit through ``s_{k-1}`` with one running state of ``n_classes``
values per sample, which is all an edge device must send when it offloads. With ``a_k = 1`` and
``b_k = 0`` exit ``k`` repeats exit ``k - 1``; with ``a_k = 0``, ``b_k = 1`` and ``c_k = 0`` it is
the plain exit. The weights minimise the out-of-fold negative log-likelihood (a smooth convex
problem per exit, solved by L-BFGS-B), with a small ridge on the class offsets ``c_k``.

This module imports NumPy and SciPy only, so the edge runtime uses it without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from scai.errors import DataValueError

__all__ = ["ExitCombination", "fit_combination", "log_softmax"]

#: Ridge on the class offsets c_k (per exit, times the mean NLL's scale).
OFFSET_RIDGE: float = 1e-3


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class ExitCombination:
    """Per-exit weights ``a`` (n_exits,), ``b`` (n_exits,) and offsets ``c`` (n_exits, n_classes).

    Exit 0 always keeps its logits (``a[0] = 0``, ``b[0]`` unused, ``c[0] = 0``).
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    def __post_init__(self) -> None:
        a, b, c = (np.asarray(v, dtype=np.float64) for v in (self.a, self.b, self.c))
        if a.ndim != 1 or b.shape != a.shape or c.ndim != 2 or c.shape[0] != a.shape[0]:
            raise DataValueError(
                f"exit combination has a {a.shape}, b {b.shape}, c {c.shape}; expected (n_exits,), "
                "(n_exits,) and (n_exits, n_classes)"
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
            raise DataValueError("exit combination weights must be finite")
        if np.any(a < 0) or np.any(b < 0):
            raise DataValueError("exit combination weights a and b must be >= 0")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)

    @property
    def n_exits(self) -> int:
        return int(self.a.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.c.shape[1])

    @classmethod
    def identity(cls, n_exits: int, n_classes: int) -> ExitCombination:
        """Every exit answers for itself (``s_k = log_softmax(z_k)``, same classes and ranks)."""
        return cls(np.zeros(n_exits), np.ones(n_exits), np.zeros((n_exits, n_classes)))

    def padded(self, n_exits: int) -> ExitCombination:
        """The same weights followed by identity entries up to ``n_exits`` exits (exits after the
        fitted ones answer for themselves)."""
        pad = int(n_exits) - self.n_exits
        if pad < 0:
            raise DataValueError(f"cannot pad a combination of {self.n_exits} exits to {n_exits}")
        ident = ExitCombination.identity(pad, self.n_classes)
        return ExitCombination(np.concatenate([self.a, ident.a]), np.concatenate([self.b, ident.b]),
                               np.concatenate([self.c, ident.c]))

    @property
    def is_identity(self) -> bool:
        return bool(np.all(self.a[1:] == 0) and np.all(self.b[1:] == 1) and np.all(self.c == 0))

    def step(self, k: int, state: np.ndarray | None, z: np.ndarray) -> np.ndarray:
        """Exit ``k``'s combined logits from the previous exit's ``state`` and its own logits ``z``.

        ``state`` is ``s_{k-1}`` (``(b, n_classes)``); ``None`` or ``k == 0`` starts the chain.
        """
        z = np.asarray(z, dtype=np.float64)
        if k == 0 or state is None:
            if k != 0:
                raise DataValueError(f"exit {k} needs the combined logits of exit {k - 1}")
            return z
        return self.a[k] * np.asarray(state, dtype=np.float64) + self.b[k] * log_softmax(z) + self.c[k]

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Combined logits of every exit, ``(n_exits, n, n_classes)`` in and out."""
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 3 or z.shape[0] != self.n_exits or z.shape[2] != self.n_classes:
            raise DataValueError(
                f"logits have shape {z.shape}; expected ({self.n_exits}, n, {self.n_classes})"
            )
        out = np.empty_like(z)
        state: np.ndarray | None = None
        for k in range(self.n_exits):
            state = self.step(k, state, z[k])
            out[k] = state
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.tolist(), "b": self.b.tolist(), "c": self.c.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "combination") -> ExitCombination:
        if not isinstance(d, dict) or set(d) != {"a", "b", "c"}:
            raise DataValueError(f"{where}: expected an object with keys a, b, c; got {d!r:.80}")
        try:
            return cls(np.asarray(d["a"], float), np.asarray(d["b"], float), np.asarray(d["c"], float))
        except (TypeError, ValueError) as e:
            raise DataValueError(f"{where}: weights are not numbers ({e})") from None


def _fit_exit(prev: np.ndarray, own: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(a, b, c) minimising mean NLL of softmax(a * prev + b * own + c) + ridge * |c|^2."""
    n, C = own.shape
    Y = np.zeros((n, C))
    Y[np.arange(n), y] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, c = theta[0], theta[1], theta[2:]
        u = a * prev + b * own + c
        lp = log_softmax(u)
        g = (np.exp(lp) - Y) / n
        f = -float(np.sum(Y * lp)) / n + OFFSET_RIDGE * float(c @ c)
        grad = np.concatenate([[np.sum(g * prev)], [np.sum(g * own)], g.sum(axis=0) + 2 * OFFSET_RIDGE * c])
        return f, grad

    start = np.concatenate([[0.5, 0.5], np.zeros(C)])
    bounds = [(0.0, None), (0.0, None)] + [(None, None)] * C
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    theta = res.x
    return float(theta[0]), float(theta[1]), np.asarray(theta[2:], dtype=np.float64)


def fit_combination(logits: np.ndarray, y: np.ndarray) -> ExitCombination:
    """Fit the cascading combination on held-out logits ``(n_exits, n, C)`` with labels ``y``.

    Exits are fitted one after another, each on the previous exit's combined out-of-fold logits.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if z.ndim != 3 or z.shape[1] != y.shape[0]:
        raise DataValueError(f"logits have shape {z.shape}; expected (n_exits, {y.shape[0]}, n_classes)")
    L, _, C = z.shape
    comb = ExitCombination.identity(L, C)
    a, b, c = comb.a.copy(), comb.b.copy(), comb.c.copy()
    state = z[0]
    for k in range(1, L):
        a[k], b[k], c[k] = _fit_exit(state, log_softmax(z[k]), y)
        state = a[k] * state + b[k] * log_softmax(z[k]) + c[k]
    return ExitCombination(a, b, c)
