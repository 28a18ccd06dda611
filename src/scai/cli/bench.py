"""``scai bench``: reproduce the paper's experiments (§4.4–4.7) and write results + report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from scai.cli._common import (
    CliError,
    add_column_arguments,
    apply_threads,
    existing_dir,
    non_negative_int,
    positive_int,
    preprocessing_kind,
    random_seed,
)

__all__ = ["register", "add_arguments", "config_from_args", "run"]

HELP = """\
Train and evaluate SCAI, SCAI+, SCAI+ w/o distillation, ResNet-1D / DRSN-CS / DRSN-CW at several
depths and the classical anchors (SVM-RBF, PLS-DA, logistic regression, MiniRocket) on every
dataset with identical splits, preprocessing and seeds. Writes results.json (after every run,
so --resume continues a stopped run), figures/, report.md and report.html into --out.

--quick: embedded milk_adulteration, seed 0, 2 epochs, tiny networks (checks the pipeline).
--jobs N: run the (dataset, seed) parts as N processes at once (each with --threads threads,
results under <out>/parts/), then merge them into <out>. On a machine with C cores, --jobs C
--threads 1 is usually fastest for these small networks.
--merge A B ...: combine results of runs done apart (parallel processes, other machines or
sessions; each with its own --out) into --out and write one report. A run present twice is
refused.
The full run takes many hours on 2 cores; see docs/benchmarks.md for the estimate.

--data FILE [--label-column L]: your own data instead: the default model (scai train's
settings) against PLS-DA, logistic regression and MiniRocket, on one seeded stratified split
per --seeds seed (default 0), train + val fitting every method, accuracy on test. Prints a table
and writes results.json to --out (default bench-<file name>). --epochs/--patience apply to the
model; --threads (default 1) to every method.
"""


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _ints_of(each: Callable[[str], int]) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated integers, each checked by ``each`` (a ``scai.cli._common`` validator)."""

    def parse(text: str) -> tuple[int, ...]:
        values = tuple(each(t) for t in _csv(text))
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        return values

    return parse


_seeds = _ints_of(random_seed)
_depths = _ints_of(positive_int)


def _bench_preprocessing(text: str) -> str:
    return text if text == "auto" else preprocessing_kind(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``scai bench`` and ``benchmarks/paper.py``."""
    p.add_argument("--quick", action="store_true", help="tiny pipeline check: milk_adulteration, seed 0, 2 epochs, tiny nets")
    p.add_argument("--datasets", type=_csv, default=None, help="comma-separated dataset names (default: every .npz in the data folder)")
    p.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=positive_int, default=None, help="maximum epochs per network (default 200)")
    p.add_argument("--patience", type=non_negative_int, default=None, help="early-stopping patience (default 50, as in the paper)")
    p.add_argument("--depths", type=_depths, default=None, help="residual units of the static baselines (default 2,4,8,16)")
    p.add_argument("--methods", type=_csv, default=None, help="methods or families, e.g. scai_plus,resnet1d,svm_rbf (default: all)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/paper, quick: benchmarks/results/paper-quick)")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder of <name>.npz datasets (default: $SCAI_DATA_DIR or ../shared/datasets)")
    p.add_argument("--preprocessing", type=_bench_preprocessing, default=None, help="auto (raman for cm-1 axes, ftir otherwise; default), or a preset: raman, deriv, nir, ftir, snv, none "
                        "(docs/data.md)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default 2)")
    p.add_argument("--jobs", type=positive_int, default=1, help="run (dataset, seed) parts in this many processes at once, then merge them (default 1: one process)")
    p.add_argument("--no-report", action="store_true", help="write results.json only (no figures or reports); --report-only renders them later")
    p.add_argument("--resume", action="store_true", help="skip (dataset, method, seed) runs already in results.json")
    p.add_argument("--report-only", action="store_true", help="only re-render figures and reports from an existing results.json")
    p.add_argument("--merge", nargs="+", metavar="RESULTS", default=None, help="combine these results.json files (or folders holding one) from runs done apart into --out, then write the report")


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="reproduce the paper's experiments, or compare the model with the anchors on your data (--data)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own labelled spectra (file, folder or dataset name): the model against PLS-DA, logistic and MiniRocket")
    p.add_argument("--label-column", "-l", default=None, help="with --data: label column name or 0-based index")
    add_column_arguments(p)
    p.set_defaults(func=run)


#: Options of the paper benchmark that --data does not use (refused, not ignored).
_NOT_WITH_DATA = ("quick", "datasets", "depths", "methods", "resume", "report_only", "merge", "no_report")


def config_from_args(args: argparse.Namespace) -> Any:
    """A :class:`scai.bench.BenchConfig` from parsed options (``--quick`` sets the defaults)."""
    from scai.bench import BenchConfig, quick_config  # here, not on top: ``scai --help`` stays fast

    fields = {
        "datasets": args.datasets,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "patience": args.patience,
        "depths": args.depths,
        "methods": args.methods,
        "out": args.out,
        "data_dir": args.data_dir,
        "preprocessing": args.preprocessing,
        "threads": args.threads,
        "resume": bool(args.resume),
    }
    if args.quick:
        return quick_config(**fields)
    return BenchConfig(**{k: v for k, v in fields.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    # here, not on top: every ``scai`` command imports this module, and scai.bench loads scikit-learn
    from scai import datasets
    from scai.bench import (
        fill_discriminability,
        load_results,
        merge_results,
        run_benchmark,
        run_parallel,
        save_results,
        write_report,
    )

    if getattr(args, "data", None) is not None:
        given = [n for n in _NOT_WITH_DATA if getattr(args, n, None) not in (None, False)]
        if given or args.jobs != 1:
            names = [f"--{n.replace('_', '-')}" for n in given] + (["--jobs"] if args.jobs != 1 else [])
            raise CliError(f"--data runs one comparison on your file; {', '.join(names)} belong to the paper benchmark")
        from scai.cli._bench_data import run_on_data

        apply_threads(args.threads or 1)
        return run_on_data(args)
    if getattr(args, "label_column", None) is not None or getattr(args, "id_column", None) is not None or getattr(args, "ignore_columns", None):
        raise CliError("--label-column, --id-column and --ignore-columns describe a --data file; add --data FILE")
    cfg = config_from_args(args)
    for name in ("epochs", "threads"):
        if getattr(cfg, name) < 1:
            raise CliError(f"--{name} must be >= 1; got {getattr(cfg, name)}")
    if args.jobs < 1:
        raise CliError(f"--jobs must be >= 1; got {args.jobs}")
    failures: list[str] = []
    if not cfg.seeds:
        raise CliError("--seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
    out = Path(cfg.out)
    t0 = time.perf_counter()
    if getattr(args, "merge", None):
        files = [Path(m) / "results.json" if Path(m).is_dir() else Path(m) for m in args.merge]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CliError(f"--merge: {', '.join(missing)} not found; give results.json files or folders holding one")
        try:
            results = merge_results([load_results(f) for f in files], [str(f) for f in files])
        except ValueError as exc:
            raise CliError(f"--merge: {exc}") from exc
        out.mkdir(parents=True, exist_ok=True)
        save_results(results, out / "results.json")
    elif args.report_only:
        path = out / "results.json"
        if not path.is_file():
            raise CliError(f"--report-only: {path} does not exist; run the benchmark first")
        results = load_results(path)
    elif args.jobs > 1:
        names = list(cfg.datasets) or datasets.list(cfg.data_dir)
        try:
            merged, failures = run_parallel(cfg, names, args.jobs)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        for message in failures:
            print(f"scai bench: {message}", file=sys.stderr)
        if merged is None:
            raise CliError("no part finished; nothing to report (see the parts' logs above)")
        results = merged
    else:
        results = run_benchmark(cfg)
    if getattr(args, "merge", None) or args.report_only:
        if fill_discriminability(results, log=lambda msg: print(msg, file=sys.stderr)):  # results that predate it
            save_results(results, out / "results.json")
    if args.no_report:
        print(f"wrote {out / 'results.json'} in {time.perf_counter() - t0:.1f} s (no report: --no-report)")
    else:
        paths = write_report(results, out)
        print(f"wrote {out / 'results.json'}, {paths['md']}, {paths['html']} and {out / 'figures'}/ in {time.perf_counter() - t0:.1f} s")
    if failures:  # only --jobs runs have parts that can fail
        print(f"scai bench: {len(failures)} part(s) failed; the report holds the parts that finished. "
              "Fix the cause and re-run the same command with --resume to finish them.", file=sys.stderr)
        return 1
    return 0
