"""Unknown-class scores: each checked against an independent computation, then end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError
from scai.inference.ood import (
    ExitBatch,
    MahalanobisScorer,
    UnknownDetector,
    calibrate_threshold,
    energy_score,
    msp_score,
)


def _hand_scorer() -> tuple[MahalanobisScorer, np.ndarray, np.ndarray]:
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    means = np.array([[0.0, 0.0, 0.0], [3.0, -1.0, 2.0]])
    d = {"shrinkage": "ledoit_wolf", "n_components": None, "shrinkage_value": 0.0, "classes": [0, 1],
         "means": means.tolist(), "precision": np.linalg.inv(cov).tolist(), "pca_mean": None, "pca_components": None}
    return MahalanobisScorer.from_dict(d), cov, means


def test_mahalanobis_matches_scipy_on_a_hand_covariance():
    scorer, cov, means = _hand_scorer()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3)) * 2
    VI = np.linalg.inv(cov)
    expected = np.array([[mahalanobis(x, m, VI) ** 2 for m in means] for x in X])
    np.testing.assert_allclose(scorer.distances(X), expected, rtol=1e-10)
    np.testing.assert_allclose(scorer.score(X), expected.min(axis=1), rtol=1e-10)


def test_fitted_precision_is_the_shrunk_covariance_of_class_centred_features_and_invertible_when_d_exceeds_n():
    from sklearn.covariance import OAS, LedoitWolf

    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 50))  # more features than samples: the sample covariance is singular
    y = np.repeat([0, 1, 2], 10)
    X[y == 1] += 2.0
    for kind, cls in (("ledoit_wolf", LedoitWolf), ("oas", OAS)):
        s = MahalanobisScorer(shrinkage=kind).fit(X, y)
        centred = X - np.stack([X[y == k].mean(0) for k in range(3)])[y]
        np.testing.assert_allclose(s.precision_, cls(assume_centered=True).fit(centred).precision_, rtol=1e-8)
        assert np.all(np.linalg.eigvalsh(s.precision_) > 0)
    # a far-away point scores higher than training points
    assert s.score(X[:1] + 50).item() > s.score(X).max()


def test_relative_mahalanobis_matches_scipy_minus_the_background_distance():
    scorer, cov, means = _hand_scorer()
    bg_cov = np.array([[4.0, 1.0, 0.5], [1.0, 2.0, 0.0], [0.5, 0.0, 3.0]])
    bg_mean = np.array([1.5, -0.5, 1.0])
    d = scorer.to_dict() | {"relative": True, "global_mean": bg_mean.tolist(),
                            "global_precision": np.linalg.inv(bg_cov).tolist()}
    rel = MahalanobisScorer.from_dict(json.loads(json.dumps(d)))
    X = np.random.default_rng(10).normal(size=(9, 3)) * 2
    VI, VI0 = np.linalg.inv(cov), np.linalg.inv(bg_cov)
    expected = np.array([min(mahalanobis(x, m, VI) ** 2 for m in means) - mahalanobis(x, bg_mean, VI0) ** 2 for x in X])
    np.testing.assert_allclose(rel.score(X), expected, rtol=1e-10)
    np.testing.assert_allclose(rel.distances(X), scorer.distances(X))  # per-class distances unchanged
    with pytest.raises(ModelFileError, match="background"):
        MahalanobisScorer.from_dict(d | {"global_mean": [0.0, 1.0]})


def test_relative_background_is_the_same_estimator_on_all_features():
    from sklearn.covariance import OAS, LedoitWolf

    rng = np.random.default_rng(11)
    X = rng.normal(size=(40, 60))
    y = np.repeat([0, 1], 20)
    X[y == 1, :5] += 3.0
    for kind, cls in (("oas", OAS), ("ledoit_wolf", LedoitWolf)):
        s = MahalanobisScorer(shrinkage=kind, relative=True).fit(X, y)
        ref = cls().fit(X)
        np.testing.assert_allclose(s.global_mean_, X.mean(0), rtol=1e-12)
        np.testing.assert_allclose(s.global_precision_, ref.precision_, rtol=1e-8)
    assert MahalanobisScorer(shrinkage="oas").fit(X, y).global_precision_ is None


def test_relative_mahalanobis_sees_a_near_unknown_the_plain_distance_misses():
    """A new class between two known ones, in 30 dimensions of class-free noise: the plain
    distance's chi-square spread over the noise hides it; the background term cancels that
    spread (Ren et al., 2021)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(12)

    def cloud(n: int, centre: float) -> np.ndarray:
        X = rng.normal(size=(n, 31))
        X[:, 0] += centre
        return X

    X, y = np.vstack([cloud(500, -3.0), cloud(500, 3.0)]), np.repeat([0, 1], 500)
    test = np.vstack([cloud(200, -3.0), cloud(200, 3.0), cloud(400, 0.0)])
    truth = np.r_[np.zeros(400), np.ones(400)]
    plain = roc_auc_score(truth, MahalanobisScorer(relative=False).fit(X, y).score(test))
    relative = roc_auc_score(truth, MahalanobisScorer(relative=True).fit(X, y).score(test))
    assert relative > 0.88 and plain < 0.72, (plain, relative)


def test_msp_and_energy_against_direct_formulas():
    logits = np.array([[2.0, 1.0, -1.0], [0.1, 0.1, 0.1], [10.0, -5.0, 0.0]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(msp_score(p), -p.max(1))
    np.testing.assert_allclose(energy_score(logits), -np.log(np.exp(logits).sum(1)), rtol=1e-12)
    np.testing.assert_allclose(energy_score(logits, 2.0), -2.0 * np.log(np.exp(logits / 2.0).sum(1)), rtol=1e-12)
    with pytest.raises(ConfigError, match="temperature"):
        energy_score(logits, 0.0)


def test_threshold_keeps_the_false_reject_rate():
    assert calibrate_threshold(np.arange(100.0), 0.05) == 95.0  # 4 of 100 above it
    rng = np.random.default_rng(2)
    thr = calibrate_threshold(rng.normal(size=4000), 0.05)
    fresh = rng.normal(size=20000)
    assert abs(np.mean(fresh > thr) - 0.05) < 0.01
    assert np.mean(np.arange(100.0) > calibrate_threshold(np.arange(100.0), 0.0)) == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="reject_rate"):
            calibrate_threshold([1.0, 2.0], bad)
    with pytest.raises(DataValueError):
        calibrate_threshold([], 0.05)


def _batches(rng, n, shift=0.0, n_exits=2):
    """Two classes of Gaussian features per exit; logits are linear in the features."""
    y = rng.integers(0, 2, size=n)
    feats = [rng.normal(size=(n, 6)) + 3.0 * y[:, None] + shift for _ in range(n_exits)]
    logits = np.stack([np.c_[-f.sum(1), f.sum(1) - 18.0] / 3.0 for f in feats])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return ExitBatch(logits=logits, probs=probs, features=feats), y


@pytest.mark.parametrize("score", ["msp", "energy", "mahalanobis", "relative_mahalanobis"])
def test_detector_calibrates_and_round_trips(score):
    rng = np.random.default_rng(3)
    train, y = _batches(rng, 400)
    held, _ = _batches(rng, 400)
    fresh, _ = _batches(rng, 2000)
    det = UnknownDetector(score=score, reject_rate=0.1, n_components=4).fit(train, y, held)
    rate = det.flag(fresh).mean(axis=1)
    assert det.flag(fresh).shape == (2, 2000)
    assert np.all(np.abs(rate - 0.1) < 0.04), rate
    back = UnknownDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    np.testing.assert_allclose(back.score(fresh), det.score(fresh))
    np.testing.assert_array_equal(back.flag(fresh), det.flag(fresh))


def test_mahalanobis_finds_unknowns_that_softmax_misses():
    """Far off the training features but on the confident side of the decision boundary."""
    rng = np.random.default_rng(4)
    train, y = _batches(rng, 400)
    held, _ = _batches(rng, 400)
    far, _ = _batches(rng, 200, shift=8.0)
    maha = UnknownDetector(score="mahalanobis", n_components=None).fit(train, y, held)
    msp = UnknownDetector(score="msp").fit(None, None, held)
    assert maha.flag(far).mean() > 0.99
    assert msp.flag(far).mean() < 0.2


def test_equal_scorers_are_stored_once_and_load_back():
    """A cascade's exit 0 and MiniRocket exit score the same features: one stored scorer."""
    rng = np.random.default_rng(13)
    train, y = _batches(rng, 200, n_exits=3)
    held, _ = _batches(rng, 100, n_exits=3)
    train.features[1], held.features[1] = train.features[0], held.features[0]
    det = UnknownDetector(n_components=4).fit(train, y, held)
    d = json.loads(json.dumps(det.to_dict()))
    assert d["scorers"][1] == {"same_as": 0} and "means" in d["scorers"][2]
    back = UnknownDetector.from_dict(d)
    np.testing.assert_allclose(back.score(held), det.score(held))
    for bad in ({"same_as": 2}, {"same_as": 1}, {"same_as": "0"}):
        with pytest.raises(ModelFileError, match="refers to"):
            UnknownDetector.from_dict(d | {"scorers": [d["scorers"][0], bad, d["scorers"][2]]})


def test_anchored_score_adds_exit_0s_standardised_score():
    """Exit 1's features carry nothing about the unseen class; exit 0's do. Anchored, exit 1's
    score keeps exit 0's evidence; the formula is checked by hand and survives a round trip."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(14)

    def batch(n: int, unseen: bool) -> tuple[ExitBatch, np.ndarray]:
        y = rng.integers(0, 2, size=n)
        f0 = rng.normal(size=(n, 6)) + 4.0 * y[:, None] + (8.0 if unseen else 0.0)
        f1 = rng.normal(size=(n, 6)) + 4.0 * y[:, None]  # the unseen class looks known here
        logits = np.zeros((2, n, 2))
        return ExitBatch(logits=logits, probs=np.full((2, n, 2), 0.5), features=[f0, f1]), y

    train, y = batch(400, False)
    held, _ = batch(300, False)
    known, unseen = batch(200, False)[0], batch(200, True)[0]
    plain = UnknownDetector(n_components=None).fit(train, y, held)
    anch = UnknownDetector(n_components=None, anchored=True, anchor_weight=1.0).fit(train, y, held)
    raw_held = plain.score(held)
    np.testing.assert_allclose(anch.anchor_mean_, raw_held.mean(1))
    np.testing.assert_allclose(anch.anchor_std_, raw_held.std(1))
    raw = plain.score(unseen)
    z = (raw - raw_held.mean(1)[:, None]) / raw_held.std(1)[:, None]
    np.testing.assert_allclose(anch.score(unseen), z + z[0], rtol=1e-10)
    np.testing.assert_allclose(anch.combine_exit(1, raw[1], raw[0]), z[1] + z[0], rtol=1e-10)
    truth = np.r_[np.zeros(200), np.ones(200)]
    auc = lambda det: roc_auc_score(truth, np.r_[det.score(known)[1], det.score(unseen)[1]])  # noqa: E731
    assert auc(plain) < 0.7 and auc(anch) > 0.99
    assert abs(anch.flag(batch(2000, False)[0]).mean(axis=1) - 0.05).max() < 0.03  # still 5 % false rejects
    d = json.loads(json.dumps(anch.to_dict()))
    np.testing.assert_allclose(UnknownDetector.from_dict(d).score(unseen), anch.score(unseen))
    old = dict(d)
    for key in ("anchored", "anchor_mean", "anchor_std"):
        old.pop(key)
    assert not UnknownDetector.from_dict(old).anchored  # a record written before the anchor
    with pytest.raises(ModelFileError, match="anchor"):
        UnknownDetector.from_dict(d | {"anchor_std": [1.0, 0.0]})
    with pytest.raises(ModelFileError, match="anchor"):
        UnknownDetector.from_dict(d | {"anchor_mean": [1.0]})
    # a weighted anchor: z_k + w z_0, stored; records without the weight read as 1
    w3 = UnknownDetector(n_components=None, anchored=True, anchor_weight=3.0).fit(train, y, held)
    np.testing.assert_allclose(w3.score(unseen), z + 3.0 * z[0], rtol=1e-10)
    d3 = json.loads(json.dumps(w3.to_dict()))
    assert d3["anchor_weight"] == 3.0
    np.testing.assert_allclose(UnknownDetector.from_dict(d3).score(unseen), w3.score(unseen))
    no_w = dict(d3)
    no_w.pop("anchor_weight")
    np.testing.assert_allclose(UnknownDetector.from_dict(no_w).score(unseen), anch.score(unseen), rtol=1e-10)
    assert UnknownDetector().anchor_weight == 4.0  # the default
    np.testing.assert_allclose(UnknownDetector(n_components=None, anchored=True).fit(train, y, held).score(unseen),
                               z + 4.0 * z[0], rtol=1e-10)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="anchor_weight"):
            UnknownDetector(anchored=True, anchor_weight=bad).fit(train, y, held)
        with pytest.raises(ConfigError, match="anchor_weight"):
            UnknownDetector.from_dict(d3 | {"anchor_weight": bad})


def test_detector_errors():
    rng = np.random.default_rng(5)
    held, y = _batches(rng, 50)
    with pytest.raises(ConfigError, match="score="):
        UnknownDetector(score="odin").fit(held, y, held)
    with pytest.raises(NotFittedError):
        UnknownDetector().score(held)
    with pytest.raises(DataValueError, match="features"):
        UnknownDetector(score="mahalanobis").fit(None, None, held)
    with pytest.raises(ModelFileError):
        UnknownDetector.from_dict({"score": "msp"})
    with pytest.raises(DataValueError, match="Mismatch"):
        MahalanobisScorer().fit(np.zeros((5, 2)), [0, 1])


def test_exit_batch_features_are_what_each_exit_classifies():
    """Applying each exit's own classifier to the collected features gives that exit's logits."""
    import torch

    from scai import SCAIClassifier
    from scai.inference.ood import _exit_modules, exit_batch
    from tests.conftest import TINY_SCAI, make_peaks

    X, y, axis = make_peaks(n_per_class=12)
    Xv, yv, _ = make_peaks(n_per_class=4, seed=1)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 2, "threads": 1},
                         preprocessing="snv", skip_exits=False, exit0="logistic")
    est.fit(X, y, axis=axis, X_val=Xv, y_val=yv)
    batch = exit_batch(est, X, axis)
    assert batch.n_exits == len(est.exit_macs_) == len(batch.features)
    np.testing.assert_allclose(batch.logits, est.exit_logits(X, axis), atol=1e-5)
    with torch.inference_mode():
        for k, (m, f) in enumerate(zip(_exit_modules(est.network_), batch.features)):
            ft = torch.as_tensor(f, dtype=torch.float32)
            # exit 0 and a MiniRocket exit classify the spectrum itself, network exits their pooled features
            out = m(ft[:, None, :]) if k < est.network_.net_start else m.fc(m.dropout(ft))
            np.testing.assert_allclose(out.numpy(), batch.logits[k], atol=1e-4)
    gap = exit_batch(est, X, axis, pooling="gap")
    assert [f.shape[1] for f in gap.features[est.network_.net_start:]] == list(TINY_SCAI["channels"])
