"""``scai evaluate``: per-exit accuracy, anytime and budgeted-batch curves, confusion matrix."""

from __future__ import annotations

import argparse
from typing import Any

from scai.cli._common import (
    CliError,
    add_column_arguments,
    add_threads_argument,
    apply_threads,
    column_options,
    existing_dir,
    int_at_least,
    load_spectra,
    naming_file,
    print_table,
)

__all__ = ["register"]

HELP = """\
Evaluate a trained model on labelled spectra. Writes OUT/metrics.json with
  exits          [{exit, macs, mean_macs, accuracy}]          one row per exit
  anytime        [{budget_macs, mean_macs, accuracy, ...}]     same budget for every spectrum
  budgeted_batch [{budget_macs, mean_macs, accuracy, thresholds, ...}]
                 thresholds calibrated on the validation split stored with the model
  confusion, class_names
plus anytime.png, budgeted_batch.png, confusion.png (and allocation.png for SCAI+).
Budgets span exit 1's cost to the full path. MACs = multiply-accumulates; FLOPs = 2 x MACs.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model: per-exit accuracy, accuracy-vs-MACs curves", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory from `scai train`")
    p.add_argument("data", metavar="DATA", help="labelled spectra (file, folder, or dataset name)")
    p.add_argument("--label-column", "-l", default=None, help="label column name or 0-based index")
    add_column_arguments(p)
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output folder for metrics.json and plots")
    p.add_argument("--budgets", type=int_at_least(2, "at least 2 budgets"), default=12, help="number of log-spaced budgets, >= 2 (default 12)")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder of extra .npz datasets (or SCAI_DATA_DIR)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import scai
    from scai.cli.train import print_exit_table
    from scai.report.evaluation import evaluate

    apply_threads(args.threads)
    est = scai.load(args.model_dir)
    spectra = load_spectra(args.data, args.label_column, args.data_dir, **column_options(args))
    if spectra.y is None:
        raise CliError(f"{spectra.source}: evaluation needs labels; pass --label-column")
    if spectra.test_idx is not None:
        print(f"{spectra.source}: using its official test split ({len(spectra.test_idx)} spectra)")
        spectra = spectra.subset(spectra.test_idx)
    with naming_file(spectra.source):
        metrics = evaluate(est, spectra.X, spectra.labels, spectra.axis, out_dir=args.out, n_budgets=args.budgets)
    print_exit_table(metrics["exits"], f"per-exit accuracy ({metrics['n_samples']} spectra)")
    print("\nbudgeted batch (thresholds calibrated on the model's validation split):")
    print_table([[r["budget_macs"], r["mean_macs"], r["accuracy"]] for r in metrics["budgeted_batch"]], ["budget MACs", "mean MACs", "accuracy"])
    print(f"\nwrote {args.out}/metrics.json, anytime.png, budgeted_batch.png, confusion.png")
    return 0
