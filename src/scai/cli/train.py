"""``scai train``: fit a multi-exit model on a file of labelled spectra and save a model directory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from scai.cli._common import (
    CliError,
    add_column_arguments,
    apply_threads,
    column_options,
    existing_dir,
    existing_file,
    fraction,
    labels_for_model,
    load_spectra,
    model_name,
    naming_file,
    natural_labels,
    non_negative_int,
    positive_float,
    positive_int,
    preprocessing_cost_line,
    preprocessing_kind,
    print_table,
    random_seed,
    read_config_file,
    write_spectra_csv,
)
from scai.errors import ModelConfigError, ScaiError
from scai.model_dir import CURVES, SPLIT, TEST_DIR, TRAINING_ROWS, ModelDir

__all__ = ["register", "train_on_spectra", "print_exit_table", "describe_model"]

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
    p.add_argument("--save-test", default=None, metavar="FILE",
                   help="with --test-fraction: write the held-out test spectra to FILE (CSV: label column, then one "
                        "column per axis value) to evaluate on later; the model also stores digests of its training "
                        "spectra, so `scai evaluate` warns when it is given any of them")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel training over the processes torchrun starts (on by itself under torchrun): "
                        "torchrun --nproc_per_node=N -m scai.cli train DATA --ddp; rank 0 writes --out")
    p.set_defaults(func=_run)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", "-l", default=None, help="label column name or 0-based index (default: auto-detect label/class/y/target)")
    add_column_arguments(p)
    p.add_argument("--axis-unit", default=None, metavar="UNIT",
                   help="unit of DATA's axis (cm-1, nm, ...) when the file does not say it (JCAMP ##XUNITS, "
                        "instrument files and .npz do); stored with the model, which then refuses spectra in another unit")
    p.add_argument("--model", type=model_name, default=None, help="network: scai_plus (default), scai, resnet1d, drsn_cs, drsn_cw, ... (see docs/models.md)")
    p.add_argument("--epochs", type=positive_int, default=None, help="maximum epochs, >= 1 (default 200)")
    p.add_argument("--train-budget", type=_train_budget, default=None, metavar="MACS",
                   help="training compute cap: epochs x training spectra x the network's MACs per spectrum may not "
                        "exceed it, so the epoch cap falls on large sets of long spectra (training time is about "
                        "proportional; 200G is ~150 s per fold on one core). Default 200G; 'none' = --epochs only "
                        "(--recipe paper: none). The cap that ran is printed and stored with the model")
    p.add_argument("--patience", type=non_negative_int, default=None, help="early-stopping patience in epochs, >= 0 (default 30; paper: 50)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="mini-batch size, >= 1 (default 32)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate, > 0 (default 1e-3)")
    p.add_argument("--distill", choices=["last", "next", "none"], default=None, help="self-distillation mode (default last)")
    p.add_argument("--ponder-target", type=_ponder_target, default=None,
                   help="SCAI+: share of the units each position runs on average, in (0, 1], e.g. 0.5; "
                        "'none' = the paper's tau-only ponder cost (default 0.5; --recipe paper: none)")
    p.add_argument("--ponder-allocation", choices=["uniform", "anova"], default=None,
                   help="SCAI+ with --ponder-target: 'anova' moves units to the positions where the classes' ANOVA F "
                        "is highest, at the same mean (default uniform)")
    p.add_argument("--seed", type=random_seed, default=None, help="random seed for split, init and shuffling, >= 0 (default 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch, >= 1 (default: the cores that are idle now, at least 1; docs/inference.md, 'Threads')")
    p.add_argument("--preprocessing", type=preprocessing_kind, default=None, metavar="{auto,raman,deriv,nir,ftir,snv,none}",
                   help="auto (default: of raman, deriv, ftir, snv and none, the pipeline whose exit 0 scores best in "
                        "inner cross-validation on the training data), raman (despike, baseline, smoothing, SNV), "
                        "deriv (Savitzky-Golay 1st derivative + SNV, for FTIR/NIR/UV), nir/ftir (smoothing + SNV), snv or none")
    p.add_argument("--exit0", choices=["auto", "logistic", "pls", "none"], default=None,
                   help="exit 0, a linear chemometric classifier in front of the network: auto (default: logistic "
                        "regression or PLS-DA, chosen by inner cross-validation), logistic, pls, or none (the paper's network)")
    p.add_argument("--rocket", choices=["auto", "none"], default=None,
                   help="a MiniRocket exit after exit 0 (fixed random convolutions and a ridge head, needs the bench "
                        "extra, aeon): auto (default: fitted, and kept only when it adds to exit 0 out of fold) or none")
    p.add_argument("--recipe", choices=["default", "paper"], default="default",
                   help="paper: the paper's exact recipe (no exit 0, the Raman pipeline, no input centring, "
                        "global-average-pooling exit heads without dropout, constant learning rate, no weight decay, "
                        "no weight average, one validation split instead of cross-fitting); options given explicitly still win")
    p.add_argument("--keep-exits", action="store_true",
                   help="keep every exit; by default exits that do not beat every earlier exit on the validation split "
                        "are skipped (they repeat the answer before them) and later network stages are dropped")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--folds", type=non_negative_int, default=None,
                     help="cross-fitting folds K (default 5): the network is trained K times on K-1 folds and the "
                          "out-of-fold predictions of every training spectrum choose the epoch count, the exits used, "
                          "temperatures and thresholds; then exit 0 and the network are refitted on all of it. "
                          "0 = one validation split (--single-split)")
    val.add_argument("--single-split", action="store_true",
                     help="no cross-fitting: hold out --val-fraction of DATA once for early stopping and calibration "
                          "(the paper's protocol; what --recipe paper does)")
    val.add_argument("--val-data", default=None, help="separate validation file (same format as DATA); implies --single-split")
    p.add_argument("--val-fraction", type=fraction, default=None,
                   help="share of DATA held out for validation, in (0, 1) (default 0.1); implies --single-split")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="cross-fitting folds trained at once, one process and one thread each (default: the cores available)")
    p.add_argument("--test-data", default=None, help="test file; prints a per-exit test table")
    p.add_argument("--test-fraction", type=fraction, default=None, help="hold out this share of DATA (stratified) as a test split, in (0, 1), e.g. 0.1 for 8:1:1")
    p.add_argument("--config", type=existing_file, default=None,
                   help="JSON/TOML file with keys model, model_config, train, preprocessing, seed; preprocessing is a "
                        "kind name or a list of steps such as [{\"step\": \"SavitzkyGolay\", \"window\": 15, \"deriv\": 1}, {\"step\": \"SNV\"}]")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder of extra .npz datasets to load by name (or set SCAI_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


#: Sections of a ``--config`` file.
CONFIG_SECTIONS = ("model", "model_config", "train", "preprocessing", "seed", "val_fraction", "exit0", "rocket", "keep_exits", "folds")
EXIT0_CHOICES = ("auto", "logistic", "pls", "none")
#: ``--recipe paper``: what the paper trains (docs/training.md, "Default recipe").
PAPER_RECIPE: dict[str, dict[str, Any]] = {
    "train": {"lr_schedule": "constant", "weight_decay": 0.0, "ema_decay": 0.0, "ponder_target": None, "train_budget": None},
    "model_config": {"head_bins": 1, "dropout": 0.0},
}


def _config_value(where: str, key: str, value: Any, check: Any) -> Any:
    """``check(str(value))`` (an argparse type helper) with errors naming the config file and key."""
    try:
        return check(str(value))
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"{where}: {key}: {exc}") from None


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Training settings from the options, over those of ``--config``, each checked before any work."""
    from scai.training import TrainConfig

    cfg = read_config_file(args.config) if args.config else {}
    where = f"--config {args.config}" if args.config else "options"
    unknown = set(cfg) - set(CONFIG_SECTIONS)
    if unknown:
        raise CliError(f"{where}: unknown section(s) {sorted(unknown)}; allowed: {', '.join(CONFIG_SECTIONS)}")
    for section in ("train", "model_config"):
        if not isinstance(cfg.get(section, {}), dict):
            raise CliError(f"{where}: {section} must be a table/object of options; got {cfg[section]!r:.60}")
    paper = getattr(args, "recipe", "default") == "paper"
    train = {**(PAPER_RECIPE["train"] if paper else {}), **dict(cfg.get("train", {}))}
    for arg, key in (("epochs", "max_epochs"), ("patience", "patience"), ("batch_size", "batch_size"), ("lr", "lr"), ("distill", "distill"), ("threads", "threads"), ("ponder_target", "ponder_target"), ("ponder_allocation", "ponder_allocation"), ("train_budget", "train_budget")):
        value = getattr(args, arg, None)
        if value is not None:
            train[key] = None if value == "none" else value
    try:  # the options were checked by argparse, so what fails here comes from the file
        TrainConfig.from_dict(train)
    except (ScaiError, TypeError) as exc:
        raise CliError(f"{where}: train: {exc}") from None
    model = args.model or _config_value(where, "model", cfg.get("model", "scai_plus"), model_name)
    model_config = {**(PAPER_RECIPE["model_config"] if paper else {}), **dict(cfg.get("model_config", {}))}
    _check_model_config(where, model, model_config)
    default_pre = "raman" if paper else "auto"
    preprocessing = args.preprocessing or _config_preprocessing(where, cfg.get("preprocessing", default_pre))
    return {
        "model": model,
        "model_config": model_config,
        "train": train,
        "preprocessing": preprocessing,
        "seed": args.seed if args.seed is not None else _config_value(where, "seed", cfg.get("seed", 0), random_seed),
        "val_fraction": args.val_fraction if args.val_fraction is not None else _config_value(where, "val_fraction", cfg.get("val_fraction", 0.1), fraction),
        "verbose": not getattr(args, "quiet", False),
        "config_file": args.config,
        "exit0": getattr(args, "exit0", None) or _config_value(where, "exit0", cfg.get("exit0", "none" if paper else "auto"), _exit0_kind),
        "rocket": getattr(args, "rocket", None) or _config_value(where, "rocket", cfg.get("rocket", "none" if paper else "auto"), _rocket_kind),
        "standardize": "none" if paper else "global",
        "skip_exits": not (getattr(args, "keep_exits", False) or bool(cfg.get("keep_exits", False))),
        "cross_fit": _folds(args, cfg, where, paper),
        "n_jobs": getattr(args, "jobs", None),
    }


def _folds(args: argparse.Namespace, cfg: dict[str, Any], where: str, paper: bool) -> int:
    """Cross-fitting folds: --folds, else 0 for --single-split / --val-data / --recipe paper, else the file's, else 5."""
    if getattr(args, "val_data", None) and getattr(args, "val_fraction", None) is not None:
        raise CliError("--val-data and --val-fraction exclude each other: the validation file is the validation split")
    if getattr(args, "folds", None) is not None:
        if getattr(args, "val_fraction", None) is not None:
            raise CliError("--folds and --val-fraction exclude each other: cross-fitting holds no validation split out; "
                           "use --single-split --val-fraction F for one split")
        return int(args.folds)
    if getattr(args, "single_split", False) or getattr(args, "val_data", None) or getattr(args, "val_fraction", None):
        return 0
    return int(_config_value(where, "folds", cfg.get("folds", 0 if paper else 5), non_negative_int))


def _config_preprocessing(where: str, value: Any) -> Any:
    """A config file's ``preprocessing``: a kind name, or a list of ``{"step": name, ...}`` (a Pipeline)."""
    from scai.preprocessing import pipeline_from_spec

    if isinstance(value, (list, dict)):
        try:
            return pipeline_from_spec(value, where=f"{where}: preprocessing")
        except ScaiError as exc:
            raise CliError(str(exc)) from None
    return _config_value(where, "preprocessing", value, preprocessing_kind)


def _ponder_target(text: str) -> float | str:
    """``--ponder-target``: a share of the units in (0, 1], or "none" (tau only, the paper)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; use a share of the units in (0, 1], e.g. 0.5, or 'none'") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; use a share of the units in (0, 1], e.g. 0.5, or 'none'")
    return value


def _train_budget(text: str) -> float | str:
    """``--train-budget``: forward MACs a fit may spend on training ("200G", "2e11"), or "none"."""
    from scai.errors import BudgetError
    from scai.inference.budget import parse_budget

    if text.strip().lower() == "none":
        return "none"
    try:
        budget = parse_budget(text)
    except BudgetError:
        budget = None
    if budget is None or budget.unit != "macs":
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of MACs; use e.g. 200G, 2e11 or 'none' (no cap)")
    return float(budget.value)


def _rocket_kind(text: str) -> str:
    if text not in ("auto", "none"):
        raise argparse.ArgumentTypeError(f"unknown rocket {text!r}; use auto or none")
    return text


def _exit0_kind(text: str) -> str:
    if text not in EXIT0_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown exit0 {text!r}; use one of {', '.join(EXIT0_CHOICES)}")
    return text


def _check_model_config(where: str, model: str, model_config: dict[str, Any]) -> None:
    """Refuse ``model_config`` keys the network does not have, listing the valid ones."""
    import dataclasses

    from scai.models import model_config_class

    valid = [f.name for f in dataclasses.fields(model_config_class(model))]
    unknown = sorted(set(model_config) - set(valid))
    if unknown:
        raise CliError(f"{where}: model_config: unknown key(s) {unknown} for model {model!r}; valid keys: {', '.join(valid)}")


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
    if test_fraction and settings["val_fraction"] + test_fraction >= 1.0:
        raise CliError(
            f"--val-fraction {settings['val_fraction']} + --test-fraction {test_fraction} leave nothing to train on; "
            "their sum must be below 1 (e.g. 0.1 and 0.1 for 8:1:1)"
        )
    seed = settings["seed"]
    split: dict[str, Any] = {"seed": seed}
    test = None
    train = spectra
    cross = settings.get("cross_fit", 5) >= 2 and val is None
    if test_fraction:
        vf = settings["val_fraction"]
        tr, va, te = train_val_test_split(spectra, ratios=(1.0 - vf - test_fraction, vf, test_fraction), seed=seed, groups=spectra.groups)
        if cross:  # cross-fitting holds every training spectrum out once: the validation part trains too
            tr, va = np.sort(np.concatenate([tr, va])), va[:0]
            protocol = f"stratified train/test {1 - test_fraction:.2f}/{test_fraction:.2f}, {settings['cross_fit']}-fold cross-fitting on train"
        else:
            protocol = f"stratified train/val/test {1 - vf - test_fraction:.2f}/{vf:.2f}/{test_fraction:.2f}"
        train, test = spectra.subset(tr), spectra.subset(te)
        if val is None and not cross:
            val = spectra.subset(va)
        split.update(protocol=protocol, n_train=len(tr), n_val=len(va), n_test=len(te), test_rows=np.sort(te).tolist())
    elif spectra.train_idx is not None and spectra.test_idx is not None:
        train, test = spectra.subset(spectra.train_idx), spectra.subset(spectra.test_idx)
        split.update(protocol="official train/test split of the file", n_train=train.n_samples, n_test=test.n_samples)
    est = SCAIClassifier(
        model=settings["model"],
        model_config=settings["model_config"] or None,
        train_config=settings["train"] or None,
        preprocessing=settings["preprocessing"],
        exit0=settings.get("exit0", "auto"),
        rocket=settings.get("rocket", "auto"),
        standardize=settings.get("standardize", "global"),
        skip_exits=settings.get("skip_exits", True),
        val_fraction=settings["val_fraction"],
        cross_fit=settings.get("cross_fit", 5),
        n_jobs=settings.get("n_jobs"),
        random_state=seed,
        verbose=settings["verbose"],
    )
    # integer labels stay integers (a file holds them as text): clf.score(X, df.label) then works
    names = (*spectra.class_names, *(val.class_names if val is not None else ()))
    int_labels = natural_labels(np.asarray(names, dtype=object)).dtype.kind == "i"
    kwargs: dict[str, Any] = {"axis": train.axis, "axis_unit": train.axis_unit}
    if val is not None:
        kwargs.update(X_val=val.X, y_val=_labels(val, int_labels))
        if val.n_points != train.n_points or not np.allclose(val.axis, train.axis):
            raise CliError(f"{val.source}: validation spectra are on another axis than the training data")
    try:
        est.fit(train.X, _labels(train, int_labels), **kwargs)
    except ModelConfigError as exc:  # a value of the config file's model_config (keys were checked)
        where = f"--config {settings['config_file']}: " if settings.get("config_file") else ""
        raise CliError(f"{where}model_config of {settings['model']!r}: {exc}") from None
    split.setdefault("n_train", train.n_samples)
    split["n_val"] = 0 if est.cross_fit_ else int(len(est.validation_["y"]))
    split["cross_fit"] = est.cross_fit_
    return est, test, split


def _labels(spectra: Any, as_int: bool) -> np.ndarray:
    return natural_labels(spectra.labels) if as_int else spectra.labels


def describe_model(est: Any) -> None:
    """Print the preprocessing that ran and what exit 0 and the exit selection decided."""
    sel = getattr(est, "preprocessing_selection_", None)
    steps = describe_pipeline(est.pipeline_)
    if sel:
        scores = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} failed" for k, v in sel["inner_cv_accuracy"].items())
        print(f"preprocessing: auto chose {sel['chosen']!r} ({steps}); inner-CV accuracy of exit 0: {scores}")
    else:
        print(f"preprocessing: {steps}")
    fit = getattr(est, "exit0_", None)
    uses = getattr(est.network_, "uses", None)
    if fit:
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fit.get("params", {}).items())
        cv = fit.get("cv_accuracy")
        print(f"exit 0: {fit['kind']} ({params}), {fit['macs']:,} MACs" + (f", inner-CV accuracy {cv:.3f}" if cv is not None else ""))
    cross = getattr(est, "cross_fit_", None)
    rocket = (cross or {}).get("rocket")
    if rocket:
        print(f"MiniRocket exit: {rocket['n_features']:,} features, " + (
            f"used (out of fold, with exit 0: {rocket['oof_accuracy']:.3f})" if rocket["used"]
            else "fitted but left out: it added nothing to exit 0 out of fold"))
    cap = getattr(est, "epoch_cap_", None)
    if cap and cap["epochs"] < cap["max_epochs"]:
        print(f"epochs: at most {cap['epochs']} (of --epochs {cap['max_epochs']}): the training budget of "
              f"{cap['train_budget']:.3g} MACs over {cap['n_train']} spectra x {cap['net_macs']:,} MACs of the network "
              "(--train-budget none lifts it)")
    if cross:
        parts = [f"cross-fitting: {cross['folds']} folds of {cross['n']} spectra ({cross['n_jobs']} at a time)"]
        if cross.get("fold_time_s"):
            parts.append(f"{len(cross['fold_time_s'])} network trainings took {cross['cross_fit_s']:.1f} s")
        if cross.get("epochs"):
            parts.append(f"{cross['epochs']} epochs chosen on the pooled out-of-fold accuracy, refit on all spectra "
                         f"{cross['refit_s']:.1f} s")
        print("; ".join(parts) + f"; total {cross['wall_s']:.1f} s")
        if not cross["network"].startswith("trained"):
            print(f"network {cross['network']}")
    if uses is not None:
        val = fit.get("validation_accuracy") if fit else None
        where = "out of fold" if cross else "val"
        shown = ", ".join(
            f"exit {k}: {'used' if k < len(uses) and uses[k] else 'skipped'}" + (f" ({where} {a:.3f})" if a is not None else "")
            for k, a in enumerate(val or [None] * len(uses))
        )
        print(f"exits on {'out-of-fold predictions' if cross else 'the validation split'}: {shown}; "
              f"the model keeps {len(uses)} exit(s)")


def describe_pipeline(pipeline: Any) -> str:
    """The fitted pipeline as one line, each step with its parameters:
    ``SavitzkyGolay(window=11, polyorder=2, deriv=1) -> SNV -> Standardize(scale=global)``."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k}={value(x)}" for k, x in v.items())
        return f"{v:g}" if isinstance(v, float) else str(v)

    parts = []
    for step in pipeline.steps:
        params = {k: v for k, v in step.get_params(deep=False).items() if v is not None}
        shown = ", ".join(value(v) if isinstance(v, dict) else f"{k}={value(v)}" for k, v in params.items())
        parts.append(f"{type(step).__name__}({shown})" if shown else type(step).__name__)
    return " -> ".join(parts) or "(none)"


def _with_unit(spectra: Any, unit: str) -> Any:
    """``spectra`` with its axis unit set to ``unit``; a file that states another unit is refused."""
    import dataclasses

    if unit.strip().lower() in ("", "unknown", "index"):
        raise CliError(f"--axis-unit {unit!r}: give the physical unit of the axis (cm-1, nm, ...)")
    if spectra.axis_unit == "index":
        raise CliError(f"--axis-unit {unit}: {spectra.source} has no axis values (its columns are point indices), "
                       "so there is nothing to give a unit to; add the axis as the header row")
    if spectra.axis_unit not in (None, "", "unknown") and spectra.axis_unit != unit:
        raise CliError(f"--axis-unit {unit}: {spectra.source} says its axis is in {spectra.axis_unit}")
    return dataclasses.replace(spectra, axis_unit=unit)


def print_cost_table(est: Any) -> None:
    """Per-exit MACs of the saved model (what each exit costs, with or without a test set)."""
    uses = getattr(est.network_, "uses", None)
    macs = [int(m) for m in est.exit_macs_]
    full = macs[-1] if macs else 1
    rows = [[k, m, f"{100.0 * m / full:.1f}%", ("used" if uses[k] else "skipped (repeats the exit before)") if uses is not None and k < len(uses) else "used"]
            for k, m in enumerate(macs)]
    print("\nper-exit cost (MACs = multiply-accumulates per spectrum, cumulative; FLOPs = 2 x MACs; "
          "SCAI+ exits spend less on most spectra)")
    print_table(rows, ["exit", "MACs", "of full path", "on validation"])
    print(preprocessing_cost_line(getattr(est, "preprocessing_cost_", None)))


def print_exit_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}  (MACs = multiply-accumulates per spectrum; FLOPs = 2 x MACs)")
    print_table(
        [[r["exit"], r["macs"], r["mean_macs"], r["accuracy"]] for r in rows],
        ["exit", "MACs (full)", "MACs spent (mean)", "accuracy"],
    )


def _fitted_rows(spectra: Any, split: dict[str, Any], val: Any) -> np.ndarray:
    """The spectra the model was fitted on (training and validation): DATA less the held-out test
    rows (or the file's official training rows), plus a --val-data file."""
    if "test_rows" in split:
        rows = np.delete(spectra.X, split["test_rows"], axis=0)
    elif spectra.train_idx is not None and spectra.test_idx is not None:
        rows = spectra.X[spectra.train_idx]
    else:
        rows = spectra.X
    return rows if val is None else np.concatenate([rows, val.X])


def _run_ddp(args: argparse.Namespace) -> int:
    """``_run`` on every torchrun rank in one process group; rank 0 alone prints and writes."""
    import contextlib
    import io

    from scai.training import ddp

    if args.jobs not in (None, 1):
        raise CliError("--jobs and --ddp exclude each other: under torchrun the folds run one after another, "
                       "each trained data-parallel")
    with ddp.process_group() as env:
        args.quiet = args.quiet or env.rank > 0
        with contextlib.redirect_stdout(io.StringIO()) if env.rank > 0 else contextlib.nullcontext():
            return _run(args)


def _one_model(est: Any) -> bool:
    """Under --ddp: refuse ranks that ended with different models; True on the rank that writes."""
    import json

    from scai.training import ddp

    if ddp.current() is None:
        return True
    extra = json.dumps([np.asarray(est.temperatures_).tolist(), est.thresholds_, repr(est.pipeline_),
                        getattr(est.network_, "uses", None)], sort_keys=True, default=str).encode()
    ddp.check_same(ddp.state_digest(est.network_, extra), "model")
    return ddp.is_main()


def _run(args: argparse.Namespace) -> int:
    from scai.report.evaluation import evaluate
    from scai.report.plots import plot_training_curves
    from scai.training import ddp

    if (getattr(args, "ddp", False) or ddp.launch_env() is not None) and ddp.current() is None:
        return _run_ddp(args)
    settings = _settings(args)
    apply_threads(args.threads)
    if args.save_test is not None and args.test_fraction is None:
        raise CliError("--save-test writes the split that --test-fraction holds out; add --test-fraction F (e.g. 0.1)")
    t0 = time.perf_counter()
    columns = column_options(args)
    spectra = load_spectra(args.data, args.label_column, args.data_dir, **columns)
    val = load_spectra(args.val_data, args.label_column, args.data_dir, **columns) if args.val_data else None
    test_file = load_spectra(args.test_data, args.label_column, args.data_dir, **columns) if args.test_data else None  # before training: fail fast
    if args.axis_unit is not None:  # the user's word for the unit the file does not state
        spectra, val, test_file = (None if s is None else _with_unit(s, args.axis_unit) for s in (spectra, val, test_file))
    print(f"data: {spectra.source}: {spectra.n_samples} spectra x {spectra.n_points} points, {spectra.n_classes} classes")
    est, test, split = train_on_spectra(spectra, settings, val=val, test_fraction=args.test_fraction)
    if not _one_model(est):  # a --ddp rank other than 0
        return 0
    if test_file is not None:
        test = test_file
        split["test"] = str(args.test_data)
    out = est.save(args.out)
    mdir = ModelDir(out)
    plot_training_curves(est.history_.epochs, mdir.file(CURVES), title=f"{settings['model']} on {Path(str(spectra.source)).name}")
    mdir.write_json(SPLIT, split)
    mdir.write_training_rows(_fitted_rows(spectra, split, val))
    if args.save_test is not None and test is not None:
        write_spectra_csv(spectra.subset(split["test_rows"]), args.save_test)
        print(f"held-out test spectra ({split['n_test']}) written to {args.save_test}")
    h = est.history_
    if h.epochs:
        print(f"trained {settings['model']} for {len(h.epochs)} epochs (best epoch {h.best_epoch}) in {h.fit_time_s:.1f} s")
    else:
        print(f"fitted in {getattr(est, 'fit_time_s_', None) or h.fit_time_s:.1f} s; the {settings['model']} network was not needed (see below)")
    describe_model(est)
    if test is not None:
        with naming_file(test.source):
            labels = labels_for_model(test.labels, est.classes_)
            metrics = evaluate(est, test.X, labels, test.axis, out_dir=mdir.file(TEST_DIR), title="test")
        print_exit_table(metrics["exits"], f"per-exit test accuracy ({metrics['n_samples']} spectra)")
    else:
        print_cost_table(est)
        print("(no test set: give --test-fraction F or --test-data FILE for per-exit test accuracy)")
    print(f"\nmodel written to {out}/ (config.json, model.safetensors, history.csv, training_curves.png, {TRAINING_ROWS}); "
          f"total {time.perf_counter() - t0:.1f} s")
    return 0
