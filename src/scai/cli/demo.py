"""``scai demo``: the whole pipeline on the bundled milk-adulteration Raman dataset in a few minutes."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from scai.cli._common import (
    add_threads_argument,
    apply_threads,
    model_name,
    non_negative_int,
    positive_float,
    positive_int,
    print_table,
    random_seed,
)

__all__ = ["estimate_epoch_seconds", "register", "training_cut_short"]

#: The default recipe's epoch cap (scai train): a demo capped below it may stop before converging.
RECIPE_EPOCHS = 200

HELP = """\
Train SCAI+ on the bundled milk_adulteration Raman dataset (500 spectra, 10 adulteration
levels; stratified 8:1:1 split, seed 0) with the default recipe (preprocessing chosen by
inner cross-validation, the linear exit 0 in front of the network), then print a
per-exit table (MACs, accuracy), the anytime accuracy-vs-budget curve, and write plots:
training_curves.png, anytime.png, budgeted_batch.png, confusion.png, allocation.png, and
report.html (everything in one self-contained page).
Training is capped by --epochs (default 80), not by time, so a busy machine makes the demo
slower, not worse; before training it prints how long an epoch takes on this machine now.
When the cap ends training before early stopping would have, it says so: the figures are then
not representative of what the model reaches (rerun with more --epochs).
"""


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="train and evaluate SCAI+ on the bundled dataset", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="scai-demo", help="output folder (default: scai-demo)")
    p.add_argument("--model", type=model_name, default="scai_plus", help="network to train (default scai_plus)")
    p.add_argument("--epochs", type=positive_int, default=80, help="maximum epochs, >= 1 (default 80; the full recipe: 200)")
    p.add_argument("--patience", type=non_negative_int, default=20, help="early-stopping patience, >= 0 (default 20)")
    p.add_argument("--seed", type=random_seed, default=0, help="random seed, >= 0 (default 0)")
    p.add_argument("--max-time", type=positive_float, default=None,
                   help="optional cap on training wall time in seconds, > 0 (default: none; the figures are flagged when it cuts training)")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def estimate_epoch_seconds(model: str, n_points: int, n_classes: int, n_train: int, batch_size: int = 32, steps: int = 3) -> float:
    """Seconds one training epoch takes on this machine now: a few timed optimiser steps of the
    untrained network on random spectra, scaled to ``n_train`` spectra (validation adds ~10%)."""
    import torch

    from scai.models import create_model
    from scai.training.losses import exit_losses

    net = create_model(model, n_points, n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 1, n_points, generator=gen)
    y = torch.randint(0, n_classes, (batch_size,), generator=gen)

    def step() -> None:
        out = net.forward_detailed(x)
        loss = exit_losses(out.logits, y, ponder=out.ponder)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: first-call allocations
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - t0) / steps
    return 1.1 * per_step * math.ceil(n_train / batch_size)


def training_cut_short(history: Any, epochs: int, max_time_s: float | None = None,
                       budget_epochs: int | None = None) -> str | None:
    """Which demo cap ended training before early stopping did ("--epochs N" / "--max-time S s"), or None.

    Early stopping ends a run whose validation accuracy stopped improving; a run that used every
    allowed epoch (fewer than the recipe's) or hit the time cap may have stopped while it was still
    improving, so its figures do not show what the model reaches. The recipe's own caps (200
    epochs, and the training budget ``budget_epochs`` that ``scai train`` applies as well) are the
    default model's training, not a demo shortcut: None.
    """
    if max_time_s is not None and history.stopped_early and history.fit_time_s >= max_time_s:
        return f"--max-time {max_time_s:g} s"
    if (budget_epochs is not None and budget_epochs < epochs and not history.stopped_early
            and len(history.epochs) >= budget_epochs):
        return None  # the training budget is the recipe's own cap (scai train stops there too), like RECIPE_EPOCHS
    if not history.stopped_early and len(history.epochs) >= epochs and epochs < RECIPE_EPOCHS:
        return f"--epochs {epochs}"
    return None


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scai import datasets
    from scai.cli.train import describe_model, print_exit_table, train_on_spectra
    from scai.report.evaluation import evaluate, validation_note
    from scai.report.html import write_evaluation_report
    from scai.report.plots import plot_training_curves

    t0 = time.perf_counter()
    threads = apply_threads(args.threads)
    spectra = datasets.load("milk_adulteration")
    print(f"scai demo: {spectra.n_samples} Raman spectra x {spectra.n_points} points ({spectra.axis[0]:.0f}-{spectra.axis[-1]:.0f} cm-1), {spectra.n_classes} classes")
    n_train = round(0.8 * spectra.n_samples)
    per_epoch = estimate_epoch_seconds(args.model, spectra.n_points, spectra.n_classes, n_train)
    print(f"estimate: about {per_epoch:.1f} s per epoch on this machine now ({threads} thread(s)), so at most "
          f"{per_epoch * args.epochs / 60:.1f} min for --epochs {args.epochs} (early stopping may end sooner; "
          "choosing the preprocessing adds a little)")
    train: dict[str, Any] = {"max_epochs": args.epochs, "patience": args.patience, "threads": threads}
    if args.max_time is not None:
        train["max_time_s"] = args.max_time
    settings = {
        "model": args.model,
        "model_config": {},
        "train": train,
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
    budget = (getattr(est, "epoch_cap_", None) or {}).get("epochs")
    cap = training_cut_short(h, args.epochs, args.max_time, budget)
    at_budget = budget is not None and len(h.epochs) >= budget
    how = (f" (stopped by {cap})" if cap else " (early stopping)" if h.stopped_early
           else " (the default training budget's epoch cap, as in scai train)" if at_budget else "")
    print(f"trained {args.model} for {len(h.epochs)} epochs{how} (best {h.best_epoch}) in {h.fit_time_s:.1f} s")
    describe_model(est)
    first = 1 if est.first_exit_number == 0 else 0
    plot_training_curves(h.epochs, out / "training_curves.png", title=f"{args.model} on milk_adulteration",
                         best_epoch=h.best_epoch if h.epochs else None, first_exit=first)
    metrics = evaluate(est, test.X, test.labels, test.axis, out_dir=out, title="milk_adulteration test", detail=True)
    print_exit_table(metrics["exits"], f"per-exit test accuracy ({metrics['n_samples']} test spectra)")
    print("\nanytime inference (same budget for every spectrum):")
    print_table([[r["budget_macs"], r["mean_macs"], r["accuracy"]] for r in metrics["anytime"]], ["budget MACs", "mean MACs", "accuracy"])
    (out / "split.json").write_text(json.dumps(split, indent=1))
    notes = []
    if cap:
        notes.append(f"NOT REPRESENTATIVE: {cap} ended training after {len(h.epochs)} epochs, before early stopping "
                     f"(the validation accuracy was still improving, or may have been); the accuracies above are "
                     f"those of an unfinished model. Rerun with a larger cap (e.g. --epochs {RECIPE_EPOCHS}) for figures that mean something.")
    tiny = validation_note(est)
    if tiny:
        notes.append(tiny)
    write_evaluation_report(est, test.X, test.labels, test.axis, metrics, out / "report.html", source="milk_adulteration (test split)",
                            model_dir=str(model_dir), notes=notes)
    print(f"\nwrote {model_dir}/ and plots in {out}/ (training_curves.png, anytime.png, budgeted_batch.png, confusion.png"
          f"{', allocation.png' if (out / 'allocation.png').exists() else ''}, report.html)")
    for note in notes:
        print(f"\n{note}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
