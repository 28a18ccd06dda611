"""Batched Whittaker baselines: every spectrum's fit equals pybaselines' own per-spectrum fit."""

from __future__ import annotations

import numpy as np
import pytest
from pybaselines import Baseline
from scipy.linalg import solveh_banded

from scai.errors import DataValueError
from scai.preprocessing import BaselineCorrection, Despike, default_pipeline, whittaker
from scai.preprocessing import baseline as baseline_module
from scai.preprocessing.whittaker import asls_lanes, asls_rows, compiled_kernel, penalty_bands, solve_weighted_rows

HAS_NUMBA = compiled_kernel() is not None
#: Both engines of asls_rows; numba is in the dev install (scai[fast]), so CI runs both.
ENGINES = [pytest.param("numpy"), pytest.param("numba", marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed"))]


def _reference(Y: np.ndarray, **params: object) -> tuple[np.ndarray, np.ndarray]:
    """pybaselines, one spectrum at a time: baselines and iterations (len of tol_history)."""
    fitter = Baseline(x_data=np.arange(Y.shape[1], dtype=float))
    fits = [fitter.asls(row, **params) for row in np.asarray(Y, dtype=np.float64)]
    return np.stack([f[0] for f in fits]), np.array([len(f[1]["tol_history"]) for f in fits])


def _synthetic(n: int = 30, width: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, width)
    background = rng.uniform(50, 500, (n, 1)) * np.exp(-rng.uniform(0.5, 3, (n, 1)) * x) + rng.uniform(-20, 20, (n, 1)) * x
    peaks = sum(rng.uniform(5, 80, (n, 1)) * np.exp(-0.5 * ((x - rng.uniform(0.1, 0.9, (n, 1))) / rng.uniform(0.003, 0.03)) ** 2)
                for _ in range(6))
    return background + peaks + rng.normal(0, 1.0, (n, width))


def _close(a: np.ndarray, b: np.ndarray, Y: np.ndarray, rel: float = 1e-8) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=rel * max(float(np.abs(Y).max()), 1.0))


def test_penalty_bands_are_the_lower_bands_of_dense_d_transpose_d() -> None:
    for n, k in [(3, 1), (7, 1), (3, 2), (9, 2), (12, 2)]:
        D = np.diff(np.eye(n), n=k, axis=0)
        P = 3.0 * D.T @ D
        bands = penalty_bands(n, 3.0, k)
        for i in range(k + 1):
            np.testing.assert_array_equal(bands[i, : n - i], np.diagonal(P, -i))
            assert not bands[i, n - i :].any()  # padding never couples neighbouring spectra


@pytest.mark.parametrize("k", [1, 2])
def test_solve_weighted_rows_equals_lapack_per_spectrum(k: int) -> None:
    rng = np.random.default_rng(1)
    n, m = 50, 7
    bands = penalty_bands(n, 1e4, k)
    w = rng.uniform(0.01, 1.0, (n, m))
    rhs = rng.normal(size=(n, m))
    x = solve_weighted_rows(bands, w, rhs)
    for r in range(m):
        ab = bands.copy()
        ab[0] += w[:, r]
        np.testing.assert_allclose(x[:, r], solveh_banded(ab, rhs[:, r], lower=True), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_real_spectra_equal_pybaselines(shared_datasets, engine: str) -> None:
    d = np.load(shared_datasets / "milk_adulteration.npz", allow_pickle=False)
    Y = Despike().fit(d["X"]).transform(d["X"])[::10].astype(np.float64)  # 50 spectra, 1738 points
    ours, iters = asls_rows(Y, lam=1e6, p=0.01, engine=engine)
    ref, ref_iters = _reference(Y, lam=1e6, p=0.01)
    _close(ours, ref, Y)
    np.testing.assert_array_equal(iters, ref_iters)
    assert len(set(iters.tolist())) > 1  # spectra leave the batch at different iterations


@pytest.mark.parametrize(
    "params",
    [
        {},  # pybaselines' defaults
        {"lam": 1e3, "p": 0.1},
        {"lam": 1e8, "p": 0.001},
        {"lam": 1e4, "p": 0.05, "diff_order": 1},
        {"lam": 1e5, "p": 0.01, "max_iter": 2},  # stops before converging
        {"lam": 1e5, "p": 0.01, "tol": 1e-6},
        {"lam": 1e5, "p": 0.02, "weights": np.linspace(0.5, 1.0, 400)},
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_synthetic_spectra_equal_pybaselines(params: dict, engine: str) -> None:
    Y = _synthetic()
    ours, iters = asls_rows(Y, **params, engine=engine)
    ref, ref_iters = _reference(Y, **params)
    # Both solvers carry rounding error ~ cond * eps, and cond(W + lam D'D) grows as lam / p:
    # LAPACK's Cholesky and the batched LDL' agree to 1e-8 of the data at lam / p <= 1e8.
    ratio = float(params.get("lam", 1e6)) / float(params.get("p", 1e-2))
    _close(ours, ref, Y, rel=1e-8 * max(1.0, ratio / 1e8))
    np.testing.assert_array_equal(iters, ref_iters)


def test_many_batches_and_shrinking_equal_one(monkeypatch: pytest.MonkeyPatch) -> None:
    Y = _synthetic(n=40, width=120, seed=3)
    whole, _ = asls_rows(Y, lam=1e4, p=0.01, engine="numpy")
    monkeypatch.setattr(whittaker, "_MAX_BATCH_VALUES", 7 * 120)  # batches of 7 spectra
    np.testing.assert_allclose(asls_rows(Y, lam=1e4, p=0.01, engine="numpy")[0], whole, rtol=0,
                               atol=1e-9 * np.abs(Y).max())
    _close(whole, _reference(Y, lam=1e4, p=0.01)[0], Y)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("width", [3, 4, 5, 8])
def test_very_short_spectra_equal_pybaselines(width: int, engine: str) -> None:
    Y = _synthetic(n=5, width=width, seed=width)
    _close(asls_rows(Y, lam=1e2, p=0.01, engine=engine)[0], _reference(Y, lam=1e2, p=0.01)[0], Y)
    Y = _synthetic(n=5, width=width, seed=width)[:, : max(width - 1, 2)]  # order 1 down to 2 points
    _close(asls_rows(Y, lam=1e2, p=0.01, diff_order=1, engine=engine)[0],
           _reference(Y, lam=1e2, p=0.01, diff_order=1)[0], Y)


@pytest.mark.parametrize("engine", ENGINES)
def test_constant_and_zero_spectra(engine: str) -> None:
    Y = np.vstack([np.full(200, 7.5), np.zeros(200), _synthetic(n=1, width=200)[0]])
    ours, _ = asls_rows(Y, lam=1e6, p=0.01, engine=engine)
    _close(ours, _reference(Y, lam=1e6, p=0.01)[0], Y)
    np.testing.assert_allclose(ours[0], 7.5, rtol=1e-9)  # a flat spectrum is its own baseline
    np.testing.assert_array_equal(ours[1], 0.0)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("m", [1, 3, 4, 9])  # fewer, as many and more spectra than LANES, and a remainder
def test_compiled_kernel_is_the_python_kernel_and_the_numpy_path_bit_for_bit(shared_datasets, m: int) -> None:
    """numba runs asls_lanes as written: plain Python, compiled and the NumPy recurrence agree exactly."""
    d = np.load(shared_datasets / "milk_adulteration.npz", allow_pickle=False)
    Y = np.ascontiguousarray(d["X"][:: 50][:m, ::8], dtype=np.float64)  # 218 points: plain Python stays quick
    n = Y.shape[1]
    bands = penalty_bands(n, 1e4, 2)
    out = {}
    for name, kernel in (("python", asls_lanes), ("numba", compiled_kernel())):
        z, it = np.empty_like(Y), np.zeros(m, dtype=np.int64)
        kernel(Y, bands[0], bands[1], bands[2], np.ones(n), 0.01, 50, 1e-3, z, it)
        out[name] = (z, it)
    np.testing.assert_array_equal(out["python"][0], out["numba"][0])
    np.testing.assert_array_equal(out["python"][1], out["numba"][1])
    z, it = asls_rows(Y, lam=1e4, p=0.01, engine="numpy")
    np.testing.assert_array_equal(out["numba"][0], z)
    np.testing.assert_array_equal(out["numba"][1], it)


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    Y = _synthetic(n=3, width=60)
    with pytest.raises(ValueError, match="engine='gpu' is not one of auto, numba, numpy"):
        asls_rows(Y, engine="gpu")
    monkeypatch.setenv("SCAI_NUMBA", "0")
    compiled_kernel.cache_clear()
    try:
        assert compiled_kernel() is None  # switched off: auto runs NumPy, numba is refused by name
        with pytest.raises(ImportError, match=r"pip install \"scai\[fast\]\""):
            asls_rows(Y, engine="numba")
        _close(asls_rows(Y, lam=1e4, p=0.01)[0], _reference(Y, lam=1e4, p=0.01)[0], Y)
    finally:
        monkeypatch.delenv("SCAI_NUMBA")
        compiled_kernel.cache_clear()
    assert (compiled_kernel() is not None) == HAS_NUMBA


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_no_writable_cache_compiles_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    real = numba.njit
    asked = []

    def njit(**options: object) -> object:
        asked.append(options["cache"])
        if options["cache"]:  # what numba raises where no cache locator is writable
            raise RuntimeError("cannot cache function 'asls_lanes': no locator available for file")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)
    kernel = whittaker.jit(asls_lanes)
    assert asked == [True, False] and kernel is not None
    Y = _synthetic(n=2, width=50)
    bands = penalty_bands(50, 1e3, 2)
    z, it = np.empty_like(Y), np.zeros(2, dtype=np.int64)
    kernel(Y, bands[0], bands[1], bands[2], np.ones(50), 0.01, 50, 1e-3, z, it)
    _close(z, _reference(Y, lam=1e3, p=0.01)[0], Y)


def test_asls_rows_refuses_what_pybaselines_refuses() -> None:
    with pytest.raises(ValueError, match="p must be between 0 and 1"):
        asls_rows(_synthetic(n=2), p=1.5)
    with pytest.raises(ValueError, match="more than diff_order=2 points"):
        asls_rows(np.ones((3, 2)))
    with pytest.raises(ValueError, match="length mismatch for weights; expected 400 but got 3"):
        asls_rows(_synthetic(n=2), weights=[1.0, 1.0, 1.0])


@pytest.fixture
def batch_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step takes the batched path however few spectra a call has."""
    monkeypatch.setattr(baseline_module, "BATCH_MIN_SPECTRA", 1)


@pytest.mark.usefixtures("batch_always")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_output_equals_data_minus_pybaselines_baseline(dtype: type) -> None:
    X = _synthetic(n=12, width=300, seed=5).astype(dtype)
    X.flags.writeable = False
    axis = np.linspace(100.0, 3000.0, 300)
    step = BaselineCorrection("asls", lam=1e5, p=0.01).fit(X, axis=axis)
    Z = step.transform(X)
    assert Z.dtype == dtype
    ref = X.astype(np.float64) - _reference(X, lam=1e5, p=0.01)[0]
    np.testing.assert_allclose(Z, ref.astype(dtype), rtol=0, atol=(1e-8 if dtype == np.float64 else 1e-3) * np.abs(X).max())
    loop = BaselineCorrection("asls", lam=1e5, p=0.01).fit(X, axis=axis)
    loop._batched = False  # pybaselines' loop, through the same step
    np.testing.assert_allclose(Z, loop.transform(X), rtol=0, atol=1e-3 * np.abs(X).max())


def test_step_refuses_nan_and_too_short_spectra_as_before() -> None:
    X = _synthetic(n=4, width=50)
    X[2, 17] = np.nan
    with pytest.raises(DataValueError, match="row 2, column 17"):
        BaselineCorrection("asls").fit(X)
    fitted = BaselineCorrection("asls").fit(_synthetic(n=4, width=50))
    with pytest.raises(DataValueError, match="row 2, column 17"):
        fitted.transform(X)
    with pytest.raises(DataValueError, match="cannot fit a baseline to 2 points per spectrum"):
        BaselineCorrection("asls").fit(np.ones((3, 2)))


def test_other_methods_and_orders_keep_pybaselines_loop() -> None:
    X = _synthetic(n=4, width=120)
    Z = BaselineCorrection("asls", lam=1e4, diff_order=3).fit_transform(X)
    fitter = Baseline(x_data=np.arange(120, dtype=float))
    ref = np.stack([row - fitter.asls(row, lam=1e4, diff_order=3)[0] for row in X])
    np.testing.assert_array_equal(Z, ref)
    Z = BaselineCorrection("arpls", lam=1e5).fit_transform(X)
    np.testing.assert_array_equal(Z, np.stack([row - fitter.arpls(row, lam=1e5)[0] for row in X]))


def test_small_calls_run_pybaselines_itself_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    X = _synthetic(n=5, width=200)
    monkeypatch.setattr(baseline_module, "compiled_kernel", lambda: None)
    Z = BaselineCorrection("asls", lam=1e5, p=0.01).fit_transform(X)
    np.testing.assert_array_equal(Z, X - _reference(X, lam=1e5, p=0.01)[0])


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_small_calls_run_compiled_with_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    X = _synthetic(n=5, width=200)
    calls = []
    monkeypatch.setattr(baseline_module, "asls_rows", lambda *a, **k: calls.append(1) or asls_rows(*a, **k))
    Z = BaselineCorrection("asls", lam=1e5, p=0.01).fit_transform(X)
    assert calls == [1]  # one compiled call for the five spectra
    _close(Z, X - _reference(X, lam=1e5, p=0.01)[0], X)


@pytest.mark.parametrize("coarsen", [2, 3, 4])
def test_coarsen_fits_every_kth_point_and_interpolates(coarsen: int) -> None:
    X = _synthetic(n=6, width=301, seed=coarsen)
    Z = BaselineCorrection("asls", lam=1e5, p=0.01, coarsen=coarsen).fit_transform(X)
    index = np.unique(np.append(np.arange(0, 301, coarsen), 300))
    coarse, _ = _reference(X[:, index], lam=1e5 / coarsen**4, p=0.01)  # same smoothness per unit of the axis
    ref = np.stack([np.interp(np.arange(301), index, b) for b in coarse])
    np.testing.assert_allclose(Z, X - ref, rtol=0, atol=1e-8 * np.abs(X).max())


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.usefixtures("batch_always")  # the NumPy engine's batched fit, not pybaselines' loop
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coarsen_compiled_equals_numpy_engine_bit_for_bit(dtype: type) -> None:
    X = _synthetic(n=9, width=301, seed=2).astype(dtype)
    fast = BaselineCorrection("asls", lam=1e5, p=0.01, coarsen=3).fit(X)
    slow = BaselineCorrection("asls", lam=1e5, p=0.01, coarsen=3).fit(X)
    slow._engine = "numpy"
    Z = fast.transform(X)
    assert Z.dtype == dtype
    np.testing.assert_array_equal(Z, slow.transform(X))


def test_coarsen_approximates_the_exact_fit_on_real_spectra(shared_datasets) -> None:
    d = np.load(shared_datasets / "milk_adulteration.npz", allow_pickle=False)
    X = Despike().fit(d["X"]).transform(d["X"])[::25].astype(np.float64)
    exact = BaselineCorrection("asls", lam=1e6, p=0.01).fit_transform(X)
    for k, worst in [(2, 0.1), (4, 0.2)]:  # rms difference / std of the corrected spectrum
        approx = BaselineCorrection("asls", lam=1e6, p=0.01, coarsen=k).fit_transform(X)
        rel = np.sqrt(((approx - exact) ** 2).mean(axis=1)) / exact.std(axis=1)
        assert rel.max() < worst, (k, rel.max())


def test_coarsen_is_checked() -> None:
    from scai.errors import ConfigError

    with pytest.raises(ConfigError, match="coarsen=0 must be an integer >= 1"):
        BaselineCorrection("asls", coarsen=0).fit(_synthetic(n=2))
    with pytest.raises(ConfigError, match="applies to method='asls' only"):
        BaselineCorrection("snip", coarsen=2).fit(_synthetic(n=2))
    with pytest.raises(DataValueError, match="cannot fit a baseline"):
        BaselineCorrection("asls", coarsen=4).fit(np.ones((2, 5)))  # coarse grid: points 0 and 4, too few


@pytest.mark.usefixtures("batch_always")
def test_raman_preset_unchanged_on_real_spectra(shared_datasets) -> None:
    """The default "raman" pipeline (batched asls) gives what pybaselines' loop gave."""
    d = np.load(shared_datasets / "milk_species.npz", allow_pickle=False)
    X = d["X"][::6]
    new = default_pipeline("raman").fit(X, axis=d["axis"])
    old = default_pipeline("raman").fit(X, axis=d["axis"])
    old[1]._batched = False
    np.testing.assert_allclose(new.transform(X), old.transform(X), rtol=0, atol=1e-6)


def test_raman_preset_batched_on_a_large_call(shared_datasets) -> None:
    """At BATCH_MIN_SPECTRA spectra and more the batched fit runs, and matches pybaselines."""
    d = np.load(shared_datasets / "milk_adulteration.npz", allow_pickle=False)
    X = np.vstack([d["X"], d["X"][:, ::-1]])[: whittaker.BATCH_MIN_SPECTRA].astype(np.float64)
    step = BaselineCorrection("asls", lam=1e6, p=0.01).fit(X)
    loop = BaselineCorrection("asls", lam=1e6, p=0.01).fit(X)
    loop._batched = False
    _close(step.transform(X), loop.transform(X), X)


def _despike_reference(row: np.ndarray, threshold: float = 6.0, window: int = 2, ratio: float = 3.0) -> np.ndarray:
    """Despike's documented rule, one spectrum and one point at a time (the independent reference)."""
    x = row.astype(np.float64).copy()
    n = x.size
    d = np.diff(x)
    med = np.median(d)
    mad = np.median(np.abs(d - med))
    z = 0.6745 * (d - med) / mad if mad > 0 else np.zeros_like(d)
    a = np.abs(d)
    up = [z[j] > threshold and a[j] > ratio * a[max(j - 1, 0)] for j in range(n - 1)]
    down = [z[j] < -threshold and a[j] > ratio * a[min(j + 1, n - 2)] for j in range(n - 1)]
    spikes = [any(up[max(j - window, 0) : j]) and any(down[j : j + window]) for j in range(n)]
    out = x.copy()
    for j in range(n):
        if spikes[j]:
            near = [x[i] for i in range(max(j - window, 0), min(j + window + 1, n)) if not spikes[i]]
            if near:
                out[j] = np.mean(near)
    return out


@pytest.mark.parametrize("name", ["milk_adulteration", "cheese_brands"])  # 1737 and 1750 steps: odd and even medians
def test_despike_equals_the_per_spectrum_rule_on_real_spectra(shared_datasets, name: str) -> None:
    d = np.load(shared_datasets / f"{name}.npz", allow_pickle=False)
    X = d["X"][::20].astype(np.float64)
    rng = np.random.default_rng(0)
    for r in range(X.shape[0]):  # cosmic rays: one to three points, well above the noise
        j = rng.integers(5, X.shape[1] - 5)
        X[r, j : j + rng.integers(1, 3)] += rng.uniform(10, 50) * np.diff(X[r]).std()
    ours = Despike().fit(X).transform(X)
    ref = np.stack([_despike_reference(row) for row in X])
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)
    assert np.count_nonzero(ours != X) >= X.shape[0]  # the injected spikes were found and replaced


def test_raman_preset_coarsens_and_the_exact_fit_stays_an_option() -> None:
    from scai.preprocessing import RAMAN_COARSEN

    assert RAMAN_COARSEN == 2 and default_pipeline("raman")[1].coarsen == 2
    assert default_pipeline("raman", coarsen=1)[1].coarsen == 1
    assert BaselineCorrection("asls").coarsen == 1  # the step itself stays exact by default


def test_stored_pipelines_keep_their_coarsen() -> None:
    """A saved pipeline reloads with the coarsen it was fitted with; one stored before the
    parameter existed (no "coarsen" key) reloads exact, as it was fitted."""
    import json

    from scai.preprocessing import Pipeline

    X = _synthetic(n=4, width=301, seed=3)
    for k in (1, 2):
        pipe = default_pipeline("raman", coarsen=k).fit(X)
        doc = json.loads(pipe.to_json())
        assert doc["steps"][1]["params"]["coarsen"] == k
        back = Pipeline.from_json(pipe.to_json())
        assert back[1].coarsen == k
        np.testing.assert_array_equal(back.transform(X), pipe.transform(X))
    exact = default_pipeline("raman", coarsen=1).fit(X)
    doc = json.loads(exact.to_json())
    del doc["steps"][1]["params"]["coarsen"]  # as written before coarsen existed
    old = Pipeline.from_json(json.dumps(doc))
    assert old[1].coarsen == 1
    np.testing.assert_array_equal(old.transform(X), exact.transform(X))


@pytest.mark.parametrize("width", [3, 4, 11, 12, 1737])
def test_despike_mad_from_the_sort_is_exact(width: int) -> None:
    """The MAD taken from the row sort equals the median of |d - median| (a second sort), bit for bit."""
    from scai.preprocessing.steps import _row_median, _sorted_mad

    rng = np.random.default_rng(width)
    for A in (rng.standard_normal((40, width)), np.round(rng.standard_normal((40, width)), 1)):  # ties too
        med = _row_median(A)
        np.testing.assert_array_equal(_sorted_mad(np.sort(A, axis=1), med), _row_median(np.abs(A - med)))
