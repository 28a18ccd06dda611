"""ONNX stages + manifest: structure, dynamic batch, hashes, and parity with PyTorch on real spectra."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_manifest_describes_every_stage(export_dir: Path, estimator: Any, model_dir: Path) -> None:
    from scai.deploy.manifest import load_manifest, sha256_file

    m = load_manifest(export_dir)
    net = estimator.network_
    assert m["n_exits"] == net.n_exits == len(m["stages"]) == 4  # exit 0 + the network's 3
    W, C, k = m["in_length"], m["n_classes"], net.exit0.rank
    assert m["stage_macs"][0] == net.exit0.macs == (W * C if k is None else W * k + k * C)
    assert m["exit_macs"] == estimator.exit_macs_ == list(np.cumsum(m["stage_macs"]))
    assert m["class_names"] == [str(c) for c in estimator.classes_]
    assert np.allclose(m["axis"], estimator.axis_)
    assert m["model_sha256"] == sha256_file(model_dir / "model.safetensors")
    assert m["temperatures"] == pytest.approx(list(estimator.temperatures_))
    assert len(m["thresholds"]) == 4 and m["thresholds"][-1] == 0.0 and m["threshold_source"]
    assert m["preprocessing"]["steps"], "the fitted Raman pipeline travels in the manifest"
    for k, st in enumerate(m["stages"]):
        assert st["file"] == f"stage_{k}.onnx"
        assert st["sha256"] == sha256_file(export_dir / st["file"])
        assert st["inputs"][0]["name"] == ("spectrum" if k == 0 else f"features_{k - 1}")
        assert [o["name"] for o in st["outputs"]] == [f"features_{k}", f"logits_{k}"]
        assert st["outputs"][0]["shape"] == ["batch", *net.stage_shapes()[k]]


def test_graphs_have_opset_and_dynamic_batch(export_dir: Path) -> None:
    from scai.deploy.manifest import load_manifest

    m = load_manifest(export_dir)
    x = np.random.default_rng(0).standard_normal((5, 1, m["in_length"])).astype(np.float32)
    for st in m["stages"]:
        model = onnx.load(str(export_dir / st["file"]))
        onnx.checker.check_model(model)
        assert {o.domain: o.version for o in model.opset_import}.get("", None) == m["opset"] == 17
        inp = model.graph.input[0]
        assert inp.name == st["inputs"][0]["name"]
        assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
        sess = ort.InferenceSession(str(export_dir / st["file"]), providers=["CPUExecutionProvider"])
        x, logits = sess.run(None, {inp.name: x})
        assert x.shape[0] == logits.shape[0] == 5


def test_every_exit_matches_pytorch_on_real_spectra(export_dir: Path, estimator: Any, milk: Any) -> None:
    """Per-exit temperature-scaled probabilities: ONNX Runtime (edge path) vs PyTorch, <= 1e-4."""
    from scai.deploy.edge import EdgeClient
    from scai.inference import softmax

    rows = np.random.default_rng(1).choice(len(milk.X), 40, replace=False)
    X = milk.X[rows]
    edge = EdgeClient(export_dir, bmax="1G")
    Z_edge = edge.preprocess(edge.align(X, milk.axis))
    Z_torch = estimator.transform_input(X, milk.axis)
    assert np.array_equal(Z_edge, Z_torch), "the edge's NumPy preprocessing is the estimator's"
    torch_probs = estimator.exit_proba(Z_torch, preprocessed=True)
    feats = Z_edge[:, None, :]
    for k in range(edge.n_exits):
        feats, logits = edge.run_stage(k, feats)
        p = softmax(logits, float(edge.temperatures[k]))
        assert np.max(np.abs(p - torch_probs[k])) <= 1e-4, f"exit {k}"


def test_export_checks_its_work_and_tampering_is_caught(export_dir: Path, tmp_path: Path) -> None:
    from scai.deploy.manifest import load_manifest
    from scai.errors import ModelFileError

    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    with open(copy / "stage_1.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_manifest(copy)
    (copy / "stage_1.onnx").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_manifest(copy)
    (copy / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelFileError, match="not a scai deploy manifest"):
        load_manifest(copy)
    with pytest.raises(ModelFileError, match="scai export"):
        load_manifest(tmp_path)


def test_export_with_fixed_threshold_and_from_estimator(estimator: Any, tmp_path: Path) -> None:
    from scai.deploy import export_onnx, load_manifest

    out = export_onnx(estimator, tmp_path / "fixed", thresholds=0.8)
    m = load_manifest(out)
    assert m["thresholds"] == [0.8, 0.8, 0.8, 0.0] and m["threshold_source"] == "given at export"
    assert len(m["model_sha256"]) == 64
    with pytest.raises(ValueError, match="thresholds"):
        export_onnx(estimator, tmp_path / "bad", thresholds=[0.5, 2.0])
