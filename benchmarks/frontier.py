"""The default scai model against classical chemometrics: accuracy vs MACs on the nine dev sets.

For each dev set in the shared datasets folder and seeds 0, 1, 2 (splits as the shared README
and ``scai.bench.splits.prepare_split``: qsi-tk sets stratified train/val/test 8:1:1, UCR sets the
official train/test split with 10 % of train held out for validation), trains
``SCAIClassifier()`` **with its defaults** (SCAI+, ``preprocessing="auto"``, ``exit0="auto"``,
skipped exits, 5-fold cross-fitting, at most 200 epochs, patience 30) on the raw train + val
spectra (the model cross-fits them; nothing is held out for it), and scores the test split: accuracy per exit, the anytime curve
(accuracy at budgets from exit 0's cost to the full path), the exits the model uses, what auto
preprocessing and exit 0 chose, and the training wall time.

The classical anchors (MiniRocket, PLS-DA, logistic (SNV), SVM-RBF) are the paper benchmark's
(``benchmarks/results/paper/summary.json``, same splits and seeds, fitted on train only; for
chemotools_coffee, absent there, the shared README's reference table, seeds 0-4), and the same four
refitted here on train + val, the rows the model sees (``anchors_train_val``).

Targets checked (issue "Never worse than chemometrics"): full-budget mean accuracy >= the best
anchor's mean, and per set within one test spectrum of the best anchor; exit 0 >= the better of
logistic and PLS-DA within one test spectrum at <= 2x logistic's MACs; anytime accuracy never
falls as the budget grows (within one test spectrum); training time per set.

Writes ``benchmarks/results/frontier/results.json``, ``report.md`` and one accuracy-vs-MACs
figure per set (``figures/<set>.png``: the model's anytime curve with exit 0 at its cheap end,
the anchors as points).

Command (two processes of one thread each on the 2-core machine, about 30-60 minutes)::

    for s in 0 1 2; do OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frontier.py --seeds $s --part; done
    .venv/bin/python benchmarks/frontier.py --report-only

``--datasets a,b`` / ``--seeds 0,1`` restrict a run; ``--part`` writes ``results-s<seeds>.json``
next to results.json so runs can go in parallel; ``--report-only`` merges every part and
rewrites the report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "frontier"
DATA_DIR = ROOT.parent / "shared" / "datasets"
PAPER_SUMMARY = ROOT / "benchmarks" / "results" / "paper" / "summary.json"
DATASETS = ("milk_adulteration", "milk_species", "cheese_brands", "raspberry_origin", "astragalus_origin",
            "liquor_vintage", "ucr_strawberry", "ucr_meat", "chemotools_coffee")
ANCHORS = ("minirocket", "pls_da", "logreg_snv", "svm_rbf")
#: chemotools_coffee is not in the paper benchmark: the shared README's reference accuracies.
README_COFFEE = {"svm_rbf": 1.0, "pls_da": 1.0, "logreg_snv": 1.0, "minirocket": 1.0}
VAL_FRACTION, TEST_FRACTION = 0.1, 0.1


def run_one(name: str, seed: int, data_dir: Path, model: str | None = None) -> dict[str, Any]:
    """Train the default model (or ``model`` with every other default) on one (set, seed) split and
    score its test part."""
    import torch

    from scai import SCAIClassifier
    from scai.bench.splits import split_indices
    from scai.data import read
    from scai.inference import anytime_curve

    torch.set_num_threads(1)
    spectra = read(data_dir / f"{name}.npz")
    (tr, va, te), protocol = split_indices(spectra, seed, VAL_FRACTION, TEST_FRACTION)
    labels = np.asarray(spectra.class_names)[spectra.y]
    axis = spectra.axis
    fit_rows = np.sort(np.concatenate([tr, va]))  # the model cross-fits on train + val
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    est = SCAIClassifier(random_state=seed) if model is None else SCAIClassifier(model=model, random_state=seed)
    est.fit(spectra.X[fit_rows], labels[fit_rows], axis=axis, axis_unit=spectra.axis_unit)
    fit_s = time.perf_counter() - t0
    probs, costs = est.exit_outputs(spectra.X[te], axis)
    y = est._encode(labels[te], "y")
    macs = [int(m) for m in est.exit_macs_]
    budgets = sorted(set(np.geomspace(macs[0], macs[-1], 12).tolist()) | set(float(m) for m in macs))
    curve = anytime_curve(probs, costs, y, budgets) if len(macs) > 1 else anytime_curve(probs, costs, y, [macs[0]])
    exit_acc = [float(np.mean(p.argmax(1) == y)) for p in probs]
    net_exits = None
    if est.exit0_ is not None:
        net_exits = est.exit0_.get("validation_accuracy")
    return {
        "dataset": name,
        "seed": seed,
        "model": est.model,
        "protocol": protocol,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "axis_unit": spectra.axis_unit,
        "preprocessing": (est.preprocessing_selection_ or {}).get("chosen"),
        "preprocessing_scores": (est.preprocessing_selection_ or {}).get("inner_cv_accuracy"),
        "exit0": {k: est.exit0_[k] for k in ("kind", "params", "macs", "cv_accuracy")} if est.exit0_ else None,
        "uses": list(getattr(est.network_, "uses", [True] * len(macs))),
        "val_accuracy_per_exit": net_exits,
        "exit_macs": macs,
        "exit_accuracy": exit_acc,
        "final_accuracy": exit_acc[-1],
        "anytime": [{"budget_macs": p["budget_macs"], "mean_macs": p["mean_macs"], "accuracy": p["accuracy"]}
                    for p in curve],
        "epochs_run": len(est.history_.epochs),
        "cross_fit": est.cross_fit_,
        "fit_s": fit_s,
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # 1-min load at fit start and end
        "anchors_train_val": fair_anchors(spectra, seed),
    }


def fair_anchors(spectra: Any, seed: int) -> dict[str, dict[str, float | None]]:
    """The four anchors refitted on train + val (the rows the model sees), scored on the same test split."""
    import dataclasses

    from scai.bench.classical import run_classical
    from scai.bench.config import BenchConfig
    from scai.bench.methods import default_methods
    from scai.bench.splits import prepare_split

    cfg = BenchConfig(threads=1)
    data = prepare_split(spectra, seed, cfg)
    Z = {"train": np.concatenate([data.Z["train"], data.Z["val"]]), "val": data.Z["val"], "test": data.Z["test"]}
    y = {"train": np.concatenate([data.y["train"], data.y["val"]]), "val": data.y["val"], "test": data.y["test"]}
    merged = dataclasses.replace(data, Z=Z, y=y)
    out: dict[str, dict[str, float | None]] = {}
    for spec in default_methods(quick=True):
        if spec.family in ANCHORS:
            r = run_classical(spec, merged, cfg)
            out[spec.family] = {"accuracy": r["accuracy"], "macs": r["exits"][0]["macs"]}
    return out


def anchors() -> dict[str, dict[str, tuple[float, float | None]]]:
    """dataset -> anchor -> (mean final accuracy over seeds, MACs)."""
    table: dict[str, dict[str, tuple[float, float | None]]] = {}
    if PAPER_SUMMARY.is_file():
        for name, d in json.loads(PAPER_SUMMARY.read_text())["datasets"].items():
            for row in d["table"]:
                if row["family"] in ANCHORS:
                    table.setdefault(name, {})[row["family"]] = (row["final_accuracy"]["mean"], row.get("full_macs"))
    table.setdefault("chemotools_coffee", {k: (v, None) for k, v in README_COFFEE.items()})
    return table


def load_records(out: Path) -> list[dict[str, Any]]:
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(out.glob("results*.json")):
        for r in json.loads(path.read_text()).get("records", []):
            records[(r["dataset"], r["seed"])] = r
    return [records[k] for k in sorted(records)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    anch = anchors()
    sets: dict[str, Any] = {}
    for name in DATASETS:
        rs = [r for r in records if r["dataset"] == name]
        if not rs:
            continue
        n_test = _mean([r["n_test"] for r in rs])
        one = 1.0 / n_test
        a = anch.get(name, {})
        fair = {k: (_mean([r["anchors_train_val"][k]["accuracy"] for r in rs]), rs[0]["anchors_train_val"][k]["macs"])
                for k in ANCHORS if all(k in r.get("anchors_train_val", {}) for r in rs)}
        both = {**{f"{k}": v for k, v in a.items()}, **{f"{k}+val": v for k, v in fair.items()}}
        best_name = max(both, key=lambda k: both[k][0]) if both else None
        best = both[best_name][0] if best_name else float("nan")
        linear_best = max(v[0] for k, v in both.items() if k.split("+")[0] in ("pls_da", "logreg_snv"))
        logistic_macs = a.get("logreg_snv", (None, None))[1]
        final = _mean([r["final_accuracy"] for r in rs])
        exit0 = _mean([r["exit_accuracy"][0] for r in rs])
        exit0_macs = _mean([r["exit_macs"][0] for r in rs])
        drops = []
        for r in rs:
            acc = [p["accuracy"] for p in sorted(r["anytime"], key=lambda p: p["budget_macs"])]
            drops.append(max([0.0] + [max(acc[:i]) - acc[i] for i in range(1, len(acc))]))
        sets[name] = {
            "seeds": [r["seed"] for r in rs],
            "n_test": n_test,
            "final": final,
            "exit0": exit0,
            "exit0_macs": exit0_macs,
            "full_macs": _mean([r["exit_macs"][-1] for r in rs]),
            "n_exits_kept": [len(r["exit_macs"]) for r in rs],
            "exit0_kind": [r["exit0"]["kind"] if r["exit0"] else None for r in rs],
            "preprocessing": [r["preprocessing"] for r in rs],
            "anchors": {k: v[0] for k, v in a.items()},
            "anchors_train_val": {k: v[0] for k, v in fair.items()},
            "best_anchor": best_name,
            "best_anchor_accuracy": best,
            "full_ok": bool(final >= best - one - 1e-9),
            "exit0_ok": bool(exit0 >= linear_best - one - 1e-9
                             and (logistic_macs is None or exit0_macs <= 2 * logistic_macs)),
            "logistic_macs": logistic_macs,
            "anytime_max_drop": max(drops),
            "anytime_ok": bool(max(drops) <= one + 1e-9),
            "fit_s_mean": _mean([r["fit_s"] for r in rs]),
            "fit_s_max": max(r["fit_s"] for r in rs),
            "epochs_mean": _mean([r["epochs_run"] for r in rs]),
            "network_trained": f"{sum(1 for r in rs if (r.get('cross_fit') or {}).get('network', '').startswith('trained'))}/{len(rs)}",
            "rocket_used": f"{sum(1 for r in rs if ((r.get('cross_fit') or {}).get('rocket') or {}).get('used'))}/{len(rs)}",
            "cross_fit": [r.get("cross_fit") for r in rs],
        }
    eight = [n for n in sets if n != "chemotools_coffee"]
    out: dict[str, Any] = {"sets": sets}
    for label, names in (("nine", list(sets)), ("eight", eight)):
        out[label] = {
            "model": _mean([sets[n]["final"] for n in names]),
            "exit0": _mean([sets[n]["exit0"] for n in names]),
            **{k: _mean([sets[n]["anchors"].get(k, float("nan")) for n in names]) for k in ANCHORS},
            **{f"{k}+val": _mean([sets[n]["anchors_train_val"].get(k, float("nan")) for n in names]) for k in ANCHORS},
        }
    return out


def figures(records: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anch = anchors()
    names = []
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name in DATASETS:
        rs = [r for r in records if r["dataset"] == name]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rs:
            pts = sorted(r["anytime"], key=lambda p: p["mean_macs"])
            ax.plot([p["mean_macs"] for p in pts], [p["accuracy"] for p in pts], marker=".", alpha=0.8,
                    label=f"scai default, seed {r['seed']} (anytime)")
            ax.scatter([r["exit_macs"][0]], [r["exit_accuracy"][0]], marker="s", color="k", zorder=5)
        ax.scatter([], [], marker="s", color="k", label="exit 0 (linear)")
        for k, (acc, macs) in anch.get(name, {}).items():
            if macs:
                ax.scatter([macs], [acc], marker="^", s=50, label=f"{k} (paper bench, mean)")
        ax.set_xscale("log")
        ax.set(xlabel="MACs per spectrum (log)", ylabel="test accuracy", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _m(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def report(records: list[dict[str, Any]], out: Path) -> str:
    s = summarise(records)
    lines = [
        "# The default scai model vs classical chemometrics (accuracy vs MACs)",
        "",
        f"Python {platform.python_version()}; one torch thread per run; command in the docstring of "
        "`benchmarks/frontier.py`.",
        "",
        "Protocol: qsi-tk sets stratified train/val/test 8:1:1, UCR sets official train/test with 10 % of "
        "train as validation (seeded); the model is `SCAIClassifier()` with its defaults (5-fold cross-fitting), "
        "trained on the raw train + val spectra; accuracies are on the test split. Anchors: the paper "
        "benchmark's (`benchmarks/results/paper/summary.json`, same splits and seeds, fitted on train only; "
        "chemotools_coffee: the shared README's, seeds 0-4) and the same four refitted here on train + val "
        "(`+val`, the rows the model sees). The targets are checked against the better of the two.",
        "",
        "| set | seeds | n test | exit 0 | exit 0 MACs | default model (full budget) | full MACs | exits kept | best anchor | logistic | PLS-DA | MiniRocket | MiniRocket +val | full ok | exit 0 ok | anytime max drop | fit s (max) | MiniRocket exit used | network trained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in s["sets"].items():
        a = d["anchors"]
        lines.append(
            f"| {name} | {','.join(map(str, d['seeds']))} | {d['n_test']:.0f} | {d['exit0']:.3f} | {_m(d['exit0_macs'])} "
            f"| **{d['final']:.3f}** | {_m(d['full_macs'])} | {d['n_exits_kept']} | {d['best_anchor']} {d['best_anchor_accuracy']:.3f} "
            f"| {a.get('logreg_snv', float('nan')):.3f} | {a.get('pls_da', float('nan')):.3f} | {a.get('minirocket', float('nan')):.3f} "
            f"| {d['anchors_train_val'].get('minirocket', float('nan')):.3f} "
            f"| {'yes' if d['full_ok'] else 'NO'} | {'yes' if d['exit0_ok'] else 'NO'} | {d['anytime_max_drop']:.3f} "
            f"| {d['fit_s_mean']:.0f} ({d['fit_s_max']:.0f}) | {d.get('rocket_used', '-')} | {d['network_trained']} |"
        )
    lines += ["", "Means:", ""]
    for label in ("eight", "nine"):
        m = s[label]
        lines.append(
            f"- {label} sets: default model **{m['model']:.3f}**, exit 0 {m['exit0']:.3f}; MiniRocket {m['minirocket']:.3f}, "
            f"PLS-DA {m['pls_da']:.3f}, logistic {m['logreg_snv']:.3f}, SVM-RBF {m['svm_rbf']:.3f}; refitted on "
            f"train + val: MiniRocket {m['minirocket+val']:.3f}, PLS-DA {m['pls_da+val']:.3f}, "
            f"logistic {m['logreg_snv+val']:.3f}, SVM-RBF {m['svm_rbf+val']:.3f}"
        )
    lines += [
        "",
        "`full ok`: the model's final-exit accuracy is at most one test spectrum below the set's best anchor. "
        "`exit 0 ok`: exit 0 is at most one test spectrum below the better of logistic and PLS-DA, at <= 2x "
        "logistic's MACs. `anytime max drop`: the largest fall of the anytime curve as the budget grows "
        "(target: at most one test spectrum, 1 / n test).",
        "",
        "What the defaults chose per seed: " + "; ".join(
            f"{n}: preprocessing {d['preprocessing']}, exit 0 {d['exit0_kind']}" for n, d in s["sets"].items()),
        "",
        "Why the network was not trained, per run: " + "; ".join(
            f"{n} s{c['seed']}: {c['network']}" for n, d in s["sets"].items() for c in d["cross_fit"]
            if c and not c["network"].startswith("trained")),
        "",
        "Combined exits (docs/models.md), per run with more than one exit: out-of-fold accuracy per exit, "
        "plain -> combined (the combination judged on held-out folds): " + ("; ".join(
            f"{n} s{c['seed']}: {[round(v, 3) for v in c['combination']['oof_accuracy_plain']]} -> "
            f"{[round(v, 3) for v in c['oof_accuracy']]}"
            for n, d in s["sets"].items() for c in d["cross_fit"] if c and "combination" in c) or "none"),
        "",
        "Figures: `figures/<set>.png`.",
    ]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(s, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--part", action="store_true", help="write results-s<seeds>[-<tag>].json (parallel runs)")
    p.add_argument("--tag", default="", help="suffix of a --part file (two runs of one seed on other sets)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--model", default=None, help="another registered network with every other default (e.g. scai, "
                   "for SCAI+ against SCAI under the same recipe; use its own --out)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        tag = f"-{args.tag}" if args.tag else ""
        target = out / (f"results-s{'-'.join(map(str, seeds))}{tag}.json" if args.part else "results.json")
        done = {(r["dataset"], r["seed"]) for r in (json.loads(target.read_text())["records"] if target.is_file() else [])}
        records = json.loads(target.read_text())["records"] if target.is_file() else []
        for name in args.datasets.split(","):
            for seed in seeds:
                if (name, seed) in done:
                    continue
                t0 = time.perf_counter()
                rec = run_one(name, seed, Path(args.data_dir), args.model)
                records.append(rec)
                target.write_text(json.dumps({"records": records}, indent=1))  # resumable
                print(f"{name} seed {seed}: exit0 {rec['exit_accuracy'][0]:.3f} final {rec['final_accuracy']:.3f} "
                      f"exits {len(rec['exit_macs'])} ({time.perf_counter() - t0:.0f} s)", flush=True)
    records = load_records(out)
    figures(records, out)
    print(report(records, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
