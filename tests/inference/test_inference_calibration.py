"""Temperature scaling and the softmax helper."""

from __future__ import annotations

import numpy as np
import pytest

from scai.errors import DataValueError, LabelError
from scai.inference import fit_temperatures, softmax
from scai.inference.calibration import nll


def test_softmax_hand_computed_and_stable():
    p = softmax(np.array([0.0, np.log(3.0)]))
    np.testing.assert_allclose(p, [0.25, 0.75])
    p = softmax(np.array([1000.0, 1000.0 + np.log(3.0)]))
    np.testing.assert_allclose(p, [0.25, 0.75])
    # temperature 2 halves the logits: [0, ln 9 / 2 = ln 3]
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(9.0)]), 2.0), [0.25, 0.75])


def test_softmax_per_exit_temperature():
    z = np.zeros((2, 1, 2))
    z[:, 0, 1] = np.log(9.0)
    p = softmax(z, np.array([1.0, 2.0]))
    np.testing.assert_allclose(p[0, 0], [0.1, 0.9])
    np.testing.assert_allclose(p[1, 0], [0.25, 0.75])
    with pytest.raises(DataValueError, match="temperature"):
        softmax(z, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(DataValueError, match="temperature"):
        softmax(z, 0.0)


def test_fit_temperatures_recovers_known_temperature():
    rng = np.random.default_rng(0)
    n, c = 2000, 4
    true_logits = rng.normal(size=(n, c)) * 2.0
    y = np.array([rng.choice(c, p=p) for p in softmax(true_logits)])
    # exit 0 over-confident by x3, exit 1 under-confident by x0.5, exit 2 calibrated
    val_logits = np.stack([true_logits * 3.0, true_logits * 0.5, true_logits])
    val_logits.setflags(write=False)
    t = fit_temperatures(val_logits, y)
    np.testing.assert_allclose(t, [3.0, 0.5, 1.0], rtol=0.1)
    for k in range(3):
        assert nll(val_logits[k], y, t[k]) <= nll(val_logits[k], y, 1.0) + 1e-12


def test_fit_temperatures_never_changes_predictions():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 50, 3))
    y = rng.integers(0, 3, 50)
    t = fit_temperatures(z, y)
    np.testing.assert_array_equal(softmax(z, t).argmax(-1), z.argmax(-1))


def test_fit_temperatures_errors():
    z = np.zeros((2, 5, 3))
    with pytest.raises(LabelError, match="val_y has shape"):
        fit_temperatures(z, np.zeros(4, dtype=int))
    with pytest.raises(LabelError, match="class indices"):
        fit_temperatures(z, np.full(5, 3))
    with pytest.raises(DataValueError, match="val_logits has shape"):
        fit_temperatures(z[0], np.zeros(5, dtype=int))
