"""Conformal prediction sets: coverage on synthetic data, agreement with MAPIE, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mapie")

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError
from scai.inference.conformal import ConformalSets, GivenProba


def _draw(rng, n, C=4, n_exits=2):
    """Probabilities whose labels are drawn from them (a calibrated classifier), per exit."""
    sharp = [0.5, 2.0][:n_exits]
    P = np.stack([rng.dirichlet(np.full(C, a), size=n) for a in sharp])
    y = np.array([rng.choice(C, p=p) for p in P[-1]])
    P[0] = 0.5 * P[0] + 0.5 * P[-1]  # exit 0: noisier, not calibrated (the guarantee needs neither)
    return P, y


def test_coverage_is_nominal_on_exchangeable_data():
    rng = np.random.default_rng(0)
    P_cal, y_cal = _draw(rng, 1000)
    P_te, y_te = _draw(rng, 5000)
    cs = ConformalSets((0.9, 0.95)).fit(P_cal, y_cal)
    for level in (0.9, 0.95):
        sets = cs.predict_sets(P_te, level)
        cover = sets[:, np.arange(len(y_te)), y_te].mean(axis=1)
        assert np.all(np.abs(cover - level) < 0.02), (level, cover)
    assert cs.predict_sets(P_te, 0.95).sum(-1).mean() >= cs.predict_sets(P_te, 0.9).sum(-1).mean()


def test_sets_equal_mapie_predict_set():
    from mapie.classification import SplitConformalClassifier

    rng = np.random.default_rng(1)
    P, y = _draw(rng, 300, n_exits=1)
    cs = ConformalSets((0.8, 0.9)).fit(P, y)
    scc = SplitConformalClassifier(estimator=GivenProba(4).fit(), confidence_level=[0.8, 0.9], prefit=True)
    scc.conformalize(P[0], y)
    P_new, _ = _draw(rng, 200, n_exits=1)
    _, mapie_sets = scc.predict_set(P_new[0])
    for j, level in enumerate((0.8, 0.9)):
        np.testing.assert_array_equal(cs.predict_sets(P_new, level)[0], mapie_sets[:, :, j])


@pytest.mark.filterwarnings("ignore:.*less labels than your training:UserWarning")
def test_an_unsure_spectrum_gets_an_empty_set_and_few_calibration_spectra_give_every_class():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 10, size=400)
    P = np.full((1, 400, 10), 0.0)
    P[0] = rng.dirichlet(np.ones(10), size=400) * 0.2
    P[0, np.arange(400), y] += 0.8  # a confident classifier: the true class gets >= 0.8
    cs = ConformalSets((0.9,)).fit(P, y)
    flat = np.full((1, 1, 10), 0.1)
    assert cs.predict_sets(flat, 0.9).sum() == 0  # no class plausible: unknown
    small = ConformalSets((0.9, 0.95)).fit(P[:, :12], y[:12])
    assert small.too_few_ == [0.95]
    assert small.predict_sets(P[:, :5], 0.95).all()


def test_round_trip_and_errors():
    rng = np.random.default_rng(3)
    P, y = _draw(rng, 200)
    cs = ConformalSets().fit(P, y)
    back = ConformalSets.from_dict(json.loads(json.dumps(cs.to_dict())))
    np.testing.assert_array_equal(back.predict_sets(P, 0.95), cs.predict_sets(P, 0.95))
    with pytest.raises(ConfigError, match="not calibrated"):
        cs.predict_sets(P, 0.8)
    with pytest.raises(NotFittedError):
        ConformalSets().predict_sets(P)
    with pytest.raises(DataValueError, match="Mismatch"):
        ConformalSets().fit(P, y[:-1])
    with pytest.raises(DataValueError, match="n_exits"):
        ConformalSets().fit(P[0], y)
    with pytest.raises(ConfigError, match="confidence_levels"):
        ConformalSets((1.5,)).fit(P, y)
    with pytest.raises(ModelFileError):
        ConformalSets.from_dict({"quantiles": [[0.5]]})
