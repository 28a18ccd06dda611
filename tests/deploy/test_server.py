"""The computing centre on loopback: predict (JSON, npy), continue (fp32, fp16), auth, limits,
every malformed payload -> 4xx with a message, micro-batching of concurrent requests."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import numpy as np
import pytest

from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy

from .conftest import TOKEN

NPY = {"Content-Type": NPY_CONTENT_TYPE}


def _features(estimator: Any, X: np.ndarray, axis: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch features after ``stage`` and the last exit's probabilities."""
    import torch

    Z = estimator.transform_input(X, axis)
    net = estimator.network_
    with torch.no_grad():
        f = torch.from_numpy(Z).unsqueeze(1)
        out = None
        for k in range(net.n_exits):
            f, _ = net.run_stage(k, f)
            if k == stage:
                out = f.numpy().copy()
    probs = estimator.exit_proba(Z, preprocessed=True)[-1]
    return out, probs


def test_health_model_and_openapi(client: Any, live: Any) -> None:
    import httpx

    h = httpx.get(f"{live.url}/v1/health")  # no token needed
    assert h.status_code == 200 and h.json()["status"] == "ok"
    m = client.get("/v1/model").json()
    assert m["n_exits"] == 4 and len(m["stages"]) == 4 and len(m["model_sha256"]) == 64  # exit 0 + 3
    assert m["exits_used"] == [True] * 4
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/continue", "/v1/health", "/v1/model"} <= set(spec["paths"])
    assert NPY_CONTENT_TYPE in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]


def test_predict_json_and_npy_agree_with_pytorch(client: Any, estimator: Any, milk: Any) -> None:
    X = milk.X[:5]
    ref = estimator.predict_detailed(X, milk.axis, policy="full")
    r1 = client.post("/v1/predict", json={"spectra": X.tolist(), "axis": milk.axis.tolist()})
    r2 = client.post("/v1/predict", content=encode_npy(X), headers=NPY)
    for r in (r1, r2):
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["prediction"] for x in res] == [str(p) for p in ref.prediction]
        assert [x["exit"] for x in res] == [3] * 5
        assert np.allclose([x["macs"] for x in res], ref.macs)
        assert np.allclose([x["probabilities"] for x in res], ref.probabilities, atol=1e-6)


def test_predict_policies(client: Any, estimator: Any, milk: Any) -> None:
    X = milk.X[5:9]
    body = encode_npy(X)
    macs = estimator.exit_macs_
    r = client.post("/v1/predict", content=body, headers=NPY, params={"policy": "anytime", "budget": str(macs[0])})
    assert r.status_code == 200 and {x["exit"] for x in r.json()["results"]} == {0}
    r = client.post("/v1/predict", content=body, headers=NPY,
                    params={"policy": "threshold", "threshold": "0", "on_unknown": "answer"})
    assert r.status_code == 200 and {x["exit"] for x in r.json()["results"]} == {0}
    flagged = [x["unknown"] for x in r.json()["results"]]
    r = client.post("/v1/predict", content=body, headers=NPY, params={"policy": "threshold", "threshold": "0"})
    assert r.status_code == 200  # by default a spectrum flagged unknown at exit 0 runs deeper, and says so
    assert [(x["exit"] > 0, x["held"]) for x in r.json()["results"]] == [(f, "unknown" if f else "") for f in flagged]
    r = client.post("/v1/predict", json={"spectra": X.tolist(), "policy": "threshold"})  # calibrated default
    assert r.status_code == 200
    r = client.post("/v1/predict", json={"spectra": X.tolist(), "policy": "batch", "budget": f"{macs[1]}"})
    assert r.status_code == 200
    res = r.json()["results"]
    # the batch keeps its mean budget (within one spectrum's overshoot), as scai predict does
    assert np.mean([x["macs"] for x in res]) <= macs[1] + (macs[-1] - macs[0]) / len(res)
    ref = estimator.predict_detailed(X, milk.axis, policy="batch", budget=macs[1])
    assert [x["exit"] for x in res] == ref.exit.tolist() and [x["reason"] for x in res] == ref.reason.tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("stage", [0, 1])
def test_continue_matches_full_forward(client: Any, estimator: Any, milk: Any, dtype: Any, stage: int) -> None:
    X = milk.X[10:14]
    feats, probs = _features(estimator, X, milk.axis, stage)
    r = client.post("/v1/continue", content=encode_npy(feats.astype(dtype)), headers=NPY, params={"stage": stage})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    got = np.asarray([x["probabilities"] for x in res])
    assert np.max(np.abs(got - probs)) <= (1e-5 if dtype == np.float32 else 1e-2)
    assert all(x["exit"] == 3 for x in res)
    centre_macs = estimator.exit_macs_[-1] - estimator.exit_macs_[stage]
    assert all(0 < x["macs"] <= centre_macs for x in res)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}])
def test_auth_is_required(live: Any, headers: dict[str, str], milk: Any) -> None:
    import httpx

    for method, path, kw in [
        ("POST", "/v1/predict", {"json": {"spectra": milk.X[:1].tolist()}}),
        ("POST", "/v1/continue?stage=0", {"content": b"x", "headers": {**NPY, **headers}}),
        ("GET", "/v1/model", {}),
    ]:
        kw.setdefault("headers", headers)
        r = httpx.request(method, live.url + path, **kw)
        assert r.status_code == 401, (path, r.text)
        assert "bearer token" in r.json()["detail"]


def _bad_object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([[1.0, "x"]], dtype=object), allow_pickle=True)
    return buf.getvalue()


W = 1738


@pytest.mark.parametrize(
    "path, params, body, ctype, status, match",
    [
        ("/v1/predict", {}, b"{not json", "application/json", 400, "not valid JSON"),
        ("/v1/predict", {}, b'{"spectra": "abc"}', "application/json", 400, "non-empty list"),
        ("/v1/predict", {}, b'{"spectra": [[1, 2, 3]]}', "application/json", 400, "1738"),
        ("/v1/predict", {}, json.dumps({"spectra": [[1.0] * W], "policy": "fastest"}).encode(), "application/json", 400, "policy"),
        ("/v1/predict", {}, json.dumps({"spectra": [[1.0] * W], "policy": "anytime", "budget": "-3"}).encode(), "application/json", 400, "budget"),
        ("/v1/predict", {}, json.dumps({"spectra": [[1.0] * W], "policy": "anytime"}).encode(), "application/json", 400, "needs a budget"),
        ("/v1/predict", {}, b'{"spectra": [[1, NaN]]}', "application/json", 400, "NaN"),
        ("/v1/predict", {}, b"abc", "text/plain", 415, "Content-Type"),
        ("/v1/predict", {}, b"garbage", NPY_CONTENT_TYPE, 400, "not a valid .npy"),
        ("/v1/predict", {}, _bad_object_npy(), NPY_CONTENT_TYPE, 400, "object"),
        ("/v1/predict", {}, encode_npy(np.ones((1, W), dtype=np.int32)), NPY_CONTENT_TYPE, 400, "dtype int32"),
        ("/v1/predict", {}, encode_npy(np.full((1, W), np.inf, dtype=np.float32)), NPY_CONTENT_TYPE, 400, "NaN/inf"),
        ("/v1/predict", {}, encode_npy(np.ones((1, 10), dtype=np.float32)), NPY_CONTENT_TYPE, 400, "1738"),
        ("/v1/predict", {"policy": "batch", "budget": "1ms"}, encode_npy(np.ones((1, W), dtype=np.float32)), NPY_CONTENT_TYPE, 400, "MACs"),
        ("/v1/continue", {"stage": "0"}, encode_npy(np.ones((1, 4, 3), dtype=np.float32)), NPY_CONTENT_TYPE, 400, "must have shape"),
        ("/v1/continue", {"stage": "0"}, encode_npy(np.ones((1, 4, 435), dtype=np.float64)), NPY_CONTENT_TYPE, 400, "dtype float64"),
        ("/v1/continue", {"stage": "0"}, encode_npy(np.ones((4, 435), dtype=np.float32)), NPY_CONTENT_TYPE, 400, "dimension"),
        ("/v1/continue", {"stage": "0"}, encode_npy(np.full((1, 4, 435), np.nan, dtype=np.float16)), NPY_CONTENT_TYPE, 400, "NaN/inf"),
        ("/v1/continue", {"stage": "3"}, encode_npy(np.ones((1, 8, 55), dtype=np.float32)), NPY_CONTENT_TYPE, 400, "out of range"),
        ("/v1/continue", {"stage": "-1"}, b"", NPY_CONTENT_TYPE, 400, "out of range"),
        ("/v1/continue", {"stage": "one"}, b"", NPY_CONTENT_TYPE, 400, "not an integer"),
        ("/v1/continue", {}, b"", NPY_CONTENT_TYPE, 400, "missing query parameter stage"),
        ("/v1/continue", {"stage": "0"}, b"{}", "application/json", 415, "Content-Type"),
        ("/v1/continue", {"stage": "0", "policy": "nope"}, b"", NPY_CONTENT_TYPE, 400, "policy"),
        ("/v1/continue", {"stage": "0"}, _bad_object_npy(), NPY_CONTENT_TYPE, 400, "object"),
    ],
)
def test_malformed_payloads_get_clear_4xx(client: Any, path, params, body, ctype, status, match) -> None:
    r = client.post(path, params=params, content=body, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert match.lower() in r.json()["detail"].lower()


def test_size_limits(client: Any, milk: Any) -> None:
    big = encode_npy(np.ones((40, 1738), dtype=np.float32))  # 278 kB > 256 KiB limit
    r = client.post("/v1/predict", content=big, headers=NPY)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the streamed body is counted as it arrives
        for _ in range(40):
            yield b"\0" * 8192

    r = client.post("/v1/predict", content=chunks(), headers=NPY)
    assert r.status_code == 413
    r = client.post("/v1/predict", json={"spectra": [[1.0] * 3] * 17})  # more rows than max_rows=16
    assert r.status_code == 413 and "at most 16" in r.json()["detail"]
    assert client.get("/v1/health").status_code == 200, "the server survived"


def test_concurrent_requests_are_micro_batched(client: Any, live: Any, milk: Any, estimator: Any) -> None:
    import httpx

    stats_before = client.get("/v1/health").json()["batching"]
    X = milk.X[20:36]
    ref = estimator.predict_detailed(X, milk.axis, policy="full").prediction
    answers: dict[int, str] = {}

    def one(i: int) -> None:
        with httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            r = c.post("/v1/predict", content=encode_npy(X[i : i + 1]), headers=NPY)
            answers[i] = r.json()["results"][0]["prediction"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(X))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [answers[i] for i in range(len(X))] == [str(p) for p in ref]
    after = client.get("/v1/health").json()["batching"]
    n_items, n_batches = after["items"] - stats_before["items"], after["batches"] - stats_before["batches"]
    assert n_items == len(X)
    assert n_batches < n_items, "some concurrent requests shared a forward pass"


def test_model_errors_become_4xx_not_500(client: Any, milk: Any) -> None:
    axis = np.linspace(9000, 9100, 1738).tolist()  # no overlap with the model's axis
    r = client.post("/v1/predict", json={"spectra": milk.X[:1].tolist(), "axis": axis})
    assert r.status_code == 400 and "overlap" in r.json()["detail"]
