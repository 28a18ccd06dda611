"""Preprocessing: one generic suite over every registered step, known answers, the pipeline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.integrate import trapezoid
from sklearn.base import clone

from scai.errors import AxisError, ConfigError, DataFormatError, DataValueError, NotFittedError, ScaiTypeError
from scai.preprocessing import (
    SNV,
    AreaNorm,
    BaselineCorrection,
    Crop,
    Despike,
    LaserCalibration,
    MinMax,
    Pipeline,
    Resample,
    SavitzkyGolay,
    Standardize,
    Step,
    VectorNorm,
    default_pipeline,
    list_steps,
)

AXIS = np.linspace(200.0, 3800.0, 120)


def _spectra(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peaks = np.exp(-0.5 * ((AXIS[None, :] - rng.uniform(500, 3000, (n, 1))) / 60.0) ** 2)
    water = np.exp(-0.5 * ((AXIS - 3350.0) / 150.0) ** 2)
    return (5.0 + 0.001 * AXIS + 3 * peaks + rng.uniform(1, 2, (n, 1)) * water + 0.05 * rng.random((n, AXIS.size)))


#: Tiny parameters for every registered step (the suite fails when a step is missing here).
CASES: dict[str, Step] = {
    "Crop": Crop(500, 3000),
    "Resample": Resample(np.linspace(300, 3700, 50)),
    "SavitzkyGolay": SavitzkyGolay(7, 2, 1),
    "BaselineCorrection": BaselineCorrection("asls", lam=1e4, p=0.01),
    "Despike": Despike(),
    "SNV": SNV(),
    "MinMax": MinMax(),
    "VectorNorm": VectorNorm(),
    "AreaNorm": AreaNorm(),
    "Standardize": Standardize(),
    "LaserCalibration": LaserCalibration(),
}


def test_every_step_has_a_case() -> None:
    assert set(CASES) == set(list_steps())


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generic_step(name: str, dtype: type) -> None:
    step = clone(CASES[name])
    X = _spectra().astype(dtype)
    X.flags.writeable = False
    before = X.copy()
    axis = AXIS.copy()
    axis.flags.writeable = False
    with pytest.raises(NotFittedError):
        step.transform(X)
    Z = step.fit(X, axis=axis).transform(X)
    np.testing.assert_array_equal(X, before)  # never mutates
    assert Z.dtype == dtype and Z.shape == (X.shape[0], step.output_axis_.size)
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(step.fit_transform(X, axis=axis), Z)
    restored = Step.from_dict(__import__("json").loads(__import__("json").dumps(step.to_dict())))
    np.testing.assert_array_equal(restored.transform(X), Z)
    np.testing.assert_array_equal(restored.output_axis_, step.output_axis_)
    with pytest.raises(DataValueError, match="points per spectrum"):
        step.transform(X[:, :-1])


def test_snv_vector_minmax_area() -> None:
    X = _spectra()
    Z = SNV().fit_transform(X)
    np.testing.assert_allclose(Z.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(1), 1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(VectorNorm().fit_transform(X), axis=1), 1)
    M = MinMax().fit_transform(X)
    np.testing.assert_allclose(M.min(1), 0)
    np.testing.assert_allclose(M.max(1), 1)
    A = AreaNorm().fit_transform(X - 6, axis=AXIS)
    np.testing.assert_allclose(trapezoid(np.abs(A), AXIS, axis=1), 1)
    S = Standardize().fit(X).transform(X)
    np.testing.assert_allclose(S.mean(0), 0, atol=1e-12)


def test_flat_spectrum_does_not_divide_by_zero() -> None:
    X = np.ones((2, 10))
    assert np.all(SNV().fit_transform(X) == 0)
    assert np.all(MinMax().fit_transform(X) == 0)


def test_laser_calibration_integral_equals_reference() -> None:
    X = _spectra()
    step = LaserCalibration().fit(X, axis=AXIS)
    Z = step.transform(X * np.array([[0.5], [1], [2], [3], [1], [1]]))
    band = (AXIS >= 3100) & (AXIS <= 3700)
    np.testing.assert_allclose(trapezoid(Z[:, band], AXIS[band], axis=1), step.reference_)
    fixed = LaserCalibration(reference=10.0).fit(X, axis=AXIS)
    np.testing.assert_allclose(trapezoid(fixed.transform(X)[:, band], AXIS[band], axis=1), 10.0)
    with pytest.raises(AxisError, match=r"window 3100..3700 lies outside the axis 200..1000"):
        LaserCalibration().fit(X[:, :10], axis=np.linspace(200, 1000, 10))


def test_crop_bounds() -> None:
    step = Crop(1000, 2000).fit(_spectra(), axis=AXIS)
    assert step.output_axis_.min() >= 1000 and step.output_axis_.max() <= 2000
    assert step.output_axis_.size == np.count_nonzero((AXIS >= 1000) & (AXIS <= 2000))
    with pytest.raises(AxisError, match="does not overlap the axis 200..3800"):
        Crop(5000, 6000).fit(_spectra(), axis=AXIS)


def test_resample_linear_exact_and_errors() -> None:
    X = 3.0 * AXIS[None, :] - 7.0
    target = np.linspace(250.0, 3750.0, 77)
    Z = Resample(target).fit(X, axis=AXIS).transform(X)
    np.testing.assert_allclose(Z[0], 3.0 * target - 7.0, rtol=1e-12)
    with pytest.raises(AxisError, match=r"target axis 5000..6000 does not overlap the input axis 200..3800"):
        Resample(np.linspace(5000, 6000, 5)).fit(X, axis=AXIS)
    with pytest.warns(UserWarning, match="extrapolated"):
        Resample(np.linspace(100, 3000, 5)).fit(X, axis=AXIS)


def test_savgol_derivative_in_axis_units() -> None:
    X = 2.0 * AXIS[None, :] + 1
    np.testing.assert_allclose(SavitzkyGolay(5, 2, 1).fit_transform(X, axis=AXIS), 2.0, rtol=1e-9)
    with pytest.raises(ValueError, match="window=4 must be an odd integer"):
        SavitzkyGolay(4).fit(X)


def test_despike_removes_spike_keeps_peaks() -> None:
    x = np.linspace(200, 3800, 1000)
    rng = np.random.default_rng(0)
    X = 10 + 5 * np.exp(-0.5 * ((x - 1000) / 15.0) ** 2) + 0.05 * rng.standard_normal((3, x.size))
    spiked = X.copy()
    spiked[1, 400] += 50.0
    Z = Despike().fit_transform(spiked, axis=x)
    assert abs(Z[1, 400] - X[1, 400]) < 0.3
    np.testing.assert_allclose(Z[0], X[0])  # bands are several points wide: untouched


def test_baseline_removes_offset_and_bad_method() -> None:
    x = np.linspace(0, 1, 300)
    X = (1 + 2 * x + np.exp(-0.5 * ((x - 0.5) / 0.01) ** 2))[None, :]
    Z = BaselineCorrection("asls", lam=1e5, p=0.001).fit_transform(X, axis=x)
    assert abs(np.median(Z)) < 0.05 and Z.max() > 0.8
    with pytest.raises(ValueError, match="method='magic' is not one of"):
        BaselineCorrection("magic").fit(X)
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['nonsense'\]; valid parameters: lam, p"):
        BaselineCorrection("asls", nonsense=1).fit(X)


def test_pipeline_axis_and_json_round_trip() -> None:
    X = _spectra()
    pipe = Pipeline([Crop(300, 3700), Despike(), BaselineCorrection("snip", max_half_window=10),
                     SavitzkyGolay(5, 2), LaserCalibration(window=(3100, 3650)), Standardize()])
    Z = pipe.fit_transform(X, axis=AXIS)
    assert pipe.output_axis_.size == Z.shape[1] and pipe.output_axis_.min() >= 300
    restored = Pipeline.from_json(pipe.to_json())
    np.testing.assert_array_equal(restored.transform(X), Z)
    np.testing.assert_array_equal(restored.output_axis_, pipe.output_axis_)
    assert restored.to_json() == pipe.to_json()
    unfitted = Pipeline.from_json(Pipeline([SNV()]).to_json())
    with pytest.raises(NotFittedError):
        unfitted.transform(X)


def test_pipeline_json_errors() -> None:
    with pytest.raises(DataFormatError, match="does not parse"):
        Pipeline.from_json("{")
    with pytest.raises(DataFormatError, match="unknown preprocessing step 'Evil'"):
        Pipeline.from_json('{"format": "scai-preprocessing", "version": 1, "steps": [{"name": "Evil"}]}')
    with pytest.raises(DataFormatError, match=r"'Despike': unknown parameter\(s\) \['treshold'\]; valid parameters: .*threshold"):
        Pipeline.from_json('{"format": "scai-preprocessing", "version": 1, "steps": [{"name": "Despike", "params": {"treshold": 5}}]}')
    with pytest.raises(ScaiTypeError, match="is not a scai preprocessing Step"):
        Pipeline([object()]).fit(np.ones((2, 8)))


def test_default_pipelines() -> None:
    X = _spectra().astype(np.float32)
    Z = default_pipeline("raman").fit_transform(X, axis=AXIS)
    np.testing.assert_allclose(Z.mean(1), 0, atol=1e-5)
    ident = default_pipeline("none")
    out = ident.fit_transform(X, axis=AXIS)
    np.testing.assert_array_equal(out, X)
    assert out is not X and np.array_equal(ident.output_axis_, AXIS)
    with pytest.raises(ConfigError, match="kind='uv' is not one of"):
        default_pipeline("uv")


def test_pipeline_accepts_spectra() -> None:
    from scai.data import Spectra

    s = Spectra(_spectra(), AXIS)
    pipe = Pipeline([Crop(500, 1000)]).fit(s)
    assert pipe.transform(s).shape[1] == pipe.output_axis_.size


def test_no_torch_import() -> None:
    code = "import sys, scai.preprocessing, scai.data; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_nonfinite_input_refused() -> None:
    X = _spectra()
    X[1, 2] = np.nan
    with pytest.raises(DataValueError, match="non-finite value at row 1, column 2"):
        SNV().fit(X)
