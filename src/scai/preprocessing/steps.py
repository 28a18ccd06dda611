"""Axis, smoothing, spike and normalisation steps (pure NumPy/SciPy, vectorised over rows)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.integrate import trapezoid
from scipy.ndimage import convolve1d
from scipy.signal import savgol_filter

from scai.errors import AxisError, ConfigError, DataValueError
from scai.preprocessing.base import Step, register_step

__all__ = [
    "Crop",
    "Resample",
    "SavitzkyGolay",
    "Despike",
    "SNV",
    "MinMax",
    "VectorNorm",
    "AreaNorm",
    "Standardize",
    "LaserCalibration",
    "WATER_OH_WINDOW",
]

#: O–H stretching band of liquid water (cm-1). Its Raman intensity is set by the laser power,
#: not by the analyte, so scaling every spectrum to a fixed water-band area removes laser-power
#: drift between measurements and instruments (paper §4.2, calibration on pure water).
WATER_OH_WINDOW = (3100.0, 3700.0)


def _range(axis: np.ndarray) -> str:
    return f"{axis[0]:g}..{axis[-1]:g}"


def _safe_divide(X: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Row-wise ``X / d`` leaving rows with ``d == 0`` (flat or empty spectra) unscaled."""
    d = np.where(d == 0, 1.0, d)
    return X / d[:, None]


@register_step
class Crop(Step):
    """Keep the points with ``lo <= axis <= hi`` (either bound may be None)."""

    _state = ("index_",)

    def __init__(self, lo: float | None = None, hi: float | None = None, axis: Any = None) -> None:
        self.lo = lo
        self.hi = hi
        self.axis = axis

    def _bounds(self) -> tuple[float, float]:
        try:
            lo = -np.inf if self.lo is None else float(self.lo)
            hi = np.inf if self.hi is None else float(self.hi)
        except (TypeError, ValueError):
            raise ConfigError(f"Crop: lo={self.lo!r} and hi={self.hi!r} must be numbers or None") from None
        return lo, hi

    def check_params(self) -> None:
        lo, hi = self._bounds()
        if lo > hi:
            raise ConfigError(f"Crop: lo={self.lo} must not exceed hi={self.hi}")

    def _fit(self, X: np.ndarray, y: Any) -> None:
        lo, hi = self._bounds()
        index = np.flatnonzero((self.axis_ >= lo) & (self.axis_ <= hi))
        if index.size == 0:
            raise AxisError(f"Crop({self.lo}, {self.hi}): range does not overlap the axis {_range(self.axis_)}")
        self.index_ = index.astype(np.int64)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.index_]

    def macs(self, n_points: int) -> int:
        return 0  # a selection

    def n_out(self, n_points: int) -> int:
        self._check_fitted()  # the kept points depend on the axis
        return int(self.index_.size)

    @property
    def output_axis_(self) -> np.ndarray:
        self._check_fitted()
        return self.axis_[self.index_]


@register_step
class Resample(Step):
    """Linear interpolation onto ``target_axis`` (e.g. a model's axis from another instrument).

    Target points beyond the input range take the edge value; that extrapolation is warned about,
    and a target that does not overlap the input at all is refused.
    """

    def __init__(self, target_axis: Sequence[float] | np.ndarray = (), axis: Any = None) -> None:
        self.target_axis = target_axis
        self.axis = axis

    def check_params(self) -> None:
        self._target()

    def _target(self) -> np.ndarray:
        try:
            t = np.asarray(self.target_axis, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise AxisError("Resample: target_axis must be an array of numbers") from None
        if t.size == 0 or not np.all(np.isfinite(t)) or (t.size > 1 and not np.all(np.diff(t) > 0)):
            raise AxisError("Resample: target_axis must be a non-empty, finite, strictly increasing array")
        return t

    def _fit(self, X: np.ndarray, y: Any) -> None:
        t, a = self._target(), self.axis_
        if t[-1] < a[0] or t[0] > a[-1]:
            raise AxisError(f"Resample: target axis {_range(t)} does not overlap the input axis {_range(a)}")
        outside = int(np.count_nonzero((t < a[0]) | (t > a[-1])))
        if outside:
            warnings.warn(
                f"Resample: target axis {_range(t)} extends beyond the input axis {_range(a)}; "
                f"{outside} of {t.size} points are extrapolated (edge values held)",
                UserWarning,
                stacklevel=3,
            )

    def _transform(self, X: np.ndarray) -> np.ndarray:
        t, a = self._target(), self.axis_
        if a.size == 1:
            return np.repeat(X, t.size, axis=1)
        i = np.clip(np.searchsorted(a, t, side="right") - 1, 0, a.size - 2)
        w = np.clip((t - a[i]) / (a[i + 1] - a[i]), 0.0, 1.0)
        return X[:, i] * (1.0 - w) + X[:, i + 1] * w

    def macs(self, n_points: int) -> int:
        return 2 * self.n_out(n_points)  # x[i] (1 - w) + x[i + 1] w per target point

    def n_out(self, n_points: int) -> int:
        return int(self._target().size)

    @property
    def output_axis_(self) -> np.ndarray:
        self._check_fitted()
        return self._target()


@register_step
class SavitzkyGolay(Step):
    """Savitzky–Golay smoothing or derivative (``scipy.signal.savgol_filter``, mode "interp").

    Derivatives are per axis unit (``delta`` = mean axis spacing), so they do not depend on
    the instrument's sampling.
    """

    def __init__(self, window: int = 11, polyorder: int = 2, deriv: int = 0) -> None:
        self.window = window
        self.polyorder = polyorder
        self.deriv = deriv

    def check_params(self) -> None:
        for name in ("window", "polyorder", "deriv"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value != int(value):
                raise ConfigError(f"SavitzkyGolay: {name}={value!r} must be an integer")
        w, p, d = int(self.window), int(self.polyorder), int(self.deriv)
        if w < 3 or w % 2 == 0:
            raise ConfigError(f"SavitzkyGolay: window={self.window} must be an odd integer >= 3")
        if not 0 <= p < w:
            raise ConfigError(f"SavitzkyGolay: polyorder={self.polyorder} must be in 0..window-1 ({w - 1})")
        if not 0 <= d <= p:
            raise ConfigError(f"SavitzkyGolay: deriv={self.deriv} must be in 0..polyorder ({p})")

    def _fit(self, X: np.ndarray, y: Any) -> None:
        w, n = int(self.window), X.shape[1]
        if w > n:
            largest = n if n % 2 else n - 1
            fix = f"use window <= {largest} (odd), or" if largest >= 3 and largest > int(self.polyorder) else "use"
            raise DataValueError(
                f"SavitzkyGolay: window={w} exceeds the {n} points per spectrum; {fix} "
                "a pipeline without smoothing (preprocessing='snv' or 'none')"
            )

    def _transform(self, X: np.ndarray) -> np.ndarray:
        a = self.axis_
        delta = float((a[-1] - a[0]) / (a.size - 1)) if a.size > 1 else 1.0
        return savgol_filter(X, int(self.window), int(self.polyorder), deriv=int(self.deriv), delta=delta, axis=1)

    def macs(self, n_points: int) -> int:
        # One window-tap FIR per point; the "interp" edges evaluate a fitted polynomial instead,
        # counted as the same window taps.
        return int(self.window) * int(n_points)


#: Values (spectra x points) Despike handles per block of rows (150 spectra of 1738 points).
_DESPIKE_BLOCK_VALUES = 1 << 18


def _row_median(A: np.ndarray) -> np.ndarray:
    """``np.median(A, axis=1, keepdims=True)``, from a sort: NumPy's vectorised sort beats the
    per-row selection behind ``np.median`` ~2.5x on (2000, 1737), and the values are the same."""
    return _sorted_median(np.sort(A, axis=1))


def _sorted_median(s: np.ndarray) -> np.ndarray:
    """Row medians (keepdims) of row-sorted ``s``."""
    k = s.shape[1] // 2
    return s[:, k : k + 1] if s.shape[1] % 2 else (s[:, k - 1 : k] + s[:, k : k + 1]) / 2


def _sorted_mad(s: np.ndarray, med: np.ndarray) -> np.ndarray:
    """``_row_median(np.abs(A - med))`` from row-sorted ``s`` (A's rows sorted), without a second sort.

    In a sorted row the j + 1 values nearest ``med`` are a window ``s[l : l + j + 1]``, and the
    largest distance in a window is at one of its ends, so the j-th smallest distance is
    ``min over l of max(med - s[l], s[l + j] - med)``. Rounding is monotone, so this holds for
    the rounded distances too: the values are those of the sort, exactly.
    """
    L = s.shape[1]
    k = L // 2

    def smallest(j: int) -> np.ndarray:  # j-th smallest |s - med| per row, keepdims
        return np.maximum(med - s[:, : L - j], s[:, j:] - med).min(axis=1, keepdims=True)

    return smallest(k) if L % 2 else (smallest(k - 1) + smallest(k)) / 2


@register_step
class Despike(Step):
    """Remove cosmic-ray spikes (Whitaker & Hayes 2018).

    Modified z-scores of the first difference, ``0.6745 (d - median) / MAD`` per spectrum, flag
    jumps above ``threshold``; a point is a spike when a jump up and a jump down lie within
    ``window`` points on either side of it, and is replaced by the mean of its unflagged
    neighbours within ``window`` points. A jump must also be ``ratio`` times the step just
    outside the spike: without that rule the tops of sharp bands at high signal-to-noise
    (e.g. ethanol 879 cm-1 in liquor_vintage) are "despiked" in every spectrum.
    """

    def __init__(self, threshold: float = 6.0, window: int = 2, ratio: float = 3.0) -> None:
        self.threshold = threshold
        self.window = window
        self.ratio = ratio

    def check_params(self) -> None:
        if float(self.threshold) <= 0:
            raise ConfigError(f"Despike: threshold={self.threshold} must be positive")
        if int(self.window) < 1:
            raise ConfigError(f"Despike: window={self.window} must be >= 1")

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] < 3:
            return X
        # Every row is despiked on its own, so blocks of rows give the same output; a block's
        # temporaries (a dozen arrays the size of the block) stay in cache.
        rows = max(1, _DESPIKE_BLOCK_VALUES // X.shape[1])
        for start in range(0, X.shape[0], rows):
            self._despike(X[start : start + rows])
        return X

    def _despike(self, X: np.ndarray) -> None:
        """Despike the rows of ``X`` in place."""
        d = np.diff(X, axis=1)
        s = np.sort(d, axis=1)
        med = _sorted_median(s)
        mad = _sorted_mad(s, med)  # median |d - med|, from the same sort
        del s
        dev = d - med
        z = np.divide(0.6745 * dev, mad, out=np.zeros_like(d), where=mad > 0)
        t, w = float(self.threshold), int(self.window)
        # Cosmic rays only add light: a spike is a jump up followed within `window` points by a
        # jump down. Requiring both keeps the steep flanks of sharp, intense bands (which rise
        # and fall over more points) from being flagged at high signal-to-noise.
        # A spike's edge is also abrupt: much larger than the step just outside it, whereas a
        # band flank grows step by step (ratio ~1), however high the signal-to-noise ratio.
        a = np.abs(d)
        ra = float(self.ratio) * a
        jump_up = z > t  # ... and |d[j]| > ratio |d[j-1]| (the first step compares with itself)
        jump_up[:, 1:] &= a[:, 1:] > ra[:, :-1]
        jump_up[:, 0] &= a[:, 0] > ra[:, 0]
        if not jump_up.any():
            return
        jump_down = z < -t  # ... and |d[j]| > ratio |d[j+1]| (the last step compares with itself)
        jump_down[:, :-1] &= a[:, :-1] > ra[:, 1:]
        jump_down[:, -1] &= a[:, -1] > ra[:, -1]
        if not jump_down.any():
            return
        n = X.shape[1]
        rose = np.zeros(X.shape, dtype=bool)  # a jump up among d[j-w .. j-1]
        falls = np.zeros(X.shape, dtype=bool)  # a jump down among d[j .. j+w-1]
        for k in range(min(w, n - 1)):  # shifted slices, not gathers: one pass per offset
            rose[:, k + 1 :] |= jump_up[:, : n - 1 - k]
            falls[:, : n - 1 - k] |= jump_down[:, k:]
        spikes = rose & falls
        if not spikes.any():
            return
        keep = (~spikes).astype(np.float64)
        kernel = np.ones(2 * int(self.window) + 1)
        sums = convolve1d(X * keep, kernel, axis=1, mode="constant")
        counts = convolve1d(keep, kernel, axis=1, mode="constant")
        fill = spikes & (counts > 0)
        X[fill] = sums[fill] / counts[fill]


@register_step
class SNV(Step):
    """Standard normal variate: each spectrum to mean 0, standard deviation 1.

    Removes multiplicative scatter and laser-power effects; a flat spectrum becomes zeros.
    """

    def _transform(self, X: np.ndarray) -> np.ndarray:
        X -= X.mean(axis=1, keepdims=True)
        return _safe_divide(X, X.std(axis=1))

    def macs(self, n_points: int) -> int:
        return 4 * int(n_points)  # sum (mean), subtract, square-accumulate (std), divide


@register_step
class MinMax(Step):
    """Each spectrum scaled to [0, 1] (a flat spectrum becomes zeros)."""

    def _transform(self, X: np.ndarray) -> np.ndarray:
        X -= X.min(axis=1, keepdims=True)
        return _safe_divide(X, X.max(axis=1))

    def macs(self, n_points: int) -> int:
        return 4 * int(n_points)  # min, subtract, max, divide


@register_step
class VectorNorm(Step):
    """Each spectrum divided by its L2 norm."""

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return _safe_divide(X, np.linalg.norm(X, axis=1))

    def macs(self, n_points: int) -> int:
        return 2 * int(n_points)  # square-accumulate, divide


@register_step
class AreaNorm(Step):
    """Each spectrum divided by the trapezoid integral of its absolute value along the axis.

    The absolute value keeps the sign of baseline-corrected spectra (which dip below zero).
    """

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return _safe_divide(X, trapezoid(np.abs(X), self.axis_, axis=1))

    def macs(self, n_points: int) -> int:
        return 3 * int(n_points)  # absolute value, trapezoid multiply-accumulate, divide


@register_step
class Standardize(Step):
    """Centre every feature on its training mean and divide by the training spread.

    ``scale="feature"`` divides each feature by its own standard deviation (the z-score of
    scikit-learn's ``StandardScaler``); ``scale="global"`` divides every feature by the mean of
    those standard deviations, so the input becomes the deviation from the mean training
    spectrum without blowing flat, noise-only regions up to the size of real bands.
    """

    _state = ("mean_", "scale_")

    def __init__(self, scale: str = "feature") -> None:
        self.scale = scale

    def check_params(self) -> None:
        if self.scale not in ("feature", "global"):
            raise ConfigError(f"Standardize: scale={self.scale!r} is not allowed; use 'feature' or 'global'")

    def _fit(self, X: np.ndarray, y: Any) -> None:
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        if self.scale == "global":
            spread = float(std.mean())
            std = np.full_like(std, spread if spread > 0 else 1.0)
        self.scale_ = np.where(std > 0, std, 1.0)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def macs(self, n_points: int) -> int:
        return 2 * int(n_points)  # subtract, divide


@register_step
class LaserCalibration(Step):
    """Scale each spectrum so its water-band integral equals a reference (laser-power drift).

    ``window`` defaults to the water O–H stretch, :data:`WATER_OH_WINDOW` (3100–3700 cm-1);
    ``reference`` defaults to the mean integral of the training spectra. The integral is the
    trapezoid over the axis points inside the window.
    """

    _state = ("index_", "reference_")

    def __init__(
        self, window: Sequence[float] = WATER_OH_WINDOW, reference: float | None = None, axis: Any = None
    ) -> None:
        self.window = window
        self.reference = reference
        self.axis = axis

    def _integrals(self, X: np.ndarray) -> np.ndarray:
        return trapezoid(X[:, self.index_], self.axis_[self.index_], axis=1)

    def _window(self) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in self.window)
        except (TypeError, ValueError):
            raise ConfigError(f"LaserCalibration: window={self.window!r} must be two numbers (lo, hi)") from None
        if not lo < hi:
            raise ConfigError(f"LaserCalibration: window={self.window!r} must have lo < hi")
        return lo, hi

    def check_params(self) -> None:
        self._window()

    def _fit(self, X: np.ndarray, y: Any) -> None:
        lo, hi = self._window()
        a = self.axis_
        index = np.flatnonzero((a >= lo) & (a <= hi))
        if index.size < 2:
            raise AxisError(
                f"LaserCalibration: window {lo:g}..{hi:g} lies outside the axis {_range(a)} "
                f"(needs at least 2 axis points inside); pass window=(lo, hi) on your water band"
            )
        if lo < a[0] or hi > a[-1]:
            warnings.warn(
                f"LaserCalibration: window {lo:g}..{hi:g} extends beyond the axis {_range(a)}; integrating "
                f"{a[index[0]]:g}..{a[index[-1]]:g} only",
                UserWarning,
                stacklevel=3,
            )
        self.index_ = index.astype(np.int64)
        ref = float(np.mean(self._integrals(X))) if self.reference is None else float(self.reference)
        if not ref > 0:
            raise DataValueError(f"LaserCalibration: reference water-band integral {ref:g} must be positive")
        self.reference_ = ref

    def _transform(self, X: np.ndarray) -> np.ndarray:
        integrals = self._integrals(X)
        bad = np.flatnonzero(~(integrals > 0))
        if bad.size:
            raise DataValueError(
                f"LaserCalibration: row {int(bad[0])} has water-band integral {integrals[bad[0]]:g} <= 0 "
                f"over {self.window}; calibrate before baseline correction/normalisation"
            )
        return X * (self.reference_ / integrals)[:, None]

    def macs(self, n_points: int) -> int:
        self._check_fitted()  # the window's points depend on the axis
        return int(self.index_.size) + int(n_points)  # trapezoid over the window, scale every point
