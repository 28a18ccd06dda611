"""``scai predict``: classify spectra with real early exit, streaming large files in chunks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from scai.cli._common import (
    CliError,
    add_column_arguments,
    add_threads_argument,
    apply_threads,
    budget,
    column_options,
    naming_file,
    positive_int,
    probability,
)
from scai.cli._output import STDOUT, output_format, reliability_columns, reliability_values, table_output
from scai.distributed.cli import add_engine_arguments, wants_engine
from scai.inference.budget import parse_budget

__all__ = ["register"]

HELP = """\
Classify spectra with a trained model and write OUT with columns
  index,prediction,exit,confidence,macs,flagged,reason,held,unknown_score,unknown,out_of_domain,domain_reason
(with --id-column, or ids the file carries, an id column follows index; with --sets, a
prediction_set column ends the row). OUT's extension chooses the format: .csv, .tsv,
.json (a list of objects) or .parquet; --out - writes CSV to standard output (messages go to
standard error). A file appears only when every spectrum is done: a run that fails leaves no
partial file (and keeps an existing OUT as it was).
exit: the 0-based position of the exit in the model, as in Python (predict_detailed), the server
and scai edge: in the default model exit 0 is the linear exit 0 and 1..L the network's exits;
in a model trained with --exit0 none exit 0 is the network's first exit. macs =
multiply-accumulates actually spent on that spectrum; flagged = 1 when the answer broke the
policy's promise; reason = why the spectrum left there (confident, last, budget, over_budget, guard,
unknown, ambiguous); held = why it was kept from leaving early as confident and ran deeper
(unknown: flagged unknown there, --on-unknown deeper, the default; ambiguous: its conformal set
there held more than one class, --on-ambiguous deeper; unknown+ambiguous; empty: not held).
unknown_score / unknown = the unknown-class score of the answering exit and whether it
passes the threshold calibrated at training (--reject-rate re-sets it); out_of_domain /
domain_reason = whether the spectrum is unlike the training spectra (Hotelling T2 / Q of a PCA,
constant, saturated), and why. Empty cells: the model stores no detector.
Budgets: MACs (150k, 1.2M), a share of the full path (25%), or a latency (2ms).

Policies:
  full       run every spectrum to the last exit
  anytime    --budget B per spectrum: answer with the deepest exit that fits (B in MACs such as
             150k / 1.2M, or a latency such as 2ms, converted with per-stage timings measured now)
  threshold  --threshold P: leave at the first exit whose confidence reaches P
  batch      --budget B = mean MACs per spectrum; thresholds are calibrated on the validation
             split stored with the model (budgeted batch, MSDNet-style), and each network batch
             of --batch-size spectra is kept within B: when a batch runs ahead of its budget its
             most confident spectra leave early (the budget holds per batch, hence per file)
Large files (CSV, .npy, HDF5) are streamed in chunks of --chunk-size spectra with a progress bar.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify spectra (anytime, threshold or budgeted-batch early exit)", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory from `scai train`")
    p.add_argument("data", metavar="DATA", help="spectra to classify (labels, if present, are ignored except for the accuracy line)")
    p.add_argument("--policy", choices=["full", "anytime", "threshold", "batch"], default="full",
                   help="exit policy: full (default), anytime (--budget per spectrum), threshold (--threshold), "
                        "batch (--budget = mean per spectrum); see above")
    p.add_argument("--budget", type=budget, default=None, help="budget: MACs (150k, 1.2M), milliseconds (2ms) or a share of the full path (25%%)")
    p.add_argument("--threshold", type=probability, default=None, help="confidence threshold in [0, 1] for --policy threshold")
    p.add_argument("--label-column", "-l", default=None, help="label column name or index, if DATA has one")
    add_column_arguments(p)
    add_threads_argument(p)
    add_engine_arguments(p)
    p.add_argument("--out", required=True,
                   help="file to write; its extension chooses the format (.csv, .tsv, .json, .parquet); - = CSV on standard output")
    p.add_argument("--chunk-size", type=positive_int, default=4096, help="spectra per chunk when streaming, >= 1 (default 4096)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="network batch size, >= 1 (default 256)")
    p.add_argument("--reject-rate", type=probability, default=None, metavar="R",
                   help="share of in-distribution spectra flagged unknown, in [0, 1) (default: the model's, 0.05); "
                        "re-sets the stored thresholds from the model's held-out scores, no retraining")
    p.add_argument("--sets", type=probability, default=None, metavar="LEVEL",
                   help="also write conformal prediction sets at this calibrated level (e.g. 0.95; the model "
                        "stores 0.9 and 0.95): the plausible classes joined with |, empty = none plausible")
    p.add_argument("--on-unknown", choices=["deeper", "answer"], default=None,
                   help="what a spectrum flagged unknown does at an exit where it is confident: run deeper (default; "
                        "held=unknown, reason 'unknown' when it reaches the last exit) or answer there flagged")
    p.add_argument("--on-ambiguous", choices=["answer", "deeper"], default=None,
                   help="with --sets: what a spectrum whose conformal set has more than one class does at an exit "
                        "where it is confident: answer there (default) or run deeper (held=ambiguous, reason "
                        "'ambiguous' when it reaches the last exit)")
    p.add_argument("--latency-table", default=None, metavar="FILE",
                   help="JSON table of per-stage milliseconds for a budget in ms: read when FILE exists (so the same "
                        "command gives the same answer on every run), else measured now and written to FILE")
    p.set_defaults(func=_run)


def _check_options(args: argparse.Namespace) -> None:
    """Options the chosen policy would not use are refused, not ignored."""
    if args.budget is not None and args.policy not in ("anytime", "batch"):
        raise CliError(f"--budget is used by --policy anytime or batch, not {args.policy}; add --policy anytime "
                       "(deepest exit within the budget per spectrum) or --policy batch (mean budget)")
    if args.threshold is not None and args.policy != "threshold":
        raise CliError(f"--threshold is used by --policy threshold, not {args.policy}; add --policy threshold")
    if args.on_ambiguous == "deeper" and args.sets is None:
        raise CliError("--on-ambiguous deeper holds spectra whose conformal set has more than one class; "
                       "give the sets' level, e.g. --sets 0.95")
    if args.latency_table is not None and (args.budget is None or parse_budget(args.budget).unit != "ms"):
        raise CliError("--latency-table converts a budget in milliseconds; give one, e.g. --budget 2ms")
    output_format(args.out)  # an extension with no format is refused before any work


def _latency_table(args: argparse.Namespace, est: Any, predictor: Any) -> None:
    """Read the stored stage latencies (or measure and store them) for a budget in ms."""
    from scai.inference.latency import LatencyTable
    from scai.model_dir import ModelDir

    sha = ModelDir(args.model_dir).weights_sha256
    path = Path(args.latency_table)
    if path.is_file():
        table = LatencyTable.load(path)
        ms = table.check(sha, len(est.exit_macs_), source=str(path))
        predictor.set_stage_latency(ms, args.batch_size)
        if table.preprocessing_ms is not None:  # the preprocessing share of a ms budget, as stored
            predictor.preprocessing_ms = table.preprocessing_ms
        print(f"stage latencies read from {path}", file=sys.stderr)
    else:
        ms = predictor.measure_stage_latency(args.batch_size)
        LatencyTable.measured(sha, args.batch_size, ms, predictor.preprocessing_ms).save(path)
        print(f"stage latencies measured and written to {path} (later runs read them)", file=sys.stderr)


def _policy_kwargs(args: argparse.Namespace, est: Any) -> dict[str, Any]:
    if args.policy == "anytime":
        if args.budget is None:
            raise CliError("--policy anytime needs --budget (e.g. 300k or 2ms)")
        return {"policy": "anytime", "budget": args.budget}
    if args.policy == "threshold":
        if args.threshold is None:
            raise CliError("--policy threshold needs --threshold P (0..1)")
        return {"policy": "threshold", "thresholds": est._threshold_vector(args.threshold)}
    if args.policy == "batch":
        if args.budget is None:
            raise CliError("--policy batch needs --budget (mean MACs per spectrum, e.g. 200k)")
        if parse_budget(args.budget).unit == "ms":
            raise CliError(f"--policy batch: --budget {args.budget} is a latency; give mean MACs per spectrum (e.g. 200k) or a share (25%)")
        cal = est.calibrate_batch(args.budget)
        knob = "" if cal["compute_scale"] == 1.0 else f", PA compute knob {cal['compute_scale']:g}"
        print(f"budgeted batch: thresholds {np.round(cal['thresholds'], 4).tolist()}{knob} (expected mean "
              f"{cal['expected_mean_macs']:,.0f} MACs on validation)", file=sys.stderr)
        return {"policy": "batch", "calibration": cal["calibration"]}
    return {"policy": "full"}


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    import scai
    from scai.data import FILE_ID_FORMATS, format_of, iter_chunks

    if wants_engine(args):  # --engine ray: scai.distributed takes the run over
        from scai.distributed.cli import run

        return run(args)
    _check_options(args)
    apply_threads(args.threads)
    est = scai.load(args.model_dir)
    if args.reject_rate is not None:
        if getattr(est, "reliability_", None) is None:
            raise CliError(f"--reject-rate: {args.model_dir} stores no unknown-class detector (trained with ood='none' "
                           "or by an older scai); retrain it to get one")
        est.reliability_ = est.reliability_.at_reject_rate(args.reject_rate)
    kwargs = _policy_kwargs(args, est)
    if args.sets is not None:
        kwargs["confidence_level"] = args.sets
    if args.on_unknown is not None:
        kwargs["on_unknown"] = args.on_unknown
    if args.on_ambiguous is not None:
        kwargs["on_ambiguous"] = args.on_ambiguous
    predictor = est.predictor()
    if args.latency_table is not None:
        _latency_table(args, est, predictor)
    out = args.out
    label = int(args.label_column) if args.label_column and args.label_column.isdigit() else args.label_column
    columns = column_options(args)
    # ids: the --id-column's, or those the file itself carries (titles, sample names, map pixels)
    with_ids = "id_column" in columns or format_of(args.data) in FILE_ID_FORMATS
    n_done = 0
    correct = 0
    labelled = 0
    macs_total = 0.0
    note_printed = False
    columns_out = [("index", "int"), *([("id", "str")] if with_ids else []), ("prediction", "str"), ("exit", "int"),
                   ("confidence", "float"), ("macs", "int"), ("flagged", "int"), ("reason", "str"),
                   ("held", "str"), *reliability_columns(args.sets is not None)]
    with table_output(out, columns_out) as write, tqdm(desc="predict", unit="spectra", disable=None, file=sys.stderr) as bar:
        for chunk in iter_chunks(args.data, chunk_size=args.chunk_size, label_column=label, **columns):
            est.check_axis_unit(chunk.axis_unit, str(chunk.source))
            with naming_file(chunk.source):
                raw, Z = est.prepare_input(chunk.X, chunk.axis if chunk.axis_unit != "index" else None)
            res = predictor.predict(Z, batch_size=args.batch_size, raw=raw, **kwargs)
            if not note_printed and res.budget_conversion not in ("none", "macs"):
                print(f"latency budget converted to MACs with timings measured on this machine: {res.budget_conversion}", file=sys.stderr)
                note_printed = True
            ids = [[v] for v in chunk.ids] if with_ids and chunk.ids is not None else [[]] * len(Z)
            reliability = list(zip(*reliability_values(res, est.classes_).values()))  # None: an empty cell, a null
            write([[n_done + i, *ids[i], res.prediction[i], int(res.exit[i]), float(res.confidence[i]), int(res.macs[i]),
                    int(res.flagged[i]), res.reason[i], res.held[i], *reliability[i]] for i in range(len(Z))])
            if chunk.y is not None:
                truth = np.asarray(chunk.class_names, dtype=object)[chunk.y]
                correct += int(np.sum(np.asarray(res.prediction, dtype=object) == truth))
                labelled += len(truth)
            macs_total += float(np.sum(res.macs))
            n_done += len(Z)
            bar.update(len(Z))
    where = "standard output" if out == STDOUT else out
    print(f"wrote {n_done} predictions to {where}; mean {macs_total / max(n_done, 1):,.0f} MACs per spectrum", file=sys.stderr)
    if labelled:
        print(f"accuracy on the labels in DATA: {correct / labelled:.4f} ({labelled} spectra)", file=sys.stderr)
    return 0
