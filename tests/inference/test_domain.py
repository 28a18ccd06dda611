"""Input-domain check: T² and Q against independent computations and their nominal rates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from scai.errors import ConfigError, DataValueError, ModelFileError, NotFittedError
from scai.inference.domain import DomainCheck, hotelling_t2_limit, q_limit, raw_reasons


def _plane_data(rng, n, W=40, A=3, noise=0.05):
    """Spectra = A smooth components with random scores + white noise (a PCA model's assumptions)."""
    x = np.linspace(0, 1, W)
    basis = np.stack([np.sin((k + 1) * np.pi * x) for k in range(A)])
    return rng.normal(size=(n, A)) * np.array([3.0, 2.0, 1.0][:A]) @ basis + noise * rng.normal(size=(n, W)), basis


def test_t2_limit_is_the_f_quantile_for_a_new_observation():
    a, n, conf = 3, 50, 0.95
    by_hand = a * (n - 1) * (n + 1) / (n * (n - a)) * stats.f.ppf(conf, a, n - a)
    assert hotelling_t2_limit(a, n, conf) == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ConfigError, match="n_components"):
        hotelling_t2_limit(50, 50, 0.95)
    with pytest.raises(ConfigError, match="confidence"):
        hotelling_t2_limit(2, 50, 1.0)


def test_t2_and_q_match_sklearn_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    X, _ = _plane_data(rng, 80)
    check = DomainCheck(n_components=3).fit(X)
    new = _plane_data(rng, 10)[0]
    t2, q = check.statistics(new)
    pca = PCA(n_components=3, whiten=True).fit(X)
    np.testing.assert_allclose(t2, np.sum(pca.transform(new) ** 2, axis=1), rtol=1e-8)
    plain = PCA(n_components=3).fit(X)
    np.testing.assert_allclose(q, np.sum((new - plain.inverse_transform(plain.transform(new))) ** 2, axis=1), rtol=1e-8)


def test_t2_limit_flags_the_nominal_share_of_new_in_plane_spectra():
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(20):
        X, _ = _plane_data(rng, 60)
        check = DomainCheck(n_components=3, confidence=0.95).fit(X)
        t2, _ = check.statistics(_plane_data(rng, 500)[0])
        rates.append(np.mean(t2 > check.t2_limit_))
    assert abs(np.mean(rates) - 0.05) < 0.015, np.mean(rates)


@pytest.mark.parametrize("method", ["jackson_mudholkar", "box"])
@pytest.mark.parametrize("lam", [np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.05, 0.02]), np.geomspace(1.0, 0.01, 40)])
def test_q_limit_keeps_the_nominal_rate_of_a_simulated_weighted_chi2(method, lam):
    rng = np.random.default_rng(2)
    q = (rng.normal(size=(100_000, lam.size)) ** 2) @ lam  # Q of Gaussian residuals with eigenvalues lam
    for conf in (0.9, 0.95, 0.99):
        alpha = 1.0 - conf
        rate = np.mean(q > q_limit(lam, conf, method))
        assert abs(rate - alpha) < 0.3 * alpha, (conf, rate)  # both are approximations, good to ~25 %
    with pytest.raises(ConfigError, match="method"):
        q_limit(lam, 0.95, "nelson")


def test_flag_gives_reasons_for_another_kind_of_spectrum_on_the_same_axis():
    rng = np.random.default_rng(3)
    X, _ = _plane_data(rng, 100)
    val, _ = _plane_data(rng, 50)
    check = DomainCheck().fit(X).calibrate(val)
    ok = check.flag(_plane_data(rng, 200)[0])
    assert np.mean([bool(r) for r in ok]) < 0.05
    other = 2.0 * np.exp(-0.5 * ((np.arange(40) - 20) / 2.0) ** 2) + 0.05 * rng.normal(size=(5, 40))
    reasons = check.flag(other)
    assert all(any(r.startswith("Q residual") for r in rs) for rs in reasons)
    assert check.out_of_domain(other).all()


def test_raw_reasons_name_constant_saturated_and_non_finite_spectra():
    rng = np.random.default_rng(4)
    good = rng.normal(size=100) + 5
    sat = np.minimum(good, np.quantile(good, 0.9))
    nan = good.copy()
    nan[3] = np.nan
    out = raw_reasons(np.stack([good, np.full(100, 7.0), sat, nan]))
    assert out[0] == []
    assert out[1] == ["constant spectrum"]
    assert out[2] and out[2][0].startswith("saturated")
    assert out[3] == ["non-finite values at 1 point(s)"]
    raw = np.stack([good, np.full(100, 7.0)])
    X, _ = _plane_data(rng, 30, W=100)
    check = DomainCheck().fit(X)
    assert "constant spectrum" in check.flag(X[:2], raw=raw)[1]


def test_raw_reasons_of_float32_spectra_equal_the_float64_rule():
    """float32 input skips the float64 copy and tests the maximum by equality: the same reasons."""
    rng = np.random.default_rng(9)
    X = (rng.normal(size=(60, 300)) * rng.uniform(1e-3, 1e6, (60, 1))).astype(np.float32)
    for i in range(0, 60, 4):  # saturated: a share of points clipped at the maximum, around 2 %
        top = np.sort(X[i])[-rng.integers(1, 15)]
        X[i] = np.minimum(X[i], top)
    X[1] = 7.5  # constant
    X[2] = 0.0
    X[3] = -2.0
    X[5, :] = np.float32(1e-42)  # subnormal and constant
    X[6, ::50] = np.nextafter(X[6].max(), np.float32(0))  # just below the maximum: not at it
    X[7, 10] = np.nan
    X[9, 3] = np.inf
    X[10] = np.float32(3e38)
    X[10, ::2] = np.float32(-3e38)
    X[11, :9] = X[11].max()  # 3 % at the maximum
    X[13, :4] = X[13].max()  # with the maximum itself 5 of 300, 1.7 %: not saturated
    got, want = raw_reasons(X), raw_reasons(X.astype(np.float64))
    assert got == want
    assert sum("saturated" in " ".join(r) for r in got) >= 10 and ["constant spectrum"] in got
    assert got[6] == [] and got[11] and not got[13]


def test_components_by_variance_share_round_trip_and_errors():
    rng = np.random.default_rng(5)
    X, _ = _plane_data(rng, 60, noise=0.01)
    check = DomainCheck(n_components=0.99).fit(X)
    assert check.n_components_ == 3  # three components carry the signal
    back = DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    new = _plane_data(rng, 5)[0]
    np.testing.assert_allclose(back.statistics(new), check.statistics(new))
    assert back.t2_limit_ == check.t2_limit_ and back.q_limit_ == check.q_limit_
    with pytest.raises(NotFittedError):
        DomainCheck().statistics(new)
    with pytest.raises(DataValueError, match="points"):
        check.statistics(new[:, :10])
    with pytest.raises(ModelFileError):
        DomainCheck.from_dict({"n_components": 2})
    with pytest.raises(ConfigError, match="q_method"):
        DomainCheck(q_method="x").fit(X)


def test_domain_reasons_of_float32_spectra_equal_those_of_float64() -> None:
    """Reliability.domain_reasons reads float32 without a float64 copy: the same reasons, a
    non-finite row named and the other rows still checked against T² and Q."""
    from scai.inference.reliability import Reliability

    rng = np.random.default_rng(3)
    Z_train, _ = _plane_data(rng, 200)
    rel = Reliability(domain=DomainCheck(n_components=3).fit(Z_train))
    Z, _ = _plane_data(rng, 40)
    Z[::7] += rng.normal(scale=2.0, size=Z[::7].shape)  # off the plane: Q above its limit
    Z32 = Z.astype(np.float32)
    want = rel.domain_reasons(Z32.astype(np.float64))
    assert sum(bool(r) for r in want) >= 5 and rel.domain_reasons(Z32) == want
    Z32[2, 5] = np.nan
    got = rel.domain_reasons(Z32)
    assert got[2] == "preprocessing produced NaN/inf"
    assert got[:2] == want[:2] and got[3:] == want[3:]
    assert rel.domain_reasons(Z32.astype(np.float16))[2] == "preprocessing produced NaN/inf"
