"""The computing centre's model side: answer batches of requests with the PyTorch model.

:class:`ModelService` knows nothing about HTTP. It takes validated :class:`Job` objects (raw
spectra to predict, or stage features to continue), groups those that share options so each
group is one forward pass, and returns one result (or one exception) per job. The server calls
:meth:`ModelService.process` from the micro-batcher's worker thread.

Every answer carries the model's reliability flags (:mod:`scai.inference.reliability`): the
unknown-class score and flag of the answering exit (from the exit loop), the input-domain check
of raw spectra (``/v1/predict`` only: continued features have no spectrum; the edge checked it),
and with ``sets=`` the conformal set. ``held`` says why a spectrum was kept from leaving early as
confident (flagged unknown, ``on_unknown=deeper`` by default; a set of more than one class with
``on_ambiguous=deeper``).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scai.deploy.manifest import build_manifest, default_thresholds
from scai.deploy.payloads import PayloadError, RequestOptions, one_line
from scai.estimators import load
from scai.inference.budget import Budget
from scai.inference.exit_loop import run_exit_loop
from scai.inference.policies import BatchCalibration
from scai.inference.predictor import TorchStages
from scai.inference.thresholds import Thresholds, as_thresholds
from scai.model_dir import ModelDir

__all__ = ["Job", "ModelService"]

#: Budgeted-batch calibrations a service keeps (one per distinct budget asked for).
CALIBRATION_CACHE_SIZE = 32


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
    domain_reason: list[str] | None = None

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
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.model_dir = Path(model_dir)
        self.estimator = load(self.model_dir)
        self.network = self.estimator.network_
        self.predictor = self.estimator.predictor()
        self.n_exits = int(self.network.n_exits)
        self.shapes = [(int(c), int(w)) for c, w in self.network.stage_shapes()]
        self.exit_macs = np.asarray(self.estimator.exit_macs_, dtype=np.float64)
        th, source, scale = default_thresholds(self.estimator)
        self.manifest = build_manifest(
            self.estimator, thresholds=th, threshold_source=source,
            weights_sha256=ModelDir(self.model_dir).weights_sha256, stage_files=None, opset=None, execution=self.predictor.execution_mode,
            compute_scale=scale,
        )
        self.default_scale = scale  # the knob the default thresholds were calibrated at
        self.default_thresholds = as_thresholds(self.manifest["thresholds"], self.n_exits)
        self._calibrations: OrderedDict[str, BatchCalibration] = OrderedDict()
        self.stages = TorchStages(self.network)
        self.class_names = [str(c) for c in self.estimator.classes_.tolist()]
        from scai.inference.reliability import Reliability

        self.reliability: Reliability = getattr(self.estimator, "reliability_", None) or Reliability()

    # ------------------------------------------------------------------ options
    def thresholds_for(self, options: RequestOptions) -> Thresholds | None:
        """The threshold policy's thresholds: the request's, else the model's calibrated ones."""
        if options.policy != "threshold":
            return None
        return options.threshold if options.threshold is not None else self.default_thresholds

    def calibration_for(self, budget: Budget) -> BatchCalibration:
        """Budgeted-batch calibration for a mean budget (validation split); the last 32 are kept."""
        key = str(budget)
        if key in self._calibrations:
            self._calibrations.move_to_end(key)
            return self._calibrations[key]
        cal = self.estimator.calibrate_batch(budget, store=False)["calibration"]
        self._calibrations[key] = cal
        while len(self._calibrations) > CALIBRATION_CACHE_SIZE:
            self._calibrations.popitem(last=False)
        return cal

    def _rule(self, options: RequestOptions, n: int) -> Any:
        """The exit rule of a request, from the same Predictor.rule that ``scai predict`` uses."""
        if options.policy == "batch":
            assert options.budget is not None
            return self.predictor.rule("batch", n, calibration=self.calibration_for(options.budget))[0]
        if options.policy == "anytime":
            return self.predictor.rule("anytime", n, budget=options.budget)[0]
        rule = self.predictor.rule(options.policy, n, thresholds=self.thresholds_for(options))[0]
        if options.policy == "threshold" and options.threshold is None:
            rule.compute_scale = self.default_scale  # the model's thresholds, at the knob they were calibrated at
        return rule

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
                out[idx] = PayloadError(one_line(exc, 400))
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
                    out[i] = PayloadError(one_line(exc, 400))
                continue
            start = 0
            for i in members:
                n = inputs[i].shape[0]
                out[i] = {key: value[start : start + n] for key, value in res.items()}
                if jobs[i].domain_reason is not None:
                    out[i]["domain_reason"] = np.asarray(jobs[i].domain_reason, dtype=object)
                start += n
        return out

    def _prepare(self, job: Job) -> np.ndarray:
        if job.kind == "predict":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                raw, Z = self.estimator.prepare_input(job.data, job.axis)
            job.warnings.extend(str(w.message) for w in caught)
            bad = ~np.isfinite(Z).all(axis=1)
            if bad.any():
                raise PayloadError(
                    f"spectrum {int(np.argmax(bad))}: preprocessing produced NaN/inf ({int(bad.sum())} spectra); "
                    "values this large or this flat cannot be classified"
                )
            job.domain_reason = self.reliability.domain_reasons(Z, raw)
            return Z
        C, W = self.shapes[job.stage]
        if job.data.shape[1:] != (C, W):
            raise PayloadError(
                f"features of stage {job.stage} must have shape (n, {C}, {W}); got {tuple(job.data.shape)}"
            )
        return np.ascontiguousarray(job.data, dtype=np.float32)

    def predict(self, Z: np.ndarray, options: RequestOptions) -> dict[str, np.ndarray]:
        """Preprocessed spectra -> per-spectrum answers with real early exit (the one exit loop)."""
        return self._run(Z, options, start_stage=0)

    def continue_from(self, stage: int, features: np.ndarray, options: RequestOptions) -> dict[str, np.ndarray]:
        """Run stages ``stage+1 .. L-1`` on features of ``stage``; MACs are the centre's only.

        The rules count the edge's stages at their full cost (``exit_macs[stage]``), so a
        spectrum gets the same anytime budget, and a batch the same guard, whether it was split
        or not.
        """
        if getattr(self.stages, "combination", None) is not None:
            raise PayloadError(
                "this model's exits combine the earlier exits' logits, which stage features do not carry; "
                "send the raw spectra to /v1/predict instead (the edge client does)"
            )
        det = self.reliability.detector
        if det is not None and det.anchored:  # fitted only with a combination (above); a hand-made model
            raise PayloadError(
                "this model's unknown-class score adds exit 0's at every exit, which stage features do not carry; "
                "send the raw spectra to /v1/predict instead (the edge client does)"
            )
        return self._run(features, options, start_stage=stage + 1, prior_macs=float(self.exit_macs[stage]))

    def _run(self, data: np.ndarray, options: RequestOptions, *, start_stage: int, prior_macs: float = 0.0) -> dict[str, np.ndarray]:
        from scai.inference.reliability import DEFAULT_ON_AMBIGUOUS, DEFAULT_ON_UNKNOWN

        rule = self._rule(options, int(data.shape[0]))
        rel = self.reliability
        if options.sets is not None and rel.conformal is None:
            raise PayloadError("sets: this model stores no conformal calibration (trained before scai stored one)")
        try:
            ambiguity = rel.ambiguity_hook(options.on_ambiguous or DEFAULT_ON_AMBIGUOUS, options.sets)
        except ValueError as exc:  # a level the model did not calibrate
            raise PayloadError(f"sets: {one_line(exc)}") from None
        res = run_exit_loop(
            self.stages, data, rule, temperatures=self.predictor.temperatures,
            start_stage=start_stage, prior_macs=prior_macs, unknown=rel.hook(options.on_unknown or DEFAULT_ON_UNKNOWN),
            ambiguous=ambiguity,
        )
        out = {
            "class_index": res.class_index, "exit": res.exit, "confidence": res.confidence,
            "macs": res.macs, "flagged": res.flagged, "reason": res.reason, "held": res.held,
            "probabilities": res.probabilities,
        }
        if rel.detector is not None:
            out["unknown_score"], out["unknown"] = res.unknown_score, res.unknown
        if options.sets is not None:
            try:
                out["prediction_set"] = rel.sets(res.exit, res.probabilities, options.sets)
            except ValueError as exc:  # a level the model did not calibrate
                raise PayloadError(f"sets: {one_line(exc)}") from None
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
                "reason": str(res["reason"][j]),
                "held": str(res["held"][j]),
                "probabilities": [float(v) for v in res["probabilities"][j]],
                **self._flags(res, j),
            })
        body: dict[str, Any] = {"model_sha256": self.manifest["model_sha256"], "n": len(rows), "results": rows}
        notes = self._notes()
        if notes:
            body["notes"] = notes
        if warnings:
            body["warnings"] = warnings
        return body

    def _flags(self, res: dict[str, np.ndarray], j: int) -> dict[str, Any]:
        """Row ``j``'s reliability fields; null where the model (or the endpoint) cannot say."""
        flags: dict[str, Any] = {"unknown_score": None, "unknown": None, "out_of_domain": None, "domain_reason": None}
        if "unknown_score" in res:
            score = float(res["unknown_score"][j])
            flags["unknown_score"] = score if np.isfinite(score) else None
            flags["unknown"] = bool(res["unknown"][j])
        if "domain_reason" in res:
            reason = str(res["domain_reason"][j])
            flags["out_of_domain"], flags["domain_reason"] = reason != "", reason
        if "prediction_set" in res:
            flags["prediction_set"] = [self.class_names[c] for c in np.flatnonzero(res["prediction_set"][j])]
        return flags

    def _notes(self) -> list[str]:
        rel = self.reliability
        notes = []
        if rel.detector is None:
            notes.append("this model stores no unknown-class detector: unknown_score/unknown are null")
        if rel.domain is None:
            notes.append("this model stores no input-domain check: out_of_domain reflects the raw checks only")
        return notes
