"""Export a trained model as one ONNX graph per stage, plus ``manifest.json``.

``stage_k.onnx`` maps ``features_{k-1}`` (stage 0: the preprocessed spectrum ``spectrum``
(B, 1, W)) to ``features_k`` (B, C_k, W_k) and ``logits_k`` (B, n_classes), with a dynamic batch
axis. Cutting the network at stage boundaries is what lets an edge device stop after any exit
and lets the computing centre continue from the features the edge sends.

We use the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the
``torch.export``-based one needs ``onnxscript``, which the ``onnx`` extra does not install, and
the graphs here are small static convolution stacks that the tracer captures exactly. PA blocks
(SCAI+) are exported on their *dense masked* path: every residual unit runs at every position
and ``Where`` keeps the active ones, so results equal PyTorch's but an ONNX stage costs its
full-compute MACs (``stage_macs``), not the adaptive count. ``benchmarks/serving.py`` measures
what that costs.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scai.deploy.manifest import (
    MANIFEST,
    build_manifest,
    default_thresholds,
    sha256_file,
)
from scai.errors import ModelFileError
from scai.estimators import SCAIClassifier
from scai.estimators import load as load_estimator
from scai.inference.thresholds import parse_thresholds
from scai.model_dir import ModelDir
from scai.models import MultiExitNetwork
from scai.models.knob import compute_scale, current_scale

__all__ = ["export_onnx", "DEFAULT_OPSET"]

#: ONNX opset of the exported graphs (onnxruntime >= 1.17 runs it; Conv/Where/Sigmoid only).
DEFAULT_OPSET = 17


def _stage_module(network: MultiExitNetwork, index: int) -> nn.Module:
    class _Stage(nn.Module):
        """One stage of ``network`` as an ordinary module: x -> (features, logits)."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, x: Any) -> Any:
            features, logits = self.network.run_stage(index, x)
            return features, logits

    return _Stage().eval()


def export_onnx(
    model: Any,
    out_dir: str | Path,
    *,
    budget: Any = None,
    thresholds: Any = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> Path:
    """Write ``stage_0.onnx`` ... ``stage_{L-1}.onnx`` and ``manifest.json`` to ``out_dir``.

    Parameters
    ----------
    model : str, Path or SCAIClassifier
        A model directory (``scai train`` / ``SCAIClassifier.save``) or a fitted estimator.
    out_dir : str or Path
        Created if needed; existing stage files are overwritten.
    budget : str or float, optional
        Mean MACs per spectrum to calibrate the manifest's exit thresholds for (budgeted
        batch on the model's validation split). See :func:`default_thresholds`.
    thresholds : float or sequence of float, optional
        Explicit exit thresholds (one value, or one per exit); overrides ``budget``.
    opset : int
        ONNX opset version.
    check : bool
        Run ``onnx.checker`` on each graph and compare ONNX Runtime with PyTorch on a random
        batch (max abs difference of logits <= 1e-3), raising if they disagree.

    Returns
    -------
    Path
        ``out_dir``.
    """
    if isinstance(model, SCAIClassifier):
        est, weights_sha = model, None
        est._check_fitted()
    else:
        est = load_estimator(model)
        weights_sha = ModelDir(model).weights_sha256
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if weights_sha is None:
        # An in-memory estimator: hash the weights as safetensors would store them.
        with tempfile.TemporaryDirectory() as tmp:
            from safetensors.torch import save_file

            p = Path(tmp) / "model.safetensors"
            save_file({k: v.detach().contiguous().clone() for k, v in est.network_.state_dict().items()}, str(p))
            weights_sha = sha256_file(p)

    net = est.network_
    n_exits = int(net.n_exits)
    if thresholds is not None:
        th: list[float | None] = parse_thresholds(thresholds, n_exits, name="thresholds").to_json()
        source, scale = "given at export", current_scale(net)
    else:
        th, source, scale = default_thresholds(est, budget)
    th[-1] = 0.0

    previous_mode = getattr(net, "execution", "dense")
    net.eval()
    if hasattr(net, "set_execution"):
        net.set_execution("dense")
    files: list[tuple[str, str]] = []
    try:  # the graphs bake in the compute knob the thresholds were calibrated at
        with torch.inference_mode(False), torch.no_grad(), compute_scale(net, scale):
            x = torch.randn(2, 1, int(net.in_length), generator=torch.Generator().manual_seed(0))
            for k in range(n_exits):
                module = _stage_module(net, k)
                in_name = "spectrum" if k == 0 else f"features_{k - 1}"
                names = [f"features_{k}", f"logits_{k}"]
                path = out / f"stage_{k}.onnx"
                with warnings.catch_warnings():
                    # The legacy exporter announces its deprecation, and the tracer warns about
                    # Python-level shape checks (input validation), which are constant per graph.
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        module,
                        (x,),
                        str(path),
                        dynamo=False,
                        opset_version=int(opset),
                        input_names=[in_name],
                        output_names=names,
                        dynamic_axes={in_name: {0: "batch"}, names[0]: {0: "batch"}, names[1]: {0: "batch"}},
                        do_constant_folding=True,
                    )
                net.eval()  # the exporter restores the wrapper's mode; keep the network in eval
                if check:
                    _check_stage(path, module, x)
                files.append((path.name, sha256_file(path)))
                x, _ = module(x)
    finally:
        if hasattr(net, "set_execution"):
            net.set_execution(previous_mode)
    manifest = build_manifest(
        est, thresholds=th, threshold_source=source, weights_sha256=weights_sha,
        stage_files=files, opset=int(opset), execution="dense", compute_scale=scale,
    )
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False))
    return out


def _check_stage(path: Path, module: Any, x: Any) -> None:
    """onnx.checker plus an ONNX Runtime vs PyTorch comparison at another batch size."""
    import onnx  # the "onnx" extra; export_onnx names it when missing
    import onnxruntime as ort

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:  # noqa: BLE001 - report any checker failure the same way
        raise ModelFileError(f"{path}: exported graph fails onnx.checker ({exc})") from exc
    xb = torch.cat([x, x[:1] * 0.5], dim=0)  # batch 3 != the traced batch 2: dynamic axis works
    with torch.no_grad():
        feats, logits = module(xb)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: xb.numpy()})
    diff = max(float(np.max(np.abs(got[0] - feats.numpy()))), float(np.max(np.abs(got[1] - logits.numpy()))))
    if not math.isfinite(diff) or diff > 1e-3:
        raise ModelFileError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> 1e-3); export is wrong")
