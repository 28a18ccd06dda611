"""Ray workers' priority: Ray's default niceness (+15) against the driver's own (what scai's local Ray uses).

Runs ``predict_dataset`` on Ray local with 2 workers over the archive ``benchmarks/scale.py`` wrote
(policy batch, 25 % budget, batches of 1024), once per ``--order`` entry, each in a fresh process:
``0`` starts Ray with ``_system_config={"worker_niceness": 0}`` (as ``scai.distributed._ray.start_ray``),
``default`` with Ray's own setting. Alternating the two shows what the setting does on a quiet
machine; run it beside other work to see what it does under load. Timings start after
``ray.init``, as in ``benchmarks/scale.py``.

Usage (after ``python benchmarks/scale.py --work /tmp/scai-scale ...`` made the model and archive)::

    OMP_NUM_THREADS=1 python benchmarks/ray_priority.py --work /tmp/scai-scale --order 0 default 0 default

Appends one JSON line per run to ``benchmarks/results/scale/priority.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "scale" / "priority.jsonl"


def _child(work: Path, shards: int, nice: str) -> dict:
    import logging
    import shutil

    import ray
    import torch

    from scai.distributed import predict_dataset

    torch.set_num_threads(1)
    inputs = sorted(str(p) for p in (work / "archive").glob("part-*.parquet"))[:shards]
    out = work / "out-priority"
    shutil.rmtree(out, ignore_errors=True)
    extra = {} if nice == "default" else {"_system_config": {"worker_niceness": int(nice)}}
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, **extra)
    first: list[float] = []
    t0 = time.perf_counter()
    try:
        s = predict_dataset(str(work / "model"), inputs, out, policy="batch", budget="25%", batch_size=1024, threads=1,
                            piece_rows=16384, num_workers=2, on_batch=lambda e: first or first.append(time.perf_counter()))
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    return {"worker_niceness": nice, "rows": s.rows_predicted, "wall_s": round(wall, 2),
            "first_result_s": round(first[0] - t0, 2), "spectra_per_s": round(s.rows_predicted / wall),
            "load": [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/scai-scale"))
    p.add_argument("--shards", type=int, default=20, help="archive shards of 50,000 spectra (default: all 20, 1M)")
    p.add_argument("--order", nargs="+", default=["0", "default", "0", "default"])
    p.add_argument("--beside", default="nothing", help="what else ran on the machine (recorded with each run)")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), int(args.child[1]), args.child[2])))
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for nice in args.order:
        done = subprocess.run([sys.executable, __file__, "--child", str(args.work), str(args.shards), nice],
                              capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rec = json.loads(done.stdout.strip().splitlines()[-1])
        rec["beside"] = args.beside
        rec["command"] = "OMP_NUM_THREADS=1 python benchmarks/ray_priority.py " + " ".join(sys.argv[1:])
        with OUT.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
