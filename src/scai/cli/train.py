"""``scai train``: fit a multi-exit model on a file of labelled spectra and save a model directory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from scai.cli._common import CliError, load_spectra, print_table, read_config_file

__all__ = ["register", "train_on_spectra", "print_exit_table"]

HELP = """\
Train SCAI / SCAI+ (or a baseline) on labelled spectra and write a model directory:
config.json + model.safetensors (+ validation split), history.json/csv, training_curves.png.

DATA is a CSV/TSV (rows = spectra, a label column, columns named by wavenumber), a UCR .tsv,
.npz/.h5 with X/y/axis, a folder of <class>/<file>.jdx, or a bundled dataset name
(e.g. milk_adulteration). Without --val-data a stratified validation split (--val-fraction)
is taken from DATA and stored with the model (evaluate/predict calibrate on it).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on labelled spectra",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="training spectra: file, folder, or bundled dataset name")
    add_training_arguments(p)
    p.add_argument("--out", default="scai-model", help="model directory to write (default: scai-model)")
    p.set_defaults(func=_run)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", "-l", default=None, help="label column name or 0-based index (default: auto-detect label/class/y/target)")
    p.add_argument("--model", default=None, help="network: scai_plus (default), scai, resnet1d, drsn_cs, drsn_cw, ... (see docs/models.md)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 200)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (default 30; paper: 50)")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default 32)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--distill", choices=["last", "next", "none"], default=None, help="self-distillation mode (default last)")
    p.add_argument("--seed", type=int, default=None, help="random seed for split, init and shuffling (default 0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    p.add_argument("--preprocessing", default=None, help="'raman' (default pipeline: despike, baseline, smoothing, SNV) or 'none'")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-data", default=None, help="separate validation file (same format as DATA)")
    val.add_argument("--val-fraction", type=float, default=None, help="share of DATA held out for validation (default 0.1)")
    p.add_argument("--test-data", default=None, help="test file; prints a per-exit test table")
    p.add_argument("--test-fraction", type=float, default=None, help="hold out this share of DATA (stratified) as a test split, e.g. 0.1 for 8:1:1")
    p.add_argument("--config", default=None, help="JSON/TOML file with keys model, model_config, train, preprocessing, seed")
    p.add_argument("--data-dir", default=None, help="folder of extra .npz datasets to load by name (or set SCAI_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    cfg = read_config_file(args.config) if args.config else {}
    unknown = set(cfg) - {"model", "model_config", "train", "preprocessing", "seed", "val_fraction"}
    if unknown:
        raise CliError(f"--config: unknown section(s) {sorted(unknown)}; allowed: model, model_config, train, preprocessing, seed, val_fraction")
    train = dict(cfg.get("train", {}))
    for arg, key in (("epochs", "max_epochs"), ("patience", "patience"), ("batch_size", "batch_size"), ("lr", "lr"), ("distill", "distill"), ("threads", "threads")):
        value = getattr(args, arg, None)
        if value is not None:
            train[key] = value
    return {
        "model": args.model or cfg.get("model", "scai_plus"),
        "model_config": dict(cfg.get("model_config", {})),
        "train": train,
        "preprocessing": args.preprocessing or cfg.get("preprocessing", "raman"),
        "seed": args.seed if args.seed is not None else int(cfg.get("seed", 0)),
        "val_fraction": args.val_fraction if args.val_fraction is not None else float(cfg.get("val_fraction", 0.1)),
        "verbose": not getattr(args, "quiet", False),
    }


def train_on_spectra(
    spectra: Any,
    settings: dict[str, Any],
    *,
    val: Any = None,
    test_fraction: float | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Fit an estimator on ``spectra``; returns (estimator, test Spectra or None, split info)."""
    from scai.data import train_val_test_split
    from scai.estimators import SCAIClassifier

    if spectra.y is None:
        raise CliError(f"{spectra.source}: no labels found; pass --label-column")
    seed = settings["seed"]
    split: dict[str, Any] = {"seed": seed}
    test = None
    train = spectra
    if test_fraction:
        vf = settings["val_fraction"]
        tr, va, te = train_val_test_split(spectra, ratios=(1.0 - vf - test_fraction, vf, test_fraction), seed=seed, groups=spectra.groups)
        train, test = spectra.subset(tr), spectra.subset(te)
        if val is None:
            val = spectra.subset(va)
        split.update(protocol=f"stratified train/val/test {1 - vf - test_fraction:.2f}/{vf:.2f}/{test_fraction:.2f}", n_train=len(tr), n_val=len(va), n_test=len(te))
    elif spectra.train_idx is not None and spectra.test_idx is not None:
        train, test = spectra.subset(spectra.train_idx), spectra.subset(spectra.test_idx)
        split.update(protocol="official train/test split of the file", n_train=train.n_samples, n_test=test.n_samples)
    est = SCAIClassifier(
        model=settings["model"],
        model_config=settings["model_config"] or None,
        train_config=settings["train"] or None,
        preprocessing=settings["preprocessing"],
        val_fraction=settings["val_fraction"],
        random_state=seed,
        verbose=settings["verbose"],
    )
    kwargs: dict[str, Any] = {"axis": train.axis, "axis_unit": train.axis_unit}
    if val is not None:
        kwargs.update(X_val=val.X, y_val=val.labels)
        if val.n_points != train.n_points or not np.allclose(val.axis, train.axis):
            raise CliError(f"{val.source}: validation spectra are on another axis than the training data")
    est.fit(train.X, train.labels, **kwargs)
    split.setdefault("n_train", train.n_samples)
    split["n_val"] = int(len(est.validation_["y"]))
    return est, test, split


def print_exit_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}  (MACs = multiply-accumulates per spectrum; FLOPs = 2 x MACs)")
    print_table(
        [[r["exit"], r["macs"], r["mean_macs"], r["accuracy"]] for r in rows],
        ["exit", "MACs (full)", "MACs spent (mean)", "accuracy"],
    )


def _run(args: argparse.Namespace) -> int:
    from scai.report.evaluation import evaluate
    from scai.report.plots import plot_training_curves

    settings = _settings(args)
    t0 = time.perf_counter()
    spectra = load_spectra(args.data, args.label_column, args.data_dir)
    val = load_spectra(args.val_data, args.label_column, args.data_dir) if args.val_data else None
    print(f"data: {spectra.source}: {spectra.n_samples} spectra x {spectra.n_points} points, {spectra.n_classes} classes")
    est, test, split = train_on_spectra(spectra, settings, val=val, test_fraction=args.test_fraction)
    if args.test_data:
        test = load_spectra(args.test_data, args.label_column, args.data_dir)
        split["test"] = str(args.test_data)
    out = est.save(args.out)
    plot_training_curves(est.history_.epochs, out / "training_curves.png", title=f"{settings['model']} on {Path(str(spectra.source)).name}")
    (out / "split.json").write_text(json.dumps(split, indent=1))
    h = est.history_
    print(f"trained {settings['model']} for {len(h.epochs)} epochs (best epoch {h.best_epoch}) in {h.fit_time_s:.1f} s")
    if test is not None:
        metrics = evaluate(est, test.X, test.labels, test.axis, out_dir=out / "test", title="test")
        print_exit_table(metrics["exits"], f"per-exit test accuracy ({metrics['n_samples']} spectra)")
    print(f"\nmodel written to {out}/ (config.json, model.safetensors, history.csv, training_curves.png); total {time.perf_counter() - t0:.1f} s")
    return 0
