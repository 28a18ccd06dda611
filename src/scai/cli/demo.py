"""``scai demo``: the whole pipeline on the bundled milk-adulteration Raman dataset in a few minutes."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scai.cli._common import model_name, non_negative_int, positive_float, positive_int, print_table, random_seed

__all__ = ["register"]

HELP = """\
Train SCAI+ on the bundled milk_adulteration Raman dataset (500 spectra, 10 adulteration
levels; stratified 8:1:1 split, seed 0) with the default recipe (preprocessing chosen by
inner cross-validation, the linear exit 0 in front of the network), then print a
per-exit table (MACs, accuracy), the anytime accuracy-vs-budget curve, and write plots:
training_curves.png, anytime.png, budgeted_batch.png, confusion.png, allocation.png.
Takes a few minutes on 2 CPU cores.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="train and evaluate SCAI+ on the bundled dataset", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="scai-demo", help="output folder (default: scai-demo)")
    p.add_argument("--model", type=model_name, default="scai_plus", help="network to train (default scai_plus)")
    p.add_argument("--epochs", type=positive_int, default=80, help="maximum epochs, >= 1 (default 80)")
    p.add_argument("--patience", type=non_negative_int, default=20, help="early-stopping patience, >= 0 (default 20)")
    p.add_argument("--seed", type=random_seed, default=0, help="random seed, >= 0 (default 0)")
    p.add_argument("--max-time", type=positive_float, default=180.0, help="cap on training wall time in seconds, > 0, so the demo stays short (default 180)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scai import datasets
    from scai.cli.train import describe_model, print_exit_table, train_on_spectra
    from scai.report.evaluation import evaluate
    from scai.report.plots import plot_training_curves

    t0 = time.perf_counter()
    spectra = datasets.load("milk_adulteration")
    print(f"scai demo: {spectra.n_samples} Raman spectra x {spectra.n_points} points ({spectra.axis[0]:.0f}-{spectra.axis[-1]:.0f} cm-1), {spectra.n_classes} classes")
    settings = {
        "model": args.model,
        "model_config": {},
        "train": {"max_epochs": args.epochs, "patience": args.patience, "max_time_s": args.max_time},
        "preprocessing": "auto",
        "seed": args.seed,
        "val_fraction": 0.1,
        "verbose": not args.quiet,
        # one validation split keeps the demo to a single training run (scai train cross-fits by default)
        "cross_fit": 0,
    }
    est, test, split = train_on_spectra(spectra, settings, test_fraction=0.1)
    out = Path(args.out)
    model_dir = est.save(out / "model")
    h = est.history_
    print(f"split: {split['protocol']} (seed {args.seed}): {split['n_train']} train / {split['n_val']} val / {split['n_test']} test")
    capped = " (stopped by --max-time)" if h.stopped_early and len(h.epochs) < args.epochs and h.fit_time_s >= args.max_time else ""
    print(f"trained {args.model} for {len(h.epochs)} epochs (best {h.best_epoch}) in {h.fit_time_s:.1f} s{capped}")
    describe_model(est)
    plot_training_curves(h.epochs, out / "training_curves.png", title=f"{args.model} on milk_adulteration")
    metrics = evaluate(est, test.X, test.labels, test.axis, out_dir=out, title="milk_adulteration test")
    print_exit_table(metrics["exits"], f"per-exit test accuracy ({metrics['n_samples']} test spectra)")
    print("\nanytime inference (same budget for every spectrum):")
    print_table([[r["budget_macs"], r["mean_macs"], r["accuracy"]] for r in metrics["anytime"]], ["budget MACs", "mean MACs", "accuracy"])
    (out / "split.json").write_text(json.dumps(split, indent=1))
    print(f"\nwrote {model_dir}/ and plots in {out}/ (training_curves.png, anytime.png, budgeted_batch.png, confusion.png{', allocation.png' if (out / 'allocation.png').exists() else ''})")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
