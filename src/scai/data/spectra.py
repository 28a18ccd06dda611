"""The ``Spectra`` container every stage of scai passes around."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scai.errors import AxisError, DataValueError, LabelError

__all__ = ["Spectra", "validate_training", "sort_class_names"]


def _name_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def sort_class_names(names: Iterable[Any]) -> tuple[str, ...]:
    """Sort label names numeric-aware ("2" before "10"; numbers before words).

    Labels read from files are strings; sorting them as text would put class "10" before "2"
    and silently permute class indices between a numeric and a text export of one dataset.
    """
    return tuple(sorted({str(n) for n in names}, key=_name_key))


@dataclass(frozen=True)
class Spectra:
    """A set of spectra on one shared axis, with optional labels and metadata.

    Arrays are coerced to the documented dtypes on construction (``X`` float32, ``axis``
    float64, ``y`` int64) and shapes are checked, so every later stage can rely on them.

    Parameters
    ----------
    X : ndarray of shape (n, W)
        Intensities, one spectrum per row.
    axis : ndarray of shape (W,)
        Strictly increasing spectral axis (physical units when known, else ``0..W-1``).
    y : ndarray of shape (n,) or None
        Class indices into ``class_names``; None when unlabelled.
    class_names : tuple of str
        Names of the classes; ``()`` when unlabelled.
    groups : ndarray of shape (n,) or None
        Replicate/subject ids, kept together by grouped splits.
    axis_unit : str
        ``"cm-1"``, ``"nm"``, ``"index"``, ...
    source : str
        File path or dataset name, used in error messages.
    train_idx, test_idx : ndarray or None
        Official split carried by the file (UCR sets).
    ids : ndarray of shape (n,) or None
        Sample ids (a file's ``id_column``), carried into prediction output.
    """

    X: np.ndarray
    axis: np.ndarray
    y: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    groups: np.ndarray | None = None
    axis_unit: str = "index"
    source: str = "<memory>"
    train_idx: np.ndarray | None = field(default=None, repr=False)
    test_idx: np.ndarray | None = field(default=None, repr=False)
    ids: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        src = self.source
        X = np.asarray(self.X)
        if X.ndim != 2:
            raise DataValueError(f"{src}: X must be 2-D (n_samples, n_points), got shape {X.shape}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        n, w = X.shape
        axis = np.asarray(self.axis, dtype=np.float64)
        if axis.shape != (w,):
            raise AxisError(f"{src}: axis has shape {axis.shape}, expected ({w},) to match X")
        if not np.all(np.isfinite(axis)):
            raise AxisError(f"{src}: axis holds NaN/inf values")
        if w > 1 and not np.all(np.diff(axis) > 0):
            raise AxisError(f"{src}: axis must be strictly increasing (readers sort it for you)")
        names = tuple(str(c) for c in self.class_names)
        if len(set(names)) != len(names):
            raise LabelError(f"{src}: class_names holds duplicates: {names}")
        y = self.y
        if y is not None:
            y = np.asarray(y)
            if y.shape != (n,):
                raise LabelError(f"{src}: y has shape {y.shape}, expected ({n},)")
            if y.size and not np.issubdtype(y.dtype, np.integer):
                raise LabelError(f"{src}: y must hold integer class indices, got dtype {y.dtype}")
            y = y.astype(np.int64)
            if y.size and (y.min() < 0 or y.max() >= len(names)):
                raise LabelError(
                    f"{src}: y holds class index {int(y.max() if y.max() >= len(names) else y.min())}"
                    f" outside 0..{len(names) - 1} (class_names has {len(names)} entries)"
                )
        groups = self.groups
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n,):
                raise DataValueError(f"{src}: groups has shape {groups.shape}, expected ({n},)")
        ids = self.ids
        if ids is not None:
            ids = np.asarray(ids)
            if ids.shape != (n,):
                raise DataValueError(f"{src}: ids has shape {ids.shape}, expected ({n},)")
        split = {}
        for key in ("train_idx", "test_idx"):
            idx = getattr(self, key)
            if idx is not None:
                idx = np.asarray(idx, dtype=np.int64).ravel()
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    raise DataValueError(f"{src}: {key} holds indices outside 0..{n - 1}")
            split[key] = idx
        for key, value in (("X", X), ("axis", axis), ("y", y), ("class_names", names),
                           ("groups", groups), ("ids", ids), *split.items()):
            object.__setattr__(self, key, value)

    @property
    def n_samples(self) -> int:
        """Number of spectra (rows)."""
        return int(self.X.shape[0])

    @property
    def n_points(self) -> int:
        """Number of points per spectrum (columns)."""
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes named in ``class_names`` (0 when unlabelled)."""
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray | None:
        """Class name of each row, or None when unlabelled."""
        if self.y is None:
            return None
        return np.asarray(self.class_names, dtype=object)[self.y] if self.n_classes else np.empty(0, object)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Spectra:
        """Rows ``idx`` (indices or boolean mask) as a new ``Spectra``.

        The official split refers to the full set's rows, so it is dropped from the subset.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.n_samples,):
                raise DataValueError(f"{self.source}: boolean mask has shape {idx.shape}, expected ({self.n_samples},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return replace(
            self,
            X=self.X[idx],
            y=None if self.y is None else self.y[idx],
            groups=None if self.groups is None else self.groups[idx],
            ids=None if self.ids is None else self.ids[idx],
            train_idx=None,
            test_idx=None,
        )


def validate_training(spectra: Spectra) -> None:
    """Refuse a set that cannot train a classifier: unlabelled, < 2 classes, a class with < 2 rows.

    Raises
    ------
    LabelError
        Naming the offending class and its count.
    """
    if spectra.y is None:
        raise LabelError(f"{spectra.source}: no labels; training needs a label column (--label-column)")
    counts = np.bincount(spectra.y, minlength=spectra.n_classes)
    present = int(np.count_nonzero(counts))
    if present < 2:
        raise LabelError(
            f"{spectra.source}: training needs at least 2 classes, found {present} "
            f"({', '.join(repr(c) for c, k in zip(spectra.class_names, counts) if k) or 'none'})"
        )
    for name, k in zip(spectra.class_names, counts):
        if k < 2:
            raise LabelError(
                f"{spectra.source}: class {name!r} has {int(k)} sample(s); every class needs at least 2"
            )
