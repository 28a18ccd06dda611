"""``manifest.json``: everything an edge device needs to run an exported model without PyTorch.

The manifest is written by :func:`scai.deploy.export_onnx` next to the ``stage_k.onnx`` files
and served by the computing centre at ``GET /v1/model``. It is plain JSON (no pickle) and lists:
stage order with input/output names and shapes, per-stage and cumulative MACs, calibrated exit
thresholds and temperatures, class names, the spectral axis, the fitted preprocessing pipeline,
and SHA-256 hashes of ``model.safetensors`` and of every ONNX file, which :func:`load_manifest`
checks so that an edge never runs a graph that does not belong to the manifest. It also holds
the model's reliability calibration (``ood``: the unknown-class detector with its per-exit
thresholds and pooling, ``domain``: the input-domain check, ``conformal``: the conformal
quantiles; null where the model stores none; see :mod:`scai.inference.reliability`), which the
edge applies without PyTorch. The manifest
covers itself too: ``manifest_sha256`` is the SHA-256 of its other fields in canonical JSON
(:func:`manifest_digest`), so an edited manifest (class names reordered, a threshold changed,
a preprocessing step removed) is refused instead of silently giving other answers. Like the
weights hash in ``config.json``, this catches accidents and careless edits; whoever can rewrite
the file can rewrite the hash, so protect the export directory as you protect the model.

This module imports NumPy only (building a manifest takes a fitted estimator, but only reads
its attributes).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scai._version import __version__
from scai.errors import BudgetError, ModelFileError
from scai.inference.policies import default_budget
from scai.model_dir import file_sha256, read_json_object

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "build_manifest",
    "default_thresholds",
    "load_manifest",
    "manifest_digest",
    "sha256_file",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "scai-deploy"
#: 2: adds manifest_sha256 (a version-1 manifest is refused: export again).
MANIFEST_VERSION = 2
BATCH_AXIS = "batch"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (the same digest model directories record)."""
    return file_sha256(path)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of a manifest's fields other than ``manifest_sha256``, as canonical JSON (sorted keys,
    no whitespace), so the digest does not depend on how the file was indented."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _finite_or_none(values: Sequence[float]) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def default_thresholds(estimator: Any, budget: Any = None) -> tuple[list[float | None], str, float]:
    """Exit thresholds an edge device uses when none is given on its command line.

    Order of preference: budgeted-batch calibration for ``budget`` (mean MACs per spectrum);
    else the calibration stored with the model at its default budget (``fit`` stores one, at
    :func:`~scai.inference.policies.default_budget`); else the lowest-budget calibration stored;
    else a fresh calibration at the default budget. Thresholds
    are calibrated on the validation split saved with the model (see
    :meth:`SCAIClassifier.calibrate_batch`). ``None`` stands for "nobody leaves at this exit".

    Returns
    -------
    thresholds : list of float or None, length n_exits (the last is 0)
    source : str
        How they were obtained (stored in the manifest).
    compute_scale : float
        The PA blocks' compute knob the calibration chose with them (:mod:`scai.inference.knob`;
        1.0 = as trained): the stages must run at it for the thresholds to mean what they were
        calibrated for.
    """
    macs = [float(m) for m in estimator.exit_macs_]
    if len(macs) == 1:
        return [0.0], "single exit: it always answers", 1.0
    stored = dict(getattr(estimator, "thresholds_", None) or {})
    if budget is None and stored:
        default = getattr(estimator, "default_budget_", None)
        records = sorted(stored.values(), key=lambda r: float(r.get("budget_macs", math.inf)))
        chosen = next((r for r in records if default is not None and float(r["budget_macs"]) == float(default)), records[0])
        th = [math.inf if t is None else float(t) for t in chosen["thresholds"]]
        return (_finite_or_none(th), f"stored budgeted-batch calibration at {float(chosen['budget_macs']):,.0f} MACs",
                float(chosen.get("compute_scale", 1.0)))
    if budget is None:
        budget = default_budget(macs)
        source = f"budgeted-batch calibration at the midpoint budget {budget:,.0f} MACs (validation split)"
    else:
        source = f"budgeted-batch calibration at {budget} (validation split)"
    result = estimator.calibrate_batch(budget)
    th = [math.inf if t is None else float(t) for t in result["thresholds"]]
    return _finite_or_none(th), source, float(result.get("compute_scale", 1.0))


def build_manifest(
    estimator: Any,
    *,
    thresholds: Sequence[float | None],
    threshold_source: str,
    weights_sha256: str | None,
    stage_files: Sequence[tuple[str, str]] | None = None,
    opset: int | None = None,
    execution: str = "dense",
    compute_scale: float = 1.0,
) -> dict[str, Any]:
    """The manifest dictionary of a fitted estimator.

    Parameters
    ----------
    estimator : SCAIClassifier
        Fitted (``scai.load(dir)``).
    thresholds, threshold_source
        From :func:`default_thresholds` (or user-given).
    weights_sha256 : str or None
        SHA-256 of the model's ``model.safetensors``.
    stage_files : sequence of (file name, sha256), optional
        The exported ONNX graphs, one per stage; ``None`` for the server's ``/v1/model`` view.
    opset : int, optional
        ONNX opset the graphs use.
    execution : str
        How PA blocks run in the graphs (``"dense"``: masked, every unit at every position).
    compute_scale : float
        The PA blocks' compute knob the graphs (and the thresholds) are at (from
        :func:`default_thresholds`; 1.0 = as trained).
    """
    net = estimator.network_
    n_exits = int(net.n_exits)
    shapes = [(int(c), int(w)) for c, w in net.stage_shapes()]
    stage_macs = [int(net.stage_macs(i)) for i in range(n_exits)]
    exit_macs = [int(m) for m in estimator.exit_macs_]
    if len(thresholds) != n_exits:
        raise BudgetError(f"thresholds has {len(thresholds)} values; expected n_exits={n_exits}")
    stages = []
    for k in range(n_exits):
        in_name = "spectrum" if k == 0 else f"features_{k - 1}"
        in_shape: list[Any] = [BATCH_AXIS, 1, int(net.in_length)] if k == 0 else [BATCH_AXIS, *shapes[k - 1]]
        stage: dict[str, Any] = {
            "index": k,
            "inputs": [{"name": in_name, "shape": in_shape, "dtype": "float32"}],
            "outputs": [
                {"name": f"features_{k}", "shape": [BATCH_AXIS, *shapes[k]], "dtype": "float32"},
                {"name": f"logits_{k}", "shape": [BATCH_AXIS, int(net.n_classes)], "dtype": "float32"},
            ],
            "macs": stage_macs[k],
            "exit_macs": exit_macs[k],
        }
        if stage_files is not None:
            stage["file"], stage["sha256"] = stage_files[k]
        stages.append(stage)
    pipeline = estimator.pipeline_
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "scai_version": __version__,
        "model_name": net.name,
        "model_sha256": weights_sha256,
        "in_length": int(net.in_length),
        "n_classes": int(net.n_classes),
        "n_exits": n_exits,
        "exits_used": [bool(u) for u in getattr(net, "uses", None) or [True] * n_exits],
        # exit k's logits = a[k] * exit k-1's + b[k] * log_softmax(stage k's) + c[k] (scai.inference.combination)
        "combination": None if getattr(net, "combination", None) is None else net.combination.to_dict(),
        "class_names": [str(c) for c in estimator.classes_.tolist()],
        "axis": np.asarray(estimator.axis_, dtype=np.float64).tolist(),
        "axis_unit": str(getattr(estimator, "axis_unit_", "unknown")),
        "n_features_in": int(estimator.n_features_in_),
        "preprocessing": json.loads(pipeline.to_json()),
        "exit_macs": exit_macs,
        "stage_macs": stage_macs,
        "mac_convention": "multiply-accumulates of conv and linear layers at full compute; FLOPs = 2 x MACs",
        "temperatures": [float(t) for t in np.asarray(estimator.temperatures_, dtype=np.float64)],
        "thresholds": list(thresholds),
        "threshold_source": threshold_source,
        "execution": execution,
        "compute_scale": float(compute_scale),
        "opset": opset,
        "stages": stages,
    }
    rel = getattr(estimator, "reliability_", None)
    manifest.update({"ood": None, "domain": None, "conformal": None} if rel is None else rel.to_config())
    manifest["manifest_sha256"] = manifest_digest(manifest)
    return manifest


_REQUIRED = ("format", "format_version", "model_sha256", "n_exits", "n_classes", "in_length", "class_names", "axis",
             "preprocessing", "exit_macs", "stage_macs", "temperatures", "thresholds", "stages")


def load_manifest(directory: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and check ``manifest.json`` of an export directory.

    Checks the format and version, that every stage names an existing ONNX file and (with
    ``verify``) that its SHA-256 matches, so a truncated or swapped graph is reported here
    rather than as a wrong answer later.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; export a model first with `scai export MODEL_DIR --out {directory}`")
    m = read_json_object(path, hint="export the model again")
    if m.get("format") != MANIFEST_FORMAT:
        raise ModelFileError(f"{path}: not a scai deploy manifest (format {m.get('format')!r})")
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise ModelFileError(f"{path}: missing field(s) {missing}")
    version = m["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version > MANIFEST_VERSION:
        raise ModelFileError(f"{path}: manifest version {version!r} is newer than this scai reads ({MANIFEST_VERSION})")
    if version < MANIFEST_VERSION or "manifest_sha256" not in m:
        raise ModelFileError(
            f"{path}: manifest version {version} carries no manifest_sha256, so edits to it cannot be detected; "
            f"export the model again with this scai (`scai export MODEL_DIR --out {directory}`)"
        )
    try:
        digest = manifest_digest(m)
    except ValueError as exc:  # NaN or inf written into the file by hand
        raise ModelFileError(f"{path}: holds a value JSON cannot carry ({exc}); export the model again") from None
    if digest != m["manifest_sha256"]:
        raise ModelFileError(
            f"{path}: contents do not match its manifest_sha256; the manifest was edited after export "
            "(class names, thresholds, preprocessing, ...). Export the model again rather than editing it"
        )
    n = int(m["n_exits"])
    for key in ("stages", "exit_macs", "stage_macs", "temperatures", "thresholds"):
        if len(m[key]) != n:
            raise ModelFileError(f"{path}: {key} has {len(m[key])} entries; expected n_exits={n}")
    for st in m["stages"]:
        f = directory / str(st.get("file", ""))
        if not st.get("file") or not f.is_file():
            raise ModelFileError(f"{path}: stage {st.get('index')} names ONNX file {st.get('file')!r}, which is missing")
        if verify and sha256_file(f) != st.get("sha256"):
            raise ModelFileError(f"{f}: SHA-256 does not match manifest.json; the graph was truncated, replaced or tampered with")
    return m
