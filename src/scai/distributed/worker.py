"""The per-worker predictor: loads the model once, then answers one Arrow batch per call.

:class:`BatchPredictor` is the callable class that Ray Data's ``map_batches`` instantiates once
per actor (and the in-process engine once). Every call is one budgeted batch: the whole batch
goes through the network as one batch (``Predictor.predict(..., batch_size=len(batch))``), so
under ``policy="batch"`` the batch guard keeps each batch's mean MACs within the budget and
therefore the archive's mean too, without any coordination between workers.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import numpy as np

from scai.cli._output import RELIABILITY_COLUMNS, SET_COLUMN, arrow_type, column_array, reliability_values
from scai.datasets.archive import ID_COLUMN, SPECTRUM_COLUMN, import_pyarrow
from scai.distributed.shards import END, PIECE, ROW, SOURCE, Plan
from scai.errors import AxisError, BudgetError, ConfigError, DataValueError, LabelError
from scai.inference.memory import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_ENV, bound_onednn_cache

__all__ = ["ONEDNN_CACHE_CAPACITY", "OUTPUT_COLUMNS", "PID", "RSS", "BatchPredictor", "bound_onednn_cache",
           "output_columns", "policy_kwargs", "reliability_kwargs", "result_types"]

#: Columns of an output shard, in order, without conformal sets (``scai predict``'s columns, with
#: ``source`` and ``row`` instead of ``index``, and ``batch`` naming the budgeted batch each row was
#: in); with sets, ``prediction_set`` comes before ``batch`` (:func:`output_columns`).
OUTPUT_COLUMNS = ("source", "row", "id", "prediction", "exit", "confidence", "macs", "flagged", "reason", "held",
                  *(name for name, _ in RELIABILITY_COLUMNS), "batch")
#: Diagnostics each result batch carries to the driver (not written): worker pid, its peak RSS
#: (KiB; it includes the pages of Ray's shared-memory object store the worker has read blocks from)
#: and its private resident memory now (``RssAnon``, KiB: what the worker itself holds).
PID, RSS, PRIVATE = "_pid", "_rss_kib", "_private_kib"


def policy_kwargs(est: Any, policy: str, budget: Any, threshold: float | None) -> dict[str, Any]:
    """``Predictor.predict`` keywords of a policy, as ``scai predict`` builds them.

    A budget in milliseconds is refused: every worker would convert it with its own timings,
    and the workers of one run would then not share one budget.
    """
    from scai.inference.budget import parse_budget

    if policy not in ("full", "anytime", "threshold", "batch"):
        raise BudgetError(f"policy={policy!r} is not allowed; use full, anytime, threshold or batch")
    if budget is not None and policy not in ("anytime", "batch"):
        raise BudgetError(f"budget is used by policy 'anytime' or 'batch', not {policy!r}")
    if threshold is not None and policy != "threshold":
        raise BudgetError(f"threshold is used by policy 'threshold', not {policy!r}")
    if policy in ("anytime", "batch"):
        if budget is None:
            raise BudgetError(f"policy {policy!r} needs a budget (MACs such as '200k', or a share such as '25%')")
        if parse_budget(budget).unit == "ms":
            raise BudgetError(f"budget {budget!r} is a latency; distributed prediction takes MACs (e.g. '200k') or a "
                              "share of the full path ('25%'), so that every worker spends the same budget")
    if policy == "anytime":
        return {"policy": "anytime", "budget": budget}
    if policy == "threshold":
        if threshold is None:
            raise BudgetError("policy 'threshold' needs a threshold in [0, 1]")
        return {"policy": "threshold", "thresholds": est._threshold_vector(threshold)}
    if policy == "batch":
        return {"policy": "batch", "calibration": est.calibrate_batch(budget, store=False)["calibration"]}
    return {"policy": "full"}


def output_columns(with_sets: bool = False) -> tuple[str, ...]:
    """Columns of an output shard, in order: :data:`OUTPUT_COLUMNS`, with ``prediction_set``
    before ``batch`` when conformal sets were asked for."""
    if not with_sets:
        return OUTPUT_COLUMNS
    return (*OUTPUT_COLUMNS[:-1], SET_COLUMN[0], OUTPUT_COLUMNS[-1])


def result_types(pa: Any, with_sets: bool = False) -> dict[str, Any]:
    """Arrow type of every column a result batch holds (the output columns, then diagnostics).

    The reliability columns have the types ``scai predict --out x.parquet`` gives them
    (``unknown_score`` float64, ``unknown`` / ``out_of_domain`` int64 0/1, ``domain_reason`` and
    ``prediction_set`` strings), from the same column list."""
    s, i16, i32, i64, f64, b = pa.string(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
    reliability = RELIABILITY_COLUMNS + ((SET_COLUMN,) if with_sets else ())
    return {"source": s, "row": i64, "id": s, "prediction": s, "exit": i16, "confidence": f64, "macs": i64,
            "flagged": b, "reason": s, "held": s, **{name: arrow_type(pa, kind) for name, kind in reliability},
            "batch": s, PIECE: i32, END: b, PID: i64, RSS: i64, PRIVATE: i64}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def reliability_kwargs(est: Any, *, on_unknown: str | None = None, confidence_level: float | None = None,
                       on_ambiguous: str | None = None, reject_rate: float | None = None) -> dict[str, Any]:
    """``Predictor.predict`` keywords of the reliability options, as ``scai predict`` passes them
    (``--on-unknown``, ``--sets``, ``--on-ambiguous``); ``reject_rate`` (``--reject-rate``) re-sets
    ``est``'s unknown-class thresholds in place. Every value is checked here, so that the driver
    refuses a bad one before any worker starts.

    Raises
    ------
    ConfigError
        For a value not allowed, a level the model did not calibrate, ``on_ambiguous="deeper"``
        without ``confidence_level``, or an option the model stores nothing for.
    """
    from scai.inference.reliability import ON_AMBIGUOUS, ON_UNKNOWN

    if on_unknown is not None and (not isinstance(on_unknown, str) or on_unknown not in ON_UNKNOWN):
        raise ConfigError(f"on_unknown={on_unknown!r} is not allowed; use one of {list(ON_UNKNOWN)} (default 'deeper')")
    if on_ambiguous is not None and (not isinstance(on_ambiguous, str) or on_ambiguous not in ON_AMBIGUOUS):
        raise ConfigError(f"on_ambiguous={on_ambiguous!r} is not allowed; use one of {list(ON_AMBIGUOUS)} "
                          "(default 'answer')")
    if confidence_level is not None and (not _is_number(confidence_level) or not 0.0 < float(confidence_level) < 1.0):
        raise ConfigError(f"confidence_level={confidence_level!r} is not allowed; use a calibrated level in (0, 1), "
                          "e.g. 0.95")
    if on_ambiguous == "deeper" and confidence_level is None:
        raise ConfigError("on_ambiguous='deeper' holds samples whose conformal set has more than one class; it needs "
                          "the sets' confidence level (confidence_level=0.95, --sets 0.95)")
    if reject_rate is not None and (not _is_number(reject_rate) or not 0.0 <= float(reject_rate) < 1.0):
        raise ConfigError(f"reject_rate={reject_rate!r} is not allowed; use a share of in-distribution spectra to flag "
                          "unknown in [0, 1), e.g. 0.05")
    rel = getattr(est, "reliability_", None)
    if reject_rate is not None:
        if rel is None or rel.detector is None:
            raise ConfigError("reject_rate: the model stores no unknown-class detector (trained with ood='none' or by "
                              "an older scai); retrain it to get one")
        rel = est.reliability_ = rel.at_reject_rate(float(reject_rate))
    if confidence_level is not None:
        if rel is None or rel.conformal is None:
            raise ConfigError("confidence_level needs a model with a conformal calibration; this one stores none")
        rel.conformal._level_index(float(confidence_level))  # a level the model did not calibrate: ConfigError
    kwargs: dict[str, Any] = {}
    if on_unknown is not None:
        kwargs["on_unknown"] = on_unknown
    if confidence_level is not None:
        kwargs["confidence_level"] = float(confidence_level)
    if on_ambiguous is not None:
        kwargs["on_ambiguous"] = on_ambiguous
    return kwargs


def _peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _private_kib() -> int:
    """Private (anonymous) resident memory of this process, KiB; 0 where /proc is not there."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class BatchPredictor:
    """Predict Arrow batches of :func:`~scai.distributed.shards.read_piece` blocks.

    Parameters
    ----------
    model_dir : str
        Model directory from ``scai train`` (read by every worker: on a cluster, a shared path).
    plan : Plan
        The run's sources (their paths and axes name the rows and align them to the model).
    policy, budget, threshold
        As for ``scai predict``.
    on_unknown, confidence_level, on_ambiguous, reject_rate
        As ``scai predict --on-unknown / --sets / --on-ambiguous / --reject-rate``
        (:func:`reliability_kwargs`).
    threads : int
        PyTorch threads of this worker (one per worker by default: workers are the parallelism).
    """

    def __init__(self, model_dir: str, plan: Plan, policy: str = "full", budget: Any = None,
                 threshold: float | None = None, threads: int | None = 1, *, on_unknown: str | None = None,
                 confidence_level: float | None = None, on_ambiguous: str | None = None,
                 reject_rate: float | None = None) -> None:
        bound_onednn_cache()  # before torch runs anything in this process
        import torch

        import scai

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.pa = import_pyarrow()
        self.est = scai.load(model_dir)
        self.kwargs = policy_kwargs(self.est, policy, budget, threshold)
        self.kwargs.update(reliability_kwargs(self.est, on_unknown=on_unknown, confidence_level=confidence_level,
                                              on_ambiguous=on_ambiguous, reject_rate=reject_rate))
        self.with_sets = confidence_level is not None
        self.classes = [str(c) for c in self.est.classes_]
        self.predictor = self.est.predictor()
        self.plan = plan
        self.pid = os.getpid()
        self.serial = 0

    def _preprocess(self, X: np.ndarray, src_index: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw spectra on the model's axis, for the raw domain checks; the network's input)."""
        src = self.plan.sources[src_index]
        try:
            return self.est.prepare_input(X, None if src.axis is None else np.asarray(src.axis))
        except (AxisError, DataValueError, LabelError) as exc:
            raise type(exc)(f"{src.path}: rows {int(rows.min())}..{int(rows.max())}: {exc}") from exc

    def __call__(self, batch: Any) -> Any:
        pa = self.pa
        n = batch.num_rows
        if n == 0:
            return pa.table({name: pa.array([], type=t) for name, t in result_types(pa, self.with_sets).items()})
        sources = batch.column(SOURCE).to_numpy()
        rows = batch.column(ROW).to_numpy()
        col = batch.column(SPECTRUM_COLUMN).combine_chunks()
        width = col.type.list_size
        X = col.flatten().to_numpy(zero_copy_only=False).reshape(n, width)
        parts = {int(s): self._preprocess(X[sources == s], int(s), rows[sources == s]) for s in np.unique(sources)}
        if len(parts) == 1:
            raw, Z = next(iter(parts.values()))
        else:  # a batch may span files whose axes differ: each is aligned on its own
            raw0, Z0 = next(iter(parts.values()))
            raw, Z = np.empty((n, raw0.shape[1]), dtype=raw0.dtype), np.empty((n, Z0.shape[1]), dtype=np.float32)
            for s, (raw_part, part) in parts.items():
                raw[sources == s] = raw_part
                Z[sources == s] = part
        try:
            res = self.predictor.predict(Z, batch_size=max(n, 1), raw=raw, **self.kwargs)
        except DataValueError as exc:  # e.g. a spectrum the preprocessing turned into NaN
            where = ", ".join(sorted({self.plan.sources[int(s)].path for s in np.unique(sources)}))
            raise DataValueError(f"{where}: rows {int(rows.min())}..{int(rows.max())}: {exc}") from exc
        self.serial += 1
        paths = np.asarray([src.path for src in self.plan.sources], dtype=object)[sources]
        kinds = dict(RELIABILITY_COLUMNS + ((SET_COLUMN,) if self.with_sets else ()))
        # unknown_score, unknown, out_of_domain, domain_reason (and prediction_set) as scai predict
        # writes them: the same helper, the same Parquet types; nulls where the model stores no detector
        reliability = {name: column_array(pa, values, kinds[name])
                       for name, values in reliability_values(res, self.classes).items()}
        return pa.table({
            "source": pa.array(paths.tolist(), type=pa.string()),
            "row": pa.array(rows.astype(np.int64)),
            "id": batch.column(ID_COLUMN),
            "prediction": pa.array([str(p) for p in res.prediction], type=pa.string()),
            "exit": pa.array(res.exit.astype(np.int16)),  # 0-based position in the model, as scai predict
            "confidence": pa.array(res.confidence.astype(np.float64)),
            "macs": pa.array(res.macs.astype(np.int64)),  # truncated, as scai predict writes them
            "flagged": pa.array(res.flagged.astype(bool)),
            "reason": pa.array([str(r) for r in res.reason], type=pa.string()),
            "held": pa.array([str(h) for h in res.held], type=pa.string()),  # why it ran deeper (scai predict's held)
            **reliability,
            "batch": pa.array([f"{self.pid}-{self.serial}"] * n, type=pa.string()),
            PIECE: batch.column(PIECE),
            END: batch.column(END),
            PID: pa.array(np.full(n, self.pid, dtype=np.int64)),
            RSS: pa.array(np.full(n, _peak_rss_kib(), dtype=np.int64)),
            PRIVATE: pa.array(np.full(n, _private_kib(), dtype=np.int64)),
        })
