"""DataFrames through preprocessing (numeric column names are the axis) and pipeline specs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from scai.errors import AxisError, ConfigError, DataValueError, ScaiTypeError
from scai.preprocessing import (
    SNV,
    BaselineCorrection,
    Crop,
    Despike,
    LaserCalibration,
    Pipeline,
    Resample,
    SavitzkyGolay,
    Standardize,
    default_pipeline,
    pipeline_from_spec,
    pipeline_to_spec,
    preprocessing_from_json,
    preprocessing_to_json,
)
from scai.preprocessing.base import Step

pd = pytest.importorskip("pandas")

AXIS = np.arange(300.0, 2001.0, 1.0)


def _frame(names: list) -> pd.DataFrame:
    X = np.random.default_rng(0).normal(size=(4, len(names)))
    return pd.DataFrame(X, columns=names, index=[f"s{i}" for i in range(4)])


def test_crop_of_a_frame_keeps_the_named_wavenumbers() -> None:
    df = _frame(list(AXIS))
    out = Crop(400, 1800).fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert out.columns[0] == 400.0 and out.columns[-1] == 1800.0 and out.shape == (4, 1401)
    assert list(out.index) == list(df.index)
    np.testing.assert_array_equal(out.to_numpy(), df.to_numpy()[:, 100:1501])


def test_text_column_names_are_the_axis_and_survive() -> None:
    df = _frame([f"{v:g}" for v in AXIS])
    crop = Crop(400, 1800).fit(df)
    np.testing.assert_array_equal(crop.output_axis_, np.arange(400.0, 1801.0))
    out = crop.transform(df)
    assert out.columns[0] == "400" and out.columns[-1] == "1800"


def test_reordered_frame_columns_are_matched_by_name() -> None:
    df = _frame([f"{v:g}" for v in AXIS])
    crop = Crop(400, 1800).fit(df)
    shuffled = df[list(np.random.default_rng(1).permutation(df.columns))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = crop.transform(shuffled)
    np.testing.assert_array_equal(out.to_numpy(), crop.transform(df).to_numpy())


def test_frame_on_another_axis_than_fitted_is_refused() -> None:
    crop = Crop(400, 1800).fit(_frame(list(AXIS)))
    with pytest.raises(AxisError, match="fitted on 300..2000"):
        crop.transform(_frame(list(AXIS + 0.5)))


def test_non_numeric_names_warn_and_use_the_index() -> None:
    df = _frame([f"wn_{i}" for i in range(10)])
    with pytest.warns(UserWarning, match="not all numeric .*'wn_0'"):
        crop = Crop(2, 5).fit(df)
    assert crop.transform(df).columns.tolist() == ["wn_2", "wn_3", "wn_4", "wn_5"]


def test_default_pandas_labels_are_an_index_without_warning() -> None:
    df = pd.DataFrame(np.ones((2, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step = SNV().fit(df)
    np.testing.assert_array_equal(step.axis_, np.arange(6.0))


def test_explicit_axis_wins_over_names() -> None:
    df = _frame([f"{v:g}" for v in AXIS])
    crop = Crop(0, 99).fit(df, axis=np.arange(AXIS.size, dtype=float))
    assert crop.output_axis_.size == 100


def test_pipeline_of_a_frame_gives_a_frame_on_the_output_axis() -> None:
    df = _frame([f"{v:g}" for v in AXIS])
    target = np.linspace(400, 1800, 50)
    pipe = Pipeline([Crop(400, 1800), Resample(target), SavitzkyGolay(5, 2, deriv=1), SNV()])
    out = pipe.fit_transform(df)
    assert isinstance(out, pd.DataFrame) and out.shape == (4, 50)
    assert out.columns[0] == "400" and out.columns[-1] == "1800"
    np.testing.assert_allclose(pipe.transform(df).to_numpy(), out.to_numpy())
    np.testing.assert_allclose(pipe.transform(df.to_numpy()), out.to_numpy())


def test_frame_input_is_never_modified() -> None:
    df = _frame(list(AXIS))
    before = df.copy()
    default_pipeline("raman").fit_transform(df)
    pd.testing.assert_frame_equal(df, before)


def test_set_output_pandas_names_array_output() -> None:
    out = Crop(400, 402).set_output(transform="pandas").fit(np.ones((2, AXIS.size)), axis=AXIS).transform(np.ones((2, AXIS.size)))
    assert out.columns.tolist() == ["400", "401", "402"]


# --- too few points -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 4, 10])
def test_default_pipelines_on_too_few_points_fail_with_a_scai_error(width: int) -> None:
    X = np.random.default_rng(0).normal(size=(6, width))
    for kind in ("raman", "deriv", "nir"):
        with pytest.raises(DataValueError, match="points per spectrum.*(snv|none)"):
            default_pipeline(kind).fit(X)


# --- specs --------------------------------------------------------------------------------

ALL_STEPS = [
    Crop(400, 1800),
    LaserCalibration(window=(1000, 1200)),
    Resample(np.linspace(400, 1800, 20)),
    SavitzkyGolay(15, 2, deriv=1),
    Despike(threshold=5.0),
    BaselineCorrection("asls", lam=1e5, p=0.02),
    SNV(),
    Standardize("global"),
]


def test_spec_round_trip_of_every_kind_of_step() -> None:
    pipe = Pipeline(ALL_STEPS)
    spec = pipeline_to_spec(pipe)
    text = json.dumps(spec)
    again = pipeline_from_spec(json.loads(text))
    assert pipeline_to_spec(again) == spec
    assert [type(s) for s in again] == [type(s) for s in pipe]
    assert not hasattr(again[0], "axis_")  # unfitted
    X = np.abs(np.random.default_rng(0).normal(size=(5, AXIS.size))) + 1
    np.testing.assert_allclose(again.fit_transform(X, axis=AXIS), Pipeline(ALL_STEPS).fit_transform(X, axis=AXIS))


def test_spec_from_a_config_list() -> None:
    pipe = pipeline_from_spec([{"step": "SavitzkyGolay", "window": 15, "polyorder": 2, "deriv": 1}, {"step": "SNV"}])
    assert isinstance(pipe[0], SavitzkyGolay) and pipe[0].window == 15 and pipe[0].deriv == 1
    assert isinstance(pipe[1], SNV)


def test_estimator_parameter_json_passes_kinds_through() -> None:
    assert preprocessing_to_json("raman") == "raman" and preprocessing_from_json("raman") == "raman"
    assert preprocessing_to_json(None) is None
    spec = preprocessing_to_json(Pipeline([SNV()]))
    assert isinstance(preprocessing_from_json(spec), Pipeline)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"step": "SNV", "x": 1}], r"unknown key\(s\) \['x'\]; valid keys: step"),
        ([{"step": "SavitzkyGolay", "windw": 5}], r"unknown key\(s\) \['windw'\]; valid keys: step, deriv, polyorder, window"),
        ([{"step": "Nope"}], "unknown preprocessing step 'Nope'; known steps: .*SNV"),
        ([{"name": "SNV"}], "each step is an object with a 'step' name"),
        ([{"step": "SavitzkyGolay", "window": 4}], "window=4 must be an odd integer"),
        ([{"step": "BaselineCorrection", "method": "asls", "lamb": 1}], r"unknown parameter\(s\) \['lamb'\]; valid parameters: lam"),
        ([{"step": "Crop", "lo": 10, "hi": 1}], "must not exceed"),
        ({"stepz": []}, "unexpected key"),
        ("SNV", "expected a list of steps"),
    ],
)
def test_bad_specs_name_the_problem(spec: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        pipeline_from_spec(spec)  # type: ignore[arg-type]


def test_unregistered_step_cannot_be_specced() -> None:
    class Mine(Step):
        def _transform(self, X: np.ndarray) -> np.ndarray:
            return X

    with pytest.raises(ScaiTypeError, match="not a registered scai preprocessing step"):
        pipeline_to_spec(Pipeline([Mine()]))
