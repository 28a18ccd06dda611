"""Throughput of ``scai.datasets.synthetic_liquor``: 1,000,000 spectra x 1024 points, streamed.

Run: ``python benchmarks/synthetic_speed.py [--n 1000000] [--points 1024] [--chunk 65536] [--jobs 2]``.
Writes ``benchmarks/results/synthetic_speed.json``. Not a test: timings depend on the machine
and on its load (recorded in the result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from scai.datasets import synthetic_liquor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synthetic_speed.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = 0
    checksum = 0.0
    for chunk in synthetic_liquor(args.n, args.classes, args.points, seed=0, chunk_size=args.chunk, n_jobs=args.jobs):
        rows += chunk.n_samples
        checksum += float(chunk.X[:, ::97].sum(dtype=np.float64))  # touch the data
    seconds = time.perf_counter() - start
    result = {
        "what": "synthetic_liquor streamed in chunks, generation only (float32)",
        "n_samples": rows,
        "n_points": args.points,
        "n_classes": args.classes,
        "chunk_size": args.chunk,
        "n_jobs": args.jobs,
        "seconds": round(seconds, 2),
        "spectra_per_second": round(rows / seconds),
        "checksum": checksum,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
