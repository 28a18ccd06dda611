"""Compare training recipes for one network on one dataset, with the benchmark's exact splits.

Each variant is a name plus model-config and train-config overrides; every variant is trained
on the same seeded 8:1:1 splits and preprocessing as ``scai bench`` (``prepare_split``), and the
per-exit test accuracy is written to ``<out>/<dataset>_<model>_<variant>.json`` (one file per
variant, so variants can run in parallel processes; finished seeds are skipped on a re-run). This is how the library's default training recipe was chosen; the
results and the protocol are in ``docs/benchmarks.md``.

    python benchmarks/tune_training.py --variant paper --seeds 0 1 2 --threads 1
    python benchmarks/tune_training.py --list
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from scai.bench import BenchConfig, MethodSpec, prepare_split, run_network
from scai.datasets import load

#: name -> (model_config overrides, train_config overrides); "paper" is the paper's recipe.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # the paper's recipe: GAP heads, constant lr, no averaging, no regularisation
    "paper": ({"head_bins": 1, "dropout": 0.0}, {"lr_schedule": "constant", "ema_decay": 0.0, "weight_decay": 0.0}),
    "bins8": ({"head_bins": 8, "dropout": 0.0}, {"lr_schedule": "constant", "ema_decay": 0.0, "weight_decay": 0.0}),
    "bins16": ({"head_bins": 16, "dropout": 0.0}, {"lr_schedule": "constant", "ema_decay": 0.0, "weight_decay": 0.0}),
    "bins8_cos_ema": ({"head_bins": 8, "dropout": 0.0}, {"lr_schedule": "cosine", "ema_decay": 0.99, "weight_decay": 0.0}),
    "bins16_cos_ema": ({"head_bins": 16, "dropout": 0.0}, {"lr_schedule": "cosine", "ema_decay": 0.99, "weight_decay": 0.0}),
    "bins16_wd_drop": ({"head_bins": 16, "dropout": 0.2}, {"lr_schedule": "cosine", "ema_decay": 0.99, "weight_decay": 1e-3}),
    "bins16_mix": (
        {"head_bins": 16, "dropout": 0.0},
        {"lr_schedule": "cosine", "ema_decay": 0.99, "weight_decay": 0.0, "augment": {"mix_same_class": 0.5, "noise_std": 0.02}},
    ),
    "default": ({}, {}),  # whatever the library's defaults are now (its input scaling included)
}

#: variants whose inputs are also z-scored per wavenumber (fitted on train) after the pipeline
STANDARDIZED: set[str] = set()
#: variants whose inputs are centred on the training mean spectrum and divided by one global spread
CENTRED: set[str] = set()
for _name in [v for v in VARIANTS if v != "default"]:
    VARIANTS[_name + "_std"] = VARIANTS[_name]
    STANDARDIZED.add(_name + "_std")
    VARIANTS[_name + "_center"] = VARIANTS[_name]
    CENTRED.add(_name + "_center")


def run(variant: str, dataset: str, seeds: list[int], model: str, epochs: int, patience: int, threads: int, out: Path) -> None:
    model_cfg, train_cfg = VARIANTS[variant]
    spectra = load(dataset)
    cfg = BenchConfig(epochs=epochs, patience=patience, threads=threads)
    out = out / f"{dataset}_{model}_{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _load(out)
    for seed in seeds:
        key = f"{dataset}/{model}/{variant}/{seed}"
        if key in done:
            print(f"{key}: already in {out}")
            continue
        data = prepare_split(spectra, seed, cfg)
        if variant in STANDARDIZED:
            mu, sd = data.Z["train"].mean(0), data.Z["train"].std(0) + 1e-6
            data.Z = {k: ((v - mu) / sd).astype(np.float32) for k, v in data.Z.items()}
        if variant in CENTRED:
            mu, sd = data.Z["train"].mean(0), data.Z["train"].std(0).mean()
            data.Z = {k: ((v - mu) / sd).astype(np.float32) for k, v in data.Z.items()}
        # the _std / _center variants scale their inputs above, so the estimator's own scaling
        # is off for every variant but "default"
        params = {} if variant == "default" else {"standardize": "none"}
        spec = MethodSpec(
            name=variant, family=model, model=model, model_config=model_cfg, train_config=train_cfg,
            estimator_params=params,
        )
        t0 = time.perf_counter()
        m = run_network(spec, data, cfg)
        row = {
            "dataset": dataset,
            "model": model,
            "variant": variant,
            "seed": seed,
            "exit_acc": [e["accuracy"] for e in m["exits"]],
            "exit_macs": [e["macs"] for e in m["exits"]],
            "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"],
            "wall_s": time.perf_counter() - t0,
            "val_acc": [e["val_acc"] for e in m["history"]],
            "model_config": m["model_config"],
            "train_config": m["train_config"],
        }
        done[key] = row
        out.write_text(json.dumps(done, indent=1))
        print(f"{key}: exits {' '.join(f'{a:.3f}' for a in row['exit_acc'])} best@{row['best_epoch']} ({row['wall_s']:.0f} s)", flush=True)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def summary(folder: Path) -> str:
    rows = [row for f in sorted(folder.glob("*.json")) for row in _load(f).values()]
    groups: dict[str, list[list[float]]] = {}
    for row in rows:
        groups.setdefault(f"{row['dataset']}/{row['model']}/{row['variant']}", []).append(row["exit_acc"])
    lines = ["| dataset/model/variant | seeds | first exit | last exit | all exits (mean) |", "|---|---|---|---|---|"]
    for name, accs in sorted(groups.items()):
        a = np.asarray(accs)
        lines.append(
            f"| {name} | {len(a)} | {a[:, 0].mean():.3f} ± {a[:, 0].std():.3f} | {a[:, -1].mean():.3f} ± {a[:, -1].std():.3f} | "
            + " ".join(f"{v:.3f}" for v in a.mean(0))
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], help="variant name (repeatable); see --list")
    p.add_argument("--dataset", default="milk_adulteration")
    p.add_argument("--model", default="scai_plus")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/tune_training"))
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--summary", action="store_true", help="print the table of results so far and exit")
    args = p.parse_args()
    if args.list:
        for name, (mc, tc) in VARIANTS.items():
            print(f"{name}: model {mc} train {tc}")
        return
    if args.summary:
        print(summary(args.out))
        return
    for variant in args.variant:
        if variant not in VARIANTS:
            p.error(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        run(variant, args.dataset, args.seeds, args.model, args.epochs, args.patience, args.threads, args.out)
    print(summary(args.out))


if __name__ == "__main__":
    main()
