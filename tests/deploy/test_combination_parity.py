"""A model whose exits combine earlier exits' logits answers the same on every runtime.

The reference runs each stage with ``run_stage`` (each stage's own logits), applies the
combination read from config.json by the documented formula, and the temperatures, and flags
unknowns by hand as :mod:`tests.deploy.test_exit_parity` does (the runtimes hold them); the
Predictor, the server (which refuses ``/v1/continue`` for such a model) and the edge's ONNX stages
must then agree with the policies applied by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .test_exit_parity import N, _by_hand, _check, _edge_by_hand, _predictor, _server, _unknown_by_hand


@pytest.fixture(scope="module")
def combined_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """The deploy tests' tiny SCAI+ cascade (4 exits) with a hand-set exit combination."""
    import scai
    from scai.inference.combination import ExitCombination

    est = scai.load(model_dir)
    L, C = len(est.exit_macs_), len(est.classes_)
    rng = np.random.default_rng(5)
    comb = ExitCombination(np.r_[0.0, rng.uniform(0.2, 1.0, L - 1)], np.r_[1.0, rng.uniform(0.5, 2.0, L - 1)],
                           np.r_[np.zeros((1, C)), rng.normal(0, 0.3, (L - 1, C))])
    est.network_ = est.network_.combined(comb)
    return est.save(tmp_path_factory.mktemp("combined") / "m")


def _reference(model_dir: Path, X: np.ndarray, axis: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    import scai

    cfg = json.loads((model_dir / "config.json").read_text())
    comb, temps = cfg["cascade"]["combination"], np.asarray(cfg["temperatures"], float)
    est = scai.load(model_dir)
    Z = torch.from_numpy(est.transform_input(X, axis)).unsqueeze(1)
    raw, macs, feats = [], [], Z
    with torch.no_grad():
        for k in range(len(est.exit_macs_)):
            feats, z, m = est.network_.run_stage(k, feats, return_macs=True)
            raw.append(z.double().numpy())
            macs.append(m.double().numpy())
    state, probs, states = raw[0], [], []
    for k, z in enumerate(raw):
        if k:
            lz = z - z.max(axis=1, keepdims=True)
            lz = lz - np.log(np.exp(lz).sum(axis=1, keepdims=True))
            state = comb["a"][k] * state + comb["b"][k] * lz + np.asarray(comb["c"][k])
        states.append(state)
        u = state / temps[k]
        e = np.exp(u - u.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    P = np.stack(probs)
    return {"probs": P, "costs": np.cumsum(np.stack(macs, axis=1), axis=1),
            "static": np.asarray(est.exit_macs_, float), "config": cfg,
            "unknown": _unknown_by_hand(cfg, est, Z.squeeze(1).numpy(), P, np.stack(states))}


@pytest.fixture(scope="module")
def spectra(milk: Any) -> np.ndarray:
    rng = np.random.default_rng(7)
    return milk.X[rng.choice(len(milk.X), N, replace=False)]


def test_predictor_server_and_edge_agree_on_combined_exits(combined_dir: Path, tmp_path: Path, spectra: np.ndarray,
                                                         milk: Any) -> None:
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    import scai
    from scai.deploy import EdgeClient, export_onnx
    from scai.deploy.payloads import NPY_CONTENT_TYPE, encode_npy
    from scai.deploy.server import MODEL_HEADER, create_app
    from scai.deploy.service import ModelService

    est = scai.load(combined_dir)
    assert est.network_.combination is not None
    ref = _reference(combined_dir, spectra, milk.axis)
    L = ref["probs"].shape[0]
    # the combination changes answers: the reference differs from each exit's own logits
    plain = est.network_.combined(None)
    assert plain.combination is None
    t = float(np.median(ref["probs"][1].max(axis=1)))
    th = np.array([t] * (L - 1) + [0.0])
    service = ModelService(combined_dir, threads=1)
    with TestClient(create_app(service)) as client:
        for options, want in (({"policy": "full"}, _by_hand(ref, "full")),
                              ({"policy": "threshold", "threshold": t}, _by_hand(ref, "threshold", th=th))):
            _check(_predictor(est, spectra, milk.axis, **options), want, f"predictor {options}")
            _check(_server(client, spectra, milk.axis, **options), want, f"server {options}")
        feats = np.zeros((2, *est.network_.stage_shapes()[0]), dtype=np.float32)
        r = client.post("/v1/continue", content=encode_npy(feats), params={"stage": 0},
                        headers={"Content-Type": NPY_CONTENT_TYPE, MODEL_HEADER: service.manifest["model_sha256"]})
        assert r.status_code == 400 and "send the raw spectra to /v1/predict" in r.text
    out = export_onnx(combined_dir, tmp_path / "onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    np.testing.assert_allclose(manifest["combination"]["c"], json.loads((combined_dir / "config.json").read_text())["cascade"]["combination"]["c"])
    res = EdgeClient(out, bmax="100%", threshold=t).classify(spectra, milk.axis)
    got = {"class_index": np.array([r.class_index for r in res]), "exit": np.array([r.exit for r in res]),
           "macs": np.array([r.macs_edge for r in res], float), "flagged": np.array([r.offload_failed for r in res])}
    _check(got, _edge_by_hand(ref, th, ref["static"][-1]), "edge threshold")
    # unsettled spectra of such a model are offloaded raw (the centre reruns the edge's stages)
    edge = EdgeClient(out, bmax=ref["static"][1], threshold=0.9999)
    assert all(r.offload in ("raw", "none") for r in edge.classify(spectra, milk.axis))
