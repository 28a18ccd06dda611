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

from scai.datasets.archive import ID_COLUMN, SPECTRUM_COLUMN, import_pyarrow
from scai.distributed.shards import END, PIECE, ROW, SOURCE, Plan
from scai.errors import AxisError, BudgetError, DataValueError, LabelError

__all__ = ["OUTPUT_COLUMNS", "PID", "RSS", "BatchPredictor", "policy_kwargs", "result_types"]

#: Columns of an output shard, in order (``scai predict``'s CSV columns, with ``source`` and
#: ``row`` instead of ``index``, and ``batch`` naming the budgeted batch each row was in).
OUTPUT_COLUMNS = ("source", "row", "id", "prediction", "exit", "confidence", "macs", "flagged", "reason", "held",
                  "batch")
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


def result_types(pa: Any) -> dict[str, Any]:
    """Arrow type of every column a result batch holds (the output columns, then diagnostics)."""
    s, i16, i32, i64, f64, b = pa.string(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
    return {"source": s, "row": i64, "id": s, "prediction": s, "exit": i16, "confidence": f64, "macs": i64,
            "flagged": b, "reason": s, "held": s, "batch": s, PIECE: i32, END: b, PID: i64, RSS: i64, PRIVATE: i64}


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
    threads : int
        PyTorch threads of this worker (one per worker by default: workers are the parallelism).
    """

    def __init__(self, model_dir: str, plan: Plan, policy: str = "full", budget: Any = None,
                 threshold: float | None = None, threads: int | None = 1) -> None:
        import torch

        import scai

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.pa = import_pyarrow()
        self.est = scai.load(model_dir)
        self.kwargs = policy_kwargs(self.est, policy, budget, threshold)
        self.predictor = self.est.predictor()
        self.plan = plan
        self.pid = os.getpid()
        self.serial = 0

    def _preprocess(self, X: np.ndarray, src_index: int, rows: np.ndarray) -> np.ndarray:
        src = self.plan.sources[src_index]
        try:
            return self.est.transform_input(X, None if src.axis is None else np.asarray(src.axis))
        except (AxisError, DataValueError, LabelError) as exc:
            raise type(exc)(f"{src.path}: rows {int(rows.min())}..{int(rows.max())}: {exc}") from exc

    def __call__(self, batch: Any) -> Any:
        pa = self.pa
        n = batch.num_rows
        if n == 0:
            return self.pa.table({name: self.pa.array([], type=t) for name, t in result_types(self.pa).items()})
        sources = batch.column(SOURCE).to_numpy()
        rows = batch.column(ROW).to_numpy()
        col = batch.column(SPECTRUM_COLUMN).combine_chunks()
        width = col.type.list_size
        X = col.flatten().to_numpy(zero_copy_only=False).reshape(n, width)
        parts = {int(s): self._preprocess(X[sources == s], int(s), rows[sources == s]) for s in np.unique(sources)}
        if len(parts) == 1:
            Z = next(iter(parts.values()))
        else:  # a batch may span files whose axes differ: each is aligned on its own
            Z = np.empty((n, next(iter(parts.values())).shape[1]), dtype=np.float32)
            for s, part in parts.items():
                Z[sources == s] = part
        try:
            res = self.predictor.predict(Z, batch_size=max(n, 1), **self.kwargs)
        except DataValueError as exc:  # e.g. a spectrum the preprocessing turned into NaN
            where = ", ".join(sorted({self.plan.sources[int(s)].path for s in np.unique(sources)}))
            raise DataValueError(f"{where}: rows {int(rows.min())}..{int(rows.max())}: {exc}") from exc
        self.serial += 1
        paths = np.asarray([src.path for src in self.plan.sources], dtype=object)[sources]
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
            "batch": pa.array([f"{self.pid}-{self.serial}"] * n, type=pa.string()),
            PIECE: batch.column(PIECE),
            END: batch.column(END),
            PID: pa.array(np.full(n, self.pid, dtype=np.int64)),
            RSS: pa.array(np.full(n, _peak_rss_kib(), dtype=np.int64)),
            PRIVATE: pa.array(np.full(n, _private_kib(), dtype=np.int64)),
        })
