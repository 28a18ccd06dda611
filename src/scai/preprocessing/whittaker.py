"""Whittaker-smoother (penalised least squares) baselines fitted for many spectra at once.

pybaselines fits one spectrum at a time: every iteration of asls solves ``(W + lam D'D) z = W y``
with LAPACK's banded Cholesky, whose per-column BLAS calls cost ~0.2 ms for 1738 points, and a
spectrum needs ~7 iterations. All spectra of a batch share the penalty ``lam D'D``; their systems
differ only in the diagonal ``W``. So the banded LDL' recurrence runs once over the points, each
step vectorised over all spectra (the rows), and the results equal pybaselines' to rounding
(tests compare with pybaselines itself). Spectra that have converged leave the batch, as they
would leave pybaselines' loop: each row stops at its own iteration under the same rule.

With numba installed (``pip install "scai[fast]"``) the same recurrence runs compiled
(:func:`asls_lanes`): a few spectra in lock-step ("lanes", so that the divisions of one spectrum's
recurrence overlap with the others'), with every array of a spectrum in cache. It gives the NumPy
path's result bit for bit and is 5-15x faster on one thread, whatever the number of spectra
(docs/data.md). Without numba the NumPy recurrence above runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import lapack
from scipy.sparse import diags

from scai._jit import jit

__all__ = [
    "BATCHED_METHODS", "BATCH_MIN_SPECTRA", "ENGINES", "asls_lanes", "asls_rows", "batched_supports", "compiled_kernel",
    "jit", "penalty_bands", "solve_weighted_rows",
]

#: pybaselines methods with a batched fit here (others keep pybaselines' per-spectrum loop).
BATCHED_METHODS: tuple[str, ...] = ("asls",)

#: Difference orders the batched solver handles (tridiagonal and pentadiagonal systems).
_ORDERS = (1, 2)

#: Fewest spectra for which the batched fit beats pybaselines' loop. Measured (CPU time, one
#: thread, 1738 points, asls lam=1e6): per spectrum 7.5 ms batched at 16 spectra, 0.91 ms at 256,
#: 0.69 ms at 1,000, 0.56 ms at 2,000, against 0.96 ms for pybaselines' loop.
BATCH_MIN_SPECTRA = 512

#: Engines of :func:`asls_rows`: "numba" (the compiled :func:`asls_lanes`), "numpy" (the recurrence
#: vectorised over spectra) and "auto" (numba when it is installed and not switched off by
#: ``SCAI_NUMBA=0``, else numpy).
ENGINES: tuple[str, ...] = ("auto", "numba", "numpy")

#: Spectra run in lock-step by :func:`asls_lanes`. One spectrum's recurrence waits on a division at
#: every point; four independent ones fill that wait (measured, 2,000 x 869 points, one thread:
#: 1 lane 0.21 s, 4 lanes 0.08 s, 8 lanes 0.077 s). A lane past the last spectrum repeats it.
LANES = 4

#: Most values (spectra x points) solved in one batch: bounds memory (~10 float64 arrays of this
#: size, ~300 MB) while keeping batches large (per-spectrum cost falls with the batch).
_MAX_BATCH_VALUES = 1 << 22

_EPS = float(np.finfo(float).eps)  # pybaselines' floor on the norm in its relative difference


def batched_supports(method: str, params: dict[str, Any] | None) -> bool:
    """Whether ``method`` with ``params`` has a batched fit (else fall back to pybaselines)."""
    if method not in BATCHED_METHODS:
        return False
    params = params or {}
    return int(params.get("diff_order", 2)) in _ORDERS


def penalty_bands(n: int, lam: float, diff_order: int) -> np.ndarray:
    """Lower bands of ``lam * D'D`` for ``n`` points, shape (diff_order + 1, n).

    Band ``i`` holds ``A[j + i, j]`` at column ``j`` (LAPACK's lower banded form), zero-padded
    at the end, so bands of several spectra laid end to end never couple two spectra.
    """
    k = int(diff_order)
    bands = np.zeros((k + 1, n))
    if n <= k:
        return bands
    coeffs = np.diff(np.eye(k + 1), n=k, axis=0)[0]  # e.g. [1, -2, 1] for k = 2
    D = diags(list(coeffs), list(range(k + 1)), shape=(n - k, n), format="csr")
    P = (D.T @ D).todia()
    for offset, data in zip(P.offsets, P.data):
        if offset <= 0:  # scipy's dia data is aligned on columns: A[j - offset, j] = data[j]
            i = -int(offset)
            bands[i, : n - i] = data[: n - i]
    return lam * bands


def solve_weighted_rows(bands: np.ndarray, weights: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``(diag(weights[:, r]) + P) x = rhs[:, r]`` for every column ``r``.

    ``bands`` are the lower bands of the shared penalty ``P`` (:func:`penalty_bands`);
    ``weights`` and ``rhs`` are (n_points, n_spectra), point-major so that each step of the
    recurrence reads contiguous memory. Returns x, (n_points, n_spectra).
    """
    k = bands.shape[0] - 1
    if k == 1:
        return _solve_tridiagonal(bands, weights, rhs)
    if k == 2:
        return _solve_pentadiagonal(bands, weights, rhs)
    raise ValueError(f"solve_weighted_rows: difference order {k} is not supported; use 1 or 2")


def _solve_tridiagonal(bands: np.ndarray, weights: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    # One LAPACK ptsv call on all spectra laid end to end: the zero at the end of the
    # sub-diagonal decouples neighbouring spectra exactly.
    n, m = weights.shape
    d = (bands[0][:, None] + weights).T.ravel()
    e = np.tile(bands[1], m)[:-1]
    _, _, x, info = lapack.dptsv(d, e, rhs.T.ravel(), overwrite_d=True, overwrite_e=True, overwrite_b=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"tridiagonal Whittaker system is singular or not positive definite (info={info})")
    return x.reshape(m, n).T


def _solve_pentadiagonal(bands: np.ndarray, weights: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Banded LDL' of a symmetric pentadiagonal matrix, forward and back substitution.

    With ``L`` unit lower (``l1[j] = L[j+1, j]``, ``l2[j] = L[j+2, j]``) and ``c1[j] = l1[j] d[j]``:
    ``d[j] = a0[j] - l1[j-1] c1[j-1] - l2[j-2] a2[j-2]``, ``c1[j] = a1[j] - l2[j-1] c1[j-1]``,
    ``l2[j] = a2[j] / d[j]`` (``a1``, ``a2`` are the shared penalty's bands).
    """
    n, m = weights.shape
    a1, a2 = bands[1], bands[2]
    d = bands[0][:, None] + weights
    l1 = np.zeros((n, m))
    l2 = np.zeros((n, m))
    z = np.array(rhs, dtype=np.float64, copy=True)
    c1 = np.empty(m)
    tmp = np.empty(m)
    for j in range(n):
        dj, zj = d[j], z[j]
        if j >= 1:
            np.multiply(l1[j - 1], c1, out=tmp)
            dj -= tmp
            np.multiply(l1[j - 1], z[j - 1], out=tmp)
            zj -= tmp
            np.multiply(l2[j - 1], c1, out=tmp)
            np.subtract(a1[j], tmp, out=c1)  # c1[j]
        else:
            c1.fill(a1[0])
        if j >= 2:
            np.multiply(l2[j - 2], a2[j - 2], out=tmp)
            dj -= tmp
            np.multiply(l2[j - 2], z[j - 2], out=tmp)
            zj -= tmp
        if j + 1 < n:
            np.divide(c1, dj, out=l1[j])
        if j + 2 < n:
            np.divide(a2[j], dj, out=l2[j])
    z /= d
    for j in range(n - 2, -1, -1):
        zj = z[j]
        np.multiply(l1[j], z[j + 1], out=tmp)
        zj -= tmp
        if j + 2 < n:
            np.multiply(l2[j], z[j + 2], out=tmp)
            zj -= tmp
    return z


def asls_lanes(
    Y: np.ndarray, a0: np.ndarray, a1: np.ndarray, a2: np.ndarray, w0: np.ndarray,
    p: float, max_iter: int, tol: float, out: np.ndarray, iters: np.ndarray,
) -> None:
    """asls of every row of ``Y`` (m, n) into ``out`` (m, n) and ``iters`` (m,); numba compiles it.

    ``a0``, ``a1``, ``a2`` are the penalty's lower bands (:func:`penalty_bands`; ``a2`` zeros for
    the first difference order). The arithmetic is :func:`_solve_pentadiagonal`'s and
    :func:`_asls_batch`'s, operation for operation, so for the second difference order the result
    is the NumPy path's bit for bit (for the first, which the NumPy path solves with LAPACK's
    tridiagonal solver, equal to rounding). Plain Python runs it too (slowly): the tests compare
    the two.
    """
    m, n = Y.shape
    L = LANES
    w = np.empty((n, L))
    d = np.empty((n, L))
    l1 = np.zeros((n, L))
    l2 = np.zeros((n, L))
    z = np.empty((n, L))
    y = np.empty((n, L))
    c1 = np.empty(L)
    num = np.empty(L)
    den = np.empty(L)
    active = np.empty(L, np.bool_)
    rows = np.empty(L, np.int64)
    eps = np.finfo(np.float64).eps
    for start in range(0, m, L):
        for s in range(L):
            r = min(start + s, m - 1)
            rows[s] = r
            active[s] = start + s < m
            for j in range(n):
                y[j, s] = Y[r, j]
                w[j, s] = w0[j]
        for it in range(max_iter + 1):
            for j in range(n):  # LDL' and forward substitution of (W + P) z = W y
                for s in range(L):
                    dj = a0[j] + w[j, s]
                    zj = w[j, s] * y[j, s]
                    if j >= 1:
                        dj -= l1[j - 1, s] * c1[s]
                        zj -= l1[j - 1, s] * z[j - 1, s]
                        c1[s] = a1[j] - l2[j - 1, s] * c1[s]
                    else:
                        c1[s] = a1[0]
                    if j >= 2:
                        dj -= l2[j - 2, s] * a2[j - 2]
                        zj -= l2[j - 2, s] * z[j - 2, s]
                    d[j, s] = dj
                    z[j, s] = zj
                    l1[j, s] = c1[s] / dj
                    l2[j, s] = a2[j] / dj
            for s in range(L):  # back substitution (n >= 2: asls_rows refuses fewer points)
                z[n - 1, s] /= d[n - 1, s]
                z[n - 2, s] = z[n - 2, s] / d[n - 2, s] - l1[n - 2, s] * z[n - 1, s]
            for j in range(n - 3, -1, -1):
                for s in range(L):
                    z[j, s] = z[j, s] / d[j, s] - l1[j, s] * z[j + 1, s] - l2[j, s] * z[j + 2, s]
            for s in range(L):
                num[s] = 0.0
                den[s] = 0.0
            for j in range(n):  # new weights and pybaselines' relative difference
                for s in range(L):
                    new = p if y[j, s] > z[j, s] else 1.0 - p
                    num[s] += (new - w[j, s]) ** 2
                    den[s] += w[j, s] * w[j, s]
                    w[j, s] = new
            left = False
            for s in range(L):
                if active[s]:
                    if np.sqrt(num[s]) / max(np.sqrt(den[s]), eps) < tol or it == max_iter:
                        active[s] = False
                        r = rows[s]
                        for j in range(n):
                            out[r, j] = z[j, s]
                        iters[r] = it + 1
                    else:
                        left = True
            if not left:
                break


@functools.cache
def compiled_kernel() -> Callable[..., None] | None:
    """:func:`asls_lanes` compiled by numba, or ``None`` (see :func:`jit`)."""
    return jit(asls_lanes)


def asls_rows(
    Y: np.ndarray,
    lam: float = 1e6,
    p: float = 1e-2,
    diff_order: int = 2,
    max_iter: int = 50,
    tol: float = 1e-3,
    weights: Any = None,
    *,
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """asls baselines of every row of ``Y`` (n_spectra, n_points), as ``pybaselines.Baseline.asls``.

    Same parameters, same defaults, same iteration and stopping rule per spectrum (the
    baseline of the last weights whose update changed by less than ``tol``). Returns
    ``(baselines, iterations)``: baselines (n_spectra, n_points) and the number of solves each
    spectrum took (the length of pybaselines' ``tol_history``). ``engine``: one of
    :data:`ENGINES`; "numba" without numba installed is an error.
    """
    if engine not in ENGINES:
        raise ValueError(f"asls_rows: engine={engine!r} is not one of {', '.join(ENGINES)}")
    if not 0 < p < 1:
        raise ValueError("p must be between 0 and 1")
    Y = np.asarray(Y, dtype=np.float64)
    m, n = Y.shape
    if diff_order not in _ORDERS:
        raise ValueError(f"asls_rows: diff_order={diff_order} is not supported; use 1 or 2")
    if n <= diff_order:
        # pybaselines cannot fit this either; say so in its words.
        raise ValueError(f"asls needs more than diff_order={diff_order} points per spectrum; got {n}")
    w0 = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w0.shape != (n,):
        raise ValueError(f"length mismatch for weights; expected {n} but got {w0.size}")
    bands = penalty_bands(n, float(lam), int(diff_order))
    out = np.empty_like(Y)
    iterations = np.zeros(m, dtype=np.int64)
    kernel = compiled_kernel() if engine != "numpy" else None
    if engine == "numba" and kernel is None:
        raise ImportError('asls_rows(engine="numba") needs numba: pip install "scai[fast]" (and SCAI_NUMBA unset)')
    if kernel is not None:
        a2 = bands[2] if diff_order == 2 else np.zeros(n)
        kernel(np.ascontiguousarray(Y), bands[0], bands[1], np.ascontiguousarray(a2), np.ascontiguousarray(w0),
               float(p), int(max_iter), float(tol), out, iterations)
        return out, iterations
    rows = max(1, _MAX_BATCH_VALUES // n)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        b, it = _asls_batch(Y[start:stop].T, bands, w0, float(p), int(max_iter), float(tol))
        out[start:stop] = b.T
        iterations[start:stop] = it
    return out, iterations


def _asls_batch(
    Yt: np.ndarray, bands: np.ndarray, w0: np.ndarray, p: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """asls on point-major ``Yt`` (n_points, m).

    Converged spectra are dropped from the batch once they are half of it (gathering columns
    of a point-major array costs a pass over it, so not at every iteration).
    """
    n, m = Yt.shape
    baseline = np.empty((n, m))
    iterations = np.zeros(m, dtype=np.int64)
    index = np.arange(m)  # column of the batch -> spectrum
    pending = np.ones(m, dtype=bool)  # per batch column: still iterating
    y = np.ascontiguousarray(Yt)
    w = np.repeat(w0[:, None], m, axis=1)
    for i in range(max_iter + 1):
        z = solve_weighted_rows(bands, w, w * y)
        new = np.where(y > z, p, 1.0 - p)
        step = new - w
        # pybaselines' relative_difference, column by column (einsum: one pass, no squared copy)
        change = np.sqrt(np.einsum("ij,ij->j", step, step)) / np.maximum(np.sqrt(np.einsum("ij,ij->j", w, w)), _EPS)
        done = pending & (change < tol) if i < max_iter else pending
        if done.all() and index.size == m:  # the whole batch at once: no column gathers
            baseline, iterations[:] = z, i + 1
            break
        if done.any():
            baseline[:, index[done]] = z[:, done]
            iterations[index[done]] = i + 1
            pending &= ~done
        if not pending.any():
            break
        w = new
        if 2 * np.count_nonzero(pending) <= pending.size:
            index, y, w = index[pending], np.ascontiguousarray(y[:, pending]), np.ascontiguousarray(w[:, pending])
            pending = np.ones(index.size, dtype=bool)
    return baseline, iterations
