"""Shared validation for every reader: axis order, duplicates, non-finite values, labels.

Kept apart from the parsers so CSV, NumPy, HDF5 and JCAMP input fail with the same messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scai.data.spectra import sort_class_names
from scai.errors import AxisError, ConfigError, DataValueError, LabelError

NAN_POLICIES = ("raise", "interpolate")


@dataclass
class Columns:
    """Where each feature column came from, for error messages.

    ``numbers`` are 1-based file columns (None for binary formats, where the 0-based feature
    index is reported instead); ``names`` the header cells (None without a header).
    """

    numbers: np.ndarray | None = None
    names: Sequence[str] | None = None

    def describe(self, j: int, axis: np.ndarray) -> str:
        if self.numbers is None:
            return f"column {j} (axis value {axis[j]:g})"
        num = int(self.numbers[j])
        if self.names is not None:
            return f"column {num} ({self.names[j]!r})"
        return f"column {num}"

    def permuted(self, order: np.ndarray) -> Columns:
        return Columns(
            None if self.numbers is None else np.asarray(self.numbers)[order],
            None if self.names is None else [self.names[i] for i in order],
        )


def row_text(source: str, row: int, line: int | None) -> str:
    """``"file: row 3 (line 4)"``: rows are 1-based data rows, lines are physical file lines."""
    return f"{source}: row {row}" + (f" (line {line})" if line is not None else "")


def check_nan_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy={nan_policy!r} is not one of {', '.join(map(repr, NAN_POLICIES))}")


def sort_axis(axis: np.ndarray, source: str, cols: Columns) -> np.ndarray | None:
    """Refuse duplicate axis values; return the column order that sorts the axis, or None.

    A non-increasing axis is sorted (with a warning) because every step downstream (crop,
    resample, integrals) assumes increasing order; decreasing FTIR/JCAMP axes are common.
    """
    axis = np.asarray(axis, dtype=np.float64)
    if not np.all(np.isfinite(axis)):
        j = int(np.flatnonzero(~np.isfinite(axis))[0])
        raise AxisError(f"{source}: axis value of {cols.describe(j, axis)} is not finite")
    order = np.argsort(axis, kind="stable")
    sorted_axis = axis[order]
    dup = np.flatnonzero(np.diff(sorted_axis) == 0)
    if dup.size:
        a, b = int(order[dup[0]]), int(order[dup[0] + 1])
        raise AxisError(
            f"{source}: duplicate axis value {sorted_axis[dup[0]]:g} in {cols.describe(a, axis)} "
            f"and {cols.describe(b, axis)} ({dup.size} duplicate(s)); each axis value must be unique"
        )
    if axis.size > 1 and np.any(np.diff(axis) < 0):
        kind = "decreasing" if np.all(np.diff(axis) < 0) else "not monotonic"
        warnings.warn(f"{source}: axis is {kind}; columns reordered to increasing axis", UserWarning, stacklevel=4)
        return order
    return None


def fix_nonfinite(
    X: np.ndarray,
    axis: np.ndarray,
    nan_policy: str,
    source: str,
    cols: Columns,
    row_offset: int = 0,
    lines: Sequence[int] | None = None,
) -> int:
    """Refuse or interpolate NaN/inf in ``X`` in place; return how many cells were filled.

    Interpolation is linear along the axis between the nearest finite neighbours (edges take the
    nearest finite value), so a few dead pixels do not cost a whole spectrum.
    """
    bad = ~np.isfinite(X)
    if not bad.any():
        return 0
    count = int(bad.sum())
    rows = np.flatnonzero(bad.any(axis=1))
    if nan_policy == "raise":
        i = int(rows[0])
        j = int(np.flatnonzero(bad[i])[0])
        line = None if lines is None else lines[i]
        raise DataValueError(
            f"{row_text(source, row_offset + i + 1, line)}, {cols.describe(j, axis)}: "
            f"non-finite value {float(X[i, j])} ({count} non-finite cell(s) in total); "
            f"fix the file or pass nan_policy='interpolate'"
        )
    for i in rows:
        good = ~bad[i]
        if good.sum() < 2:
            line = None if lines is None else lines[int(i)]
            raise DataValueError(
                f"{row_text(source, row_offset + int(i) + 1, line)}: only {int(good.sum())} finite value(s) "
                f"out of {X.shape[1]}; cannot interpolate"
            )
        X[i, ~good] = np.interp(axis[~good], axis[good], X[i, good])
    return count


def warn_interpolated(source: str, count: int) -> None:
    if count:
        warnings.warn(
            f"{source}: interpolated {count} non-finite value(s) linearly along the axis (nan_policy='interpolate')",
            UserWarning,
            stacklevel=3,
        )


def labels_to_indices(
    labels: Sequence[str] | np.ndarray,
    source: str,
    class_names: Sequence[str] | None = None,
    row_offset: int = 0,
    lines: Sequence[int] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map label strings to class indices; names sorted numeric-aware unless given."""
    labels = [str(v) for v in labels]
    names = sort_class_names(labels) if class_names is None else tuple(str(c) for c in class_names)
    lookup = {n: i for i, n in enumerate(names)}
    try:
        y = np.fromiter((lookup[v] for v in labels), dtype=np.int64, count=len(labels))
    except KeyError:
        i = next(k for k, v in enumerate(labels) if v not in lookup)
        line = None if lines is None else lines[i]
        shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        raise LabelError(
            f"{row_text(source, row_offset + i + 1, line)}: label {labels[i]!r} is not a known class ({shown})"
        ) from None
    return y, names


def labels_from_array(
    y: np.ndarray | None, class_names: np.ndarray | Sequence[str] | None, source: str
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Turn stored ``y`` (indices or names) plus optional ``class_names`` into (indices, names)."""
    if y is None:
        return None, ()
    y = np.asarray(y).ravel()
    names = None if class_names is None else tuple(
        c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in np.asarray(class_names).ravel()
    )
    if y.dtype.kind in "USO":
        y = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in y])
        return labels_to_indices(y, source, names)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise LabelError(f"{source}: y holds non-integer values; expected class indices or names")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise LabelError(f"{source}: y has dtype {y.dtype}; expected integer class indices or strings")
    y = y.astype(np.int64)
    if names is not None:
        bad = y[(y < 0) | (y >= len(names))]
        if bad.size:
            raise LabelError(f"{source}: y holds index {int(bad[0])} outside 0..{len(names) - 1} of class_names")
        return y, names
    values, inverse = np.unique(y, return_inverse=True)
    return inverse.astype(np.int64), tuple(str(int(v)) for v in values)
