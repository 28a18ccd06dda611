"""The spectral-axis contract: put spectra measured on another axis onto a model's axis.

A model remembers the axis it was trained on. Input on another axis (another instrument, range or
resolution) is resampled when the ranges overlap enough, with a warning that states the overlap;
otherwise it is refused with both ranges in the message (DESIGN.md, "Spectral axis contract").
Shared by the estimator and the torch-free edge client.
"""

from __future__ import annotations

import warnings

import numpy as np

from scai.errors import AxisError
from scai.preprocessing.steps import Resample

__all__ = ["MIN_AXIS_OVERLAP", "align_to_axis"]

MIN_AXIS_OVERLAP = 0.9  # share of the model's axis range the input must cover


def align_to_axis(
    X: np.ndarray,
    axis: np.ndarray | None,
    target_axis: np.ndarray,
    *,
    min_overlap: float = MIN_AXIS_OVERLAP,
    owner: str = "the model",
) -> np.ndarray:
    """Return ``X`` (n, W) on ``target_axis``; resample (with a warning) or refuse.

    Without ``axis`` the input must already have ``len(target_axis)`` points.
    """
    target_axis = np.asarray(target_axis, dtype=np.float64)
    if axis is None:
        if X.shape[1] != target_axis.size:
            raise AxisError(
                f"X has {X.shape[1]} features, but {owner} is expecting {target_axis.size} features as input "
                "(points per spectrum); pass the spectral axis so the input can be resampled"
            )
        return X
    axis = np.asarray(axis, dtype=np.float64)
    if axis.shape == target_axis.shape and np.allclose(axis, target_axis):
        return X
    if axis.shape != (X.shape[1],):
        raise AxisError(f"axis has {axis.size} values but X has {X.shape[1]} points per spectrum")
    lo, hi = max(axis.min(), target_axis.min()), min(axis.max(), target_axis.max())
    span = target_axis.max() - target_axis.min()
    overlap = (hi - lo) / span if span > 0 else 0.0
    if overlap < min_overlap:
        raise AxisError(
            f"input axis {axis.min():g}..{axis.max():g} covers {max(overlap, 0):.0%} of {owner}'s axis "
            f"{target_axis.min():g}..{target_axis.max():g}; at least {min_overlap:.0%} overlap is needed"
        )
    warnings.warn(
        f"input axis {axis.min():g}..{axis.max():g} ({axis.size} points) differs from {owner}'s "
        f"{target_axis.min():g}..{target_axis.max():g} ({target_axis.size} points); resampled (overlap {overlap:.0%})",
        stacklevel=3,
    )
    return np.asarray(Resample(target_axis=target_axis).fit(X, axis=axis).transform(X), dtype=np.float32)
