"""``scai bench --data FILE``: the default model against the linear and MiniRocket anchors on your own data.

Per seed, one stratified split of FILE (train/val/test 8:1:1, grouped when the file has replicate
ids; a file's official train/test split when it has one) is shared by every method:

* **scai**: ``SCAIClassifier`` with its defaults (automatic preprocessing, the linear exit 0,
  cross-fitting), fitted on train + val, as ``scai train`` would;
* **PLS-DA**, **logistic regression** and **MiniRocket**: the benchmark's anchors
  (:mod:`scai.bench.classical`, same settings as ``scai bench``), on the benchmark's preprocessing
  for the axis unit (raman for cm-1, ftir otherwise), fitted on train + val too.

Accuracy is on the test part only. Prints one table and writes ``results.json`` (every run, with
its split sizes and seed) to ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from scai.cli._common import CliError, load_spectra, print_table

__all__ = ["ANCHORS", "run_on_data"]

#: The anchors compared (scai.bench.methods names) and how the table names them.
ANCHORS = {"pls_da": "PLS-DA", "logreg_snv": "logistic regression", "minirocket": "MiniRocket"}


def _scai_run(spectra: Any, idx: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int, args: Any) -> dict[str, Any]:
    from scai.estimators import SCAIClassifier

    tr, va, te = idx
    fit_rows = np.sort(np.concatenate([tr, va]))
    train: dict[str, Any] = {"progress": False}
    if args.epochs is not None:
        train["max_epochs"] = args.epochs
    if args.patience is not None:
        train["patience"] = args.patience
    est = SCAIClassifier(train_config=train, random_state=seed)
    t0 = time.perf_counter()
    est.fit(spectra.X[fit_rows], spectra.labels[fit_rows], axis=spectra.axis, axis_unit=spectra.axis_unit)
    fit_s = time.perf_counter() - t0
    probs, costs = est.exit_outputs(spectra.X[te], spectra.axis)
    y_te = est._encode(np.asarray(spectra.labels[te]), "y")
    return {
        "accuracy": float(np.mean(probs[-1].argmax(1) == y_te)),
        "macs": int(est.exit_macs_[-1]),
        "mean_macs": float(np.mean(costs[:, -1])),
        "exit0_accuracy": float(np.mean(probs[0].argmax(1) == y_te)),
        "train_time_s": fit_s,
        "preprocessing": (est.preprocessing_selection_ or {}).get("chosen", str(est.preprocessing)),
    }


def _anchor_run(method: str, spectra: Any, seed: int, cfg: Any) -> dict[str, Any]:
    from scai.bench.classical import run_classical
    from scai.bench.methods import MethodSpec
    from scai.bench.splits import prepare_split

    data = prepare_split(spectra, seed, cfg)
    both = np.concatenate([data.Z["train"], data.Z["val"]])
    data = replace(data, Z={**data.Z, "train": both}, y={**data.y, "train": np.concatenate([data.y["train"], data.y["val"]])})
    run = run_classical(MethodSpec(method, method), data, cfg)
    return {"accuracy": run["accuracy"], "macs": run["exits"][0]["macs"], "mean_macs": run["exits"][0]["mean_macs"],
            "train_time_s": run["train_time_s"], "preprocessing": data.preprocessing[0]}


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def run_on_data(args: Any) -> int:
    """Run the comparison on ``args.data`` and write ``<out>/results.json``; returns the exit status."""
    from scai.bench import BenchConfig
    from scai.bench.splits import split_indices
    from scai.cli._common import column_options

    spectra = load_spectra(args.data, args.label_column, args.data_dir, **column_options(args))
    if spectra.y is None:
        raise CliError(f"{spectra.source}: no labels found; pass --label-column")
    seeds = tuple(args.seeds or (0,))
    threads = args.threads or 1
    cfg = BenchConfig(seeds=seeds, threads=threads, preprocessing=args.preprocessing or "auto")
    out = Path(args.out or f"bench-{Path(str(spectra.source)).stem}")
    wanted = ["scai", *ANCHORS]
    try:
        import aeon  # noqa: F401  (MiniRocket's implementation)
    except ModuleNotFoundError:
        wanted.remove("minirocket")
        print("scai bench: MiniRocket skipped: it needs aeon (pip install 'scai[bench]')", file=sys.stderr)
    print(f"data: {spectra.source}: {spectra.n_samples} spectra x {spectra.n_points} points, {spectra.n_classes} classes; "
          f"seeds {', '.join(map(str, seeds))}")
    runs: dict[str, dict[str, Any]] = {m: {} for m in wanted}
    splits: dict[str, Any] = {}
    for seed in seeds:
        idx, protocol = split_indices(spectra, seed, cfg.val_fraction, cfg.test_fraction)
        splits[str(seed)] = {"protocol": protocol, "n_train": len(idx[0]), "n_val": len(idx[1]), "n_test": len(idx[2])}
        print(f"seed {seed}: {protocol}: {len(idx[0])} train + {len(idx[1])} val (both fit every method) / {len(idx[2])} test")
        for method in wanted:
            t0 = time.perf_counter()
            run = _scai_run(spectra, idx, seed, args) if method == "scai" else _anchor_run(method, spectra, seed, cfg)
            runs[method][str(seed)] = run
            print(f"  {method}: accuracy {run['accuracy']:.4f} ({time.perf_counter() - t0:.1f} s)")
    rows = []
    for method, by_seed in runs.items():
        acc = [r["accuracy"] for r in by_seed.values()]
        macs = [r["macs"] for r in by_seed.values() if r["macs"] is not None]
        rows.append([ANCHORS.get(method, "scai (default model)"), _mean_sd(acc), f"{np.mean(macs):,.0f}" if macs else "-",
                     f"{np.mean([r['train_time_s'] for r in by_seed.values()]):.1f}"])
    print(f"\ntest accuracy over {len(seeds)} seed(s) (mean ± sd); MACs = multiply-accumulates per spectrum, "
          "preprocessing excluded (the anchors' are a rough analytical count)")
    print_table(rows, ["method", "test accuracy", "MACs (full)", "fit s"])
    out.mkdir(parents=True, exist_ok=True)
    results = {"data": str(spectra.source), "n_samples": spectra.n_samples, "class_names": list(spectra.class_names),
               "seeds": list(seeds), "splits": splits, "threads": threads, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwrote {out / 'results.json'}")
    return 0
