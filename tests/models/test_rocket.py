"""The MiniRocket exit: PyTorch features equal aeon's transform; MACs by hand; the cascade carries it
through save/load and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("aeon", reason="the MiniRocket exit is fitted with aeon (the bench extra)")

from scai.models.rocket import KERNEL_TAPS, RocketExit, compiled_ppv, ppv_rows, rocket_kernels  # noqa: E402
from scai.training.rocket_exit import fit_rocket_head  # noqa: E402
from tests.conftest import TINY_SCAI  # noqa: E402


def _series(n=40, W=120, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, W)
    return (np.sin(2 * np.pi * rng.uniform(1, 4, (n, 1)) * t) + 0.1 * rng.standard_normal((n, W))).astype(np.float32)


def _by_frequency(n=60, W=128, seed=0):
    """Three classes that differ only in a band's frequency at a random phase: a linear exit cannot
    tell them apart, MiniRocket can."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    freq = np.array([0.05, 0.09, 0.14])[y]
    X = np.sin(2 * np.pi * freq[:, None] * np.arange(W) + rng.uniform(0, 2 * np.pi, (n, 1))) + 0.1 * rng.standard_normal((n, W))
    return X.astype(np.float32), y


def test_kernels_are_minirockets_84_length_9_with_three_plus_twos():
    w = rocket_kernels()
    assert w.shape == (84, 1, 9) and len(set(KERNEL_TAPS)) == 84
    assert torch.all((w == 2) | (w == -1)) and torch.all((w == 2).sum(dim=2) == 3)
    assert torch.allclose(w.sum(dim=2), torch.zeros(84, 1))  # 3 x 2 - 6 x 1 = 0


def test_torch_features_equal_aeons_transform():
    from aeon.transformations.collection.convolution_based import MiniRocket

    X = _series()
    trf = MiniRocket(n_kernels=840, random_state=0, n_jobs=1).fit(X[:, None, :])
    ref = np.asarray(trf.transform(X[:, None, :]))
    _, _, dil, per, biases = trf.parameters
    m = RocketExit(X.shape[1], 2, dil, per)
    m.set_weights(biases, np.zeros((2, m.n_features)), np.zeros(2))
    with torch.inference_mode():
        got = m.features(torch.from_numpy(X).unsqueeze(1)).numpy()
    assert got.shape == ref.shape
    # identical up to float rounding at a bias that equals a convolution value (one position)
    assert np.mean(np.abs(got - ref) > 1e-6) < 1e-3
    assert np.abs(got - ref).max() <= 1.0 / (X.shape[1] - 8 * max(dil)) + 1e-6


def test_macs_are_counted_by_hand():
    m = RocketExit(100, 3, [1, 4], [2, 1])
    K = 84
    conv = K * 9 * 100 * 2
    # dilation 1 (j=0): kernels with even k pool all 100 positions, odd ones 100 - 8
    compare = sum(2 * (100 if k % 2 == 0 else 92) for k in range(K))
    # dilation 4 (j=1): kernels with odd k pool all positions, even ones 100 - 32
    compare += sum(1 * (100 if (1 + k) % 2 == 0 else 68) for k in range(K))
    head = K * 3 * 3
    assert m.n_features == K * 3 and m.macs == conv + compare + head


def test_ridge_head_decides_like_sklearn():
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    F = rng.random((60, 30)).astype(np.float32)
    y = (F[:, 0] + F[:, 1] > 1).astype(np.int64) + (F[:, 2] > 0.7)
    w, b, _ = fit_rocket_head(F, y, 3)
    ref = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))).fit(F, y)
    np.testing.assert_array_equal((F @ w.T + b).argmax(1), ref.predict(F))


def test_cascade_with_a_rocket_exit_round_trips_and_exports(tmp_path):
    from scai import SCAIClassifier, load
    from scai.deploy import export_onnx
    from scai.deploy.edge import EdgeClient

    X, y = _by_frequency(n=36, W=96)
    y = np.array(["a", "b", "c"])[y]
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 2, "min_epochs": 0},
                         preprocessing="none", rocket="auto", skip_exits=False, cross_fit=3, n_jobs=1).fit(X, y)
    net = est.network_
    assert net.rocket is not None and net.net_start == 2 and est.cross_fit_["rocket"]["used"]
    assert net.stage_macs(1) == net.rocket.macs and est.exit_macs_[1] == net.exit0.macs + net.rocket.macs
    back = load(est.save(tmp_path / "m"))
    np.testing.assert_allclose(back.exit_proba(X), est.exit_proba(X), rtol=1e-5, atol=1e-6)
    out = export_onnx(est, tmp_path / "onnx")
    edge = EdgeClient(out, bmax="1G")
    Z = est.transform_input(X)
    feats, probs = Z[:, None, :], est.exit_proba(Z, preprocessed=True)
    from scai.inference import softmax

    from scai.inference.combination import ExitCombination

    rec = edge.manifest.get("combination")  # stages give their own logits; the exit loop combines them
    comb = None if rec is None else ExitCombination.from_dict(rec)
    state = None
    for k in range(edge.n_exits):
        feats, logits = edge.run_stage(k, feats)
        if comb is not None:
            logits = state = comb.step(k, state, logits)
        assert np.max(np.abs(softmax(logits, float(edge.temperatures[k])) - probs[k])) <= 1e-4, f"exit {k}"


def test_input_affine_runs_the_features_on_the_unscaled_spectrum():
    from scai.errors import ModelConfigError
    from scai.models.cascade import CascadeSpec

    rng = np.random.default_rng(1)
    X = _series(n=8, W=100)
    scale, mean = rng.uniform(0.5, 2.0, 100).astype(np.float32), rng.normal(size=100).astype(np.float32)
    plain, affine = RocketExit(100, 3, [1, 4], [2, 1]), RocketExit(100, 3, [1, 4], [2, 1], input_affine=True)
    biases, w, b = rng.normal(size=plain.n_features), rng.normal(size=(3, plain.n_features)), rng.normal(size=3)
    plain.set_weights(biases, w, b)
    affine.set_weights(biases, w, b, input_scale=scale, input_mean=mean)
    with torch.inference_mode():
        got = affine(torch.from_numpy((X - mean) / scale).unsqueeze(1)).numpy()
        ref = plain(torch.from_numpy(X).unsqueeze(1)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert affine.macs == plain.macs + 100  # one multiply-add per point
    spec = CascadeSpec.from_dict({"kind": "logistic", "rank": None, "rocket": affine.spec()})
    assert spec.rocket == {"dilations": [1, 4], "features_per_dilation": [2, 1], "input_affine": True}
    assert CascadeSpec.from_dict({"kind": "logistic", "rocket": plain.spec()}).rocket == plain.spec()
    with pytest.raises(ModelConfigError, match="input_affine"):
        plain.set_weights(biases, w, b, input_scale=scale, input_mean=mean)
    with pytest.raises(ModelConfigError, match="input_affine"):
        affine.set_weights(biases, w, b)


def test_estimator_fits_the_rocket_exit_on_the_spectra_before_standardisation():
    """On classes a linear exit cannot tell apart, the MiniRocket exit is used, on the
    unstandardised spectra, and combined with exit 0 even though no network exit is trained."""
    from scai import SCAIClassifier
    from scai.inference.combination import log_softmax

    X, y = _by_frequency()
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 1, "min_epochs": 0},
                         preprocessing="none", rocket="auto", cross_fit=3, n_jobs=1, random_state=0).fit(X, y)
    net = est.network_
    assert est.cross_fit_["rocket"]["used"] and net.rocket is not None and net.rocket.input_affine
    std = est.pipeline_[len(est.pipeline_) - 1]
    np.testing.assert_allclose(net.rocket.input_scale.numpy(), std.scale_, rtol=1e-6)
    np.testing.assert_allclose(net.rocket.input_mean.numpy(), std.mean_, rtol=1e-6, atol=1e-6)
    oof = est.cross_fit_["oof_accuracy"]
    assert oof[1] > oof[0]  # the MiniRocket exit (combined with exit 0) beats exit 0 out of fold
    assert net.combination is not None  # exit 1 answers a * exit 0 + b * log_softmax(own) + c
    Z = torch.from_numpy(est.transform_input(X)).unsqueeze(1)
    with torch.inference_mode():
        z0, zr = net.exit0(Z).numpy().astype(np.float64), net.rocket(Z).numpy().astype(np.float64)
    comb = net.combination
    want = comb.a[1] * z0 + comb.b[1] * log_softmax(zr) + comb.c[1]
    np.testing.assert_allclose(est.exit_logits(X)[1], want, rtol=1e-4, atol=1e-4)
    assert np.mean(est.predict(X) == y) >= oof[1] - 0.05


def test_a_minirocket_exit_that_adds_nothing_is_left_out_even_when_every_exit_is_kept(monkeypatch):
    """A MiniRocket exit whose features carry nothing (all zero: its ridge head can only answer the
    class prior) cannot beat exit 0 out of fold, and ``skip_exits=False`` (keep every network exit)
    does not keep it either."""
    from scai import SCAIClassifier

    real = SCAIClassifier._fit_rocket

    def blank(self, Z, y):
        fit = real(self, Z, y)
        fit.features[:] = 0.0
        return fit

    monkeypatch.setattr(SCAIClassifier, "_fit_rocket", blank)
    X, y = _by_frequency(n=36, W=96)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 1, "min_epochs": 0},
                         preprocessing="none", skip_exits=False, cross_fit=3, n_jobs=1).fit(X, y)
    rec = est.cross_fit_["rocket"]
    assert not rec["used"] and est.network_.rocket is None and est.network_.net_start == 1
    assert rec["oof_accuracy"] <= est.cross_fit_["oof_accuracy"][0]


def test_chunked_transform_equals_the_whole_batch(monkeypatch):
    """Without numba, eager mode runs the PyTorch ops in chunks of CHUNK spectra; it is the one-batch
    transform exactly."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    from scai.models import rocket
    from scai.models.rocket import CHUNK

    monkeypatch.setattr(rocket, "compiled_ppv", lambda: None)

    X = _series(n=3 * CHUNK + 5)
    trf = MiniRocket(n_kernels=840, random_state=1, n_jobs=1).fit(X[:, None, :])
    _, _, dil, per, biases = trf.parameters
    m = RocketExit(X.shape[1], 2, dil, per)
    m.set_weights(biases, np.zeros((2, m.n_features)), np.zeros(2))
    with torch.inference_mode():
        x = torch.from_numpy(X).unsqueeze(1)
        np.testing.assert_array_equal(m.features(x).numpy(), m._features(x).numpy())


def _fitted(X, n_kernels=840, seed=0):
    from aeon.transformations.collection.convolution_based import MiniRocket

    trf = MiniRocket(n_kernels=n_kernels, random_state=seed, n_jobs=1).fit(X[:, None, :])
    _, _, dil, per, biases = trf.parameters
    m = RocketExit(X.shape[1], 2, dil, per)
    m.set_weights(biases, np.zeros((2, m.n_features)), np.zeros(2))
    return trf, m


@pytest.mark.skipif(compiled_ppv() is None, reason="numba not installed (the fast extra) or SCAI_NUMBA=0")
def test_compiled_features_are_aeons_transform():
    """Eager CPU inference runs the numba kernel: aeon's sums in aeon's order, so its features are
    aeon's, on a long series with many dilations and on spectra the transform was not fitted on."""
    rng = np.random.default_rng(3)
    X = np.cumsum(rng.standard_normal((30, 700)), axis=1).astype(np.float32)
    trf, m = _fitted(X[:20], n_kernels=10_000)
    assert len(m.dilations) > 15
    ref = np.asarray(trf.transform(X[:, None, :]))
    with torch.inference_mode():
        got = m.features(torch.from_numpy(X).unsqueeze(1)).numpy()
    assert np.mean(got == ref) > 0.9999
    # the uncompiled loops are the same code: same features bit for bit
    plain = np.empty((2, m.n_features), dtype=np.float32)
    ppv_rows(X[:2], np.asarray(m.dilations), np.asarray(m.features_per_dilation), m.biases.detach().numpy(),
             np.array(KERNEL_TAPS), plain)
    np.testing.assert_array_equal(plain, got[:2])


@pytest.mark.skipif(compiled_ppv() is None, reason="numba not installed (the fast extra) or SCAI_NUMBA=0")
def test_compiled_and_pytorch_features_agree_and_pytorch_runs_without_numba(monkeypatch):
    from scai.models import rocket

    X = _series(n=20, W=300)
    _, m = _fitted(X, seed=2)
    x = torch.from_numpy(X).unsqueeze(1)
    with torch.inference_mode():
        compiled = m.features(x).numpy()
        pytorch = m._features(x).numpy()
        monkeypatch.setattr(rocket, "compiled_ppv", lambda: None)
        fallback = m.features(x).numpy()
    np.testing.assert_array_equal(fallback, pytorch)
    # the two differ only where a convolution value is within rounding of a bias (one position)
    assert np.mean(compiled != pytorch) < 1e-3
    assert np.abs(compiled - pytorch).max() <= 1.0 / (X.shape[1] - 8 * max(m.dilations)) + 1e-6


def test_onnx_export_traces_the_pytorch_ops(monkeypatch, tmp_path):
    """The ONNX graph is the PyTorch ops', whatever eager mode runs: exporting never calls the kernel,
    and onnxruntime's logits are the PyTorch ops' logits."""
    ort = pytest.importorskip("onnxruntime")
    from scai.models import rocket

    def refuse():
        raise AssertionError("the compiled kernel ran while exporting")

    X = _series(n=6, W=120)
    _, m = _fitted(X)
    m.set_weights(m.biases.detach().numpy(), np.random.default_rng(0).standard_normal((2, m.n_features)), np.zeros(2))
    x = torch.from_numpy(X).unsqueeze(1)
    monkeypatch.setattr(rocket, "compiled_ppv", refuse)
    path = tmp_path / "rocket.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X[:, None, :]})[0]
    with torch.inference_mode():
        want = F.linear(m._features(x), m.weight, m.bias).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_scai_numba_0_switches_the_kernel_off(monkeypatch):
    from scai.models import rocket

    monkeypatch.setenv("SCAI_NUMBA", "0")
    rocket.compiled_ppv.cache_clear()
    try:
        assert rocket.compiled_ppv() is None
        X = _series(n=5, W=120)
        _, m = _fitted(X)
        with torch.inference_mode():
            x = torch.from_numpy(X).unsqueeze(1)
            np.testing.assert_array_equal(m.features(x).numpy(), m._features(x).numpy())
    finally:
        monkeypatch.delenv("SCAI_NUMBA")
        rocket.compiled_ppv.cache_clear()
