"""Predictor, server and edge run one exit loop: the same (prediction, exit, MACs, flags) for the
same spectra and policy, checked against an independent reference.

The reference never touches the Predictor, the exit loop or the policies module: it runs the
network's ``forward_detailed`` (every exit, every sample), applies softmax with the temperatures
read from the model's config.json, and applies each policy by hand as the docs describe it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import TINY

N = 16  # the live server's max_rows


@pytest.fixture(scope="module")
def scai_dir(tmp_path_factory: pytest.TempPathFactory, milk: Any) -> Path:
    """A tiny static-cost SCAI (no PA blocks): MACs per exit are the same on every runtime."""
    import torch

    from scai import SCAIClassifier

    torch.manual_seed(1)
    idx = np.concatenate([np.flatnonzero(milk.y == c)[:4] for c in range(len(milk.class_names))])
    est = SCAIClassifier(model="scai", model_config=TINY, train_config={"max_epochs": 1}, val_fraction=0.25,
                         skip_exits=False)
    est.fit(milk.X[idx], np.asarray(milk.class_names)[milk.y[idx]], axis=milk.axis)
    return est.save(tmp_path_factory.mktemp("scai") / "milk_scai")


def _reference(model_dir: Path, X: np.ndarray, axis: np.ndarray) -> dict[str, np.ndarray]:
    """Per-exit probabilities (n_exits, n, C) and cumulative MACs (n, n_exits), computed independently."""
    import torch

    import scai

    est = scai.load(model_dir)
    temps = np.asarray(json.loads((model_dir / "config.json").read_text())["temperatures"], dtype=np.float64)
    Z = est.transform_input(X, axis)
    with torch.no_grad():
        out = est.network_.forward_detailed(torch.from_numpy(Z).unsqueeze(1))
    probs = []
    for k, logits in enumerate(out.logits):
        z = logits.double().numpy() / temps[k]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    return {"probs": np.stack(probs), "costs": out.macs.double().numpy(), "static": np.asarray(est.exit_macs_, float)}


def _answer(ref: dict[str, np.ndarray], exits: np.ndarray, costs: np.ndarray) -> dict[str, np.ndarray]:
    idx = np.arange(exits.size)
    p = ref["probs"][exits, idx]
    return {"class_index": p.argmax(axis=1), "exit": exits, "macs": costs[idx, exits]}


def _by_hand(ref: dict[str, np.ndarray], policy: str, *, th: np.ndarray | None = None, budget: float = 0.0,
             cal: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    probs, costs, static = ref["probs"], ref["costs"], ref["static"]
    L, n = probs.shape[0], probs.shape[1]
    conf = probs.max(axis=2)
    exits = np.full(n, L - 1)
    flagged = np.zeros(n, dtype=bool)
    if policy == "threshold":
        for i in range(n):
            exits[i] = next((k for k in range(L - 1) if conf[k, i] >= th[k]), L - 1)
    elif policy == "anytime":
        step = np.diff(static)  # full-compute cost of the next stage
        for i in range(n):
            exits[i] = next((k for k in range(L - 1) if costs[i, k] + step[k] > budget), L - 1)
            flagged[i] = costs[i, exits[i]] > budget
    elif policy == "batch":
        # thresholds, then the guard: with E the planned cost per sample still ahead, only
        # floor((n * B - spent) / E) of those still running may go on; the most confident leave.
        assert cal is not None
        t, c, shares = cal["thresholds"], cal["exit_costs"], cal["exit_shares"]
        running = list(range(n))
        gone = 0.0
        for k in range(L - 1):
            leave = [i for i in running if conf[k, i] >= t[k]]
            stay = [i for i in running if conf[k, i] < t[k]]
            spent = gone + sum(costs[i, k] for i in running)
            w = np.asarray(shares[k + 1 :], float)
            w = w / w.sum() if w.sum() > 0 else np.eye(w.size)[0]
            per = float(w @ (np.asarray(c[k + 1 :]) - c[k]))
            may = max(int(math.floor((n * cal["budget"] - spent) / per + 1e-9)), 0) if per > 0 else len(stay)
            forced = sorted(stay, key=lambda i: -conf[k, i])[: max(len(stay) - may, 0)]
            for i in leave + forced:
                exits[i] = k
                gone += costs[i, k]
            flagged[forced] = True
            running = [i for i in stay if i not in forced]
    out = _answer(ref, exits, costs)
    out["flagged"] = flagged
    return out


def _edge_by_hand(ref: dict[str, np.ndarray], th: np.ndarray, bmax: float) -> dict[str, np.ndarray]:
    """Edge: stages run while the dense cost fits bmax; unsettled spectra take the most confident exit run."""
    probs, static = ref["probs"], ref["static"]
    L, n = probs.shape[0], probs.shape[1]
    conf = probs.max(axis=2)
    exits, flagged, spent = np.zeros(n, dtype=int), np.zeros(n, dtype=bool), np.zeros(n)
    for i in range(n):
        ran = [k for k in range(L) if static[k] <= bmax]
        done = next((k for k in ran if k == L - 1 or conf[k, i] >= th[k]), None)
        spent[i] = static[done if done is not None else ran[-1]]  # every stage run is paid for
        if done is None:
            flagged[i] = True
            done = max(ran, key=lambda k: (conf[k, i], k))
        exits[i] = done
    out = _answer(ref, exits, np.broadcast_to(static, (n, L)))
    out["macs"], out["flagged"] = spent, flagged
    return out


def _check(got: dict[str, Any], want: dict[str, np.ndarray], who: str) -> None:
    for key in ("class_index", "exit", "flagged"):
        np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=f"{who}: {key}")
    np.testing.assert_allclose(np.asarray(got["macs"], float), want["macs"], rtol=1e-9, err_msg=f"{who}: macs")


def _server(client: Any, X: np.ndarray, axis: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy

    params = {k: (",".join(str(v) for v in val) if isinstance(val, (list, np.ndarray)) else str(val))
              for k, val in options.items()}
    r = client.post("/v1/predict", content=encode_npy(X.astype(np.float32)), params=params,
                    headers={"Content-Type": NPY_CONTENT_TYPE})
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    return {k: np.asarray([row[k] for row in rows]) for k in ("class_index", "exit", "macs", "flagged", "reason")}


def _predictor(est: Any, X: np.ndarray, axis: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
    r = est.predict_detailed(X, axis, **options)
    return {"class_index": r.class_index, "exit": r.exit, "macs": r.macs, "flagged": r.flagged, "reason": r.reason}


@pytest.fixture(scope="module")
def spectra(milk: Any) -> np.ndarray:
    rng = np.random.default_rng(3)
    return milk.X[rng.choice(len(milk.X), N, replace=False)]


def test_predictor_and_server_agree_with_the_reference_under_every_policy(
    model_dir: Path, estimator: Any, client: Any, service: Any, spectra: np.ndarray, milk: Any
) -> None:
    ref = _reference(model_dir, spectra, milk.axis)
    macs = estimator.exit_macs_
    th = np.asarray(service.default_thresholds.values)
    # a threshold half the spectra meet at exit 1, and an anytime budget that PA's per-sample
    # savings at exit 1 decide: both policies then send spectra to different exits
    L = ref["probs"].shape[0]
    assert L == 4  # exit 0 + the network's three
    t = float(np.median(ref["probs"][0].max(axis=1)))
    step = float(macs[1] - macs[0])
    b = float(np.round(np.median(ref["costs"][:, 0]) + step))
    cases: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = [
        ({"policy": "full"}, _by_hand(ref, "full")),
        ({"policy": "threshold", "threshold": t}, _by_hand(ref, "threshold", th=np.array([t] * (L - 1) + [0.0]))),
        ({"policy": "threshold"}, _by_hand(ref, "threshold", th=th)),  # the model's calibrated default
        ({"policy": "anytime", "budget": b}, _by_hand(ref, "anytime", budget=b)),
    ]
    assert len(set(cases[1][1]["exit"])) > 1
    if len(set(ref["costs"][:, 0])) > 1:  # PA costs vary per spectrum
        assert len(set(cases[3][1]["exit"])) > 1
    for options, want in cases:
        server_opts = dict(options)
        pred_opts = {("threshold" if k == "threshold" else k): v for k, v in options.items()}
        if options["policy"] == "threshold" and "threshold" not in options:
            pred_opts["threshold"] = th
        _check(_predictor(estimator, spectra, milk.axis, **pred_opts), want, f"predictor {options}")
        _check(_server(client, spectra, milk.axis, **server_opts), want, f"server {options}")


def test_server_batch_policy_keeps_the_guard(
    model_dir: Path, estimator: Any, client: Any, spectra: np.ndarray, milk: Any
) -> None:
    """A tight mean budget: the guard must send spectra out early on the server as in scai predict."""
    ref = _reference(model_dir, spectra, milk.axis)
    macs = estimator.exit_macs_
    budget = macs[0] + 0.15 * (macs[1] - macs[0])
    cal = estimator.calibrate_batch(budget)["calibration"]
    hand = {"thresholds": cal.thresholds, "exit_costs": cal.exit_costs, "exit_shares": cal.exit_shares,
            "budget": cal.budget}
    want = _by_hand(ref, "batch", cal=hand)
    pred = _predictor(estimator, spectra, milk.axis, policy="batch", budget=budget)
    srv = _server(client, spectra, milk.axis, policy="batch", budget=budget)
    _check(pred, want, "predictor batch")
    _check(srv, want, "server batch")
    assert srv["macs"].mean() <= budget * (1 + 1e-9) + (macs[-1] - macs[0]) / N  # within one sample's overshoot
    np.testing.assert_array_equal(srv["reason"], pred["reason"])


def test_server_batch_guard_fires(estimator: Any, client: Any, spectra: np.ndarray, milk: Any) -> None:
    """With every calibrated threshold out of reach, only the guard can make spectra leave early."""
    from scai.inference import BatchCalibration

    macs = np.asarray(estimator.exit_macs_, float)
    cal = estimator.calibrate_batch(macs[0] + 0.3 * (macs[1] - macs[0]))["calibration"]
    strict = BatchCalibration(**{**cal.__dict__, "thresholds": np.array([np.inf] * (len(macs) - 1) + [0.0])})
    Z = estimator.transform_input(spectra, milk.axis)
    r = estimator.predictor().predict(Z, policy="batch", calibration=strict)
    assert r.flagged.sum() > 0 and set(r.reason[r.flagged]) == {"guard"}
    assert r.mean_macs <= strict.budget + (macs[-1] - macs[0]) / N


@pytest.mark.parametrize("which", ["scai_plus", "scai"])
def test_edge_runs_the_same_loop(which: str, model_dir: Path, scai_dir: Path, tmp_path: Path, spectra: np.ndarray,
                                 milk: Any) -> None:
    pytest.importorskip("onnxruntime")
    import scai
    from scai.deploy import EdgeClient, export_onnx

    mdir = model_dir if which == "scai_plus" else scai_dir
    out = export_onnx(mdir, tmp_path / "onnx")
    ref = _reference(mdir, spectra, milk.axis)
    est = scai.load(mdir)
    macs = np.asarray(est.exit_macs_, float)

    def edge(threshold: Any, bmax: Any) -> dict[str, np.ndarray]:
        res = EdgeClient(out, bmax=bmax, threshold=threshold).classify(spectra, milk.axis)
        return {"class_index": np.array([r.class_index for r in res]), "exit": np.array([r.exit for r in res]),
                "macs": np.array([r.macs_edge for r in res], float), "flagged": np.array([r.offload_failed for r in res])}

    L = len(macs)
    assert L == 4 and est.network_.exit0.macs == macs[0]  # exit 0 runs on the edge too

    def th(v: float) -> np.ndarray:
        return np.array([v] * (L - 1) + [0.0])

    t = float(np.median(ref["probs"][1].max(axis=1)))
    _check(edge([None] * (L - 1), "100%"), _edge_by_hand(ref, th(np.inf), macs[-1]), f"{which} edge full")
    _check(edge(t, "100%"), _edge_by_hand(ref, th(t), macs[-1]), f"{which} edge threshold")
    _check(edge(0.999, macs[2]), _edge_by_hand(ref, th(0.999), macs[2]), f"{which} edge Bmax")
    if which == "scai":  # static costs: the edge, the predictor and the server's MACs are the same numbers
        pred = _predictor(est, spectra, milk.axis, policy="threshold", threshold=t)
        _check(pred, _edge_by_hand(ref, th(t), macs[-1]), "scai predictor threshold")


def test_batch_calibrations_per_budget_are_bounded(service: Any) -> None:
    """A server asked for many distinct budgets keeps the last 32 calibrations and does not grow the model's."""
    from scai.deploy.service import CALIBRATION_CACHE_SIZE
    from scai.inference import parse_budget

    stored = dict(service.estimator.thresholds_)
    macs = service.exit_macs
    for i in range(CALIBRATION_CACHE_SIZE + 8):
        service.calibration_for(parse_budget(float(macs[0] + (i + 1) * (macs[-1] - macs[0]) / 50)))
    assert len(service._calibrations) == CALIBRATION_CACHE_SIZE
    assert service.estimator.thresholds_ == stored
