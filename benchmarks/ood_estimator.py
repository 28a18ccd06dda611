"""Leave-one-class-out through the estimator's own unknown-class detector (issue 17).

``benchmarks/ood.py`` fits its detectors beside a model trained on a validation split; this
script checks what a user gets: ``SCAIClassifier`` with cross-fitting (the default), so the
detector ``fit`` stores is the default one (relative Mahalanobis; anchored on exit 0 where the
network has an exit combination), calibrated on out-of-fold scores.

Protocol: the split of ``scai.bench.splits.split_indices(spectra, seed, 0.1, 0.1)``; training rows
= train + val without class k; in-distribution = the test rows of the other classes; unknown =
every spectrum of class k. ``SCAIClassifier(train_config={"max_epochs": 20, "threads": 1},
skip_exits=False, random_state=seed)`` (every exit kept, as in ``benchmarks/ood.py``). Per exit:
AUROC of ``est.reliability_.detector.score(exit_batch(est, X))``, the share of class k above the
stored threshold (detected) and the share of in-distribution test spectra above it (false
rejects; target 0.05).

Usage (one thread; ~2-4 min per held-out class on a 2-core machine)::

    OMP_NUM_THREADS=1 python benchmarks/ood_estimator.py --dataset milk_adulteration --seed 0 --classes 0 5

Appends one JSON line per held-out class to ``benchmarks/results/ood_estimator/records.jsonl``
(``anchor_weight``: the stored detector's; records without it were fitted with weight 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ood_estimator"
DATA_DIR = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT / "benchmarks"))
from ood import _load  # noqa: E402  (the dev sets read with their axis units, as benchmarks/ood.py reads them)


def run(name: str, seed: int, k: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from scai import SCAIClassifier
    from scai.bench.splits import split_indices
    from scai.inference.ood import exit_batch

    sp = _load(name, DATA_DIR)
    (tr, va, te), _ = split_indices(sp, seed, 0.1, 0.1)
    rows = np.sort(np.concatenate([tr, va]))
    rows, known_te, unknown = rows[sp.y[rows] != k], te[sp.y[te] != k], np.flatnonzero(sp.y == k)
    t0 = time.perf_counter()
    est = SCAIClassifier(train_config={"max_epochs": 20, "threads": 1}, skip_exits=False, verbose=False,
                         random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(sp.X[rows], sp.y[rows], axis=sp.axis, axis_unit=sp.axis_unit)
    det = est.reliability_.detector
    a, b = det.score(exit_batch(est, sp.X[known_te])), det.score(exit_batch(est, sp.X[unknown]))
    truth = np.r_[np.zeros(a.shape[1]), np.ones(b.shape[1])]
    return {"dataset": name, "seed": seed, "class": k, "score": det.score_name, "anchored": bool(det.anchored),
            "anchor_weight": float(det.anchor_weight) if det.anchored else None,
            "n_exits": int(a.shape[0]), "n_known_test": int(a.shape[1]), "n_unknown": int(b.shape[1]),
            "auroc": [round(float(roc_auc_score(truth, np.r_[x, y])), 4) for x, y in zip(a, b)],
            "detected": (b > det.thresholds_[:, None]).mean(axis=1).round(4).tolist(),
            "false_reject_test": (a > det.thresholds_[:, None]).mean(axis=1).round(4).tolist(),
            "fit_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="milk_adulteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    for k in args.classes:
        rec = run(args.dataset, args.seed, k)
        rec["command"] = "OMP_NUM_THREADS=1 python benchmarks/ood_estimator.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with (args.out / "records.jsonl").open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
