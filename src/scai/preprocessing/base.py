"""The preprocessing step template and the name -> class registry used by JSON round trips.

Every step follows the scikit-learn contract (``__init__`` stores parameters, ``fit`` validates
and returns ``self``, fitted state ends in ``_``) plus two scai rules: the spectral axis arrives
through ``fit(X, axis=...)``, the constructor or the numeric column names of a pandas DataFrame,
and input arrays are never modified. A DataFrame in gives a DataFrame out (same index; columns
named by the output axis), as scikit-learn's ``set_output`` convention has it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from scai.data.frames import frame_like, frame_parts, is_frame, match_axis
from scai.errors import AxisError, ConfigError, DataFormatError, DataValueError, NotFittedError

__all__ = ["Step", "register_step", "get_step", "list_steps"]

_REGISTRY: dict[str, type[Step]] = {}


def register_step(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step loadable by name from pipeline JSON; duplicates are refused."""
    name = cls.__name__
    if name in _REGISTRY:
        raise ConfigError(f"preprocessing step {name!r} is already registered; pick another class name")
    _REGISTRY[name] = cls
    return cls


def get_step(name: str) -> type[Step]:
    """The step class registered as ``name``."""
    if name not in _REGISTRY:
        raise DataFormatError(f"unknown preprocessing step {name!r}; known steps: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_steps() -> list[str]:
    """Names of all registered steps."""
    return sorted(_REGISTRY)


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=value.get("dtype", "float64"))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def as_2d(X: Any, who: str) -> np.ndarray:
    """Validate ``X`` as a finite 2-D float array without copying or modifying it."""
    X = np.asarray(X)
    if X.ndim == 1:
        raise DataValueError(f"{who}: X must be 2-D (n_samples, n_points); reshape a single spectrum with X[None, :]")
    if X.ndim != 2:
        raise DataValueError(f"{who}: X must be 2-D (n_samples, n_points), got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise DataValueError(f"{who}: X has dtype {X.dtype}; expected numbers")
    finite = np.isfinite(X)
    if not finite.all():
        i, j = (int(v[0]) for v in np.nonzero(~finite))
        raise DataValueError(
            f"{who}: X holds a non-finite value at row {i}, column {j}; read files with nan_policy='interpolate'"
        )
    return X


#: What a frame-aware step remembers of its input to name its output: (frame, column labels).
FrameInfo = tuple[Any, list[Any]]


def from_frame(
    X: Any, axis: Any, who: str, fitted_axis: np.ndarray | None = None
) -> tuple[Any, Any, FrameInfo | None]:
    """``(values, axis, frame info)``: a DataFrame's values and the axis its column names hold.

    An explicit ``axis`` wins over the names. With ``fitted_axis`` (at transform time) numeric
    names must name that axis, in any column order; a fit on the point index skips the check.
    """
    if not is_frame(X):
        return X, axis, None
    if axis is not None:
        return X.to_numpy(), axis, (X, list(X.columns))
    values, names_axis, labels = frame_parts(X, who, warn=fitted_axis is None)
    named = fitted_axis is not None and names_axis is not None and not _is_index(fitted_axis)
    if named and (names_axis.shape != fitted_axis.shape or not match_axis(names_axis, fitted_axis)[1].all()):
        raise AxisError(
            f"{who}: the column names give the axis {names_axis[0]:g}..{names_axis[-1]:g} ({names_axis.size} points), "
            f"but it was fitted on {fitted_axis[0]:g}..{fitted_axis[-1]:g} ({fitted_axis.size} points)"
        )
    return values, names_axis, (X, labels)


def to_frame(info: FrameInfo | None, out: np.ndarray, axis: np.ndarray, input_axis: np.ndarray) -> Any:
    """``out`` as a frame like the input when the input was one, else ``out`` unchanged."""
    if info is None:
        return out
    return frame_like(info[0], out, info[1], axis, input_axis)


def _is_index(axis: np.ndarray) -> bool:
    return bool(np.array_equal(axis, np.arange(axis.size)))


def feature_names(axis: np.ndarray) -> np.ndarray:
    """Output feature names for scikit-learn (``get_feature_names_out``): the axis values as text."""
    return np.asarray([f"{v:g}" for v in axis], dtype=object)


class Step(TransformerMixin, BaseEstimator):
    """Base class of preprocessing steps: validation, axis handling, dtype, JSON state.

    Subclasses implement ``_fit(X, y)`` (optional) and ``_transform(X) -> ndarray`` on a private
    float64 copy, and list their fitted attributes in ``_state`` so JSON carries them.
    """

    _state: ClassVar[tuple[str, ...]] = ()

    def fit(self, X: Any, y: Any = None, axis: Any = None) -> Step:
        """Learn what the step needs from training spectra ``X`` on ``axis``.

        ``X`` may be a DataFrame whose column names are the axis (an explicit ``axis``, here or
        in the constructor, wins over the names).
        """
        name = type(self).__name__
        self.check_params()
        if axis is None:
            axis = getattr(self, "axis", None)
        X, axis, _ = from_frame(X, axis, name)
        X = as_2d(X, name)
        self.axis_ = self._resolve_axis(axis, X.shape[1])
        self.n_features_in_ = int(X.shape[1])
        self._fit(np.array(X, dtype=np.float64), y)
        return self

    def transform(self, X: Any) -> Any:
        """Apply the step; float32 in gives float32 out, anything else float64; a DataFrame gives a DataFrame."""
        self._check_fitted()
        name = type(self).__name__
        X, _, frame = from_frame(X, None, name, self.axis_)
        X = as_2d(X, name)
        if X.shape[1] != self.n_features_in_:
            raise DataValueError(f"{name}: X has {X.shape[1]} points per spectrum, fitted on {self.n_features_in_}")
        out = self._transform(np.array(X, dtype=np.float64))  # private copy: input never modified
        out = out.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
        return to_frame(frame, out, self.output_axis_, self.axis_)

    def check_params(self) -> None:
        """Refuse constructor values that cannot work whatever the data (``fit`` calls it first;
        so does :func:`scai.preprocessing.pipeline_from_spec`, so a bad config fails before training)."""

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output axis values as text (lets ``set_output(transform="pandas")`` name columns)."""
        return feature_names(self.output_axis_)

    @property
    def output_axis_(self) -> np.ndarray:
        """The axis of ``transform``'s output (steps that crop or resample override this)."""
        self._check_fitted()
        return self.axis_

    def macs(self, n_points: int) -> int | None:
        """Operations per spectrum of ``n_points`` points, counted as the network counts MACs (one
        per multiply, add, divide or comparison on a point; per-spectrum scalars are free).

        ``None`` (the default) means the work depends on the data (iterations, selections) and
        is measured instead (:meth:`scai.preprocessing.Pipeline.cost`).
        """
        return None

    def n_out(self, n_points: int) -> int:
        """Points per spectrum that ``transform`` returns for ``n_points`` in (steps that crop or
        resample override this)."""
        return int(n_points)

    # -- subclass hooks ------------------------------------------------------------------------

    def _fit(self, X: np.ndarray, y: Any) -> None:
        """Stateless by default."""

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------

    def _resolve_axis(self, axis: Any, width: int) -> np.ndarray:
        if axis is None:
            axis = getattr(self, "axis", None)
        if axis is None:
            return np.arange(width, dtype=np.float64)
        axis = np.asarray(axis, dtype=np.float64)
        name = type(self).__name__
        if axis.shape != (width,):
            raise AxisError(f"{name}: axis has {axis.size} values but X has {width} points per spectrum")
        if width > 1 and not np.all(np.diff(axis) > 0):
            raise AxisError(f"{name}: axis must be strictly increasing")
        return axis

    def _check_fitted(self) -> None:
        if not hasattr(self, "axis_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X, axis=...) first")

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Name, constructor parameters and fitted state, JSON-ready (arrays as lists)."""
        out: dict[str, Any] = {"name": type(self).__name__, "params": _encode(self.get_params(deep=False))}
        if hasattr(self, "axis_"):
            state = {"axis_": self.axis_, "n_features_in_": self.n_features_in_}
            state.update({k: getattr(self, k) for k in self._state})
            out["state"] = _encode(state)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        """Rebuild a step (fitted if ``d`` carries state) from :meth:`to_dict` output."""
        if not isinstance(d, dict) or "name" not in d:
            raise DataFormatError(f"preprocessing step entry must be an object with a 'name', got {d!r:.80}")
        klass = get_step(d["name"])
        params = _decode(d.get("params", {}))
        valid = klass._get_param_names()
        unknown = sorted(set(params) - set(valid)) if isinstance(params, dict) else []
        if unknown:
            raise DataFormatError(
                f"preprocessing step {d['name']!r}: unknown parameter(s) {unknown}; valid parameters: {', '.join(valid) or 'none'}"
            )
        try:
            step = klass(**params)
        except TypeError as e:
            raise DataFormatError(f"preprocessing step {d['name']!r}: bad parameters {params!r:.200}: {e}") from None
        state = d.get("state")
        if state is not None:
            missing = {"axis_", "n_features_in_", *klass._state} - set(state)
            if missing:
                raise DataFormatError(f"preprocessing step {d['name']!r}: state lacks {sorted(missing)}")
            for k, v in _decode(state).items():
                setattr(step, k, v)
            step.n_features_in_ = int(step.n_features_in_)
        return step
