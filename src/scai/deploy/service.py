"""The computing centre's model side: answer batches of requests with the PyTorch model.

:class:`ModelService` knows nothing about HTTP. It takes validated :class:`Job` objects (raw
spectra to predict, or stage features to continue), groups those that share options so each
group is one forward pass, and returns one result (or one exception) per job. The server calls
:meth:`ModelService.process` from the micro-batcher's worker thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scai.deploy.manifest import build_manifest, default_thresholds, sha256_file, thresholds_array
from scai.deploy.payloads import PayloadError, RequestOptions

__all__ = ["Job", "ModelService"]


@dataclass
class Job:
    """One request's work.

    Attributes
    ----------
    kind : str
        ``"predict"`` (raw spectra) or ``"continue"`` (features of stage ``stage``).
    data : ndarray
        Raw spectra (n, W) or features (n, C, W_k).
    options : RequestOptions
    axis : ndarray or None
        Spectral axis of raw spectra when it differs from the model's.
    stage : int
        Continue: index of the last stage already run.
    """

    kind: str
    data: np.ndarray
    options: RequestOptions
    axis: np.ndarray | None = None
    stage: int = -1
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.data.shape[0])


class ModelService:
    """A loaded model answering :class:`Job` batches.

    Parameters
    ----------
    model_dir : str or Path
        Model directory (``scai train`` / ``SCAIClassifier.save``).
    threads : int, optional
        PyTorch intra-op threads.
    """

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        import torch

        from scai.estimators import load

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.model_dir = Path(model_dir)
        self.estimator = load(self.model_dir)
        self.network = self.estimator.network_
        self.predictor = self.estimator.predictor()
        self.n_exits = int(self.network.n_exits)
        self.shapes = [(int(c), int(w)) for c, w in self.network.stage_shapes()]
        self.exit_macs = np.asarray(self.estimator.exit_macs_, dtype=np.float64)
        th, source = default_thresholds(self.estimator)
        weights = self.model_dir / "model.safetensors"
        self.manifest = build_manifest(
            self.estimator, thresholds=th, threshold_source=source,
            weights_sha256=sha256_file(weights), stage_files=None, opset=None, execution=self.predictor.execution_mode,
        )
        self.default_thresholds = thresholds_array(self.manifest)
        self._batch_thresholds: dict[str, np.ndarray] = {}
        self.class_names = [str(c) for c in self.estimator.classes_.tolist()]

    # ------------------------------------------------------------------ options
    def thresholds_for(self, options: RequestOptions) -> np.ndarray | None:
        """Threshold vector (n_exits,) for the threshold and batch policies, else None."""
        L = self.n_exits
        if options.policy == "threshold":
            if options.threshold is None:
                return self.default_thresholds
            th = np.asarray(options.threshold, dtype=np.float64)
            vec = np.full(L, th[0]) if th.size == 1 else np.append(th[: L - 1], 0.0)
            vec[-1] = 0.0
            return vec
        if options.policy == "batch":
            assert options.budget is not None
            if options.budget not in self._batch_thresholds:
                cal = self.estimator.calibrate_batch(options.budget)
                th = np.asarray([math.inf if t is None else float(t) for t in cal["thresholds"]], dtype=np.float64)
                self._batch_thresholds[options.budget] = th
            return self._batch_thresholds[options.budget]
        return None

    # ------------------------------------------------------------------ batches
    def process(self, jobs: list[Job]) -> list[Any]:
        """Answer ``jobs``; one result dict (or exception) per job, in order."""
        out: list[Any] = [None] * len(jobs)
        inputs: dict[int, np.ndarray] = {}
        # Raw spectra on the model's own axis share one preprocessing call.
        plain = [i for i, j in enumerate(jobs) if j.kind == "predict" and j.axis is None
                 and j.data.ndim == 2 and j.data.shape[1] == self.estimator.n_features_in_]
        if len(plain) > 1:
            try:
                Z = self._prepare(Job("predict", np.concatenate([jobs[i].data for i in plain]), jobs[plain[0]].options))
                start = 0
                for i in plain:
                    inputs[i] = Z[start : start + jobs[i].rows]
                    start += jobs[i].rows
            except (ValueError, TypeError):
                pass  # one bad job: fall back to one call per job so only it fails
        for idx, job in enumerate(jobs):
            if idx in inputs:
                continue
            try:
                inputs[idx] = self._prepare(job)
            except (ValueError, TypeError) as exc:
                out[idx] = PayloadError(str(exc))
        groups: dict[tuple[Any, ...], list[int]] = {}
        for idx in inputs:
            job = jobs[idx]
            groups.setdefault((job.kind, job.stage, job.options.key()), []).append(idx)
        for (kind, stage, _), members in groups.items():
            data = np.concatenate([inputs[i] for i in members], axis=0)
            options = jobs[members[0]].options
            try:
                res = self.predict(data, options) if kind == "predict" else self.continue_from(stage, data, options)
            except (ValueError, TypeError) as exc:
                for i in members:
                    out[i] = PayloadError(str(exc))
                continue
            start = 0
            for i in members:
                n = inputs[i].shape[0]
                out[i] = {key: value[start : start + n] for key, value in res.items()}
                start += n
        return out

    def _prepare(self, job: Job) -> np.ndarray:
        if job.kind == "predict":
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                Z = self.estimator.transform_input(job.data, job.axis)
            job.warnings.extend(str(w.message) for w in caught)
            return Z
        C, W = self.shapes[job.stage]
        if job.data.shape[1:] != (C, W):
            raise PayloadError(
                f"features of stage {job.stage} must have shape (n, {C}, {W}); got {tuple(job.data.shape)}"
            )
        return np.ascontiguousarray(job.data, dtype=np.float32)

    def predict(self, Z: np.ndarray, options: RequestOptions) -> dict[str, np.ndarray]:
        """Preprocessed spectra -> per-spectrum answers with real early exit (Predictor)."""
        policy = "threshold" if options.policy == "batch" else options.policy
        kwargs: dict[str, Any] = {}
        if policy == "threshold":
            kwargs["thresholds"] = self.thresholds_for(options)
        elif policy == "anytime":
            kwargs["budget"] = options.budget
        r = self.predictor.predict(Z, policy=policy, **kwargs)
        return {
            "class_index": r.class_index, "exit": r.exit, "confidence": r.confidence,
            "macs": r.macs, "flagged": r.flagged, "probabilities": r.probabilities,
        }

    def continue_from(self, stage: int, features: np.ndarray, options: RequestOptions) -> dict[str, np.ndarray]:
        """Run stages ``stage+1 .. L-1`` on features of ``stage``; MACs are the centre's only.

        The anytime budget counts the edge's stages at their full cost (``exit_macs[stage]``),
        so a spectrum gets the same budget whether it was split or not.
        """
        import torch

        from scai.inference.calibration import softmax

        L, n = self.n_exits, features.shape[0]
        th = self.thresholds_for(options)
        budget = None
        if options.policy == "anytime":
            assert options.budget is not None
            value, _ = self.predictor.budget_to_macs(options.budget)
            budget = float(value)
        next_cost = np.append(np.diff(self.exit_macs), np.inf)
        out = {
            "class_index": np.zeros(n, dtype=np.int64), "exit": np.full(n, L - 1, dtype=np.int64),
            "confidence": np.zeros(n), "macs": np.zeros(n), "flagged": np.zeros(n, dtype=bool),
            "probabilities": np.zeros((n, len(self.class_names))),
        }
        active = np.arange(n)
        spent = np.zeros(n)
        with torch.inference_mode():
            feats = torch.from_numpy(features)
            for k in range(stage + 1, L):
                feats, logits, macs = self.network.run_stage(k, feats, return_macs=True)
                spent += macs.double().numpy()
                p = softmax(logits.double().numpy(), float(self.predictor.temperatures[k]))
                conf = p.max(axis=1)
                if k == L - 1 or options.policy == "full":
                    leave = np.full(active.size, k == L - 1)
                elif th is not None:
                    leave = conf >= th[k]
                else:
                    assert budget is not None
                    leave = self.exit_macs[stage] + spent + next_cost[k] > budget
                idx = active[leave]
                out["exit"][idx], out["confidence"][idx], out["probabilities"][idx] = k, conf[leave], p[leave]
                out["macs"][idx] = spent[leave]
                out["class_index"][idx] = np.argmax(p[leave], axis=1)
                keep = ~leave
                if not keep.any():
                    break
                feats = feats[torch.from_numpy(np.flatnonzero(keep))]
                active, spent = active[keep], spent[keep]
        return out

    def format(self, res: dict[str, np.ndarray], warnings: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready response body of one job's slice of results."""
        rows = []
        for j in range(len(res["exit"])):
            c = int(res["class_index"][j])
            rows.append({
                "prediction": self.class_names[c],
                "class_index": c,
                "exit": int(res["exit"][j]),
                "confidence": float(res["confidence"][j]),
                "macs": float(res["macs"][j]),
                "flagged": bool(res["flagged"][j]),
                "probabilities": [float(v) for v in res["probabilities"][j]],
            })
        body: dict[str, Any] = {"model_sha256": self.manifest["model_sha256"], "n": len(rows), "results": rows}
        if warnings:
            body["warnings"] = warnings
        return body
