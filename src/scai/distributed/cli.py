"""``scai predict ... --engine ray``: the command-line side of :func:`scai.distributed.predict_dataset`.

``scai predict`` registers these options with :func:`add_engine_arguments` and hands a run over
to :func:`run` when ``--engine ray`` is given; ``--engine local`` (the default) is the
single-process streaming of ``scai predict`` itself.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scai.errors import CliError

__all__ = ["add_engine_arguments", "run", "wants_engine"]


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address`` and ``--workers`` of ``scai predict``."""
    from scai.cli._common import positive_int

    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default): this process, OUT a CSV file; ray: Ray Data over DATA's shards (a path or a "
                        "quoted glob such as 'archive/*.parquet'), OUT a folder of Parquet shards, resumable "
                        "(pip install 'scai[distributed]'; docs/distributed.md)")
    p.add_argument("--address", default=None,
                   help="--engine ray: Ray cluster to join (auto, ray://HOST:10001); default a local Ray for the run")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="--engine ray: model actors, >= 1 (default: the cluster's CPUs)")


def wants_engine(args: argparse.Namespace) -> bool:
    """True when the run is the distributed engine's (or uses its options, which it then checks)."""
    return args.engine != "local" or args.address is not None or args.workers is not None


def run(args: argparse.Namespace) -> int:
    """Run ``scai predict`` on Ray Data; print what it wrote.

    ``--on-unknown``, ``--sets``, ``--on-ambiguous`` and ``--reject-rate`` reach every worker's
    predictor as they reach ``scai predict``'s, so the decisions and the reliability columns are the
    same."""
    from scai.cli._common import apply_threads, column_options

    if args.engine == "local":
        given = [o for o, v in (("--address", args.address), ("--workers", args.workers)) if v is not None]
        raise CliError(f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} used by --engine ray; add --engine ray")
    if args.latency_table is not None:
        raise CliError("--latency-table is not used by --engine ray: give the budget in MACs (200k) or as a share (25%), "
                       "which every worker spends alike")
    if args.budget is not None and args.policy not in ("anytime", "batch"):
        raise CliError(f"--budget is used by --policy anytime or batch, not {args.policy}")
    if args.threshold is not None and args.policy != "threshold":
        raise CliError(f"--threshold is used by --policy threshold, not {args.policy}; add --policy threshold")
    if args.on_ambiguous == "deeper" and args.sets is None:
        raise CliError("--on-ambiguous deeper holds spectra whose conformal set has more than one class; "
                       "give the sets' level, e.g. --sets 0.95")
    if args.sets is not None and not 0.0 < args.sets < 1.0:
        raise CliError(f"--sets {args.sets:g} is not allowed; give a level the model calibrated, e.g. --sets 0.95")
    if args.reject_rate is not None and args.reject_rate >= 1.0:
        raise CliError(f"--reject-rate {args.reject_rate:g} is not allowed; give a share in [0, 1), e.g. 0.05")
    from scai.distributed.predict import predict_dataset

    apply_threads(args.threads)
    read_options: dict[str, Any] = dict(column_options(args))
    if args.label_column is not None:
        label = args.label_column
        read_options["label_column"] = int(label) if label.isdigit() else label
    summary = predict_dataset(
        args.model_dir, args.data, args.out, policy=args.policy, budget=args.budget, threshold=args.threshold,
        on_unknown=args.on_unknown, confidence_level=args.sets, on_ambiguous=args.on_ambiguous, reject_rate=args.reject_rate,
        batch_size=args.batch_size, engine="ray", address=args.address, num_workers=args.workers,
        threads=args.threads or 1, block_rows=args.chunk_size, read_options=read_options, progress=sys.stderr.isatty(),
    )
    if summary.shards_skipped:
        print(f"resumed: {summary.shards_skipped} of {summary.shards} shard(s) were already complete", file=sys.stderr)
    if summary.duplicates_dropped:
        print(f"{summary.duplicates_dropped} row(s) re-run by Ray after a worker failure were written once", file=sys.stderr)
    budget = "" if summary.budget_macs is None else f" (budget {summary.budget_macs:,.0f})"
    print(f"wrote {summary.rows} predictions in {summary.shards} Parquet shard(s) to {summary.out_dir} with "
          f"{summary.workers} worker(s) in {summary.wall_time_s:.1f} s; mean {summary.mean_macs:,.0f} MACs per spectrum{budget}",
          file=sys.stderr)
    return 0
