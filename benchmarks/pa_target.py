"""SCAI+ trained to a compute target, and its inference compute knob, against SCAI.

Run from the repository root (one thread; each network trains for ``--epochs`` epochs)::

    python benchmarks/pa_target.py                                   # default sets, writes benchmarks/results/pa_target/
    python benchmarks/pa_target.py --datasets ucr_meat --epochs 20 --out /tmp/pa_target   # quick look
    python benchmarks/pa_target.py --variants none,squared:0.5:10,hinge:0.5:10 --no-knob   # compare penalties
    python benchmarks/pa_target.py --out OUT --summarize DIR_S0,DIR_S1   # seeds side by side: OUT/summary.md

What is trained (seed ``--seed``, one validation split of 10 %, no exit 0, the default recipe
otherwise): SCAI, and SCAI+ once per ``--variants`` entry. A variant is ``none`` (the paper: tau
only) or ``PENALTY:TARGET:WEIGHT`` (``scai.training.losses.target_penalty``); the first variant
with a target is the one whose knob is swept; ``PENALTY:TARGET:WEIGHT:anova`` adds the ANOVA-weighted
allocation (``TrainConfig.ponder_allocation``). Claim (d) is measured per SCAI+ variant as the paper
report does (``scai.bench.allocation``): Spearman of the mean units executed along the axis (test
split) with the classes' ANOVA F (training spectra), and the overlap of the busiest 10 % positions
with the 10 % most discriminative. Splits: a set's own ``train_idx``/``test_idx`` when
it has them (UCR sets), otherwise a stratified 75/25 split with the seed.

What is measured on the test split, per network and exit: accuracy and the mean MACs per sample
actually counted (``forward_detailed``), and for SCAI+ the share of the units executed
(``NetworkOutput.units_fraction``: mean over blocks of mean N / S). The knob
(``ScaiNetwork.set_compute``) is swept over ``--scales``; three accuracy-vs-MACs curves:

* knob alone: the last exit at every scale;
* exits alone: every exit at scale 1 (each exit answers for all test spectra);
* both: the upper frontier of every (scale, exit) pair.

MACs are multiply-accumulates (FLOPs = 2 x MACs), preprocessing not included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "pa_target"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_SETS = "ucr_meat,ucr_strawberry,milk_species"
DEFAULT_VARIANTS = "none,abs:0.5:10"
DEFAULT_SCALES = "0.25,0.4,0.6,0.8,1,1.25,1.6,2.5,4"


def load(name: str, data_dir: Path, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    d = np.load(data_dir / f"{name}.npz", allow_pickle=False)
    X, y = np.asarray(d["X"], np.float64), np.asarray(d["y"])
    if "train_idx" in d.files:
        tr, te = d["train_idx"], d["test_idx"]
    else:
        tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=seed)
    return {"X_train": X[tr], "y_train": y[tr], "X_test": X[te], "y_test": y[te], "axis": np.asarray(d["axis"], np.float64)}


def parse_variant(text: str) -> dict[str, Any]:
    if text == "none":
        return {"name": "paper (tau only)", "penalty": None, "target": None, "weight": None}
    kind, target, weight, *rest = text.split(":")
    allocation = rest[0] if rest else "uniform"
    name = f"{kind} t={target} w={weight}" + ("" if allocation == "uniform" else f" {allocation}")
    return {"name": name, "penalty": kind, "target": float(target), "weight": float(weight), "allocation": allocation}


def train(model: str, data: dict[str, np.ndarray], variant: dict[str, Any] | None, epochs: int, seed: int) -> Any:
    from scai.estimators import SCAIClassifier
    from scai.training import losses

    cfg: dict[str, Any] = {"max_epochs": epochs, "seed": seed, "threads": 1, "progress": False}
    if variant is not None:  # the paper's variant: tau only (TrainConfig's default target is 0.5)
        cfg["ponder_target"] = variant["target"]
        cfg["ponder_allocation"] = variant.get("allocation", "uniform")
    est = SCAIClassifier(model=model, exit0="none", cross_fit=0, random_state=seed, train_config=cfg)
    # the penalty's form and weight are exit_losses arguments, fixed by the trainer to the
    # module defaults; a comparison run swaps those defaults for the duration of one fit
    saved = losses.exit_losses.__kwdefaults__.copy()
    if variant is not None and variant["penalty"] is not None:
        losses.exit_losses.__kwdefaults__.update(penalty=variant["penalty"], target_weight=variant["weight"])
    try:
        t0 = time.perf_counter()
        est.fit(data["X_train"], data["y_train"], axis=data["axis"])
        est.fit_time_s_ = time.perf_counter() - t0
    finally:
        losses.exit_losses.__kwdefaults__.clear()
        losses.exit_losses.__kwdefaults__.update(saved)
    return est


def score(est: Any, Z: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Per-exit accuracy and mean counted MACs on preprocessed ``Z``; units share for PA nets."""
    import torch

    net = est.network_
    with torch.inference_mode():
        out = net.forward_detailed(torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32)).unsqueeze(1))
    y_idx = np.searchsorted(est.classes_, y)
    acc = [float((l.argmax(1).numpy() == y_idx).mean()) for l in out.logits]
    macs = out.macs.double().mean(0).tolist()
    reply: dict[str, Any] = {"acc": acc, "macs": macs, "full_macs": [int(m) for m in net.exit_macs()]}
    if out.units_fraction is not None:
        reply["units"] = float(out.units_fraction.mean())
        reply["units_per_block"] = [float(u.double().mean()) / len(b.units) for u, b in zip(out.units_executed, net.blocks)]
        reply["units_per_position"] = [u.double().mean(0).tolist() for u in out.units_executed]
    return reply


def claim_d(units: list[list[float]], Z_train: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    """Claim (d) as the paper report measures it: units executed along the axis (test split) against
    the classes' ANOVA F on the preprocessed training spectra (``scai.bench.allocation``)."""
    from scai.bench.allocation import allocation_vs_discriminability
    from scai.bench.splits import discriminability

    f = discriminability(Z_train, y_train)
    got = allocation_vs_discriminability(units, f, np.arange(len(f), dtype=np.float64))
    return {k: got[k] for k in ("spearman", "top_overlap", "chance", "holds")}


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-left frontier of (macs, acc) points: each point beats every cheaper one."""
    best, out = -1.0, []
    for m, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            out.append((m, a))
            best = a
    return out


def run_set(name: str, args: argparse.Namespace, variants: list[dict[str, Any]], scales: list[float]) -> dict[str, Any]:
    data = load(name, Path(args.data_dir), args.seed)
    rec: dict[str, Any] = {"dataset": name, "n_train": len(data["y_train"]), "n_test": len(data["y_test"]), "length": int(data["X_train"].shape[1])}
    est = train("scai", data, None, args.epochs, args.seed)
    Z = est.transform_input(data["X_test"])
    rec["scai"] = {**score(est, Z, data["y_test"]), "fit_time_s": est.fit_time_s_, "epochs_run": len(est.history_.epochs)}
    print(f"{name}: scai acc {rec['scai']['acc']} ({est.fit_time_s_:.0f} s)", flush=True)
    rec["scai_plus"] = []
    knob_done = False
    for v in variants:
        est = train("scai_plus", data, v, args.epochs, args.seed)
        Z = est.transform_input(data["X_test"])
        r = {**v, **score(est, Z, data["y_test"]), "fit_time_s": est.fit_time_s_, "epochs_run": len(est.history_.epochs),
             "best_epoch": int(est.history_.best_epoch)}
        Z_train = est.transform_input(data["X_train"])
        r["train_units"] = float(score(est, Z_train, data["y_train"])["units"])
        r["claim_d"] = claim_d(r.pop("units_per_position"), Z_train, data["y_train"])
        if not args.no_knob and not knob_done and v["target"] is not None:
            r["knob"] = []
            for s in scales:
                est.network_.set_compute(s)
                r["knob"].append({"scale": s, **score(est, Z, data["y_test"])})
            est.network_.set_compute(1.0)
            knob_done = True
        rec["scai_plus"].append(r)
        print(f"{name}: scai_plus [{v['name']}] acc {r['acc']} units {r['units']:.3f} (train {r['train_units']:.3f}) "
              f"macs/full {r['macs'][-1] / r['full_macs'][-1]:.3f} ({est.fit_time_s_:.0f} s)", flush=True)
    return rec


def on_or_above(upper: list[tuple[float, float]], lower: list[tuple[float, float]]) -> bool:
    """True when ``upper`` reaches at least ``lower``'s accuracy at every MACs ``lower`` reaches
    (best accuracy of ``upper`` at MACs <= m, for every frontier point (m, a) of ``lower``)."""
    for m, a in frontier(lower):
        reach = [acc for macs, acc in upper if macs <= m]
        if not reach or max(reach) < a:
            return False
    return True


def set_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """One set's figures the targets of issue 16 are judged on (last exits, units, frontiers)."""
    out: dict[str, Any] = {"dataset": rec["dataset"], "scai_acc": rec["scai"]["acc"][-1]}
    for r in rec["scai_plus"]:
        if r.get("allocation", "uniform") != "uniform":
            continue  # the summary compares the paper's SCAI+ with the default (uniform) target
        key = "paper" if r["target"] is None else "target"
        out[f"{key}_acc"], out[f"{key}_units"] = r["acc"][-1], r["units"]
        if "claim_d" in r:  # runs written before claim (d) was measured have none
            out[f"{key}_rho"], out[f"{key}_overlap"] = r["claim_d"]["spearman"], r["claim_d"]["top_overlap"]
            out[f"{key}_holds"], out["chance"] = bool(r["claim_d"]["holds"]), r["claim_d"]["chance"]
        if "knob" in r:
            both = [(m, a) for k in r["knob"] for m, a in zip(k["macs"], k["acc"])]
            out["frontier_on_or_above"] = on_or_above(both, list(zip(rec["scai"]["macs"], rec["scai"]["acc"])))
    return out


def summary(runs: list[tuple[int, list[dict[str, Any]]]]) -> list[str]:
    """Markdown: per set and seed, then the means over every (set, seed) run."""
    rows = [(seed, set_summary(rec)) for seed, records in runs for rec in records]
    lines = ["| set | seed | SCAI acc | SCAI+ paper acc | units | SCAI+ target acc | units | knob x exits frontier on/above SCAI "
             "| claim (d) Spearman paper / target | top-10 % overlap paper / target (chance) |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    def f(v: Any, fmt: str = ".3f") -> str:
        return "-" if v is None else f"{v:{fmt}}"
    def held(r: dict[str, Any], key: str) -> str:
        return "" if r.get(f"{key}_holds") is None else (" (holds)" if r[f"{key}_holds"] else "")
    for seed, r in rows:
        lines.append(f"| {r['dataset']} | {seed} | {f(r['scai_acc'])} | {f(r.get('paper_acc'))} | {f(r.get('paper_units'))} | "
                     f"{f(r.get('target_acc'))} | {f(r.get('target_units'))} | {r.get('frontier_on_or_above', '-')} | "
                     f"{f(r.get('paper_rho'), '+.2f')}{held(r, 'paper')} / {f(r.get('target_rho'), '+.2f')}{held(r, 'target')} | "
                     f"{f(r.get('paper_overlap'), '.2f')} / {f(r.get('target_overlap'), '.2f')} ({f(r.get('chance'), '.2f')}) |")
    def mean(key: str, fmt: str = ".3f") -> str:
        vals = [r[key] for _, r in rows if r.get(key) is not None]
        return f"{np.mean(vals):{fmt}}" if vals else "-"
    def holds(key: str) -> str:
        vals = [r[f"{key}_holds"] for _, r in rows if r.get(f"{key}_holds") is not None]
        return f"{sum(vals)} of {len(vals)}"
    above = [r["frontier_on_or_above"] for _, r in rows if "frontier_on_or_above" in r]
    lines.append(f"| **mean of {len(rows)} runs** | | {mean('scai_acc')} | {mean('paper_acc')} | {mean('paper_units')} | "
                 f"{mean('target_acc')} | {mean('target_units')} | {sum(above)} of {len(above)} | "
                 f"{mean('paper_rho', '+.2f')} / {mean('target_rho', '+.2f')}; holds {holds('paper')} / {holds('target')} | "
                 f"{mean('paper_overlap', '.2f')} / {mean('target_overlap', '.2f')} ({mean('chance', '.2f')}) |")
    return lines


def curves(rec: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """The accuracy-vs-MACs curves of one set (see the module docstring)."""
    out = {"SCAI exits": list(zip(rec["scai"]["macs"], rec["scai"]["acc"]))}
    for r in rec["scai_plus"]:
        if "knob" in r:
            out["SCAI+ knob alone (last exit)"] = [(k["macs"][-1], k["acc"][-1]) for k in r["knob"]]
            out["SCAI+ exits alone (scale 1)"] = list(zip(r["macs"], r["acc"]))
            out["SCAI+ knob x exits (frontier)"] = frontier([(m, a) for k in r["knob"] for m, a in zip(k["macs"], k["acc"])])
    return out


def figure(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records), figsize=(5 * len(records), 4), squeeze=False)
    styles = {"SCAI exits": "k:o", "SCAI+ knob alone (last exit)": "C0-s", "SCAI+ exits alone (scale 1)": "C1--^",
              "SCAI+ knob x exits (frontier)": "C2-"}
    for ax, rec in zip(axes[0], records):
        for label, pts in curves(rec).items():
            m, a = zip(*pts)
            ax.plot(np.asarray(m) / 1e6, a, styles[label], label=label, lw=2 if "frontier" in label else 1, ms=4)
        ax.set_xscale("log")
        ax.set_title(f"{rec['dataset']} (test, n={rec['n_test']})")
        ax.set_xlabel("mean MACs per spectrum (M, counted)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(records: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> str:
    lines = ["# SCAI+ with a compute target and an inference compute knob", "",
             f"Command: `{args.command}`", "",
             (f"Seed {args.seed}, {args.epochs} epochs max (early stopping, patience 30, 10 % validation split), "
              "no exit 0, one thread. Test split accuracy; MACs = counted multiply-accumulates per spectrum "
              "(mean over the test split), preprocessing not included. units = share of the PA units executed "
              "(mean over blocks of mean N / S; 0.25 is the floor with S = 4)."), "",
             "## Final exit: SCAI vs SCAI+ variants", "",
             "| set | network | acc (last exit) | units test | units train | MACs last exit | MACs / SCAI+ full | epochs | claim (d): Spearman units vs F | top-10 % overlap |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        s = rec["scai"]
        lines.append(f"| {rec['dataset']} | SCAI | {s['acc'][-1]:.3f} | - | - | {s['macs'][-1] / 1e6:.3f} M | - | {s['epochs_run']} | - | - |")
        for r in rec["scai_plus"]:
            lines.append(f"| {rec['dataset']} | SCAI+ {r['name']} | {r['acc'][-1]:.3f} | {r['units']:.3f} | {r['train_units']:.3f} | "
                         f"{r['macs'][-1] / 1e6:.3f} M | {r['macs'][-1] / r['full_macs'][-1]:.3f} | {r['epochs_run']} | "
                         + (f"{r['claim_d']['spearman']:+.2f} | {r['claim_d']['top_overlap']:.2f} (chance {r['claim_d']['chance']:.2f}) |"
                            if "claim_d" in r else "- | - |"))
    lines += ["", "## Compute knob (`set_compute(scale)`), the swept SCAI+ variant", ""]
    for rec in records:
        for r in rec["scai_plus"]:
            if "knob" not in r:
                continue
            lines += [f"### {rec['dataset']}: SCAI+ {r['name']}", "",
                      "| scale | units | acc per exit | MACs per exit (M) |", "|---|---|---|---|"]
            for k in r["knob"]:
                lines.append(f"| {k['scale']:g} | {k['units']:.3f} | {' '.join(f'{a:.3f}' for a in k['acc'])} | "
                             f"{' '.join(f'{m / 1e6:.3f}' for m in k['macs'])} |")
            lines.append("")
    lines += ["## Against the targets of issue 16", "",
              "Last-exit test accuracy, the share of units executed, and whether the SCAI+ knob x exits "
              "frontier reaches SCAI's accuracy at every MACs SCAI's exits reach.", "",
              *summary([(args.seed, records)]), ""]
    lines += ["![accuracy vs MACs](pa_target.png)", "",
              ("Single seed, short trainings: differences of a few test spectra are noise. The knob x exits "
               "frontier picks its points on the test split itself (an envelope of what the knob and the exits "
               "can reach, not an operating point chosen on validation data)."), "",
              f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}."]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def seed_of(command: str) -> int:
    """The ``--seed`` a recorded command ran with (0, the default, when it names none)."""
    return int(command.split("--seed")[1].split()[0]) if "--seed" in command else 0


def main(argv: list[str] | None = None) -> int:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=DEFAULT_SETS, help=f"comma-separated names in --data-dir (default {DEFAULT_SETS})")
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"SCAI+ trainings (default {DEFAULT_VARIANTS})")
    ap.add_argument("--scales", default=DEFAULT_SCALES, help="compute-knob scales to sweep")
    ap.add_argument("--no-knob", action="store_true", help="skip the knob sweep")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--summarize", default=None, metavar="DIR,DIR",
                    help="write summary.md in --out from the results.json of these runs (e.g. one per seed)")
    ap.add_argument("--report-only", action="store_true", help="re-render report.md and the figure from --out/results.json")
    args = ap.parse_args(argv)
    args.command = "python benchmarks/pa_target.py " + " ".join(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        runs = []
        for d in args.summarize.split(","):
            saved = json.loads((Path(d) / "results.json").read_text())
            runs.append((seed_of(saved["command"]), saved["records"]))
        text = "\n".join(["# SCAI+ with a compute target: seeds side by side", "",
                          *[f"- `{json.loads((Path(d) / 'results.json').read_text())['command']}`" for d in args.summarize.split(",")],
                          "", *summary(runs), ""])
        (out / "summary.md").write_text(text)
        print(text)
        return 0
    if args.report_only:
        saved = json.loads((out / "results.json").read_text())
        args.command, args.seed = saved["command"], seed_of(saved["command"])
        if any("knob" in r for rec in saved["records"] for r in rec["scai_plus"]):
            figure(saved["records"], out / "pa_target.png")
        report(saved["records"], args, out)
        return 0
    variants = [parse_variant(v) for v in args.variants.split(",")]
    scales = [float(s) for s in args.scales.split(",")]
    records = []
    for name in args.datasets.split(","):
        records.append(run_set(name, args, variants, scales))
        (out / "results.json").write_text(json.dumps({"command": args.command, "records": records}, indent=1))
    if any("knob" in r for rec in records for r in rec["scai_plus"]):
        figure(records, out / "pa_target.png")
    print(report(records, args, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
