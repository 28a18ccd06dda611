"""Does real early exit save wall-clock time? Predictor at a 25 % budget vs the full network.

One process, one network, the same spectra, batch 256; the two are timed alternately for
several repeats and the medians are compared. The budget is a fraction of the full-path MACs:
budgeted-batch thresholds are calibrated for it on validation data, then applied by the
:class:`scai.inference.Predictor`, which drops samples from the batch as they exit.

Where the network comes from (the output says which):

1. ``--model DIR``: a saved, trained model directory (``scai.load``).
2. otherwise, when ``scai.estimators`` exists: a quick SCAI model trained here on the embedded
   ``milk_adulteration`` spectra (1738 points; time-capped by ``--train-seconds``).
3. otherwise (or with ``--untrained``): an untrained SCAI network. Its confidences are
   meaningless, so the calibrated thresholds merely *route* the planned mix of exits (the
   geometric shares of the budgeted-batch solve); the timing is still real, the accuracy is not.

Usage::

    python benchmarks/early_exit_speed.py                 # quick-trained model
    python benchmarks/early_exit_speed.py --model runs/m1 # a trained model directory
    python benchmarks/early_exit_speed.py --untrained     # routed thresholds, no training

Writes ``benchmarks/results/early_exit_speed.json``. Not a timed test: the target
(ratio <= 0.4) is reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "early_exit_speed.json"
TARGET_RATIO = 0.4


def _embedded() -> dict[str, np.ndarray]:
    with np.load(files("scai.datasets") / "_data" / "milk_adulteration.npz") as d:
        return {k: d[k] for k in d.files}


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(test_fraction * len(idx))))
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(train), np.sort(test)


def _source_loaded(model_dir: str) -> dict[str, Any]:
    import scai

    clf = scai.load(model_dir)
    # Model directories written since cross-fitting store held-out logits, not spectra.
    if "X" not in clf.validation_:
        raise SystemExit(f"{model_dir}: the model stores no validation spectra; use --train-seconds to train one here")
    Z_val, y_val = clf.validation_["X"], clf.validation_["y"]
    return {
        "source": f"trained model loaded from {model_dir}",
        "network": clf.network_,
        "temperatures": np.asarray(clf.temperatures_, dtype=np.float64),
        "class_names": [str(c) for c in clf.classes_],
        "X_val": Z_val,
        "y_val": y_val,
        # no separate test split is stored: time on the validation spectra
        "X_test": Z_val,
        "y_test": y_val,
        "trained": True,
    }


def _validation_spectra(
    clf: Any, X_train: np.ndarray, y_train: np.ndarray, axis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed validation spectra of a single-split fit (the estimator's own seeded split)."""
    _, va = clf._split(clf._encode(np.asarray(y_train)))
    return clf.transform_input(X_train[va], axis), clf.validation_["y"]


def _source_quick_trained(train_seconds: float, seed: int) -> dict[str, Any]:
    from scai.estimators import SCAIClassifier

    d = _embedded()
    tr, te = _stratified_split(d["y"], 0.3, seed)
    t0 = time.perf_counter()
    clf = SCAIClassifier(
        model="scai",
        train_config={
            "max_epochs": 60,
            "min_epochs": 3,
            "patience": 10,
            "max_time_s": float(train_seconds),
            "progress": False,
        },
        random_state=seed,
        exit0="none",  # the network's own exits are what this benchmark times
        cross_fit=0,  # one validation split, whose spectra calibrate the thresholds below
    ).fit(d["X"][tr], d["y"][tr], axis=d["axis"])
    Z_val, y_val = _validation_spectra(clf, d["X"][tr], d["y"][tr], d["axis"])
    fit_s = time.perf_counter() - t0
    names = [str(c) for c in d["class_names"]] if "class_names" in d else None
    return {
        "source": (
            f"SCAI trained here on embedded milk_adulteration ({len(tr)} spectra incl. validation, "
            f"{len(clf.history_.epochs)} epochs, {fit_s:.0f} s, cap {train_seconds:.0f} s)"
        ),
        "network": clf.network_,
        "temperatures": np.asarray(clf.temperatures_, dtype=np.float64),
        "class_names": names,
        "X_val": Z_val,
        "y_val": y_val,
        "X_test": clf.transform_input(d["X"][te], d["axis"]),
        "y_test": np.searchsorted(clf.classes_, d["y"][te]),
        "trained": True,
    }


def _source_untrained(seed: int) -> dict[str, Any]:
    import torch

    from scai.models import create_model

    d = _embedded()
    X = d["X"].astype(np.float64)
    X = (X - X.mean(axis=1, keepdims=True)) / (X.std(axis=1, keepdims=True) + 1e-12)  # SNV
    torch.manual_seed(seed)
    net = create_model("scai", X.shape[1], int(d["y"].max()) + 1)
    tr, te = _stratified_split(d["y"], 0.5, seed)
    return {
        "source": (
            "UNTRAINED SCAI network: confidences are meaningless, the calibrated thresholds only "
            "route the planned exit mix; timings are real, accuracies are not"
        ),
        "network": net,
        "temperatures": None,
        "class_names": None,
        "X_val": X[tr].astype(np.float32),
        "y_val": d["y"][tr],
        "X_test": X[te].astype(np.float32),
        "y_test": d["y"][te],
        "trained": False,
    }


def _tile(X: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    reps = int(np.ceil(n / len(X)))
    return np.tile(X, (reps, 1))[:n].copy(), np.tile(y, reps)[:n].copy()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="saved model directory (trained); default: train a quick one")
    parser.add_argument("--untrained", action="store_true", help="skip training; route thresholds on an untrained net")
    parser.add_argument("--budget-fraction", type=float, default=0.25, help="mean budget as a fraction of full-path MACs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-spectra", type=int, default=1024, help="spectra per timed pass (test set tiled)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    parser.add_argument("--train-seconds", type=float, default=300.0, help="time cap of the quick training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from scai.inference import Predictor, calibrate_budgeted_batch, softmax

    default_threads = torch.get_num_threads()
    if args.model:
        src = _source_loaded(args.model)
    elif not args.untrained and _has_estimators():
        src = _source_quick_trained(args.train_seconds, args.seed)
    else:
        src = _source_untrained(args.seed)
    # timing threads are set after training, which may change them
    torch.set_num_threads(args.threads if args.threads is not None else default_threads)
    net = src["network"].eval()
    print(f"network: {src['source']}")

    pred = Predictor(net, temperatures=src["temperatures"], class_names=src["class_names"], sparse="auto")
    exit_macs = pred.exit_macs
    budget = args.budget_fraction * float(exit_macs[-1])
    val_logits, val_costs = pred.exit_outputs(src["X_val"], batch_size=args.batch_size)
    cal = calibrate_budgeted_batch(softmax(val_logits, pred.temperatures), val_costs, budget)
    X, y = _tile(src["X_test"], np.asarray(src["y_test"]), args.n_spectra)
    x_t = torch.from_numpy(X).unsqueeze(1)

    def run_full() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, len(X), args.batch_size):
                net(x_t[s : s + args.batch_size])
        return time.perf_counter() - t0

    def run_early() -> float:
        return pred.predict(X, policy="threshold", thresholds=cal.thresholds, batch_size=args.batch_size).wall_time_s

    run_full(), run_early()  # warm-up (allocator, oneDNN primitives)
    full_t, early_t = [], []
    for r in range(args.repeats):  # alternate the order so drift hits both alike
        if r % 2 == 0:
            full_t.append(run_full())
            early_t.append(run_early())
        else:
            early_t.append(run_early())
            full_t.append(run_full())
    out = pred.predict(X, policy="threshold", thresholds=cal.thresholds, batch_size=args.batch_size)
    full_out = pred.predict(X, policy="full", batch_size=args.batch_size)
    ratio = statistics.median(early_t) / statistics.median(full_t)
    # Shared machines drift: the per-repeat (paired) ratio and the best-of ratio are steadier.
    paired = statistics.median(e / f for e, f in zip(early_t, full_t))
    best = min(early_t) / min(full_t)
    notes = []
    if not src["trained"]:
        notes.append("untrained network: thresholds route the planned exit mix; accuracies not meaningful")
    else:
        chance = 1.0 / int(net.n_classes)
        if full_out.accuracy(y) < 2 * chance:
            notes.append(
                f"the network barely learned (full accuracy {full_out.accuracy(y):.2f}, chance {chance:.2f}): "
                "exits are routed by nearly meaningless confidences; the timing is still valid "
                "(raise --train-seconds or pass --model)"
            )
        gap = full_out.accuracy(y) - out.accuracy(y)
        if gap > 0.1:
            notes.append(
                f"early exits lag the full network by {gap:.2f} accuracy: the quick training is too short "
                "for the early exits; use --model with a fully trained model for the accuracy figure"
            )
    shares = np.bincount(out.exit, minlength=pred.n_exits) / len(X)

    result = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
        "network_source": src["source"],
        "trained": src["trained"],
        "model": getattr(net, "name", type(net).__name__),
        "in_length": int(net.in_length),
        "exit_macs": [int(m) for m in exit_macs],
        "stage_ms_per_spectrum": [round(float(v), 4) for v in pred.measure_stage_latency(args.batch_size, X=X)],
        "budget_fraction": args.budget_fraction,
        "budget_macs": budget,
        "thresholds": cal.to_dict()["thresholds"],
        "q": cal.to_dict()["q"],
        "planned_exit_shares": [round(float(s), 4) for s in cal.exit_shares],
        "val_expected_mean_macs": cal.expected_mean_cost,
        "test_exit_shares": [round(float(s), 4) for s in shares],
        "test_mean_macs": out.mean_macs,
        "test_mac_fraction": out.mean_macs / float(exit_macs[-1]),
        "accuracy_early_exit": out.accuracy(y) if src["trained"] else None,
        "accuracy_full": full_out.accuracy(y) if src["trained"] else None,
        "batch_size": args.batch_size,
        "n_spectra": len(X),
        "repeats": args.repeats,
        "full_wall_s": full_t,
        "early_exit_wall_s": early_t,
        "full_median_s": statistics.median(full_t),
        "early_exit_median_s": statistics.median(early_t),
        "ratio": ratio,
        "ratio_paired_median": paired,
        "ratio_best_of": best,
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio <= TARGET_RATIO),
        "notes": notes,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    print(
        f"budget {args.budget_fraction:.0%} of {int(exit_macs[-1]):,} MACs = {budget:,.0f}; "
        f"spent {out.mean_macs:,.0f} MACs/spectrum ({result['test_mac_fraction']:.1%}); exit shares {shares.round(3).tolist()}"
    )
    if src["trained"]:
        print(f"accuracy: early exit {result['accuracy_early_exit']:.3f}, full network {result['accuracy_full']:.3f}")
    print(
        f"wall time, {len(X)} spectra at batch {args.batch_size}, median of {args.repeats}: "
        f"full {result['full_median_s'] * 1e3:.1f} ms, early exit {result['early_exit_median_s'] * 1e3:.1f} ms, "
        f"ratio {ratio:.3f} (target <= {TARGET_RATIO}) on {torch.get_num_threads()} torch threads; "
        f"paired-median ratio {paired:.3f}, best-of ratio {best:.3f}"
    )
    for note in notes:
        print(f"NOTE: {note}")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"wrote {path}")
    return result


def _has_estimators() -> bool:
    try:
        import scai.estimators  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
