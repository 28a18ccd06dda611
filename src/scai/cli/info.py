"""``scai info``: the model card of a model directory, as text or ``--json``.

Everything comes from what the directory holds (``config.json``, ``split.json``,
``validation.safetensors``, ``test/metrics.json``), read through :mod:`scai.model_dir`; nothing
is recomputed and no network is built, so the card is quick and needs no PyTorch. A field the
model does not store yet is shown as "not recorded" (``null`` in JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scai.cli._common import existing_dir, preprocessing_cost_line

__all__ = ["NOT_RECORDED", "model_card", "register"]

NOT_RECORDED = "not recorded"
#: config.json keys that the unknown-class, domain and conformal calibrations are stored under.
CALIBRATION_KEYS = ("ood", "domain", "conformal")

HELP = """\
Print the model card of a trained model: the training data (n, classes with counts, axis range
and unit, source file hash), the preprocessing that ran, per-exit MACs and held-out accuracy,
the calibration (temperatures, thresholds, unknown-class, domain and conformal records) and the
hashes and versions. --json prints the same as one JSON object. Fields the model does not store
print as "not recorded".
"""


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="model card: training data, preprocessing, exits, calibration, hashes",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", type=existing_dir, help="model directory from `scai train`")
    p.add_argument("--json", action="store_true", help="print the card as one JSON object")
    p.set_defaults(func=_run)


def _validation_counts(directory: Path, config: dict[str, Any], names: list[Any]) -> dict[str, int] | None:
    """Class counts of the stored validation split (hash-checked), or None."""
    import numpy as np
    from safetensors.numpy import load_file

    from scai.model_dir import VALIDATION, ModelDir

    mdir = ModelDir(directory)
    path = mdir.file(VALIDATION)
    if "validation_sha256" not in config or not path.is_file():
        return None
    from scai.model_dir import file_sha256

    if file_sha256(path) != config["validation_sha256"]:
        from scai.errors import ModelFileError

        raise ModelFileError(f"{path}: SHA-256 does not match config.json; the file was truncated, replaced or tampered with")
    y = np.asarray(load_file(str(path)).get("y", np.zeros(0, dtype=np.int64)))
    counts = np.bincount(y.astype(np.int64), minlength=len(names))
    return {str(n): int(c) for n, c in zip(names, counts)}


def _pipeline_steps(pre: Any) -> list[dict[str, Any]] | None:
    if not isinstance(pre, dict):
        return None
    steps = pre.get("steps")
    if not isinstance(steps, list):
        return None
    out = []
    for s in steps:
        if isinstance(s, dict):
            name = s.get("name") or s.get("type") or s.get("step") or "?"
            params = s.get("params") if isinstance(s.get("params"), dict) else {k: v for k, v in s.items() if k not in ("name", "type", "step", "state")}
            out.append({"step": str(name), "params": params})
        else:
            out.append({"step": str(s), "params": {}})
    return out


def _summarise_calibration(key: str, rec: Any) -> Any:
    """A short form of a stored unknown-class / domain / conformal record (without big arrays)."""
    if not isinstance(rec, dict):
        return rec
    if key == "ood":
        # with the anchor (an exit's score plus anchor_weight x exit 0's, each standardised by anchor_mean/std)
        return {k: rec.get(k) for k in ("score", "reject_rate", "thresholds", "shrinkage", "n_components", "anchored",
                                        "anchor_weight", "anchor_mean", "anchor_std")}
    if key == "domain":
        return {k: rec.get(k) for k in ("n_components", "n_samples", "confidence", "q_method", "t2_limit", "q_limit", "limits_source")}
    if key == "conformal":
        return {k: rec.get(k) for k in ("method", "library", "confidence_levels", "quantiles", "n_calibration", "too_few")}
    return rec


def model_card(directory: str | Path) -> dict[str, Any]:
    """The model card of ``directory`` as a JSON-ready dict (None = not recorded)."""
    from scai.model_dir import SPLIT, TEST_DIR, ModelDir, read_json_object

    mdir = ModelDir(directory)
    c = mdir.config
    names = list(c.get("class_names", []))
    split_path = mdir.file(SPLIT)
    split = read_json_object(split_path) if split_path.is_file() else None
    metrics_path = mdir.file(TEST_DIR) / "metrics.json"
    test = read_json_object(metrics_path) if metrics_path.is_file() else None
    axis = c.get("axis")
    casc = c.get("cascade") or None
    fit = (casc or {}).get("fit") or {}
    macs = c.get("exit_macs") or []
    first = 0  # exits are 0-based everywhere (scai predict, predict_detailed, server, edge)
    val_acc = fit.get("validation_accuracy")
    # by position: test/metrics.json of older models numbered a network's exits from 1
    test_rows = dict(enumerate(r.get("accuracy") for r in (test or {}).get("exits", [])))
    uses = (casc or {}).get("uses")
    exits = [
        {
            "exit": first + i,
            "macs": int(m),
            "used": None if uses is None else bool(uses[i]) if i < len(uses) else None,
            "validation_accuracy": val_acc[i] if isinstance(val_acc, list) and i < len(val_acc) else None,
            "test_accuracy": test_rows.get(i),
        }
        for i, m in enumerate(macs)
    ]
    sel = c.get("preprocessing_selection") or None
    train_counts = (split or {}).get("class_counts") or c.get("class_counts")
    return {
        "model_dir": str(mdir.path),
        "model": {
            "name": c.get("model_name"),
            "in_length": c.get("in_length"),
            "n_classes": c.get("n_classes"),
            "exit0": None if not casc else {"kind": casc.get("kind"), "rank": casc.get("rank"),
                                            "params": fit.get("params"), "cv_accuracy": fit.get("cv_accuracy")},
            "model_config": c.get("model_config"),
        },
        "training_data": {
            "source": (split or {}).get("source") or c.get("source"),
            "source_sha256": (split or {}).get("source_sha256") or c.get("source_sha256"),
            "n_train": (split or {}).get("n_train"),
            "n_val": (split or {}).get("n_val"),
            "n_test": (split or {}).get("n_test"),
            "protocol": (split or {}).get("protocol"),
            "seed": (split or {}).get("seed"),
            "classes": names,
            "class_counts_train": train_counts,
            "class_counts_validation": _validation_counts(mdir.path, c, names),
            "axis_min": None if not axis else float(min(axis)),
            "axis_max": None if not axis else float(max(axis)),
            "axis_points": None if not axis else len(axis),
            "axis_unit": c.get("axis_unit"),
            # digests of the spectra fitted on (training_rows.json): scai evaluate warns when given them
            "fitted_rows_stored": None if (rows := mdir.training_rows()) is None else len(rows),
        },
        "preprocessing": {
            "steps": _pipeline_steps(c.get("preprocessing")),
            "selection": None if not sel else {"chosen": sel.get("chosen"), "inner_cv_accuracy": sel.get("inner_cv_accuracy"),
                                               "rule": sel.get("rule")},
        },
        "preprocessing_cost": c.get("preprocessing_cost"),
        "exits": exits,
        "mac_convention": c.get("mac_convention"),
        "calibration": {
            "temperatures": c.get("temperatures"),
            "default_budget": c.get("default_budget"),
            "thresholds": c.get("thresholds") or None,
            **{k: _summarise_calibration(k, c.get(k)) for k in CALIBRATION_KEYS},
        },
        "training": {"train_config": c.get("train_config"), "history": c.get("history_summary")},
        "hashes": {"weights_sha256": c.get("weights_sha256"), "validation_sha256": c.get("validation_sha256")},
        "versions": {"format_version": c.get("format_version"), "scai_version": c.get("scai_version")},
    }


def _v(value: Any, fmt: str = "{}") -> str:
    if value is None or value == {} or value == []:
        return NOT_RECORDED
    return fmt.format(value)


def _acc(a: Any) -> str:
    return f"{a:.3f}" if isinstance(a, (int, float)) else NOT_RECORDED


def render(card: dict[str, Any]) -> str:
    """The card as text."""
    m, d, p, cal = card["model"], card["training_data"], card["preprocessing"], card["calibration"]
    lines = [f"model card: {card['model_dir']}", "",
             f"model        {m['name']}, {m['in_length']} points in, {m['n_classes']} classes"]
    if m["exit0"]:
        e0 = m["exit0"]
        lines.append(f"exit 0       {e0['kind']}" + (f" (rank {e0['rank']})" if e0.get("rank") else "")
                     + (f", inner-CV accuracy {e0['cv_accuracy']:.3f}" if isinstance(e0.get("cv_accuracy"), float) else ""))
    lines += ["", "training data",
              f"  source        {_v(d['source'])}",
              f"  source hash   {_v(d['source_sha256'])}",
              f"  n             train {_v(d['n_train'])}, validation {_v(d['n_val'])}, test {_v(d['n_test'])}",
              f"  split         {_v(d['protocol'])}" + (f" (seed {d['seed']})" if d["seed"] is not None else ""),
              f"  axis          {_v(d['axis_min'], '{:g}')} .. {_v(d['axis_max'], '{:g}')} ({_v(d['axis_points'])} points), unit {_v(d['axis_unit'])}",
              f"  fitted rows   {_v(d['fitted_rows_stored'], '{} spectrum digests stored (scai evaluate warns when DATA holds them)')}"]
    counts_tr, counts_va = d["class_counts_train"] or {}, d["class_counts_validation"] or {}
    lines.append(f"  classes       {len(d['classes'])} (count in training / validation)")
    for name in d["classes"]:
        lines.append(f"    {name!s:<24} {counts_tr.get(str(name), NOT_RECORDED)!s:>12} / {counts_va.get(str(name), NOT_RECORDED)}")
    lines += ["", "preprocessing"]
    steps = p["steps"]
    lines.append("  steps         " + (" -> ".join(s["step"] for s in steps) if steps else NOT_RECORDED))
    if p["selection"]:
        scores = ", ".join(f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} failed"
                           for k, v in (p["selection"].get("inner_cv_accuracy") or {}).items())
        lines.append(f"  selection     auto chose {p['selection']['chosen']!r}; inner-CV accuracy of exit 0: {scores}")
    lines.append("  cost          " + preprocessing_cost_line(card.get("preprocessing_cost")))
    lines += ["", f"exits ({_v(card['mac_convention'])})",
              f"  {'exit':>4}  {'MACs':>12}  {'used':>5}  {'val acc':>12}  {'test acc':>12}"]
    for e in card["exits"]:
        used = NOT_RECORDED if e["used"] is None else ("yes" if e["used"] else "no")
        lines.append(f"  {e['exit']:>4}  {e['macs']:>12,}  {used:>5}  {_acc(e['validation_accuracy']):>12}  {_acc(e['test_accuracy']):>12}")
    temps = cal["temperatures"]
    lines += ["", "calibration",
              "  temperatures    " + (", ".join(f"{t:.3g}" for t in temps) if temps else NOT_RECORDED),
              f"  default budget  {_v(cal['default_budget'], '{:,.0f} MACs')}"]
    for budget, rec in (cal["thresholds"] or {}).items():
        th = ", ".join("never" if t is None else f"{t:.3g}" for t in rec.get("thresholds", []))
        knob = "" if rec.get("compute_scale", 1.0) == 1.0 else f", PA compute knob {rec['compute_scale']:g}"
        lines.append(f"  thresholds @ {budget} MACs: {th}{knob} (expected mean {rec.get('expected_mean_macs', 0):,.0f} MACs)")
    if not cal["thresholds"]:
        lines.append(f"  thresholds      {NOT_RECORDED}")
    labels = {"ood": "unknown-class", "domain": "input domain", "conformal": "conformal sets"}
    for key, label in labels.items():
        rec = cal[key]
        lines.append(f"  {label:<16}{NOT_RECORDED if rec is None else json.dumps(rec)}")
    h, v = card["hashes"], card["versions"]
    lines += ["", "hashes and versions",
              f"  weights sha256     {_v(h['weights_sha256'])}",
              f"  validation sha256  {_v(h['validation_sha256'])}",
              f"  scai {_v(v['scai_version'])}, model format {_v(v['format_version'])}"]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    card = model_card(args.model_dir)
    print(json.dumps(card, indent=1) if args.json else render(card))
    return 0
