"""scai.data.frames: the axis in a DataFrame's column names, matched by name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scai.data.frames import align_columns, column_axis, frame_input, split_frame
from scai.errors import AxisError

pd = pytest.importorskip("pandas")

AXIS = np.linspace(400.0, 1800.0, 12)


def _frame(axis: np.ndarray = AXIS, text: bool = True) -> pd.DataFrame:
    X = np.random.default_rng(0).normal(size=(3, axis.size))
    return pd.DataFrame(X, columns=[f"{v:.6g}" if text else float(v) for v in axis])


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(AXIS.size))), st.booleans())
def test_helpers_are_invariant_to_column_order(order: list[int], text: bool) -> None:
    df = _frame(text=text)
    shuffled = df.iloc[:, order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "axis is not monotonic; columns reordered"
        values, axis = split_frame(shuffled)
    ref, ref_axis = split_frame(df)
    np.testing.assert_array_equal(values, ref)
    np.testing.assert_allclose(axis, ref_axis)
    np.testing.assert_array_equal(align_columns(shuffled, AXIS), df.to_numpy())
    X, ax = frame_input(shuffled, target_axis=AXIS)
    np.testing.assert_array_equal(X, df.to_numpy())
    np.testing.assert_array_equal(ax, AXIS)


def test_split_frame_passes_arrays_through() -> None:
    X = np.ones((2, 3))
    assert split_frame(X)[0] is X and split_frame(X)[1] is None


def test_default_labels_are_no_axis_and_text_names_warn() -> None:
    assert column_axis(pd.DataFrame(np.ones((1, 4)))) is None
    with pytest.warns(UserWarning, match="not all numeric"):
        assert column_axis(pd.DataFrame(np.ones((1, 2)), columns=["a", "400"])) is None


def test_align_columns_names_missing_columns() -> None:
    df = _frame().drop(columns=["400", "527.273"])
    with pytest.raises(AxisError, match=r"2 of the 12 axis columns are missing \(400, 527.273\)"):
        align_columns(df, AXIS)


def test_align_columns_warns_about_extra_columns() -> None:
    df = _frame()
    df["2000"] = 0.0
    with pytest.warns(UserWarning, match="1 column\\(s\\) are not on the axis .*'2000'"):
        X = align_columns(df, AXIS)
    assert X.shape == (3, AXIS.size)


def test_duplicate_names_are_refused() -> None:
    df = pd.DataFrame(np.ones((1, 3)), columns=["400", "400.0", "500"])
    with pytest.raises(AxisError, match="duplicate axis value 400"):
        split_frame(df)


def test_frame_input_resamples_other_axes_by_returning_their_axis() -> None:
    other = AXIS + 3.0
    _, ax = frame_input(_frame(other), target_axis=AXIS)
    np.testing.assert_allclose(ax, other, rtol=1e-5)
    _, ax = frame_input(_frame(), axis=np.arange(12.0))
    np.testing.assert_array_equal(ax, np.arange(12.0))
