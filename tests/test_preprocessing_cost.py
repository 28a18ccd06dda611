"""Preprocessing cost: hand-counted MACs per step, measured ms, totals, JSON and latency budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from scai.errors import BudgetError, ConfigError, NotFittedError
from scai.preprocessing import (
    SNV,
    AreaNorm,
    BaselineCorrection,
    Crop,
    Despike,
    LaserCalibration,
    MinMax,
    Pipeline,
    PreprocessingCost,
    Resample,
    SavitzkyGolay,
    Standardize,
    VectorNorm,
    default_pipeline,
)

from .test_preprocessing import AXIS, CASES, _spectra

N = AXIS.size  # 120 points, 200..3800


@pytest.mark.parametrize(
    ("step", "hand"),
    [
        (SNV(), 4 * 120),  # sum, subtract, square-accumulate, divide
        (MinMax(), 4 * 120),  # min, subtract, max, divide
        (VectorNorm(), 2 * 120),  # square-accumulate, divide
        (AreaNorm(), 3 * 120),  # abs, trapezoid, divide
        (Standardize(), 2 * 120),  # subtract, divide
        (SavitzkyGolay(11, 2), 11 * 120),  # 11 taps per point
        (SavitzkyGolay(7, 2, 1), 7 * 120),
        (Resample(np.linspace(300, 3700, 50)), 2 * 50),  # two products per target point
        (Crop(500, 3000), 0),
        # axis points 200 + 30.25 k: the water window 3100..3700 holds k = 96..115, 20 of them
        (LaserCalibration(), 20 + 120),
    ],
)
def test_counted_steps_match_hand_counts(step, hand: int) -> None:
    step = clone(step).fit(_spectra(), axis=AXIS)
    assert step.macs(N) == hand


def test_laser_window_hand_count_is_the_axis_points_inside() -> None:
    assert int(np.count_nonzero((AXIS >= 3100) & (AXIS <= 3700))) == 20


def test_data_dependent_steps_are_not_counted() -> None:
    for step in (Despike(), BaselineCorrection("asls")):
        assert step.macs(N) is None


def test_every_registered_step_declares_its_cost() -> None:
    for name, step in CASES.items():
        fitted = clone(step).fit(_spectra(), axis=AXIS)
        macs = fitted.macs(N)
        assert macs is None or (isinstance(macs, int) and macs >= 0), name
        assert fitted.n_out(N) == fitted.output_axis_.size, name


def test_widths_thread_through_the_pipeline() -> None:
    # Axis points 200 + 30.25 k: Crop(1000, 2000) keeps k = 27..59, 33 points, which SG and SNV then see.
    kept = int(np.count_nonzero((AXIS >= 1000) & (AXIS <= 2000)))
    assert kept == 33
    pipe = Pipeline([Crop(1000, 2000), SavitzkyGolay(5, 2), SNV()]).fit(_spectra(), axis=AXIS)
    cost = pipe.cost(measure=False)
    assert [(s.n_in, s.n_out) for s in cost.steps] == [(120, 33), (33, 33), (33, 33)]
    assert [s.macs for s in cost.steps] == [0, 5 * 33, 4 * 33]
    assert cost.macs == 9 * 33 and cost.counted and cost.ms is None


def test_raman_preset_counts_and_measures(shared_datasets) -> None:
    d = np.load(shared_datasets / "milk_adulteration.npz", allow_pickle=False)
    X = d["X"][:64]
    pipe = default_pipeline("raman").fit(X, axis=d["axis"])
    cost = pipe.cost(X=X, repeats=1)
    assert cost.n_points == 1738 and cost.batch_size == 64
    assert cost.uncounted == ["Despike", "BaselineCorrection"] and not cost.counted
    assert cost.macs == (11 + 4) * 1738  # SavitzkyGolay(11) + SNV
    assert all(s.ms is not None and s.ms > 0 for s in cost.steps)
    assert cost.ms == pytest.approx(sum(s.ms for s in cost.steps))
    # an unfitted preset gives the same counts for a given width
    assert default_pipeline("raman").cost(1738, measure=False).macs == cost.macs


def test_json_round_trip_and_table() -> None:
    pipe = Pipeline([Despike(), SNV()]).fit(_spectra(), axis=AXIS)
    cost = pipe.cost(X=_spectra(8), repeats=1)
    back = PreprocessingCost.from_dict(json.loads(json.dumps(cost.to_dict())))
    assert back == cost
    d = cost.to_dict()
    assert d["macs"] == 4 * 120 and d["counted"] is False and d["ms"] == pytest.approx(cost.ms)
    table = cost.table()
    assert "Despike" in table and "measured" in table and "480 + measured" in table


def test_cpu_clock_is_recorded_and_bad_clocks_refused() -> None:
    pipe = Pipeline([SNV()]).fit(_spectra(), axis=AXIS)
    cost = pipe.cost(X=_spectra(8), repeats=1, clock="cpu")
    assert cost.clock == "cpu" and cost.ms is not None and "(cpu)" in cost.table()
    assert PreprocessingCost.from_dict(cost.to_dict()).clock == "cpu"
    with pytest.raises(ConfigError, match="clock='gpu' is not allowed"):
        pipe.cost(clock="gpu")


def test_empty_pipeline_costs_nothing() -> None:
    cost = Pipeline([]).fit(_spectra(), axis=AXIS).cost()
    assert cost.macs == 0 and cost.ms == 0.0 and cost.counted


def test_latency_budget_leaves_the_network_what_preprocessing_does_not_take() -> None:
    cost = Pipeline([SNV()]).fit(_spectra(), axis=AXIS).cost(X=_spectra(4), repeats=1)
    assert cost.network_budget_ms(cost.ms + 2.0) == pytest.approx(2.0)
    with pytest.raises(BudgetError, match="preprocessing alone takes"):
        cost.network_budget_ms(cost.ms / 2)
    with pytest.raises(BudgetError, match="needs its measured ms"):
        Pipeline([SNV()]).cost(120, measure=False).network_budget_ms(5.0)


def test_bad_calls_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs n_points"):
        Pipeline([SNV()]).cost()
    with pytest.raises(NotFittedError, match="measure=False"):
        Pipeline([SNV()]).cost(120)
    fitted = Pipeline([SNV()]).fit(_spectra(), axis=AXIS)
    with pytest.raises(ConfigError, match="differs from the 120 points"):
        fitted.cost(100)
    with pytest.raises(ConfigError, match=r"X must be \(n_spectra, 120\)"):
        fitted.cost(X=np.ones((3, 7)))
    with pytest.raises(NotFittedError):
        Pipeline([Crop(500, 3000)]).cost(120, measure=False)  # the kept points depend on the axis


def test_the_model_stores_its_preprocessing_cost_and_ms_budgets_include_it(tmp_path) -> None:
    from scai import SCAIClassifier, load
    from scai.errors import BudgetError
    from scai.model_dir import ModelDir, row_digests
    from tests.conftest import TINY_SCAI, make_peaks

    X, y, axis = make_peaks(n_per_class=6)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 1}, cross_fit=0,
                         preprocessing="snv", exit0="none").fit(X, y, axis=axis)
    cost = est.preprocessing_cost_
    assert cost.macs == est.pipeline_.cost(measure=False).macs > 0 and cost.ms is not None and cost.ms > 0
    back = load(est.save(tmp_path / "m"))
    assert back.preprocessing_cost_.to_dict() == cost.to_dict()
    assert ModelDir(tmp_path / "m").training_rows() == set(row_digests(X))  # saved from Python too
    pred = back.predictor()
    assert pred.preprocessing_ms == cost.ms
    pred.set_stage_latency([1.0] * len(back.exit_macs_))
    from scai.inference import parse_budget

    macs, how = pred.budget_to_macs(f"{cost.ms + 1.5}ms")  # preprocessing + 1.5 ms: the network gets 1.5 ms
    want = parse_budget("1.5ms").to_macs(back.exit_macs_, stage_ms=[1.0] * len(back.exit_macs_))
    assert macs == pytest.approx(want, rel=1e-6) and "of preprocessing" in how
    with pytest.raises(BudgetError, match="preprocessing alone takes"):
        pred.budget_to_macs(f"{cost.ms / 2}ms")
