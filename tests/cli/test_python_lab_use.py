"""#20 from Python: a custom preprocessing pipeline of registered steps round-trips through save,
load, ONNX export, the edge client and the server; a DataFrame's column names are the axis, so
reordered columns give the same answers as the array with its axis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import savgol_filter

from scai.data import read

DATA = Path(__file__).resolve().parents[1] / "data" / "milk_adulteration_30.csv"
TINY = {"channels": [4, 6, 8], "units_per_block": 2, "stem_stride": 4}
#: The pipeline of the issue, as its spec: what config.json must hold, written out by hand.
SPEC = {"steps": [{"step": "SavitzkyGolay", "window": 15, "polyorder": 2, "deriv": 1}, {"step": "SNV"}]}


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SCAIClassifier(preprocessing=Pipeline([SavitzkyGolay(15, 2, deriv=1), SNV()])) fitted on a
    DataFrame whose columns are the wavenumbers of real milk spectra, then saved."""
    pd = pytest.importorskip("pandas")
    from scai import SCAIClassifier
    from scai.preprocessing import SNV, Pipeline, SavitzkyGolay

    s = read(DATA)
    frame = pd.DataFrame(s.X, columns=s.axis)
    est = SCAIClassifier(model="scai", model_config=TINY, preprocessing=Pipeline([SavitzkyGolay(15, 2, deriv=1), SNV()]),
                         exit0="none", rocket="none", skip_exits=False, cross_fit=0,
                         train_config={"max_epochs": 1, "batch_size": 16}, random_state=0)
    est.fit(frame, s.labels)
    path = est.save(tmp_path_factory.mktemp("piped") / "model")
    return {"s": s, "frame": frame, "est": est, "path": path, "tmp": path.parent}


def test_the_pipeline_is_saved_as_its_spec_and_loads_equal(piped: dict[str, Any]) -> None:
    import scai

    s, est, path = piped["s"], piped["est"], piped["path"]
    saved = json.loads((path / "config.json").read_text())["estimator_params"]["preprocessing"]
    assert saved == SPEC
    assert not [p for p in path.parent.iterdir() if p.name != "model"]  # the atomic write left nothing beside it
    loaded = scai.load(path)
    assert [type(step).__name__ for step in loaded.preprocessing] == ["SavitzkyGolay", "SNV"]
    assert loaded.preprocessing[0].get_params() == est.preprocessing[0].get_params()
    # the stored steps compute what the steps themselves do: SG 1st derivative, then SNV, then the
    # estimator's own Standardize (x - mean_) / scale_, undone here with its fitted state
    assert [type(step).__name__ for step in loaded.pipeline_] == ["SavitzkyGolay", "SNV", "Standardize"]
    d = savgol_filter(s.X.astype(np.float64), 15, 2, deriv=1, axis=1)
    snv = (d - d.mean(axis=1, keepdims=True)) / d.std(axis=1, keepdims=True)
    last = loaded.pipeline_[2]
    Z = loaded.transform_input(s.X, s.axis).astype(np.float64) * last.scale_ + last.mean_
    np.testing.assert_allclose(Z, snv, atol=1e-3)
    np.testing.assert_array_equal(loaded.transform_input(s.X, s.axis), est.transform_input(s.X, s.axis))
    np.testing.assert_allclose(loaded.predict_proba(s.X, s.axis), est.predict_proba(s.X, s.axis), atol=1e-6)


def test_the_saved_pipeline_serves_from_onnx_the_edge_and_the_server(piped: dict[str, Any]) -> None:
    pytest.importorskip("onnxruntime", reason="export and edge need the onnx extra")
    pytest.importorskip("fastapi", reason="the server needs the serve extra")
    import httpx

    from scai.deploy import export_onnx
    from scai.deploy.edge import EdgeClient
    from scai.deploy.service import ModelService
    from tests.deploy.conftest import start_server

    s, est, path = piped["s"], piped["est"], piped["path"]
    X = s.X[:8]
    ref = [str(p) for p in est.predict_detailed(X, s.axis, policy="full").prediction]
    export = export_onnx(path, piped["tmp"] / "onnx")
    edge = EdgeClient(export, bmax=est.exit_macs_[-1], threshold=1.0).classify(X, s.axis)  # the whole network
    assert [r.prediction for r in edge] == ref
    server = start_server(ModelService(path, threads=1))  # uvicorn on loopback, as scai serve runs it
    try:
        r = httpx.post(f"{server.url}/v1/predict", json={"spectra": X.tolist(), "axis": s.axis.tolist(), "policy": "full"},
                       timeout=60)
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    assert [x["prediction"] for x in r.json()["results"]] == ref


def test_frame_columns_are_the_axis_in_any_order(piped: dict[str, Any]) -> None:
    s, est, frame = piped["s"], piped["est"], piped["frame"]
    np.testing.assert_array_equal(est.axis_, s.axis)  # fitted on the names, not on 0..n-1
    ref = est.predict_proba(s.X, s.axis)
    order = np.random.default_rng(0).permutation(frame.shape[1])
    for f in (frame, frame.iloc[:, ::-1], frame.iloc[:, order]):
        np.testing.assert_allclose(est.predict_proba(f), ref, atol=1e-6)
    np.testing.assert_array_equal(est.predict(frame.iloc[:, order]), est.predict(s.X, s.axis))
