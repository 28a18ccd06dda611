"""Seeded, stratified (and optionally grouped) train/validation/test splits.

Grouped splits keep all replicates of one physical sample in one part; random splits of
replicated data measure replicate recognition, not generalisation (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scai.data.spectra import Spectra
from scai.errors import DataValueError, LabelError

__all__ = ["train_val_test_split", "official_split"]

Split = tuple[np.ndarray, np.ndarray, np.ndarray]


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3:
        raise DataValueError(f"ratios={tuple(ratios)} must have 3 entries (train, val, test)")
    tr, va, te = (float(r) for r in ratios)
    if tr <= 0 or va < 0 or te < 0 or abs(tr + va + te - 1.0) > 1e-6:
        raise DataValueError(f"ratios={tuple(ratios)} must be train > 0, val >= 0, test >= 0 and sum to 1")
    return tr, va, te


def _check_counts(y: np.ndarray, parts: int, names: Sequence[str] | None, what: str) -> None:
    values, counts = np.unique(y, return_counts=True)
    for v, k in zip(values, counts):
        if k < parts:
            name = names[int(v)] if names is not None and len(names) > int(v) else str(v)
            raise LabelError(
                f"class {name!r} has {int(k)} sample(s), too few for {what} ({parts} non-empty parts need at least {parts})"
            )


# scikit-learn is imported where a split is made, not with scai.data: reading files (the edge,
# the Ray read tasks, the CLI's start) then does not pay for it (~1 s with SciPy's stats)


def _stratified(idx: np.ndarray, y: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    try:
        a, b = train_test_split(idx, test_size=size, stratify=y[idx], random_state=seed)
    except ValueError as e:
        raise LabelError(f"cannot split stratified with fraction {size:.3g}: {e}") from None
    return np.sort(a), np.sort(b)


def _grouped(idx: np.ndarray, y: np.ndarray, groups: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, int(round(1.0 / size)))
    n_groups = np.unique(groups[idx]).size
    if n_groups < n_splits:
        raise LabelError(f"only {n_groups} groups; a grouped split with fraction {size:.3g} needs at least {n_splits}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, hold = next(cv.split(idx, y[idx], groups[idx]))
    return np.sort(idx[keep]), np.sort(idx[hold])


def train_val_test_split(
    spectra_or_y: Spectra | np.ndarray | Sequence[int],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: np.ndarray | Sequence[object] | None = None,
) -> Split:
    """Split rows into (train, val, test) index arrays, stratified by class and seeded.

    With ``groups`` (or ``Spectra.groups``) whole groups go to one part (StratifiedGroupKFold:
    the first fold of ``round(1/ratio)`` folds is held out), so proportions are approximate.
    A part with ratio 0 is empty.

    Raises
    ------
    LabelError
        When a class has fewer samples than non-empty parts, or too few groups.
    """
    if isinstance(spectra_or_y, Spectra):
        if spectra_or_y.y is None:
            raise LabelError(f"{spectra_or_y.source}: cannot stratify an unlabelled set")
        y = spectra_or_y.y
        names: Sequence[str] | None = spectra_or_y.class_names
        if groups is None:
            groups = spectra_or_y.groups
    else:
        y = np.asarray(spectra_or_y)
        names = None
    if y.ndim != 1:
        raise DataValueError(f"y must be 1-D, got shape {y.shape}")
    tr, va, te = _check_ratios(ratios)
    parts = 1 + (va > 0) + (te > 0)
    idx = np.arange(y.size)
    empty = np.empty(0, dtype=np.int64)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise DataValueError(f"groups has shape {groups.shape}, expected {y.shape}")
        rest, test = _grouped(idx, y, groups, te, seed) if te > 0 else (idx, empty)
        train, val = _grouped(rest, y, groups, va / (tr + va), seed) if va > 0 else (rest, empty)
    else:
        _check_counts(y, parts, names, f"a split with ratios {tuple(ratios)}")
        rest, test = _stratified(idx, y, te, seed) if te > 0 else (idx, empty)
        train, val = _stratified(rest, y, va / (tr + va), seed) if va > 0 else (rest, empty)
    return train.astype(np.int64), val.astype(np.int64), test.astype(np.int64)


def official_split(spectra: Spectra, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """The file's official train/test split, with a stratified validation part carved from train.

    This is the UCR protocol of the datasets README: official train/test, ``val_fraction`` of
    train held out (seeded, stratified) for early stopping and calibration.
    """
    if spectra.train_idx is None or spectra.test_idx is None:
        raise DataValueError(f"{spectra.source}: no official split (train_idx/test_idx); use train_val_test_split")
    if spectra.y is None:
        raise LabelError(f"{spectra.source}: cannot carve a stratified validation part from unlabelled data")
    if not 0 <= val_fraction < 1:
        raise DataValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    train = np.sort(spectra.train_idx)
    test = np.sort(spectra.test_idx)
    if val_fraction == 0:
        return train, np.empty(0, dtype=np.int64), test
    _check_counts(spectra.y[train], 2, spectra.class_names, f"a validation part of {val_fraction:g} of train")
    tr, va = _stratified(train, spectra.y, val_fraction, seed)
    return tr, va, test
