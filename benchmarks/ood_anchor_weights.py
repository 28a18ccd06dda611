"""The anchored unknown-class score's weight, swept on the raw scores behind benchmarks/ood.py.

An anchored exit's score is ``z_k + w * z_0``: its own relative Mahalanobis score and exit 0's,
each standardised on the validation split (``UnknownDetector(anchored=True, anchor_weight=w)``).
``benchmarks/ood.py --dump DIR`` saves the raw per-exit scores of every leave-one-class-out run
(validation, in-distribution test, held-out class) and of every cross-domain source; this script
recomputes, for each weight, what ood.py reports for one weight at a time:

* leave-one-class-out AUROC per exit (exit 0, the first network exit, the last; a MiniRocket exit
  is dropped so that runs line up, as in ood.py), averaged over runs per set, then over sets;
* cross-domain: the share of another set's spectra flagged by the domain check (held-out limits)
  or unknown at the last exit, with the threshold at 5 % false rejects on validation; per class of
  the source set for the pairs below 0.99.

``w = inf`` is exit 0's score alone at every exit. Usage::

    OMP_NUM_THREADS=1 python benchmarks/ood.py --seeds 0 1 2 --dump /tmp/ood-dump
    python benchmarks/ood_anchor_weights.py --dump /tmp/ood-dump --pack      # also packs the scores
    python benchmarks/ood_anchor_weights.py                                  # from the packed file

Writes ``benchmarks/results/ood/anchor_weights.md`` (and with ``--pack`` ``scores.npz``, the raw
scores in one file, keys ``<record>/<array>``).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "ood"
WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, float("inf"))
#: The finite weights a default is chosen from (exit 0's score alone gives every exit the same flag).
CHOICES = tuple(w for w in WEIGHTS if np.isfinite(w))
REJECT_RATE = 0.05


def load(dump: Path | None) -> dict[str, dict[str, np.ndarray]]:
    """record name -> arrays, from a --dump folder or the packed scores.npz."""
    if dump is not None:
        return {f.stem: dict(np.load(f)) for f in sorted(dump.glob("*.npz"))}
    packed = np.load(OUT / "scores.npz")
    out: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for key in packed.files:
        rec, arr = key.split("/", 1)
        out[rec][arr] = packed[key]
    return dict(out)


def _combine(z: np.ndarray, w: float) -> np.ndarray:
    """(E, n) standardised scores -> (E, n) anchored scores."""
    return np.repeat(z[:1], len(z), axis=0) if np.isinf(w) else z + w * z[:1]


def _standardise(val: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    mu, sd = val.mean(1, keepdims=True), np.maximum(val.std(1, keepdims=True), 1e-12)
    return [(a - mu) / sd for a in (val, *arrays)]


def loco(recs: dict[str, dict[str, np.ndarray]]) -> dict[float, dict[str, np.ndarray]]:
    """weight -> set -> mean AUROC per aligned exit."""
    from sklearn.metrics import roc_auc_score

    res: dict[float, dict[str, list[list[float]]]] = {w: collections.defaultdict(list) for w in WEIGHTS}
    for name, r in recs.items():
        if not name.startswith("loco_"):
            continue
        dataset = name[5:].rsplit("_", 2)[0]
        _, zi, zu = _standardise(r["val"], r["id"], r["unk"])
        truth = np.r_[np.zeros(zi.shape[1]), np.ones(zu.shape[1])]
        for w in WEIGHTS:
            ci, cu = _combine(zi, w), _combine(zu, w)
            au = [float(roc_auc_score(truth, np.r_[a, b])) for a, b in zip(ci, cu)]
            if int(r["n_pre"]) == 2:
                au = [au[0], *au[2:]]
            res[w][dataset].append(au)
    return {w: {d: np.mean(v, axis=0) for d, v in per.items()} for w, per in res.items()}


def cross(recs: dict[str, dict[str, np.ndarray]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(model set, source) -> per weight the share flagged (mean over seeds), and per class."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name, r in recs.items():
        if not name.startswith("full_"):
            continue
        tag = name[5:]
        dataset = tag.rsplit("_", 1)[0]
        for cname, c in recs.items():
            if not cname.startswith(f"cross_{tag}_") or "junk_" in cname:
                continue
            src = cname[len(f"cross_{tag}_"):]
            zv, zs = _standardise(r["val"], c["rmd"])
            labels = c["labels"]
            entry = out.setdefault((dataset, src), {"share": collections.defaultdict(list),
                                                    "by_class": collections.defaultdict(lambda: collections.defaultdict(list))})
            for w in WEIGHTS:
                thr = np.quantile(_combine(zv, w)[-1], 1 - REJECT_RATE, method="higher")
                flag = c["domain"].copy()
                flag[c["ok"]] |= _combine(zs, w)[-1] > thr
                entry["share"][w].append(float(flag.mean()))
                for cl in np.unique(labels):
                    entry["by_class"][w][str(cl)].append(float(flag[labels == cl].mean()))
    return out


def report(lo: dict[float, dict[str, np.ndarray]], cr: dict[tuple[str, str], dict[str, Any]], n_pairs: int) -> str:
    sets = sorted(next(iter(lo.values())))
    wname = lambda w: "exit 0 alone" if np.isinf(w) else f"{w:g}"  # noqa: E731
    lines = ["# The anchored score's weight (issue 17)", "",
             "Command: `python benchmarks/ood_anchor_weights.py` on the raw scores of `benchmarks/ood.py --seeds 0 1 2 --dump` "
             "(packed in scores.npz); protocol in benchmarks/ood.py. Exit k's score is z_k + w z_0, each standardised on "
             "the validation split; thresholds at 5 % false rejects on validation.", "",
             "## Leave-one-class-out AUROC (mean over held-out classes and seeds per set, then over sets)", "",
             "| weight | exit 0 | first network exit | last exit | " + " | ".join(f"{s} (last)" for s in sets) + " |",
             "|---|---|---|---|" + "---|" * len(sets)]
    for w in WEIGHTS:
        m = np.mean([lo[w][s] for s in sets], axis=0)
        lines.append(f"| {wname(w)} | {m[0]:.4f} | {m[1]:.4f} | {m[-1]:.4f} | " + " | ".join(f"{lo[w][s][-1]:.3f}" for s in sets) + " |")
    lines += _choice(lo, sets)
    lines += ["", f"## Cross-domain: the {len(cr)} pairs that are not refused (of {n_pairs}; a refused pair counts as flagged)", "",
              "| weight | mean over all pairs (refused = 1) | lowest pair |", "|---|---|---|"]
    for w in WEIGHTS:
        shares = {k: float(np.mean(v["share"][w])) for k, v in cr.items()}
        total = (sum(shares.values()) + (n_pairs - len(cr))) / n_pairs
        low = min(shares, key=shares.get)
        lines.append(f"| {wname(w)} | {total:.4f} | {low[0]} <- {low[1]} {shares[low]:.3f} |")
    from scai.inference.ood import DEFAULT_ANCHOR_WEIGHT as lib

    lines += ["", f"Per class of the source set, pairs below 0.99 at weight {lib:g} (the library's default), share flagged:", ""]
    for k, v in sorted(cr.items()):
        if np.mean(v["share"][lib]) < 0.99:
            cls = ", ".join(f"{c} {np.mean(x):.3f}" for c, x in sorted(v["by_class"][lib].items()))
            lines.append(f"- {k[0]} model, {k[1]}: {cls}")
    lines.append("")
    return "\n".join(lines)


def _choice(lo: dict[float, dict[str, np.ndarray]], sets: list[str]) -> list[str]:
    """The rule the default follows (the finite weight with the highest mean AUROC at the first
    network exit), and what the rule gives on a set it did not see: chosen on the other sets,
    scored on the one left out."""
    first = lambda w, ss: float(np.mean([lo[w][s][1] for s in ss]))  # noqa: E731
    chosen = max(CHOICES, key=lambda w: round(first(w, sets), 4))  # ties: the smaller weight
    picks = {s: max(CHOICES, key=lambda w: round(first(w, [t for t in sets if t != s]), 4)) for s in sets}
    held = np.mean([lo[picks[s]][s] for s in sets], axis=0)
    return ["", "## Choosing the weight", "",
            (f"Rule: the finite weight with the highest mean AUROC at the first network exit (the exit most early "
             f"answers leave at), ties to the smaller weight: **{chosen:g}** on all {len(sets)} sets. The same rule "
             "chosen on the other sets and scored on the one left out (leave-one-set-out, what a new set could expect): "
             f"exit 0 {held[0]:.4f}, first network exit {held[1]:.4f}, last exit {held[-1]:.4f}; weights chosen: "
             + ", ".join(f"{s} {picks[s]:g}" for s in sets) + ".")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dump", type=Path, default=None, help="a benchmarks/ood.py --dump folder (default: the packed scores.npz)")
    p.add_argument("--pack", action="store_true", help="write the --dump folder's scores to results/ood/scores.npz")
    p.add_argument("--pairs", type=int, default=72, help="(model set, other set) pairs in ood.py's run, refused ones included")
    args = p.parse_args(argv)
    recs = load(args.dump)
    if args.pack:
        if args.dump is None:
            p.error("--pack needs --dump")
        np.savez_compressed(OUT / "scores.npz", **{f"{n}/{a}": v for n, r in recs.items() for a, v in r.items()})
    text = report(loco(recs), cross(recs), args.pairs)
    (OUT / "anchor_weights.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
