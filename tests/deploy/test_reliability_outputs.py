"""The server's JSON and the edge client's results carry the same reliability flags as Python.

Python (``predict_detailed``, PyTorch) is the reference; the server runs the same PyTorch model
behind HTTP, the edge runs the exported ONNX stages with the calibration read from the manifest
(NumPy only). Spectra: real milk spectra plus junk built by hand (constant, all-zero).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def spectra(milk: Any) -> np.ndarray:
    rng = np.random.default_rng(7)
    X = milk.X[rng.choice(len(milk.X), 12, replace=False)].astype(np.float32)
    W = X.shape[1]
    return np.concatenate([X, np.full((1, W), 900.0, np.float32), np.zeros((1, W), np.float32)])


def _server(client: Any, X: np.ndarray, **params: Any) -> list[dict[str, Any]]:
    from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy

    r = client.post("/v1/predict", content=encode_npy(X), params={k: str(v) for k, v in params.items()},
                    headers={"Content-Type": NPY_CONTENT_TYPE})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _python(estimator: Any, X: np.ndarray, milk: Any, **options: Any) -> Any:
    return estimator.predict_detailed(X, milk.axis, **options)


def test_the_model_stores_the_calibration_in_config_and_manifest(model_dir: Path, export_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    manifest = json.loads((export_dir / "manifest.json").read_text())
    for key in ("ood", "domain", "conformal"):
        assert config[key], key
        assert manifest[key] == config[key], key
    assert len(manifest["ood"]["thresholds"]) == manifest["n_exits"]


HOLDS = [{"on_unknown": "answer"}, {"on_unknown": "deeper"}, {}, {"on_ambiguous": "deeper"},
         {"on_unknown": "answer", "on_ambiguous": "deeper"}]


@pytest.mark.parametrize("holds", HOLDS)
def test_server_json_carries_the_python_flags(estimator: Any, client: Any, spectra: np.ndarray, milk: Any,
                                              holds: dict[str, str]) -> None:
    want = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, confidence_level=0.9, **holds)
    rows = _server(client, spectra, policy="threshold", threshold=0.0, sets=0.9, **holds)
    assert [r["exit"] for r in rows] == want.exit.tolist()
    assert [r["reason"] for r in rows] == want.reason.tolist()
    assert [r["held"] for r in rows] == want.held.tolist()
    assert [r["unknown"] for r in rows] == want.unknown.tolist()
    np.testing.assert_allclose([r["unknown_score"] for r in rows], want.unknown_score, rtol=1e-6)
    assert [r["out_of_domain"] for r in rows] == want.out_of_domain.tolist()
    assert [r["domain_reason"] for r in rows] == want.domain_reason.tolist()
    names = [str(c) for c in estimator.classes_]
    assert [r["prediction_set"] for r in rows] == [[names[k] for k in np.flatnonzero(s)] for s in want.prediction_set]
    assert rows[-1]["out_of_domain"] and "constant" in rows[-1]["domain_reason"]
    assert rows[-2]["out_of_domain"] and "constant" in rows[-2]["domain_reason"]


def test_server_refuses_a_level_it_did_not_calibrate(client: Any, spectra: np.ndarray) -> None:
    from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy

    r = client.post("/v1/predict", content=encode_npy(spectra[:2]), params={"sets": "0.8"},
                    headers={"Content-Type": NPY_CONTENT_TYPE})
    assert r.status_code == 400 and "0.8" in r.json()["detail"]
    r = client.post("/v1/predict", content=encode_npy(spectra[:2]), params={"on_unknown": "ignore"},
                    headers={"Content-Type": NPY_CONTENT_TYPE})
    assert r.status_code == 400 and "on_unknown" in r.json()["detail"]
    for params, match in (({"on_ambiguous": "often", "sets": "0.9"}, "on_ambiguous"),
                          ({"on_ambiguous": "deeper"}, "needs sets"),
                          ({"on_ambiguous": "deeper", "sets": "0.8"}, "0.8")):
        r = client.post("/v1/predict", content=encode_npy(spectra[:2]), params=params,
                        headers={"Content-Type": NPY_CONTENT_TYPE})
        assert r.status_code == 400 and match in r.json()["detail"], (params, r.text)
    r = client.post("/v1/predict", json={"spectra": spectra[:2].tolist(), "on_ambiguous": "deeper"})
    assert r.status_code == 400 and "needs sets" in r.json()["detail"]


@pytest.mark.parametrize("holds", HOLDS)
def test_edge_results_carry_the_python_flags(estimator: Any, export_dir: Path, spectra: np.ndarray, milk: Any,
                                             holds: dict[str, str]) -> None:
    pytest.importorskip("onnxruntime")
    from scai.deploy import EdgeClient

    want = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, confidence_level=0.9, **holds)
    edge = EdgeClient(export_dir, bmax="100%", threshold=0.0, sets=0.9, **holds)
    res = edge.classify(spectra, milk.axis)
    assert [r.exit for r in res] == want.exit.tolist()
    assert [r.held for r in res] == want.held.tolist()
    assert [r.unknown for r in res] == want.unknown.tolist()
    np.testing.assert_allclose([r.unknown_score for r in res], want.unknown_score, rtol=1e-3)  # ONNX float32
    assert [r.out_of_domain for r in res] == want.out_of_domain.tolist()
    assert [r.domain_reason != "" for r in res] == [d != "" for d in want.domain_reason]
    names = [str(c) for c in estimator.classes_]
    assert [r.prediction_set for r in res] == [[names[k] for k in np.flatnonzero(s)] for s in want.prediction_set]


def test_deeper_sends_unknowns_past_exit_0(estimator: Any, spectra: np.ndarray, milk: Any) -> None:
    answer = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_unknown="answer")
    deeper = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_unknown="deeper")
    default = _python(estimator, spectra, milk, policy="threshold", threshold=0.0)
    flagged = answer.unknown
    assert (answer.exit == 0).all() and (answer.held == "").all()
    assert flagged.any(), "no spectrum flagged at exit 0: the check below would be empty"
    assert (deeper.exit[flagged] > 0).all() and (deeper.exit[~flagged] == 0).all()
    assert (deeper.held[flagged] == "unknown").all() and (deeper.held[~flagged] == "").all()
    assert default.exit.tolist() == deeper.exit.tolist() and default.held.tolist() == deeper.held.tolist()


def test_ambiguous_sets_go_deeper_when_asked(estimator: Any, spectra: np.ndarray, milk: Any) -> None:
    """Threshold 0: everyone may leave at exit 0; with on_ambiguous="deeper" those whose set at exit 0
    has two classes or more do not (on_unknown="answer" keeps the unknown hold out of it)."""
    answer = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_unknown="answer",
                     confidence_level=0.9)
    deeper = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_unknown="answer",
                     confidence_level=0.9, on_ambiguous="deeper")
    wide = answer.prediction_set.sum(axis=1) > 1  # the sets at exit 0
    assert wide.any() and not wide.all(), "every or no set is ambiguous here: the check below would say little"
    assert (deeper.exit[wide] > 0).all() and (deeper.exit[~wide] == 0).all()
    assert (deeper.held[wide] == "ambiguous").all() and (deeper.held[~wide] == "").all()
    last = deeper.exit == len(estimator.exit_macs_) - 1
    assert set(deeper.reason[wide & last]) <= {"ambiguous"} and set(deeper.reason[wide & ~last]) <= {"confident"}
    with pytest.raises(ValueError, match="confidence level"):
        _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_ambiguous="deeper")
    with pytest.raises(ValueError, match="on_ambiguous"):
        _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_ambiguous="often", confidence_level=0.9)


def test_the_edge_offloads_a_held_spectrum(estimator: Any, export_dir: Path, live: Any, spectra: np.ndarray,
                                           milk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bmax = exit 0: a spectrum flagged unknown there cannot run deeper on the edge, so it is offloaded
    and the centre answers it (held="unknown"); the others leave at exit 0 on the edge."""
    pytest.importorskip("onnxruntime")
    from scai.deploy import EdgeClient

    from .conftest import TOKEN

    flagged = _python(estimator, spectra, milk, policy="threshold", threshold=0.0, on_unknown="answer").unknown
    assert flagged.any() and not flagged.all()
    edge = EdgeClient(export_dir, bmax=estimator.exit_macs_[0], threshold=0.0, server=live.url, token=TOKEN)
    res = edge.classify(spectra, milk.axis)
    assert [r.decided_at for r in res] == ["centre" if f else "edge" for f in flagged]
    assert [r.held for r in res] == ["unknown" if f else "" for f in flagged]
    assert all(r.offload != "none" and not r.offload_failed and r.exit > 0 for r, f in zip(res, flagged) if f)
    assert all(r.exit == 0 and r.offload == "none" for r, f in zip(res, flagged) if not f)
    # this detector scores each exit alone, so the stage features go (they are the smaller payload) ...
    assert not edge.reliability.anchored and edge.payload_bytes(0)["features"] <= edge.payload_bytes(0)["raw"]
    assert all(r.offload == "features" for r, f in zip(res, flagged) if f)
    # ... while an anchored one (later exits add exit 0's score) needs the raw spectrum at the centre
    from scai.inference.reliability import Reliability

    monkeypatch.setattr(Reliability, "anchored", property(lambda self: True))
    assert edge._hook is not None and edge._hook.anchored
    assert all(r.offload == "raw" for r, f in zip(edge.classify(spectra, milk.axis), flagged) if f)
    monkeypatch.undo()
    # on_unknown="answer": nothing is held, nothing offloaded
    answer = EdgeClient(export_dir, bmax=estimator.exit_macs_[0], threshold=0.0, server=live.url, token=TOKEN,
                        on_unknown="answer").classify(spectra, milk.axis)
    assert all(r.decided_at == "edge" and r.held == "" and r.exit == 0 for r in answer)


def test_an_offloaded_spectrum_carries_the_centres_flags(estimator: Any, export_dir: Path, live: Any,
                                                         spectra: np.ndarray, milk: Any) -> None:
    """Bmax below exit 0: nothing runs on the edge, the raw spectra go to the centre (policy full)."""
    pytest.importorskip("onnxruntime")
    from scai.deploy import EdgeClient

    from .conftest import TOKEN

    want = _python(estimator, spectra, milk, policy="full", confidence_level=0.95)
    edge = EdgeClient(export_dir, bmax=estimator.exit_macs_[0] - 1, server=live.url, token=TOKEN, sets=0.95)
    res = edge.classify(spectra, milk.axis)
    assert all(r.decided_at == "centre" and not r.offload_failed for r in res)
    assert [r.unknown for r in res] == want.unknown.tolist()
    np.testing.assert_allclose([r.unknown_score for r in res], want.unknown_score, rtol=1e-6)
    assert [r.out_of_domain for r in res] == want.out_of_domain.tolist()  # checked on the edge
    names = [str(c) for c in estimator.classes_]
    assert [r.prediction_set for r in res] == [[names[k] for k in np.flatnonzero(s)] for s in want.prediction_set]
