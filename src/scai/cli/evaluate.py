"""``scai evaluate``: per-exit accuracy, anytime and budgeted-batch curves, confusion, HTML report."""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from pathlib import Path
from typing import Any

from scai.cli._common import (
    CliError,
    add_column_arguments,
    add_threads_argument,
    apply_threads,
    column_options,
    existing_dir,
    int_at_least,
    labels_for_model,
    load_spectra,
    naming_file,
    preprocessing_cost_line,
    print_table,
)

__all__ = ["register"]

HELP = """\
Evaluate a trained model on labelled spectra. Writes OUT/metrics.json with
  exits          [{exit, macs, mean_macs, accuracy}]          one row per exit (0-based, as scai predict)
  anytime        [{budget_macs, mean_macs, accuracy, ...}]     same budget for every spectrum
  budgeted_batch [{budget_macs, mean_macs, accuracy, thresholds, ...}]
                 thresholds calibrated on the validation split stored with the model
  confusion, confusion_per_exit, per_class (precision, recall, support), class_names, warnings
plus anytime.png, budgeted_batch.png, confusion.png (and allocation.png for SCAI+).
--report FILE.html also writes one self-contained HTML page (figures embedded, nothing loaded
from elsewhere): per-exit accuracy and MACs, confusion matrices per exit, per-class precision and
recall, both curves, the SCAI+ allocation, band importance over the axis, the training curves
with the kept epoch marked, and the warnings that apply.
Warns when DATA holds spectra the model was trained on (models from scai train store digests of
their training spectra) and when the validation split its calibration rests on is tiny.
Budgets span exit 0's cost to the full path. MACs = multiply-accumulates; FLOPs = 2 x MACs.
"""


def _reliability_metrics(est: Any, X: Any, labels: Any, axis: Any) -> dict[str, Any]:
    """Share flagged unknown and out of domain (full budget), and per stored conformal level the
    coverage and mean set size on these labelled spectra (docs/ood.md)."""
    rel = getattr(est, "reliability_", None)
    levels = [] if rel is None or rel.conformal is None else list(rel.conformal.confidence_levels)
    full = est.predict_detailed(X, axis, policy="full")
    y = np.asarray([str(v) for v in labels])
    index = {str(c): k for k, c in enumerate(est.classes_)}
    conformal = []
    for level in levels:
        sets = est.predict_detailed(X, axis, policy="full", confidence_level=level).prediction_set
        known = all(v in index for v in y)  # coverage needs every label to be one of the model's classes
        covered = sets[np.arange(len(y)), [index[v] for v in y]] if known else None
        conformal.append({"level": level, "coverage": None if covered is None else float(np.mean(covered)),
                          "mean_set_size": float(sets.sum(axis=1).mean()), "empty_rate": float((sets.sum(axis=1) == 0).mean())})
    return {
        "reject_rate": None if rel is None or rel.detector is None else rel.detector.reject_rate,
        "unknown_rate": None if full.unknown is None else float(np.mean(full.unknown)),
        "out_of_domain_rate": None if full.out_of_domain is None else float(np.mean(full.out_of_domain)),
        "conformal": [c for c in conformal if c["coverage"] is not None],
    }


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model: per-exit accuracy, accuracy-vs-MACs curves, HTML report", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory from `scai train`")
    p.add_argument("data", metavar="DATA", help="labelled spectra (file, folder, or dataset name)")
    p.add_argument("--label-column", "-l", default=None, help="label column name or 0-based index")
    add_column_arguments(p)
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output folder for metrics.json and plots")
    p.add_argument("--report", default=None, metavar="FILE.html", help="also write a self-contained HTML report to FILE.html")
    p.add_argument("--budgets", type=int_at_least(2, "at least 2 budgets"), default=12, help="number of log-spaced budgets, >= 2 (default 12)")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder of extra .npz datasets (or SCAI_DATA_DIR)")
    p.set_defaults(func=_run)


def _notes(model_dir: str, est: Any, X: Any) -> list[str]:
    """The warnings that apply to this evaluation: training spectra in DATA, a tiny validation split."""
    from scai.model_dir import TRAINING_ROWS, ModelDir
    from scai.report.evaluation import training_overlap, validation_note

    notes = []
    overlap = training_overlap(X, ModelDir(model_dir).training_rows())
    if overlap:
        notes.append(f"evaluation on training spectra: {overlap} of the {len(X)} spectra in DATA were used to fit the "
                     f"model (training or validation split, per {TRAINING_ROWS}); these numbers overstate accuracy on new "
                     "spectra. Evaluate on held-out spectra (scai train --test-fraction F --save-test FILE)")
    tiny = validation_note(est)
    if tiny:
        notes.append(tiny)
    return notes


def _run(args: argparse.Namespace) -> int:
    import scai
    from scai.cli.train import print_exit_table
    from scai.report.evaluation import _maybe_heatmap, evaluate, write_metrics

    if args.report is not None and not args.report.lower().endswith((".html", ".htm")):
        raise CliError(f"--report {args.report}: the report is HTML; give a file name ending in .html")
    apply_threads(args.threads)
    est = scai.load(args.model_dir)
    spectra = load_spectra(args.data, args.label_column, args.data_dir, **column_options(args))
    if spectra.y is None:
        raise CliError(f"{spectra.source}: evaluation needs labels; pass --label-column")
    if spectra.test_idx is not None:
        print(f"{spectra.source}: using its official test split ({len(spectra.test_idx)} spectra)")
        spectra = spectra.subset(spectra.test_idx)
    notes = _notes(args.model_dir, est, spectra.X)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=1)
    labels = labels_for_model(spectra.labels, est.classes_)
    est.check_axis_unit(spectra.axis_unit, str(spectra.source))
    with naming_file(spectra.source), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate(est, spectra.X, labels, spectra.axis, out_dir=None, n_budgets=args.budgets, detail=True)
    raised = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    for message in raised:
        warnings.warn(message, UserWarning, stacklevel=1)
    metrics["warnings"] = notes + raised
    metrics["reliability"] = _reliability_metrics(est, spectra.X, labels, spectra.axis)
    write_metrics(metrics, args.out)
    _maybe_heatmap(est, spectra.X, spectra.axis, Path(args.out), "")
    print_exit_table(metrics["exits"], f"per-exit accuracy ({metrics['n_samples']} spectra)")
    print(preprocessing_cost_line(getattr(est, "preprocessing_cost_", None)))
    rel = metrics["reliability"]
    if rel["unknown_rate"] is not None:
        print(f"flagged unknown (final exit, reject rate {rel['reject_rate']}): {rel['unknown_rate']:.3f} of the spectra")
    if rel["out_of_domain_rate"] is not None:
        print(f"out of domain: {rel['out_of_domain_rate']:.3f} of the spectra")
    for c in rel["conformal"]:
        print(f"conformal sets at {c['level']}: coverage {c['coverage']:.3f}, mean set size {c['mean_set_size']:.2f}, "
              f"empty {c['empty_rate']:.3f}")
    print("\nbudgeted batch (thresholds calibrated on the model's validation split):")
    print_table([[r["budget_macs"], r["mean_macs"], r["accuracy"]] for r in metrics["budgeted_batch"]], ["budget MACs", "mean MACs", "accuracy"])
    print(f"\nwrote {args.out}/metrics.json, anytime.png, budgeted_batch.png, confusion.png")
    if args.report is not None:
        from scai.report.html import write_evaluation_report

        with naming_file(spectra.source):
            path = write_evaluation_report(est, spectra.X, labels, spectra.axis, metrics, args.report,
                                           source=str(spectra.source), model_dir=str(args.model_dir), notes=metrics["warnings"])
        print(f"wrote {path} (self-contained HTML report)")
    if notes:
        print(f"{len(notes)} warning(s) apply to these numbers (see above{' and the report' if args.report else ''})", file=sys.stderr)
    return 0
