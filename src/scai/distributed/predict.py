"""``predict_dataset``: classify a sharded archive on Ray Data, resumable and exactly once.

The same call runs on a laptop (a local Ray started for the run) and on a cluster
(``address="ray://head:10001"`` or ``"auto"``). The pipeline::

    plan (driver)  ->  read pieces (Ray read tasks)  ->  map_batches(BatchPredictor, actors)
                   ->  driver: Collector writes one Parquet shard per piece

* The model is loaded once per actor (``map_batches`` with a callable class).
* Each Ray batch of ``batch_size`` rows is one budgeted batch, so ``policy="batch"`` keeps every
  batch, and with it the archive, within the mean budget without the workers talking to each
  other.
* Finished shards are skipped on a rerun; rows Ray re-ran after a worker died are written once.

``engine="inline"`` runs the same readers, predictor and writer in this process without Ray
(one worker): the baseline the benchmark compares with, and a way to debug a plan.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scai.datasets.archive import import_pyarrow
from scai.distributed.outputs import Collector, pending_pieces, prepare_out_dir, write_manifest
from scai.distributed.shards import Piece, Plan, plan_inputs, read_piece
from scai.distributed.worker import BatchPredictor, bound_onednn_cache, output_columns, policy_kwargs, reliability_kwargs
from scai.errors import ConfigError

__all__ = ["ENGINES", "BatchEvent", "PredictSummary", "predict_dataset"]

ENGINES = ("ray", "inline")


@dataclass(frozen=True)
class BatchEvent:
    """What the driver just received (passed to ``on_batch``)."""

    pid: int  # the worker process that predicted the batch
    rows: int  # rows in the batch that were new
    rows_done: int  # rows received in this run so far
    rows_total: int | None  # rows this run has to predict (None when a CSV's length is unknown)
    private_kib: int = 0  # the worker's private resident memory (RssAnon) when it answered the batch


@dataclass(frozen=True)
class PredictSummary:
    """What a :func:`predict_dataset` call did.

    Attributes
    ----------
    out_dir : Path
    rows : int
        Rows in all shards of ``out_dir`` (this run's and earlier runs').
    mean_macs : float
        Mean MACs per spectrum over all of them.
    budget_macs : float or None
        The budget in MACs (anytime: per spectrum; batch: mean), if the policy has one.
    shards : int
        Output shards in ``out_dir``.
    shards_skipped : int
        Shards already complete when the run started (resumed).
    shards_written : int
    rows_predicted : int
        Rows this run predicted.
    duplicates_dropped : int
        Result rows received twice (re-run by Ray after a worker failure) and written once.
    wall_time_s : float
    engine : str
    workers : int
    worker_peak_rss_kib : dict
        Peak resident memory of each worker process that returned results (pid -> KiB). Under
        Ray it includes the pages of the shared-memory object store the worker read blocks from,
        which are the object store's, not the worker's.
    worker_peak_private_kib : dict
        The largest private resident memory (``RssAnon``) each worker had when it answered a batch
        (pid -> KiB): what the worker itself holds.
    manifest : dict
        The ``_manifest.json`` written at the end.
    """

    out_dir: Path
    rows: int
    mean_macs: float
    budget_macs: float | None
    shards: int
    shards_skipped: int
    shards_written: int
    rows_predicted: int
    duplicates_dropped: int
    wall_time_s: float
    engine: str
    workers: int
    worker_peak_rss_kib: dict[int, int] = field(default_factory=dict)
    worker_peak_private_kib: dict[int, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


class _Background:
    """``fn(*args)`` in a daemon thread; :meth:`result` waits for its value or raises its error
    (a daemon, so that an error raised meanwhile on the calling thread does not wait for it)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="scai-checks", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # re-raised on the calling thread
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()


def _budget_macs(model_dir: str, policy: str, budget: Any, threshold: float | None,
                 reliability: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Check the policy and reliability options on the driver (so a bad one fails before any worker starts)."""
    import scai
    from scai.inference.budget import parse_budget

    est = scai.load(model_dir)
    reliability_kwargs(est, **reliability)
    kwargs = policy_kwargs(est, policy, budget, threshold)
    value = None if budget is None else float(parse_budget(budget).to_macs(est.exit_macs_))
    info: dict[str, Any] = {}
    if policy == "batch":
        cal = kwargs["calibration"]
        info = {"thresholds": [float(t) for t in cal.thresholds], "expected_mean_macs": float(cal.expected_mean_cost)}
    return value, info


def _inline_batches(plan: Plan, pieces: Sequence[Piece], block_rows: int, batch_size: int) -> Iterator[Any]:
    """Blocks of each piece re-cut into batches of ``batch_size`` rows (the last one of a piece shorter)."""
    pa = import_pyarrow()
    for piece in pieces:
        pending: list[Any] = []
        held = 0
        for block in read_piece(plan, piece, block_rows):
            pending.append(block)
            held += block.num_rows
            while held >= batch_size:
                table = pa.concat_tables(pending)
                yield table.slice(0, batch_size)
                rest = table.slice(batch_size)
                pending, held = ([rest] if rest.num_rows else []), rest.num_rows
        if held:
            yield pa.concat_tables(pending)


def _ray_results(plan: Plan, pieces: Sequence[Piece], model_dir: str, predictor_kwargs: dict[str, Any], *,
                 batch_size: int, block_rows: int, workers: int, progress: bool) -> Iterator[Any]:
    import ray

    from scai.distributed.datasource import SpectraDatasource

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ctx.print_on_execution_start = False
    # Reads are light next to preprocessing and the network (a reader decodes a piece ~10x faster
    # than a worker predicts it): they take no CPU slot, so they never starve the actors, and one
    # read task per 8 workers runs at a time, so that pieces finish roughly in order (a stopped
    # run then leaves finished shards behind, not many half-predicted pieces).
    ds = ray.data.read_datasource(SpectraDatasource(plan, pieces, block_rows), num_cpus=0,
                                  concurrency=max(1, -(-workers // 8)))
    ds = ds.map_batches(
        BatchPredictor, batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True,
        fn_constructor_kwargs={"model_dir": model_dir, "plan": plan, **predictor_kwargs},
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)


def predict_dataset(
    model_dir: str | Path,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    policy: str = "full",
    budget: str | float | None = None,
    threshold: float | None = None,
    on_unknown: str | None = None,
    confidence_level: float | None = None,
    on_ambiguous: str | None = None,
    reject_rate: float | None = None,
    batch_size: int = 256,
    engine: str = "ray",
    address: str | None = None,
    num_workers: int | None = None,
    threads: int = 1,
    piece_rows: int = 65536,
    block_rows: int = 4096,
    read_options: dict[str, Any] | None = None,
    progress: bool = False,
    on_batch: Callable[[BatchEvent], None] | None = None,
) -> PredictSummary:
    """Classify every spectrum of ``inputs`` and write Parquet shards of predictions to ``out_dir``.

    Parameters
    ----------
    model_dir : str or Path
        Model directory from ``scai train`` (on a cluster, a path every node can read).
    inputs : path, glob pattern, or a sequence of them
        Parquet shards (the layout of :mod:`scai.datasets.archive`), ``.npy`` arrays, HDF5 or
        CSV files (and the other formats :func:`scai.data.iter_chunks` reads).
    out_dir : str or Path
        Folder of the output shards, one per piece: ``<file stem>-<hash>.<first row>.parquet``
        with columns ``source, row, id, prediction, exit, confidence, macs, flagged, reason, held,
        unknown_score, unknown, out_of_domain, domain_reason`` (with ``confidence_level``, then
        ``prediction_set``) and ``batch``: ``scai predict``'s columns, the reliability ones with the
        types ``scai predict --out x.parquet`` gives them; ``row`` is the row's position in
        ``source``, ``batch`` names the budgeted batch it was predicted in.
    policy, budget, threshold
        As ``scai predict --policy/--budget/--threshold``; budgets in MACs or a share (``"25%"``).
    on_unknown : {"deeper", "answer"}, optional
        As ``scai predict --on-unknown``: a spectrum flagged unknown at an exit where it is
        confident runs deeper (the default; ``held="unknown"``) or answers there flagged.
    confidence_level : float, optional
        As ``scai predict --sets``: also write ``prediction_set`` (the classes of the conformal set
        at this calibrated level, joined with ``|``; empty = none plausible).
    on_ambiguous : {"answer", "deeper"}, optional
        As ``scai predict --on-ambiguous`` (needs ``confidence_level``): a spectrum whose set holds
        more than one class at an exit where it is confident answers there (the default) or runs
        deeper (``held="ambiguous"``).
    reject_rate : float, optional
        As ``scai predict --reject-rate``: the share of in-distribution spectra flagged unknown,
        in [0, 1) (default: the model's); re-sets the stored thresholds, no retraining.
    batch_size : int
        Rows per Ray batch = per budgeted batch.
    engine : {"ray", "inline"}
        Ray Data, or everything in this process (no Ray needed).
    address : str, optional
        Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``); by default a Ray already
        initialised in this process, else a local one started for the run.
    num_workers : int, optional
        Actors, each loading the model once; default: the cluster's CPUs.
    threads : int
        PyTorch threads per worker.
    piece_rows : int
        Rows per output shard, roughly (Parquet pieces are whole row groups; HDF5 and CSV files
        are one piece each).
    block_rows : int
        Rows per block read.
    read_options : dict, optional
        :func:`scai.data.iter_chunks` keywords for CSV and other tables (``id_column``, ...).
    progress : bool
        Ray Data's progress bars.
    on_batch : callable, optional
        Called on the driver with a :class:`BatchEvent` after each result batch.

    Returns
    -------
    PredictSummary

    Raises
    ------
    DataFormatError, DataValueError, AxisError
        For bad inputs (no ``spectrum`` column, wrong length, NaN, ...), naming the file and row.
    ConfigError
        For an ``out_dir`` holding another run's predictions, Ray missing, or a reliability option
        not allowed (checked before any worker starts).
    """
    t0 = time.perf_counter()
    bound_onednn_cache()  # the inline worker's memory, where this process has run no convolution yet
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is not allowed; use one of {ENGINES}")
    for name, value in (("batch_size", batch_size), ("piece_rows", piece_rows), ("block_rows", block_rows),
                        ("threads", threads)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} is not allowed; use a positive integer")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise ConfigError(f"num_workers={num_workers!r} is not allowed; use a positive integer or None")
    if engine == "inline" and (address is not None or num_workers not in (None, 1)):
        raise ConfigError("engine='inline' runs one worker in this process; address and num_workers are for engine='ray'")
    model_dir = str(model_dir)
    reliability = {"on_unknown": on_unknown, "confidence_level": confidence_level, "on_ambiguous": on_ambiguous,
                   "reject_rate": reject_rate}
    # Ray engine: the driver loads the model to check the options (~5 s of imports on 2 cores) in a
    # thread while a local Ray starts in this one; ray.init alone left ~40 % of 2 cores idle for its
    # ~5 s (measured). The checks still pass before out_dir is touched and before any actor starts.
    checks = _Background(_budget_macs, model_dir, policy, budget, threshold, reliability) if engine == "ray" else None
    if checks is None:
        budget_macs, calibration = _budget_macs(model_dir, policy, budget, threshold, reliability)
    plan = plan_inputs(inputs, piece_rows=piece_rows, read_options=read_options)
    out = Path(out_dir)
    workers = 1
    with contextlib.ExitStack() as stack:
        # Ray Data reads deprecated settings of its own DataContext; those warnings are not the user's.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        if checks is not None:
            if pending_pieces(out, plan):  # else nothing to predict, and no Ray to start
                from scai.distributed._ray import start_ray

                if start_ray(address, num_workers):
                    stack.callback(_shutdown_ray)
            budget_macs, calibration = checks.result()
        from scai.inference.reliability import DEFAULT_ON_AMBIGUOUS, DEFAULT_ON_UNKNOWN
        from scai.model_dir import ModelDir

        settings = {"model_weights_sha256": ModelDir(model_dir).weights_sha256, "policy": policy,
                    "budget": None if budget is None else str(budget), "threshold": threshold, "batch_size": batch_size,
                    # what the options do (None = the default's behaviour, so that a rerun naming the default resumes)
                    "on_unknown": on_unknown or DEFAULT_ON_UNKNOWN, "on_ambiguous": on_ambiguous or DEFAULT_ON_AMBIGUOUS,
                    "confidence_level": None if confidence_level is None else float(confidence_level),
                    "reject_rate": None if reject_rate is None else float(reject_rate),
                    "read_options": {k: v if isinstance(v, (str, int)) else list(v) for k, v in plan.read_options.items()}}
        todo = prepare_out_dir(out, plan, settings)
        skipped = len(plan.pieces) - len(todo)
        collector = Collector(plan, todo, out, with_sets=confidence_level is not None)
        for piece in [p for p in todo if p.n_rows == 0]:
            collector.write_empty(piece)
        todo = [p for p in todo if p.n_rows != 0]
        total = None if any(p.n_rows is None for p in todo) else sum(int(p.n_rows or 0) for p in todo)
        predictor_kwargs = {"policy": policy, "budget": budget, "threshold": threshold, "threads": threads, **reliability}
        try:
            if not todo:
                results: Iterator[Any] = iter(())
            elif engine == "inline":
                worker = BatchPredictor(model_dir, plan, **predictor_kwargs)
                results = (worker(b) for b in _inline_batches(plan, todo, block_rows, batch_size))
            else:
                from scai.distributed._ray import import_ray, start_ray

                ray = import_ray()
                if start_ray(address, num_workers):  # started above unless a shard vanished since
                    stack.callback(_shutdown_ray)
                workers = num_workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
                results = _ray_results(plan, todo, model_dir, predictor_kwargs, batch_size=batch_size,
                                       block_rows=block_rows, workers=workers, progress=progress)
            for table in results:
                added = collector.add(table)
                if on_batch is not None and table.num_rows:
                    on_batch(BatchEvent(int(table.column("_pid")[0].as_py()), added, collector.rows_received, total,
                                        int(table.column("_private_kib")[0].as_py())))
        except Exception as exc:
            from scai.distributed._ray import unwrap_error

            clear = unwrap_error(exc) if engine == "ray" else None
            if clear is not None:
                raise clear from None
            raise
    collector.check_complete()
    extra = {"policy": policy, "budget": settings["budget"], "budget_macs": budget_macs, "batch_size": batch_size,
             "calibration": calibration, "model_weights_sha256": settings["model_weights_sha256"],
             **{k: settings[k] for k in reliability}, "columns": list(output_columns(confidence_level is not None))}
    manifest = write_manifest(out, plan, extra)
    return PredictSummary(
        out_dir=out, rows=int(manifest["rows"]), mean_macs=float(manifest["mean_macs"]), budget_macs=budget_macs,
        shards=len(plan.pieces), shards_skipped=skipped, shards_written=collector.pieces_written,
        rows_predicted=collector.rows_received, duplicates_dropped=collector.duplicates,
        wall_time_s=time.perf_counter() - t0, engine=engine, workers=workers,
        worker_peak_rss_kib=dict(collector.worker_rss_kib), worker_peak_private_kib=dict(collector.worker_private_kib),
        manifest=manifest,
    )
