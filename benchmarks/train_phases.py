"""Where the default fit spends its time: wall seconds per phase of ``SCAIClassifier().fit``.

Run from the repository root (on a quiet machine: it times)::

    python benchmarks/train_phases.py                       # milk_adulteration, all 500 spectra
    python benchmarks/train_phases.py --dataset ucr_strawberry --epochs 3

Fits the default ``SCAIClassifier()`` (what ``scai train DATA`` fits) on every spectrum of a dev
set and times its phases by wrapping the estimator's methods: the preprocessing choice
(``_auto_pipeline``, five candidate pipelines, each with exit 0's inner CV), every exit-0 fit
(``_fit_exit0``: the five candidates and the K nested out-of-fold fits), the MiniRocket exit, the
network folds (``run_folds``), the final model's pass over the held-out spectra (``_detailed``),
and the unknown-class / domain / conformal calibration (``_fit_reliability``). ``--epochs`` caps
the network's epochs (default: the estimator's own cap, i.e. the training budget), to look at the
rest alone. Writes ``benchmarks/results/train_phases-<dataset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PHASES = ("_auto_pipeline", "_fit_exit0", "_fit_rocket", "_fit_cross", "_detailed", "_fit_reliability", "_refit")


def _wrap(owner: Any, name: str, times: dict[str, list[float]]) -> None:
    """Replace ``owner.name`` by a wrapper that appends each call's wall seconds to ``times[name]``."""
    fn = getattr(owner, name)
    times[name] = []

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name].append(time.perf_counter() - t0)

    setattr(owner, name, wrapper)


def timed_phases(est_cls: Any, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Time ``est_cls``'s methods ``names`` and the estimator module's fold runners; {name: seconds per call}."""
    import scai.estimators as E

    times: dict[str, list[float]] = {}
    for name in names:
        _wrap(est_cls, name, times)
    for name in ("run_folds", "start_folds"):
        _wrap(E, name, times)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="milk_adulteration")
    ap.add_argument("--epochs", type=int, default=None, help="cap the network's epochs (default: the estimator's own)")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from scai import SCAIClassifier
    from scai.data import read

    times = timed_phases(SCAIClassifier, PHASES)
    spectra = read(args.data_dir / f"{args.dataset}.npz")
    labels = np.asarray(spectra.class_names)[spectra.y]
    est = SCAIClassifier(train_config=None if args.epochs is None else {"max_epochs": args.epochs})
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    est.fit(spectra.X, labels, axis=spectra.axis, axis_unit=spectra.axis_unit)
    total = time.perf_counter() - t0
    rows = [{"phase": k, "calls": len(v), "seconds": round(sum(v), 2)} for k, v in times.items() if v]
    meta = {"dataset": args.dataset, "n": int(spectra.X.shape[0]), "points": int(spectra.X.shape[1]),
            "epochs_arg": args.epochs, "fit_s": round(total, 1), "epoch_cap": est.epoch_cap_,
            "network": (est.cross_fit_ or {}).get("network"), "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"train_phases-{args.dataset}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "phases": rows}, indent=1))
    cmd = f"python benchmarks/train_phases.py --dataset {args.dataset}" + (f" --epochs {args.epochs}" if args.epochs else "")
    lines = [f"# Phases of the default fit: {args.dataset}", "",
             f"`{cmd}`: `SCAIClassifier()` on all {meta['n']} spectra x {meta['points']} points; whole fit "
             f"{meta['fit_s']} s; epoch cap {meta['epoch_cap']}; network: {meta['network']}; 1-min load at start/end "
             f"{meta['load_average']}. Phases nest (`_fit_cross` holds the nested `_fit_exit0` calls, the MiniRocket "
             "exit and `run_folds`), so the column does not add up to the total.", "",
             "| phase | calls | seconds |", "|---|---:|---:|"]
    lines += [f"| `{r['phase']}` | {r['calls']} | {r['seconds']:.1f} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
