"""Budgets met by the compute knob, the exits, or both (issue 16, item 2), on held-out calibration.

    OMP_NUM_THREADS=1 python benchmarks/knob_budget.py --seed 0 [--datasets a,b] [--epochs 50]
    python benchmarks/knob_budget.py --report-only

Protocol (per set and seed): the official split for UCR sets, else a stratified 75/25 train/test
split with the seed; the default SCAI+ (``scai_plus``, the default ``ponder_target``, default
preprocessing "auto") alone -- ``exit0="none"``, so every budget is the network's -- trained with
a stratified 20 % validation split of the training part (``cross_fit=0``, ``val_fraction=0.2``)
on which temperatures, thresholds and the knob are calibrated. At each budget (a share of the
full-compute path) three operating points, each chosen on the validation split only and then
scored on the test split:

* **exits alone**: budgeted-batch thresholds at the trained knob (1.0);
* **knob alone**: every spectrum to the last exit at the largest knob setting of
  :data:`scai.models.knob.KNOB_SCALES` + 1.0 whose validation mean cost fits the budget
  (none fits: the smallest);
* **both**: :meth:`SCAIClassifier.calibrate_batch` -- the solver over (knob, thresholds).

Test accuracy and the test mean MACs per spectrum of each, and the accuracy-vs-MACs plot per
set. Results: ``benchmarks/results/knob_budget/`` (``records.jsonl`` appended per set, then
``report.md`` and ``knob_budget.png`` rewritten from all records).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "knob_budget"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = ("ucr_meat,chemotools_coffee,liquor_vintage,ucr_strawberry,astragalus_origin,raspberry_origin,"
        "cheese_brands,milk_species,milk_adulteration")
SHARES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0)


def load(name: str, seed: int) -> dict[str, np.ndarray]:
    """The split of ``benchmarks/pa_target.py`` (official for UCR sets, else stratified 75/25)."""
    from pa_target import load as split  # benchmarks/ is on sys.path when run as a script

    return split(name, DATA, seed)


def knob_alone(est: Any, budget: float) -> float:
    """The largest knob setting whose validation mean cost at the last exit fits ``budget``."""
    costs = {s: float(np.mean(c[:, -1])) for s, _, c in est.knob_outputs()}
    fits = [s for s, c in costs.items() if c <= budget]
    return max(fits) if fits else min(costs)


def run_set(name: str, seed: int, epochs: int) -> dict[str, Any]:
    from scai.estimators import SCAIClassifier
    from scai.inference.knob import solve_budget
    from scai.models.knob import compute_scale

    data = load(name, seed)
    est = SCAIClassifier(model="scai_plus", exit0="none", cross_fit=0, val_fraction=0.2, random_state=seed,
                         train_config={"max_epochs": epochs, "seed": seed, "threads": 1, "progress": False})
    t0 = time.perf_counter()
    est.fit(data["X_train"], data["y_train"], axis=data["axis"])
    fit_s = time.perf_counter() - t0
    X, y, full = data["X_test"], data["y_test"], float(est.exit_macs_[-1])
    pred = est.predictor()
    Z = est.transform_input(X, data["axis"])
    names = np.asarray([str(c) for c in y])
    rec: dict[str, Any] = {"set": name, "seed": seed, "epochs": epochs, "fit_s": round(fit_s, 1), "n_test": int(len(y)),
                           "full_macs": full, "exit_macs": est.exit_macs_, "points": []}
    for share in SHARES:
        b = share * full
        both = est.calibrate_batch(b, store=False)
        cal1, _ = solve_budget(est.knob_outputs()[:1], est.validation_["y"], b,  # the trained setting alone
                               exit_bounds=np.asarray(est.exit_macs_, dtype=np.float64))
        row = {"share": share, "budget": b, "chosen_scale": both["compute_scale"], "solver": both["knob"]}
        for label, cal in (("exits", cal1), ("both", both["calibration"])):
            p = pred.predict(Z, policy="batch", calibration=cal, on_unknown="answer")
            row[label] = {"acc": p.accuracy(names), "macs": p.mean_macs}
        s = knob_alone(est, b)
        with compute_scale(est.network_, s):
            p = pred.predict(Z, policy="full", on_unknown="answer")
        row["knob"] = {"acc": p.accuracy(names), "macs": p.mean_macs, "scale": s}
        rec["points"].append(row)
    return rec


def overhead(name: str, epochs: int, repeats: int = 2) -> dict[str, Any]:
    """Training time of one cross-fitting fold with and without the knob's extra validation passes
    (same data, seed and epochs; interleaved, min over ``repeats``)."""
    import torch

    from scai.models import create_model
    from scai.models.knob import KNOB_SCALES
    from scai.preprocessing import default_pipeline
    from scai.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    data = load(name, 0)
    y_idx = np.unique(data["y_train"], return_inverse=True)[1]
    Z = default_pipeline("raman").fit_transform(data["X_train"], axis=data["axis"])
    Z = np.asarray(Z, dtype=np.float32)
    n_val = len(Z) // 5
    times: dict[str, list[float]] = {"plain": [], "knob": []}
    for _ in range(repeats):
        for mode in times:
            torch.manual_seed(0)
            net = create_model("scai_plus", Z.shape[1], int(y_idx.max()) + 1)
            knob = {s: [] for s in KNOB_SCALES} if mode == "knob" else None
            cfg = TrainConfig.from_dict({"max_epochs": epochs, "patience": epochs, "threads": 1, "progress": False,
                                         "train_budget": None})
            t0 = time.perf_counter()
            Trainer(cfg).fit(net, Z[n_val:], y_idx[n_val:], Z[:n_val], y_idx[:n_val], val_logits=[], knob_logits=knob)
            times[mode].append(time.perf_counter() - t0)
    t = {k: min(v) for k, v in times.items()}
    return {"set": name, "epochs": epochs, "n_train": len(Z) - n_val, "n_val": n_val, "plain_s": t["plain"],
            "knob_s": t["knob"], "ratio": t["knob"] / t["plain"], "load_end": list(os.getloadavg())}


def report(records: list[dict[str, Any]]) -> str:
    lines = ["# Budgets met by the compute knob, the exits, or both (issue 16, item 2)", "",
             "Protocol: see the docstring of `benchmarks/knob_budget.py` (default SCAI+ alone, 20 % validation split for",
             "every choice, test split for every number). Commands and records: `records.jsonl`.", "",
             "Test accuracy (mean MACs as % of the full path) at each budget:", "",
             "| set | seed | budget | exits alone | knob alone | both (solver) | knob chosen |", "|---|---:|---:|---|---|---|---:|"]
    wins = {"both>=exits": 0, "both>=knob": 0, "n": 0}
    means: dict[float, dict[str, list[float]]] = {}
    for r in records:
        for pt in r["points"]:
            cells = [f"{pt[k]['acc']:.3f} ({100 * pt[k]['macs'] / r['full_macs']:.0f} %)" for k in ("exits", "knob", "both")]
            lines.append(f"| {r['set']} | {r['seed']} | {pt['share']:.0%} | " + " | ".join(cells) + f" | {pt['chosen_scale']:g} |")
            wins["n"] += 1
            wins["both>=exits"] += pt["both"]["acc"] >= pt["exits"]["acc"] - 1e-12
            wins["both>=knob"] += pt["both"]["acc"] >= pt["knob"]["acc"] - 1e-12
            m = means.setdefault(pt["share"], {"exits": [], "knob": [], "both": []})
            for k in m:
                m[k].append(pt[k]["acc"])
    lines += ["", f"Runs: {len(records)} (set, seed). Budget points where the solver's test accuracy is >= the exits alone: "
              f"{wins['both>=exits']} of {wins['n']}; >= the knob alone: {wins['both>=knob']} of {wins['n']}.", "",
              "Mean test accuracy over runs per budget:", "", "| budget | exits alone | knob alone | both |", "|---:|---:|---:|---:|"]
    for share, m in sorted(means.items()):
        lines.append(f"| {share:.0%} | {np.mean(m['exits']):.3f} | {np.mean(m['knob']):.3f} | {np.mean(m['both']):.3f} |")
    lines += ["", "![accuracy vs MACs](knob_budget.png)", ""]
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(records)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, records):
        for key, style, label in (("exits", "C1--^", "exits alone"), ("knob", "C0-s", "knob alone"), ("both", "C2-o", "both (solver)")):
            pts = sorted((p[key]["macs"] / 1e6, p[key]["acc"]) for p in r["points"])
            ax.plot([m for m, _ in pts], [a for _, a in pts], style, label=label, ms=4)
        ax.set_title(f"{r['set']} (seed {r['seed']})", fontsize=9)
        ax.set_xlabel("test mean MACs (M)")
        ax.set_ylabel("test accuracy")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=SETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--overhead", metavar="SET", help="only time one fold's training with / without the knob's "
                    "validation passes on SET (written to overhead.json)")
    args = ap.parse_args()
    if args.overhead:
        args.out.mkdir(parents=True, exist_ok=True)
        got = overhead(args.overhead, args.epochs)
        got["command"] = f"python benchmarks/knob_budget.py --overhead {args.overhead} --epochs {args.epochs}"
        (args.out / "overhead.json").write_text(json.dumps(got, indent=1))
        print(got)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "records.jsonl"
    if not args.report_only:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        for name in args.datasets.split(","):
            rec = run_set(name, args.seed, args.epochs)
            rec["command"] = f"python benchmarks/knob_budget.py --seed {args.seed} --epochs {args.epochs} --datasets {name}"
            rec["load_end"] = list(os.getloadavg())
            with path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(name, "done", rec["fit_s"], "s", flush=True)
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    (args.out / "report.md").write_text(report(records))
    plot(records, args.out / "knob_budget.png")
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
