"""Does the whole network's wall time at a budget follow its counted MACs? (issue 16 target)

    OMP_NUM_THREADS=1 python benchmarks/budget_wall.py [--dataset milk_species] [--epochs 50]

A trained compute-targeted SCAI+ (the default ``scai_plus`` and ``ponder_target``, network alone:
``exit0="none"``, 20 % validation split for calibration) answers the test spectra of one set,
repeated to ``--n`` spectra, in forward batches of ``--batch`` (256), one thread, under the
budgeted-batch policy at several budgets (thresholds and compute knob from
``calibrate_batch``: the solver) and under the full policy (every spectrum to the last exit at the
trained knob: the reference). Per budget: time ratio t_budget / t_full against the counted-MAC
ratio macs_budget / macs_full (both from the same ``Predictor.predict`` calls; preprocessing is
not timed). Times are the minimum over ``--repeats`` interleaved rounds. Target (issue 16):
|time ratio - MAC ratio| <= 0.1 at batch 256, one thread.

Each setting is timed twice per round: through the predictor as it is (its reliability record
scores every exit a spectrum reaches for the unknown-class detector and runs the input-domain check
on every spectrum: costs outside the network that MACs do not count), and through the same
predictor without its reliability record (``reliability = None``: the network's stages and the
exit loop only, the same exits and MACs). Both ratios are reported; the load average is recorded
before and after.

The trained model is cached in ``--cache`` so that timing reruns skip the training. Results:
``benchmarks/results/budget_wall.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SHARES = (0.25, 0.4, 0.55, 0.7, 0.85)


def model(name: str, epochs: int, cache: Path) -> tuple[Any, np.ndarray]:
    from sklearn.model_selection import train_test_split

    from scai.estimators import SCAIClassifier, load

    d = np.load(DATA / f"{name}.npz", allow_pickle=False)
    X, y = np.asarray(d["X"], np.float64), np.asarray(d["y"])
    tr, te = (d["train_idx"], d["test_idx"]) if "train_idx" in d.files else train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    path = cache / f"{name}-e{epochs}"
    if (path / "config.json").is_file():
        est = load(path)
    else:
        est = SCAIClassifier(model="scai_plus", exit0="none", cross_fit=0, val_fraction=0.2, random_state=0,
                             train_config={"max_epochs": epochs, "threads": 1, "progress": False})
        est.fit(X[tr], y[tr], axis=np.asarray(d["axis"], np.float64))
        est.save(path)
    return est, est.transform_input(X[te], np.asarray(d["axis"], np.float64))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="milk_species")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--n", type=int, default=1024, help="spectra per timed call (test spectra repeated)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/scai-budget-wall"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import copy

    import torch

    torch.set_num_threads(1)
    load_start = list(os.getloadavg())
    est, Z = model(args.dataset, args.epochs, args.cache)
    Z = np.ascontiguousarray(np.resize(Z, (args.n, Z.shape[1])), dtype=np.float32)
    pred = est.predictor()
    bare = copy.copy(pred)  # the network and the exit loop only: no unknown-class scores, no domain check
    bare.reliability = None
    full_path = float(est.exit_macs_[-1])
    runs: dict[str, dict[str, Any]] = {"full": {"kwargs": {"policy": "full"}}}
    for share in SHARES:
        cal = est.calibrate_batch(share * full_path, store=False)
        runs[f"{share:.0%}"] = {"kwargs": {"policy": "batch", "calibration": cal["calibration"]},
                                 "compute_scale": cal["compute_scale"]}
    for r in runs.values():
        r["times"], r["times_bare"] = [], []
    pred.predict(Z[: args.batch], policy="full", on_unknown="answer")  # warm-up
    for _ in range(args.repeats):  # interleaved: every setting once per round
        for r in runs.values():
            t0 = time.perf_counter()
            out = pred.predict(Z, batch_size=args.batch, on_unknown="answer", **r["kwargs"])
            r["times"].append(time.perf_counter() - t0)
            r["macs"] = out.mean_macs
            r["units_exit"] = np.bincount(out.exit, minlength=len(est.exit_macs_)).tolist()
            t0 = time.perf_counter()
            out_bare = bare.predict(Z, batch_size=args.batch, on_unknown="answer", **r["kwargs"])
            r["times_bare"].append(time.perf_counter() - t0)
            if not np.array_equal(out_bare.exit, out.exit) or out_bare.mean_macs != out.mean_macs:
                raise RuntimeError("the predictor without its reliability record took other exits")
    ref = runs["full"]
    t_full, m_full, tb_full = min(ref["times"]), ref["macs"], min(ref["times_bare"])
    rows = []
    for key, r in runs.items():
        t, tb, mr = min(r["times"]), min(r["times_bare"]), r["macs"] / m_full
        rows.append({"budget": key, "compute_scale": r.get("compute_scale", 1.0), "t_ms": 1e3 * t, "mean_macs": r["macs"],
                     "time_ratio": t / t_full, "mac_ratio": mr, "gap": abs(t / t_full - mr), "exits": r["units_exit"],
                     "t_bare_ms": 1e3 * tb, "time_ratio_bare": tb / tb_full, "gap_bare": abs(tb / tb_full - mr)})
    load_end = list(os.getloadavg())
    cmd = (f"python benchmarks/budget_wall.py --dataset {args.dataset} --epochs {args.epochs} --n {args.n} "
           f"--batch {args.batch} --repeats {args.repeats}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "budget_wall.json").write_text(json.dumps({"command": cmd, "load_start": load_start, "load_end": load_end, "rows": rows,
                                                          "torch": torch.__version__}, indent=1))
    lines = ["# Whole-network wall time at a budget vs counted MACs", "", f"`{cmd}` (one thread, torch {torch.__version__}, "
             f"load average before {tuple(round(v, 2) for v in load_start)}, after {tuple(round(v, 2) for v in load_end)}). Protocol: docstring of `benchmarks/budget_wall.py`; "
             "reference = the full policy (every spectrum to the last exit, trained knob); preprocessing not timed.", "",
             "\"predictor\": `Predictor.predict` as it is (reliability record: unknown-class scores at every exit reached, "
             "input-domain check of every spectrum); \"network\": the same predictor without its reliability record "
             "(network stages and exit loop only; same exits and MACs).", "",
             "| budget (share of full path) | knob | spectra per exit | mean MACs | MAC ratio | t predictor (ms) | time ratio | gap "
             "| t network (ms) | time ratio | gap |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['budget']} | {r['compute_scale']:g} | {r['exits']} | {r['mean_macs']:,.0f} | {r['mac_ratio']:.3f} | "
                     f"{r['t_ms']:.1f} | {r['time_ratio']:.3f} | {r['gap']:.3f} | "
                     f"{r['t_bare_ms']:.1f} | {r['time_ratio_bare']:.3f} | {r['gap_bare']:.3f} |")
    worst, worst_bare = max(r["gap"] for r in rows), max(r["gap_bare"] for r in rows)
    lines += ["", f"Largest gap |time ratio - MAC ratio| (target <= 0.1): predictor **{worst:.3f}**, "
              f"network **{worst_bare:.3f}**.", ""]
    (args.out / "budget_wall.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
