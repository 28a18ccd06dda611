"""Does a MiniRocket exit add to exit 0? Out-of-fold choice vs test accuracy, full and small training sets.

For each dev set, seed and training size (``--small 0``: the whole train + val part; ``--small N``:
a stratified subsample of about N spectra, at least 3 per class, to mimic the 20-60-spectrum sets
labs bring), splits as ``scai.bench.splits.split_indices`` (qsi-tk sets stratified 8:1:1, UCR sets
the official split with 10 % of train as validation; train + val are the training rows):

* the default estimator's ``preprocessing="auto"`` and ``exit0="auto"`` choose the pipeline and
  exit 0 on the training rows (``SCAIClassifier._auto_pipeline``);
* K-fold (K = 5, capped at the smallest class count) out-of-fold logits of exit 0 (refitted per
  fold) and of the MiniRocket exit (aeon's transform fitted on all training rows, ridge head
  refitted per fold), on the standardised spectra (``z``) and on the spectra before
  standardisation (``u``, what the exit now uses);
* the exit combination (``scai.inference.combination``) of exit 0 and the MiniRocket exit, its
  accuracy in-sample on the out-of-fold logits and judged honestly (refitted on K - 1 folds,
  applied to the K-th), and the test accuracy of exit 0, of the MiniRocket exit and of the
  combination fitted on all out-of-fold logits; MiniRocket on the raw spectra (aeon's classifier)
  as the anchor.

The rule the estimator uses (``rocket="auto"``): keep the MiniRocket exit when the honestly judged
combination beats exit 0 out of fold; "rule" columns give the test accuracy that rule yields.

Usage (one thread each; about 20 minutes for everything on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/rocket_exit.py --small 0 --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/rocket_exit.py --small 30 --seeds 0 1 2
    python benchmarks/rocket_exit.py --report-only

Writes ``benchmarks/results/rocket_exit/<set>_<seed>_<small>.npz`` (the logits) and ``report.md``.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "rocket_exit"
DATA_DIR = ROOT.parent / "shared" / "datasets"
DATASETS = ("ucr_strawberry", "ucr_meat", "chemotools_coffee", "astragalus_origin", "cheese_brands",
            "raspberry_origin", "milk_adulteration", "milk_species", "liquor_vintage")


def run_one(name: str, seed: int, small: int) -> None:
    import torch
    from aeon.classification.convolution_based import MiniRocketClassifier

    from scai import SCAIClassifier
    from scai.bench.splits import split_indices
    from scai.data import read
    from scai.training.cross_fit import stratified_folds
    from scai.training.rocket_exit import fit_rocket_exit, fit_rocket_head

    torch.set_num_threads(1)
    sp = read(DATA_DIR / f"{name}.npz")
    (tr, va, te), _ = split_indices(sp, seed, 0.1, 0.1)
    labels = np.asarray(sp.class_names)[sp.y]
    rows = np.sort(np.concatenate([tr, va]))
    if small:
        rng = np.random.default_rng(seed)
        cls = np.unique(sp.y[rows])
        per = max(3, small // len(cls))
        rows = np.sort(np.concatenate([rng.choice(rows[sp.y[rows] == c], min(per, int((sp.y[rows] == c).sum())),
                                                  replace=False) for c in cls]))
    t0 = time.perf_counter()
    clf = SCAIClassifier(random_state=seed)
    X = sp.X[rows]
    clf.classes_, y = np.unique(labels[rows], return_inverse=True)
    clf.axis_ = clf._validated_axis(sp.axis, X.shape[1])
    clf.axis_unit_ = sp.axis_unit
    clf.network_ = type("Net", (), {"n_exits": 5})()  # _auto_pipeline only asks whether there is more than one exit
    pipe, Z, fit0 = clf._auto_pipeline(X, y)
    C = len(clf.classes_)
    folds = stratified_folds(y, max(2, min(5, int(np.bincount(y).min()))), seed)
    oof0 = np.zeros((len(y), C), np.float32)
    for a, b in folds:
        oof0[b] = clf._fit_exit0(Z[a], y[a], "auto").logits(Z[b])
    std = pipe[len(pipe) - 1]
    affine = (std.scale_, std.mean_)
    yte = clf._encode(labels[te], "y")
    Zte = np.asarray(pipe.transform(sp.X[te]), np.float32)
    out = {"oof0": oof0, "l0": fit0.logits(Zte), "y": y, "yte": yte,
           "folds": np.array([np.isin(np.arange(len(y)), b) for _, b in folds])}
    for tag, aff in (("r", None), ("u", affine)):
        rf = fit_rocket_exit(Z, y, C, seed=seed, input_affine=aff)
        oof = np.zeros((len(y), C), np.float32)
        for a, b in folds:
            w, bb, _ = fit_rocket_head(rf.features[a], y[a], C)
            oof[b] = rf.features[b] @ w.T + bb
        m = rf.module(Z.shape[1], C)
        with torch.inference_mode():
            out[f"oof{tag}"], out[f"l{tag}"] = oof, m(torch.from_numpy(Zte)[:, None]).numpy()
        out[f"macs_{tag}"] = np.array(m.macs)
    mr = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(X[:, None], y)
    out["minirocket_raw"] = np.array(np.mean(mr.predict(sp.X[te][:, None]) == yte))
    out["meta"] = np.array(json.dumps({"set": name, "seed": seed, "small": small, "n": len(y), "C": C,
                                       "preprocessing": clf.preprocessing_selection_["chosen"], "exit0": fit0.kind,
                                       "s": round(time.perf_counter() - t0, 1)}))
    np.savez(OUT / f"{name}_{seed}_{small}.npz", **out)


def summarise() -> str:
    from scai.inference.combination import fit_combination

    acc = lambda z, t: float(np.mean(np.asarray(z).argmax(-1) == t))  # noqa: E731
    lines, rows = [], []
    for f in sorted(glob.glob(str(OUT / "*.npz"))):
        d = np.load(f)
        meta = json.loads(str(d["meta"]))
        y, yte, folds = d["y"], d["yte"], d["folds"]
        o = np.stack([d["oof0"], d["oofu"]])
        comb = fit_combination(o, y)
        judged = np.empty(o.shape)
        for m in folds:
            judged[:, m] = fit_combination(o[:, ~m], y[~m]).apply(o[:, m])
        t = comb.apply(np.stack([d["l0"], d["lu"]]))
        r = {**meta, "n_test": len(yte), "oof_e0": acc(o[0], y), "oof_comb_in": acc(comb.apply(o)[1], y),
             "oof_comb_honest": acc(judged[1], y), "test_e0": acc(d["l0"], yte), "test_rocket_z": acc(d["lr"], yte),
             "test_rocket_u": acc(d["lu"], yte), "test_comb": acc(t[1], yte), "minirocket_raw": float(d["minirocket_raw"])}
        r["rule"] = r["test_comb"] if r["oof_comb_honest"] > r["oof_e0"] else r["test_e0"]
        r["rule_in_sample"] = r["test_comb"] if r["oof_comb_in"] > r["oof_e0"] else r["test_e0"]
        rows.append(r)
    lines += ["# The MiniRocket exit: out-of-fold choice vs test accuracy", "",
              "Protocol and command: the docstring of `benchmarks/rocket_exit.py` (one thread per run). "
              "`small` 0 = all train + val rows, 30 = a stratified subsample of about 30 (at least 3 per class). "
              "MiniRocket exit `z` = on the standardised spectra, `u` = on the spectra before standardisation "
              "(what `rocket=\"auto\"` fits). `comb` = exit 0 + the `u` exit, combined. `rule` = the estimator's "
              "choice (use the combination when its honestly judged out-of-fold accuracy beats exit 0's).", "",
              "| set | seed | small | n | n test | pre | OOF exit 0 | OOF comb (in-sample) | OOF comb (honest) | test exit 0 | test rocket z | test rocket u | test comb | test rule | MiniRocket raw |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["small"], r["set"], r["seed"])):
        lines.append(f"| {r['set']} | {r['seed']} | {r['small']} | {r['n']} | {r['n_test']} | {r['preprocessing']} | "
                     f"{r['oof_e0']:.3f} | {r['oof_comb_in']:.3f} | {r['oof_comb_honest']:.3f} | {r['test_e0']:.3f} | "
                     f"{r['test_rocket_z']:.3f} | {r['test_rocket_u']:.3f} | {r['test_comb']:.3f} | **{r['rule']:.3f}** | "
                     f"{r['minirocket_raw']:.3f} |")
    lines.append("")
    for small in sorted({r["small"] for r in rows}):
        rs = [r for r in rows if r["small"] == small]
        mean = lambda k: np.mean([r[k] for r in rs])  # noqa: E731
        lines.append(f"- small={small} ({len(rs)} runs): mean test accuracy exit 0 {mean('test_e0'):.4f}, "
                     f"rule {mean('rule'):.4f} (in-sample rule {mean('rule_in_sample'):.4f}), combination always "
                     f"{mean('test_comb'):.4f}, MiniRocket exit u alone {mean('test_rocket_u'):.4f}, z alone "
                     f"{mean('test_rocket_z'):.4f}, MiniRocket on raw spectra {mean('minirocket_raw'):.4f}; the rule "
                     f"took the MiniRocket exit in {sum(r['oof_comb_honest'] > r['oof_e0'] for r in rs)} runs")
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    text = "\n".join(lines) + "\n"
    (OUT / "report.md").write_text(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--small", type=int, default=0)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for seed in args.seeds:
            for name in args.datasets.split(","):
                if not (OUT / f"{name}_{seed}_{args.small}.npz").exists():
                    run_one(name, seed, args.small)
    print(summarise())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
