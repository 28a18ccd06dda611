"""Training wall time of SCAI+ vs a ResNet-1D of the same depth, side by side in one process.

    python benchmarks/train_speed.py [--epochs 3] [--threads 1]

Preprocesses the embedded milk_adulteration dataset once (default Raman pipeline), then trains
each network for ``--epochs`` epochs, interleaving the two networks round by round so that load
changes on a shared machine hit both alike. Reports the median seconds per epoch and the ratio
SCAI+ / ResNet-1D (issue target: <= 3). Writes ``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from scai import datasets
from scai.data import train_val_test_split
from scai.models import create_model
from scai.preprocessing import default_pipeline
from scai.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per network and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spectra = datasets.load("milk_adulteration")
    tr, va, _ = train_val_test_split(spectra, seed=0)
    pipe = default_pipeline("raman")
    Z_tr = pipe.fit_transform(spectra.X[tr], axis=spectra.axis).astype(np.float32)
    Z_va = pipe.transform(spectra.X[va]).astype(np.float32)
    y_tr, y_va = spectra.y[tr], spectra.y[va]
    depth = 16  # SCAI+ default: 4 blocks x 4 units
    names = {"scai_plus": {}, f"resnet1d (depth {depth})": {"depth": depth}}
    per_epoch: dict[str, list[float]] = {k: [] for k in names}
    macs: dict[str, int] = {}
    for _ in range(args.rounds):
        for label, cfg in names.items():
            net = create_model("scai_plus" if label == "scai_plus" else "resnet1d", Z_tr.shape[1], spectra.n_classes, **cfg)
            macs[label] = int(net.exit_macs()[-1])
            t0 = time.perf_counter()
            Trainer(TrainConfig(max_epochs=args.epochs, min_epochs=args.epochs, progress=False)).fit(net, Z_tr, y_tr, Z_va, y_va)
            per_epoch[label].append((time.perf_counter() - t0) / args.epochs)
    med = {k: float(np.median(v)) for k, v in per_epoch.items()}
    plus, resnet = med["scai_plus"], med[f"resnet1d (depth {depth})"]
    result = {
        "command": "python benchmarks/train_speed.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "data": f"milk_adulteration train split seed 0 ({len(tr)} spectra x {Z_tr.shape[1]} points), default Raman preprocessing",
        "seconds_per_epoch_median": med,
        "seconds_per_epoch_all": per_epoch,
        "full_path_macs": macs,
        "ratio_scai_plus_over_resnet": plus / resnet,
        "target_ratio_max": 3.0,
        "threads": args.threads,
        "load_average_end": list(os.getloadavg()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for k, v in med.items():
        print(f"{k:>22}: {v:6.2f} s/epoch  ({macs[k]:,} MACs full path)")
    print(f"ratio SCAI+ / ResNet-1D: {plus / resnet:.2f} (target <= 3); wrote {args.out}")


if __name__ == "__main__":
    main()
