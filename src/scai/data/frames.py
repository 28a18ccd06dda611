"""pandas DataFrames as spectra: numeric column names are the spectral axis.

A table exported by instrument software or built with pandas names its columns by wavenumber
(``"400.0"``, ``401.5``, ...). These helpers read that axis from the names so that cropping,
resampling and a model's axis check see the real wavenumbers, and so that reordered columns are
matched by name instead of by position. pandas is never imported: anything with ``columns``,
``index`` and ``to_numpy`` counts as a frame, so the edge runtime needs no pandas.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from scai.data._checks import Columns, sort_axis
from scai.errors import AxisError

__all__ = [
    "is_frame",
    "column_axis",
    "frame_parts",
    "split_frame",
    "match_axis",
    "align_columns",
    "frame_input",
    "frame_like",
]

#: A column name matches an axis value within this share of the axis' smallest spacing: names are
#: printed decimals ("527.273" for 527.2727...), yet can never be taken for a neighbouring point.
_MATCH_SHARE = 0.01


def is_frame(X: Any) -> bool:
    """True for a pandas DataFrame (or anything shaped like one); never imports pandas."""
    return hasattr(X, "columns") and hasattr(X, "index") and hasattr(X, "to_numpy") and getattr(X, "ndim", 2) == 2


def _number(name: Any) -> float | None:
    if isinstance(name, (bool, np.bool_)):
        return None
    try:
        value = float(str(name).strip()) if isinstance(name, str) else float(name)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def column_axis(frame: Any, who: str = "X", *, warn: bool = True) -> np.ndarray | None:
    """The axis written in ``frame``'s column names, or None.

    None for pandas' default labels ``0..W-1`` (a frame built from a bare array names nothing)
    and for names that are not all numbers; the latter is warned about, because the point index
    then stands in for the axis and a wavenumber crop would cut at the wrong place.
    """
    names = list(frame.columns)
    values = [_number(c) for c in names]
    if any(v is None for v in values):
        if warn:
            bad = next(c for c, v in zip(names, values) if v is None)
            warnings.warn(
                f"{who}: column names are not all numeric (e.g. {bad!r}); using the point index as axis "
                "(name the columns by wavenumber, or pass axis=)",
                UserWarning,
                stacklevel=3,
            )
        return None
    axis = np.asarray(values, dtype=np.float64)
    is_default = all(isinstance(c, (int, np.integer)) for c in names) and np.array_equal(axis, np.arange(axis.size))
    return None if is_default else axis


def frame_parts(X: Any, who: str = "X", *, warn: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """``(values, axis, labels)`` of a frame, columns in increasing axis order.

    ``axis`` is None when the names are not an axis (see :func:`column_axis`, which warns unless
    ``warn=False``); ``labels`` are the column labels in the order of ``values``. Duplicate names are an :class:`~scai.errors.AxisError`.
    """
    values = X.to_numpy()
    labels = list(X.columns)
    axis = column_axis(X, who, warn=warn)
    if axis is None:
        return values, None, labels
    with warnings.catch_warnings():
        if not warn:  # matching a fitted axis by name: a reordering is expected, not news
            warnings.simplefilter("ignore", UserWarning)
        order = sort_axis(axis, who, Columns(None, [str(c) for c in labels]))
    if order is not None:
        values, axis, labels = values[:, order], axis[order], [labels[i] for i in order]
    return values, axis, labels


def split_frame(X: Any, who: str = "X") -> tuple[Any, np.ndarray | None]:
    """``(values, axis)`` of a frame whose column names are numbers; non-frames pass through as ``(X, None)``.

    Columns are put in increasing axis order (with a warning when they were not), so two frames
    holding the same columns in different orders give the same array; duplicate names are an
    :class:`~scai.errors.AxisError`. The input is never modified.
    """
    if not is_frame(X):
        return X, None
    values, axis, _ = frame_parts(X, who)
    return values, axis


def match_axis(names: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value of ``axis``, the index into ``names`` of the name that matches it, and whether one does."""
    names = np.asarray(names, dtype=np.float64)
    axis = np.asarray(axis, dtype=np.float64)
    if names.size == 0:
        return np.zeros(axis.size, dtype=np.int64), np.zeros(axis.size, dtype=bool)
    spacing = np.diff(np.sort(axis))
    tol = _MATCH_SHARE * (float(spacing.min()) if spacing.size and spacing.min() > 0 else max(abs(float(axis[0])), 1.0))
    order = np.argsort(np.where(np.isnan(names), np.inf, names), kind="stable")
    sorted_names = names[order]
    right = np.clip(np.searchsorted(sorted_names, axis), 0, names.size - 1)
    left = np.clip(right - 1, 0, names.size - 1)
    pick = np.where(np.abs(sorted_names[left] - axis) < np.abs(sorted_names[right] - axis), left, right)
    found = np.abs(sorted_names[pick] - axis) <= tol
    return order[pick], found


def align_columns(frame: Any, axis: np.ndarray, who: str = "X") -> np.ndarray:
    """``frame``'s values with columns picked by name in the order of ``axis``.

    Raises :class:`~scai.errors.AxisError` naming the missing axis values; columns the axis does
    not use are left out with a warning that names them (nothing is dropped silently).
    """
    axis = np.asarray(axis, dtype=np.float64)
    names = list(frame.columns)
    values = np.array([np.nan if (v := _number(c)) is None else v for c in names], dtype=np.float64)
    index, found = match_axis(values, axis)
    if not found.all():
        missing = axis[~found]
        shown = ", ".join(f"{v:g}" for v in missing[:5]) + (", ..." if missing.size > 5 else "")
        raise AxisError(
            f"{who}: {missing.size} of the {axis.size} axis columns are missing ({shown}); "
            f"the frame has {len(names)} columns named {_range_text(values)}"
        )
    extra = np.setdiff1d(np.arange(len(names)), index)
    if extra.size:
        shown = ", ".join(repr(names[i]) for i in extra[:5]) + (", ..." if extra.size > 5 else "")
        warnings.warn(f"{who}: {extra.size} column(s) are not on the axis and were left out: {shown}", UserWarning, stacklevel=3)
    return frame.to_numpy()[:, index]


def _range_text(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "with no numbers"
    return f"{finite.min():g}..{finite.max():g}"


def frame_input(X: Any, axis: Any = None, target_axis: np.ndarray | None = None, who: str = "X") -> tuple[Any, Any]:
    """``(X, axis)`` for an estimator's ``fit``/``predict``, reading a frame's axis from its names.

    - not a frame, or ``axis`` given explicitly: ``X`` (as an array if a frame) and ``axis`` unchanged;
    - a frame whose names hold every value of ``target_axis`` (a fitted model's axis): the
      columns picked by name, so reordered columns give the same predictions;
    - otherwise a frame with numeric names: its sorted values and the axis of the names (a model
      then resamples or refuses by overlap, :func:`scai.preprocessing.align_to_axis`);
    - names that are not numbers: the values and no axis, with a warning.
    """
    if not is_frame(X):
        return X, axis
    if axis is not None:
        return X.to_numpy(), axis
    if target_axis is not None:
        names = column_axis(X, who, warn=False)
        if names is not None:
            target = np.asarray(target_axis, dtype=np.float64)
            if match_axis(names, target)[1].all():
                return align_columns(X, target, who), target
    return split_frame(X, who)


def frame_like(template: Any, values: np.ndarray, labels: list[Any], axis: np.ndarray, input_axis: np.ndarray) -> Any:
    """``values`` as a frame of ``template``'s type and index, its columns named by ``axis``.

    ``labels`` name ``input_axis`` point by point (see :func:`frame_parts`). Output points still
    on the input axis keep their labels, so a crop keeps ``df.columns`` as they were; new axis
    values (a resample) are named like the input: text names as ``f"{v:g}"``, others as floats.
    """
    if axis.shape == input_axis.shape and np.array_equal(axis, input_axis):
        columns = list(labels)
    else:
        pos = np.clip(np.searchsorted(input_axis, axis), 0, max(input_axis.size - 1, 0))
        if input_axis.size and np.array_equal(input_axis[pos], axis):
            columns = [labels[int(i)] for i in pos]
        elif labels and all(isinstance(c, str) for c in labels):
            columns = [f"{v:g}" for v in axis]
        else:
            columns = [float(v) for v in axis]
    return type(template)(values, index=template.index, columns=columns)
