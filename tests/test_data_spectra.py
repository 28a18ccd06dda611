"""The Spectra container: coercion, validation, helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scai.data import Spectra, sort_class_names
from scai.errors import AxisError, DataValueError, LabelError


def _s(**kw: object) -> Spectra:
    base = dict(X=np.arange(12).reshape(4, 3), axis=[1.0, 2.0, 3.0], y=[0, 1, 1, 0], class_names=("a", "b"))
    base.update(kw)
    return Spectra(**base)  # type: ignore[arg-type]


def test_coercion_and_helpers() -> None:
    s = _s(groups=np.array(["g1", "g1", "g2", "g2"]))
    assert s.X.dtype == np.float32 and s.axis.dtype == np.float64 and s.y.dtype == np.int64
    assert (s.n_samples, s.n_points, s.n_classes) == (4, 3, 2)
    assert s.labels.tolist() == ["a", "b", "b", "a"]
    sub = s.subset([2, 3])
    assert sub.X.tolist() == [[6, 7, 8], [9, 10, 11]] and sub.groups.tolist() == ["g2", "g2"]
    assert s.subset(np.array([True, False, False, True])).y.tolist() == [0, 0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.X = np.zeros((1, 3))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"X": np.ones(3)}, DataValueError, "must be 2-D"),
        ({"axis": [1.0, 2.0]}, AxisError, r"axis has shape \(2,\), expected \(3,\)"),
        ({"axis": [3.0, 2.0, 1.0]}, AxisError, "strictly increasing"),
        ({"y": [0, 1, 2, 0]}, LabelError, "class index 2 outside 0..1"),
        ({"y": [0, 1]}, LabelError, r"y has shape \(2,\), expected \(4,\)"),
        ({"groups": [1, 2]}, DataValueError, "groups has shape"),
        ({"train_idx": [0, 9]}, DataValueError, "train_idx holds indices outside"),
        ({"class_names": ("a", "a")}, LabelError, "duplicates"),
    ],
)
def test_validation(kw: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        _s(**kw)


def test_sort_class_names_numeric_aware() -> None:
    assert sort_class_names(["10", "2", "b", "1", "a"]) == ("1", "2", "10", "a", "b")
