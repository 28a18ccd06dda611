"""Split properties: stratified, disjoint, covering, grouped without leakage, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from scai.data import Spectra, official_split, train_val_test_split
from scai.errors import DataValueError, LabelError


def _check_partition(parts: tuple[np.ndarray, ...], n: int) -> None:
    allidx = np.concatenate(parts)
    assert allidx.size == n and np.array_equal(np.sort(allidx), np.arange(n))


def test_stratified_proportions_disjoint_cover() -> None:
    y = np.repeat(np.arange(5), 40)
    tr, va, te = train_val_test_split(y, seed=3)
    _check_partition((tr, va, te), y.size)
    assert (tr.size, va.size, te.size) == (160, 20, 20)
    for part, k in ((tr, 32), (va, 4), (te, 4)):
        assert np.bincount(y[part], minlength=5).tolist() == [k] * 5


def test_seed_determinism() -> None:
    y = np.repeat(np.arange(3), 20)
    a = train_val_test_split(y, seed=1)
    b = train_val_test_split(y, seed=1)
    c = train_val_test_split(y, seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[2], c[2])


def test_grouped_no_leakage() -> None:
    y = np.repeat(np.arange(3), 40)
    groups = np.repeat(np.arange(30), 4)  # 10 physical samples per class, 4 replicates each
    s = Spectra(np.zeros((120, 2)), [0.0, 1.0], y, ("a", "b", "c"), groups=groups)
    tr, va, te = train_val_test_split(s, seed=0)
    _check_partition((tr, va, te), 120)
    sets = [set(groups[p]) for p in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert va.size > 0 and te.size > 0


def test_zero_val_ratio() -> None:
    y = np.repeat(np.arange(2), 10)
    tr, va, te = train_val_test_split(y, ratios=(0.8, 0.0, 0.2))
    assert va.size == 0 and te.size == 4


def test_too_few_samples_named() -> None:
    y = np.array([0] * 10 + [1] * 2)
    s = Spectra(np.zeros((12, 2)), [0.0, 1.0], y, ("common", "rare"))
    with pytest.raises(LabelError, match="class 'rare' has 2 sample"):
        train_val_test_split(s)


def test_bad_ratios() -> None:
    with pytest.raises(DataValueError, match="sum to 1"):
        train_val_test_split(np.zeros(10), ratios=(0.5, 0.1, 0.1))


def test_official_split() -> None:
    y = np.repeat(np.arange(3), 20)
    train = np.arange(0, 60, 2)
    test = np.arange(1, 60, 2)
    s = Spectra(np.zeros((60, 2)), [0.0, 1.0], y, ("a", "b", "c"), train_idx=train, test_idx=test)
    tr, va, te = official_split(s, val_fraction=0.2, seed=0)
    assert np.array_equal(te, test) and np.array_equal(np.sort(np.concatenate([tr, va])), train)
    assert np.bincount(y[va], minlength=3).tolist() == [2, 2, 2]
    with pytest.raises(DataValueError, match="no official split"):
        official_split(Spectra(np.zeros((2, 2)), [0.0, 1.0]))
