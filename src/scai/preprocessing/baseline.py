"""Baseline (fluorescence background) removal through pybaselines."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from pybaselines import Baseline

from scai.errors import ConfigError, DataValueError
from scai.preprocessing.base import Step, register_step
from scai.preprocessing.whittaker import BATCH_MIN_SPECTRA, asls_rows, batched_supports, compiled_kernel, jit

__all__ = ["BaselineCorrection", "BASELINE_METHODS"]

#: Single-spectrum pybaselines methods that need no extra inputs (custom_bc, interp_pts,
#: collab_pls and optimize_extended_range are left out: they need side information).
BASELINE_METHODS: tuple[str, ...] = tuple(
    m
    for m in (
        "asls", "iasls", "airpls", "arpls", "drpls", "iarpls", "aspls", "psalsa", "derpsalsa", "mpls",
        "brpls", "lsrpls", "pspline_asls", "pspline_airpls", "pspline_arpls",
        "poly", "modpoly", "imodpoly", "penalized_poly", "loess", "quant_reg", "goldindec",
        "snip", "swima", "ipsa", "noise_median", "ria",
        "rolling_ball", "mor", "imor", "mormol", "amormol", "tophat", "mpspline", "jbcd", "rubberband",
        "std_distribution", "fastchrom", "cwt_br", "fabc", "dietrich", "golotvin",
        "irsqr", "mixture_model", "corner_cutting", "beads",
    )
    if hasattr(Baseline, m)
)


@register_step
class BaselineCorrection(Step):
    """Subtract a baseline fitted by a pybaselines method.

    Parameters
    ----------
    method : str
        One of :data:`BASELINE_METHODS` (e.g. "asls", "arpls", "airpls", "modpoly", "snip").
    params : dict, optional
        Keyword arguments of the pybaselines method (``lam``, ``p``, ``poly_order``,
        ``max_half_window``, ...); extra keyword arguments of the constructor are merged in, so
        ``BaselineCorrection("asls", lam=1e6, p=0.01)`` works.
    axis : array-like, optional
        Spectral axis (``x_data``); may instead be passed to ``fit``.
    coarsen : int
        asls only: fit the baseline on every ``coarsen``-th point (and the last), with ``lam``
        divided by ``coarsen ** (2 * diff_order)`` so the penalty means the same smoothness,
        then interpolate it back linearly. ``coarsen`` times fewer points to fit, an approximate
        baseline; 1 (the default here) is the exact fit. The "raman" preset uses
        :data:`~scai.preprocessing.pipeline.RAMAN_COARSEN` (2); docs/data.md gives the measured
        accuracy. A fitted step stores its ``coarsen``; a stored step without one (written before
        the parameter existed) loads as 1, the exact fit it was.

    Notes
    -----
    asls (difference order 1 or 2) is fitted by :mod:`scai.preprocessing.whittaker` (equal to
    pybaselines' fit to rounding): compiled by numba for any number of spectra when numba is
    installed (``scai[fast]``), else vectorised over the spectra of a call when there are at least
    :data:`~scai.preprocessing.whittaker.BATCH_MIN_SPECTRA` of them; smaller calls without numba
    and every other method run pybaselines one spectrum at a time. Measured on 500 x 1738 milk spectra
    (1 core, per spectrum): airpls ~0.9 s, snip ~0.7 s, modpoly ~1.7 s, arpls ~3.4 s;
    docs/data.md ("Preprocessing speed and cost") has the batched asls figures.
    """

    #: Fit supported methods for all spectra at once; ``False`` forces pybaselines' loop
    #: (benchmarks compare the two; not a parameter, since the results are the same).
    _batched: bool = True
    #: Engine of the batched fit (:data:`~scai.preprocessing.whittaker.ENGINES`; "numpy" keeps the
    #: vectorised NumPy path even where numba is installed: benchmarks compare the two).
    _engine: str = "auto"

    def __init__(
        self, method: str = "asls", params: dict[str, Any] | None = None, axis: Any = None, coarsen: int = 1,
        **kwargs: Any,
    ) -> None:
        self.method = method
        # Keep the caller's dict object when there are no extra keywords (sklearn.clone checks identity).
        self.params = {**(params or {}), **kwargs} if kwargs else params
        self.axis = axis
        self.coarsen = coarsen

    def check_params(self) -> None:
        if self.method not in BASELINE_METHODS:
            raise ConfigError(
                f"BaselineCorrection: method={self.method!r} is not one of {', '.join(BASELINE_METHODS)}"
            )
        if self.params is not None and not isinstance(self.params, dict):
            raise ConfigError(f"BaselineCorrection: params={self.params!r} must be a dict of {self.method} parameters")
        valid = _method_parameters(self.method)
        unknown = sorted(set(self.params or {}) - set(valid or ()))
        if valid is not None and unknown:
            raise ConfigError(
                f"BaselineCorrection(method={self.method!r}): unknown parameter(s) {unknown}; "
                f"valid parameters: {', '.join(valid) or 'none'}"
            )
        k = self.coarsen
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"BaselineCorrection: coarsen={k!r} must be an integer >= 1")
        if k > 1 and self.method != "asls":
            raise ConfigError(f"BaselineCorrection: coarsen={k} applies to method='asls' only; got method={self.method!r}")

    def _coarse(self, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Indices of the coarse grid and the asls parameters that mean the same smoothness on it."""
        k = int(self.coarsen)
        params = dict(self.params or {})
        if k == 1:
            return np.arange(n), params
        index = np.arange(0, n, k)
        if index[-1] != n - 1:
            index = np.append(index, n - 1)
        params["lam"] = float(params.get("lam", 1e6)) / k ** (2 * int(params.get("diff_order", 2)))
        if params.get("weights") is not None:
            params["weights"] = np.asarray(params["weights"], dtype=np.float64)[index]
        return index, params

    def _fit(self, X: np.ndarray, y: Any) -> None:
        try:  # surface bad parameters at fit time, not deep inside transform
            index, params = self._coarse(X.shape[1])
            self._baseline(Baseline(x_data=self.axis_[index]), X[0, index], params)
        except TypeError as e:
            raise ConfigError(f"BaselineCorrection(method={self.method!r}): bad parameters {self.params}: {e}") from None
        except (ValueError, IndexError, np.linalg.LinAlgError) as e:  # pybaselines on data it cannot fit
            raise DataValueError(
                f"BaselineCorrection(method={self.method!r}, params={self.params}): cannot fit a baseline to "
                f"{X.shape[1]} points per spectrum ({type(e).__name__}: {e}); use a pipeline without "
                "baseline correction (preprocessing='snv' or 'none')"
            ) from None

    def _baseline(self, fitter: Baseline, row: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        baseline, _ = getattr(fitter, self.method)(row, **(self.params or {}) if params is None else params)
        return np.asarray(baseline, dtype=np.float64)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        index, params = self._coarse(X.shape[1])
        Y = X[:, index] if index.size < X.shape[1] else X
        compiled = self._engine != "numpy" and compiled_kernel() is not None  # faster at any count
        many = compiled or Y.shape[0] >= BATCH_MIN_SPECTRA
        if self._batched and many and Y.shape[0] and batched_supports(self.method, params):
            B = asls_rows(Y, **params, engine=self._engine)[0]
        else:
            fitter = Baseline(x_data=self.axis_[index])  # one fitter reuses its penalty matrices across rows
            B = np.stack([self._baseline(fitter, row, params) for row in Y]) if Y.shape[0] else np.empty(Y.shape)
        if index.size == X.shape[1]:
            X -= B
            return X
        # back onto every point, linearly between coarse points
        j = np.arange(X.shape[1])
        left = np.clip(np.searchsorted(index, j, side="right") - 1, 0, index.size - 2)
        w = (j - index[left]) / (index[left + 1] - index[left])
        compiled = _compiled_subtract() if self._engine != "numpy" else None
        if compiled is not None and X.flags.c_contiguous:  # one pass, no full-size temporaries; same bits
            compiled(X, np.ascontiguousarray(B), left, w)
        else:
            X -= B[:, left] * (1.0 - w) + B[:, left + 1] * w
        return X


def subtract_interpolated(X: np.ndarray, B: np.ndarray, left: np.ndarray, w: np.ndarray) -> None:
    """``X[r, j] -= B[r, left[j]] (1 - w[j]) + B[r, left[j] + 1] w[j]`` in place (numba compiles it)."""
    m, n = X.shape
    for r in range(m):
        for j in range(n):
            X[r, j] -= B[r, left[j]] * (1.0 - w[j]) + B[r, left[j] + 1] * w[j]


@functools.cache
def _compiled_subtract() -> Callable[..., None] | None:
    return jit(subtract_interpolated)


def _method_parameters(method: str) -> list[str] | None:
    """Keyword parameters of a pybaselines method, or ``None`` if it takes arbitrary ``**kwargs``."""
    params = list(inspect.signature(getattr(Baseline, method)).parameters.values())[2:]  # self, data
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
