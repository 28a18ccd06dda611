"""Render a paper-benchmark ``results.json`` as figures, ``report.md`` and a self-contained ``report.html``.

Figures per dataset: accuracy vs MACs in the anytime (Fig. 9a) and budgeted-batch (Fig. 9b)
settings, the SCAI+ computation-allocation heatmap (Fig. 10) and per-exit training curves with
and without distillation (Fig. 11). The report is built once as a list of blocks (headings,
paragraphs, tables, images) and written both as Markdown (images linked) and as HTML (images
embedded as base64 PNG), so the two always say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scai.bench.allocation import RHO_INFORMATIVE
from scai.bench.curves import mean_curve
from scai.bench.methods import ADAPTIVE, FAMILIES
from scai.bench.summary import summarize
from scai.report.html import render_html
from scai.report.plots import plot_accuracy_vs_macs, plot_allocation_heatmap, plot_distillation_curves

__all__ = ["write_figures", "build_blocks", "write_report"]

Block = tuple[Any, ...]  # ("h", level, text) | ("p", text) | ("table", headers, rows) | ("img", path, caption)


# --------------------------------------------------------------------------- figures
def _fmt_macs(m: float | None) -> str:
    if m is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if m >= scale:
            return f"{m / scale:.3g}{unit}"
    return f"{m:.3g}"


def _accuracy_figure(results: dict[str, Any], ds: str, setting: str, path: Path) -> Path:
    key = "anytime" if setting == "anytime" else "budgeted_batch"
    by_method = results["results"][ds]
    curves = {}
    for method in ADAPTIVE:
        if method in by_method:
            curves[FAMILIES[method]] = mean_curve([r[key] for r in by_method[method].values()], setting)
    points: dict[str, list[tuple[float, float]]] = {}
    for runs in by_method.values():
        first = next(iter(runs.values()))
        if first["kind"] == "adaptive" or first["exits"][0].get("macs") is None:
            continue
        macs = float(np.mean([r["exits"][0]["macs"] for r in runs.values()]))
        points.setdefault(FAMILIES[first["family"]], []).append((macs, float(np.mean([r["accuracy"] for r in runs.values()]))))
    title = f"{ds}: {'anytime (budget per spectrum)' if setting == 'anytime' else 'budgeted batch (mean budget)'}"
    return plot_accuracy_vs_macs({k: v for k, v in curves.items() if v}, path, title=title, points=points)


def write_figures(results: dict[str, Any], summary: dict[str, Any], out: str | Path) -> dict[str, dict[str, Path]]:
    """Write every figure under ``out/figures``; returns {dataset: {figure kind: path}}."""
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, dict[str, Path]] = {}
    for ds, by_method in results["results"].items():
        p: dict[str, Path] = {
            "anytime": _accuracy_figure(results, ds, "anytime", fig_dir / f"fig9a_anytime_{ds}.png"),
            "batch": _accuracy_figure(results, ds, "batch", fig_dir / f"fig9b_batch_{ds}.png"),
        }
        alloc = summary["datasets"][ds]["claim_d"]
        if alloc:
            info = results["datasets"][ds]
            p["allocation"] = plot_allocation_heatmap(
                alloc["units"],
                np.asarray(info["axis"]),
                fig_dir / f"fig10_allocation_{ds}.png",
                mean_spectrum=np.asarray(info["mean_spectrum"]) if info.get("mean_spectrum") else None,
                discriminability=np.asarray(alloc["informative"]["f_profile"]) if alloc.get("informative") else None,
                axis_unit=info["axis_unit"],
                title=f"{ds}: SCAI+ mean units executed per position (mean over seeds)",
            )
        if "scai_plus" in by_method and "scai_plus_nokd" in by_method:
            seed = sorted(by_method["scai_plus"], key=int)[0]
            if seed in by_method["scai_plus_nokd"]:
                p["distillation"] = plot_distillation_curves(
                    by_method["scai_plus"][seed]["history"],
                    by_method["scai_plus_nokd"][seed]["history"],
                    fig_dir / f"fig11_distillation_{ds}.png",
                    title=f"{ds}, seed {seed}: per-exit accuracy with (blue) and without (red) distillation",
                )
        paths[ds] = p
    return paths


# --------------------------------------------------------------------------- blocks
def _pm(ms: dict[str, float] | None, n_expected: int | None = None) -> str:
    """``mean ± std``; a cell averaged over fewer seeds than ``n_expected`` says how many."""
    if not ms:
        return "-"
    n = int(ms.get("n", 1))
    text = f"{ms['mean']:.3f} ± {ms['std']:.3f}" if n > 1 else f"{ms['mean']:.3f}"
    if n_expected is not None and n < n_expected:
        text += f" ({n} of {n_expected} seeds)"
    return text


def _n_seeds(summary: dict[str, Any]) -> int:
    """The most seeds any (dataset, method) was run with: the count a complete cell has."""
    return max((row["final_accuracy"]["n"] for d in summary["datasets"].values() for row in d["table"]), default=1)


def _fmt_seconds(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _accuracy_table(summary: dict[str, Any]) -> Block:
    datasets = list(summary["datasets"])
    labels: dict[str, str] = {}
    cells: dict[tuple[str, str], str] = {}
    for ds in datasets:
        for row in summary["datasets"][ds]["table"]:
            labels.setdefault(row["method"], row["label"])
            cells[(row["method"], ds)] = _pm(row["final_accuracy"], _n_seeds(summary))
    order = sorted(labels, key=lambda m: (list(FAMILIES).index(_family(m)), _depth(m)))
    rows = [[labels[m]] + [cells.get((m, ds), "-") for ds in datasets] for m in order]
    return ("table", ["method"] + datasets, rows)


def _family(method: str) -> str:
    return method.rsplit("_d", 1)[0] if method.rsplit("_d", 1)[-1].isdigit() else method


def _depth(method: str) -> int:
    tail = method.rsplit("_d", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _claim_a_table(ds_all: dict[str, Any]) -> Block:
    """Claim (a) per dataset: wins / comparisons for each adaptive method and setting."""
    columns = [(m, s) for m in ("scai_plus", "scai") for s in ("anytime", "batch")]
    rows = []
    for ds, d in ds_all.items():
        row = [ds]
        for method, setting in columns:
            made = [c for c in d["claim_a"]["comparisons"] if c["method"] == method and c["setting"] == setting]
            row.append(f"{sum(c['win'] for c in made)} / {len(made)}" if made else "-")
        rows.append(row)
    return ("table", ["dataset"] + [f"{FAMILIES[m]} {s}" for m, s in columns], rows)


def _ranges(bands: list[dict[str, float]], units: bool = True) -> str:
    """Spectral ranges as ``from–to``, with the mean units executed in brackets when ``units``."""
    return ", ".join(f"{b['from']:.0f}–{b['to']:.0f}" + (f" ({b['mean_units']:.2f})" if units else "") for b in bands)


def _claim_blocks(summary: dict[str, Any]) -> list[Block]:
    ds_all = summary["datasets"]
    blocks: list[Block] = [("h", 2, "Claims, checked against these numbers")]
    # (a)
    wins = sum(d["claim_a"]["wins"] for d in ds_all.values())
    losses = sum(d["claim_a"]["losses"] for d in ds_all.values())
    skipped = sum(d["claim_a"]["skipped"] for d in ds_all.values())
    verdict = "holds" if losses == 0 and wins > 0 else ("not tested" if wins + losses == 0 else "does not reproduce")
    text = (
        f"**(a) SCAI / SCAI+ above ResNet-1D and DRSN at every budget: {verdict}.** At each static network's "
        f"MACs, the mean SCAI / SCAI+ curve (anytime and budgeted batch) is at least as accurate in {wins} of "
        f"{wins + losses} comparisons; {skipped} comparisons fall below the cost of exit 1 and are not counted."
    )
    lost = [(ds, c) for ds, d in ds_all.items() for c in d["claim_a"]["comparisons"] if not c["win"]]
    if lost:
        worst = sorted(lost, key=lambda t: t[1]["acc"] - t[1]["baseline_acc"])[:6]
        text += " Largest shortfalls: " + "; ".join(
            f"{ds} {FAMILIES[c['method']]} {c['setting']} vs {FAMILIES[c['baseline']]} at {_fmt_macs(c['macs'])} MACs: "
            f"{c['acc']:.3f} < {c['baseline_acc']:.3f}"
            for ds, c in worst
        ) + "."
    blocks.append(("p", text))
    if wins + losses:
        blocks.append(("p", "Per dataset, comparisons won (at least as accurate) of those made, against every depth of ResNet-1D, DRSN-CS and DRSN-CW:"))
        blocks.append(_claim_a_table(ds_all))
    # (b)
    rows, held, tested = [], 0, 0
    for ds, d in ds_all.items():
        b = d["claim_b"]
        if not b:
            continue
        tested += 1
        ok = b["resnet_macs"] is None or (b["ratio"] or 0) >= 6
        held += ok
        if b["resnet_macs"] is None:
            ratio = f"not reached (deepest depth: {b['deepest_ratio']:.2f}x)"
        else:
            ratio = f"{b['ratio']:.2f}x ({b['note']})"
        rows.append([ds, f"{b['target_accuracy']:.3f}", _fmt_macs(b["scai_plus_macs"]), _fmt_macs(b["resnet_macs"]), ratio])
    blocks.append(
        (
            "p",
            f"**(b) ResNet-1D needs >= 6x the compute of SCAI+ for the same accuracy: holds on {held} of {tested} datasets** "
            "(counting 'not reached' — no trained depth reaches SCAI+'s accuracy — as holding). Target: SCAI+'s mean "
            "final-exit accuracy; SCAI+'s cost: the least mean MACs at which its budgeted-batch curve reaches it; "
            "ResNet-1D's: log-linear interpolation between its depths.",
        )
    )
    blocks.append(("table", ["dataset", "SCAI+ accuracy", "SCAI+ MACs", "ResNet-1D MACs", "ratio"], rows))
    # (c)
    rows, lifted, tested = [], 0, 0
    for ds, d in ds_all.items():
        c = d["claim_c"]
        if not c:
            continue
        tested += 1
        lifted += c["shallow_lifted"]
        rows.append(
            [ds, f"{c['kd'][0]:.3f} ± {c['kd_std'][0]:.3f}", f"{c['no_kd'][0]:.3f} ± {c['no_kd_std'][0]:.3f}"]
            + [", ".join(f"{x:+.3f}" for x in c["diff"])]
        )
    blocks.append(
        (
            "p",
            f"**(c) Distillation lifts the shallow exits: every shallow exit of SCAI+ beats SCAI+ w/o KD on {lifted} of "
            f"{tested} datasets.** Test accuracy at exit 1, and the per-exit difference (KD minus w/o KD, exits 1..L):",
        )
    )
    blocks.append(("table", ["dataset", "exit 1 SCAI+", "exit 1 SCAI+ w/o KD", "difference per exit"], rows))
    # (d)
    lines = []
    for ds, d in ds_all.items():
        a = d["claim_d"]
        if not a:
            continue
        line = (
            f"{ds}: runs {a['mean_fraction']:.0%} of the dense units on average; most units (mean units executed, averaged "
            f"over blocks) at {_ranges(a['bands'])} {a['axis_unit']}"
        )
        inf = a.get("informative")
        if inf:
            line += (
                f". Most discriminative (ANOVA F of the training spectra): {_ranges(inf['f_bands'], units=False)} {a['axis_unit']}. "
                f"Spearman ρ(units, F) = {inf['spearman']:+.2f}; {inf['top_overlap']:.0%} of the busiest 10 % of positions "
                f"are among the most discriminative 10 % (chance {inf['chance']:.0%})"
            )
        quiet = a.get("intensity")
        if quiet:
            line += (
                f". Fewest units at {_ranges(quiet['quiet_bands'])} {a['axis_unit']}; ρ(units, mean spectrum) = {quiet['spearman']:+.2f}; "
                f"{quiet['skip_overlap']:.0%} of the 5 % least busy positions are among the 5 % strongest of the mean "
                f"preprocessed spectrum (chance {quiet['chance']:.0%})"
            )
        lines.append(line)
    scored = [d["claim_d"]["informative"] for d in ds_all.values() if d["claim_d"] and d["claim_d"].get("informative")]
    held = sum(i["holds"] for i in scored)
    head = "**(d) Where SCAI+ spends more compute** (top 10 % of positions merged into ranges, highest first)"
    if scored:
        head += (
            f": **more compute at the discriminative bands on {held} of {len(scored)} datasets** (counted when "
            f"ρ ≥ {RHO_INFORMATIVE} and the top-10 % overlap is at least twice chance)"
        )
    quiet = [d["claim_d"]["intensity"] for d in ds_all.values() if d["claim_d"] and d["claim_d"].get("intensity")]
    if quiet:
        head += (
            f"; **fewer units at the strongest bands of the mean spectrum on {sum(q['skips_peaks'] for q in quiet)} of "
            f"{len(quiet)} datasets** (the 5 % least busy positions overlap the 5 % strongest at least twice as often as chance)"
        )
    blocks.append(("p", head + ":"))
    blocks.extend(("p", "- " + line) for line in lines)
    return blocks


def _dataset_blocks(results: dict[str, Any], summary: dict[str, Any], figures: dict[str, dict[str, Path]], ds: str) -> list[Block]:
    info = results["datasets"][ds]
    scalings = sorted({str(r.get("input_scaling", "none")) for m in results["results"][ds].values() for r in m.values()
                       if r.get("kind") in ("adaptive", "static")})
    nets = (f" The networks then add the estimator's input scaling ({', '.join(scalings)}; "
            "'global' = minus the training mean spectrum, divided by one spread), fitted on train."
            if any(s != "none" for s in scalings) else "")
    blocks: list[Block] = [
        ("h", 3, ds),
        (
            "p",
            f"{info['n_samples']} spectra x {info['n_points']} points, {info['n_classes']} classes. Protocol: {info['protocol']}. "
            f"Preprocessing (fitted on train, shared by all methods): {' → '.join(info['preprocessing'])}.{nets} "
            f"Split sizes per seed: " + "; ".join(f"seed {s}: {v['train']}/{v['val']}/{v['test']}" for s, v in info["splits"].items()) + ".",
        ),
    ]
    n_seeds = _n_seeds(summary)
    rows = [
        [r["label"], _pm(r["final_accuracy"], n_seeds), _pm(r["first_exit_accuracy"]), _fmt_macs(r["full_macs"]), _fmt_macs(r["mean_macs"]),
         f"{r['epochs_run']['mean']:.0f}" if r.get("epochs_run") else "-",
         f"{r['train_time_s']['mean']:.1f}", f"{r['cpu_time_s']['mean']:.1f}" if r.get("cpu_time_s") else "-",
         f"{r['inference_time_s']['mean'] * 1e3:.1f}"]
        for r in summary["datasets"][ds]["table"]
    ]
    headers = ["method", "final-exit acc.", "exit-1 acc.", "MACs full path", "MACs spent (mean)", "epochs", "train s (wall)",
               "CPU s", "test inference ms"]
    blocks.append(("table", headers, rows))
    spent = summary["datasets"][ds].get("compute")
    if spent and spent["runs"]:
        blocks.append((
            "p",
            f"Compute spent on {ds}: {spent['runs']} runs over seeds {spent['seeds']}, "
            f"{_fmt_seconds(spent['cpu_time_s'])} of CPU time (all threads; training, scoring and curves) and "
            f"{_fmt_seconds(spent['wall_time_s'])} of wall time in training and test inference. Per seed (CPU): "
            + ", ".join(f"seed {s}: {_fmt_seconds(v)}" for s, v in spent["cpu_time_s_per_seed"].items()) + ". "
            "Mean columns are means over seeds; epochs = epochs run before early stopping.",
        ))
    captions = {
        "anytime": "Fig. 9a analogue: anytime accuracy vs per-spectrum budget (mean over seeds); static baselines and classical anchors as points at their MACs.",
        "batch": "Fig. 9b analogue: budgeted-batch accuracy vs mean MACs spent (thresholds calibrated on validation).",
        "allocation": "Fig. 10 analogue: SCAI+ mean units executed per position and block (test set, mean over seeds), with the mean preprocessed spectrum.",
        "distillation": "Fig. 11 analogue: per-exit training (dotted) and validation (solid) accuracy, SCAI+ vs SCAI+ w/o KD.",
    }
    blocks.extend(("img", figures[ds][k], captions[k]) for k in captions if k in figures.get(ds, {}))
    return blocks


def _compute_blocks(summary: dict[str, Any]) -> list[Block]:
    """What the whole run cost, per dataset and in all (from the runs' own timings)."""
    spent = {ds: d["compute"] for ds, d in summary["datasets"].items() if d.get("compute")}
    if not spent:
        return []
    rows = [[ds, str(c["runs"]), ",".join(map(str, c["seeds"])), _fmt_seconds(c["cpu_time_s"]), _fmt_seconds(c["wall_time_s"])]
            for ds, c in spent.items()]
    cpu, wall = sum(c["cpu_time_s"] for c in spent.values()), sum(c["wall_time_s"] for c in spent.values())
    rows.append(["all", str(sum(c["runs"] for c in spent.values())), "", _fmt_seconds(cpu), _fmt_seconds(wall)])
    return [
        ("h", 2, "Compute spent"),
        ("p", "CPU time counts all threads of the run's process (training, scoring and curves); wall time is training plus "
              "test inference. Runs done apart and merged add up here even when they ran at the same time."),
        ("table", ["dataset", "runs", "seeds", "CPU time", "wall time"], rows),
    ]


def build_blocks(results: dict[str, Any], summary: dict[str, Any], figures: dict[str, dict[str, Path]]) -> list[Block]:
    """The whole report as renderer-neutral blocks."""
    cfg, env = results["config"], results["environment"]
    head = (
        f"Seeds {cfg['seeds']}, at most {cfg['epochs']} epochs, patience {cfg['patience']}, batch {cfg['batch_size']}, "
        f"static depths {cfg['depths']} units, {cfg['threads']} torch threads; scai {env['scai']}, torch {env['torch']}, "
        f"scikit-learn {env['sklearn']} on {env['cpu_count']} CPUs. {results['mac_convention']}. Classical anchors are "
        "placed at a rough analytical MAC count of their inference (preprocessing excluded)."
    )
    blocks: list[Block] = [("h", 1, "SCAI paper benchmark (§4.4–4.7)"), ("p", head)]
    if cfg.get("quick"):
        blocks.append(("p", "**Quick mode**: tiny networks, few epochs, one seed — this checks the pipeline; the numbers mean nothing."))
    blocks += [("h", 2, "Final-exit test accuracy (mean ± std over seeds)"), _accuracy_table(summary)]
    blocks += _claim_blocks(summary)
    blocks += _compute_blocks(summary)
    blocks.append(("h", 2, "Per dataset"))
    for ds in results["results"]:
        blocks += _dataset_blocks(results, summary, figures, ds)
    return blocks


# --------------------------------------------------------------------------- renderers
def _md(blocks: Sequence[Block], root: Path) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "table":
            out.append("| " + " | ".join(b[1]) + " |\n|" + "---|" * len(b[1]))
            out[-1] += "".join("\n| " + " | ".join(str(c) for c in row) + " |" for row in b[2])
        elif b[0] == "img":
            out.append(f"![{b[2]}]({Path(b[1]).relative_to(root).as_posix()})\n\n*{b[2]}*")
    return "\n\n".join(out) + "\n"


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write figures, ``summary.json``, ``report.md`` and ``report.html`` under ``out``."""
    out = Path(out)
    summary = summarize(results)
    figures = write_figures(results, summary, out)
    blocks = build_blocks(results, summary, figures)
    paths = {"md": out / "report.md", "html": out / "report.html", "summary": out / "summary.json"}
    paths["md"].write_text(_md(blocks, out), encoding="utf-8")
    paths["html"].write_text(render_html(blocks, "SCAI paper benchmark"), encoding="utf-8")
    paths["summary"].write_text(json.dumps(summary, indent=1))
    return paths

