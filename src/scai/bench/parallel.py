"""Run the paper benchmark as parallel parts — one process per (dataset, seed) — and merge them.

``scai bench --jobs N`` splits the run into (dataset, seed) parts, runs up to ``N`` of them at once
as separate ``scai bench`` processes (each with its own ``--threads`` and its own results folder
under ``<out>/parts/``), then merges the parts with :func:`scai.bench.results.merge_results` into
``<out>/results.json``. Processes rather than threads: PyTorch and the BLAS libraries scale poorly
past a few threads on small networks, and a part that crashes takes only itself down. A part
folder is an ordinary results folder, so ``--resume`` continues a stopped part and the parts can
also be merged by hand (``scai bench --merge``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scai.bench.config import BenchConfig
from scai.bench.methods import default_methods, select_methods
from scai.bench.results import load_results, merge_results, save_results
from scai.errors import BenchSettingsError

__all__ = ["Part", "plan_parts", "part_command", "run_parallel"]


@dataclass(frozen=True)
class Part:
    """One (dataset, seed) part of a benchmark run and where it writes."""

    dataset: str
    seed: int
    out: Path

    @property
    def name(self) -> str:
        return f"{self.dataset}-s{self.seed}"

    @property
    def log(self) -> Path:
        return self.out / "log.txt"


def plan_parts(cfg: BenchConfig, datasets: Sequence[str]) -> list[Part]:
    """The (dataset, seed) parts of ``cfg``, each in ``<out>/parts/<dataset>-s<seed>``."""
    root = Path(cfg.out) / "parts"
    return [Part(ds, seed, root / f"{ds}-s{seed}") for ds in datasets for seed in cfg.seeds]


def part_command(cfg: BenchConfig, part: Part) -> list[str]:
    """The ``scai bench`` command line that runs ``part`` with the settings of ``cfg``."""
    argv = [
        sys.executable, "-m", "scai.cli.main", "bench",
        "--datasets", part.dataset,
        "--seeds", str(part.seed),
        "--epochs", str(cfg.epochs),
        "--patience", str(cfg.patience),
        "--depths", ",".join(str(d) for d in cfg.depths),
        "--preprocessing", cfg.preprocessing,
        "--threads", str(cfg.threads),
        "--out", str(part.out),
        "--no-report",  # the merged run writes the one report
    ]
    if cfg.methods:
        argv += ["--methods", ",".join(cfg.methods)]
    if cfg.data_dir:
        argv += ["--data-dir", str(cfg.data_dir)]
    if cfg.resume:
        argv.append("--resume")
    if cfg.quick:
        argv.append("--quick")
    return argv


def _run_part(cfg: BenchConfig, part: Part) -> tuple[Part, int, float]:
    part.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(cfg.threads)  # N parts x --threads threads in all, not N x every core
    t0 = time.perf_counter()
    with open(part.log, "w", encoding="utf-8") as log:
        rc = subprocess.run(part_command(cfg, part), stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    return part, rc, time.perf_counter() - t0


def run_parallel(
    cfg: BenchConfig, datasets: Sequence[str], jobs: int, log: Callable[[str], None] = print
) -> tuple[dict[str, Any] | None, list[str]]:
    """Run every (dataset, seed) part of ``cfg`` with at most ``jobs`` processes; merge what finished.

    Returns the merged results (also written to ``<out>/results.json``; ``None`` when no part
    finished) and one message per part that failed, naming its exit status and its log. A part
    resumed (``cfg.resume``) with other settings than it was run with fails, saying which.

    Raises
    ------
    ValueError
        ``jobs`` < 1; :class:`scai.errors.BenchSettingsError` for an unknown method.
    """
    if jobs < 1:
        raise BenchSettingsError(f"jobs={jobs!r} is not allowed; use jobs >= 1")
    select_methods(default_methods(cfg.depths, cfg.quick), cfg.methods)  # an unknown method fails here, not in every part
    parts = plan_parts(cfg, datasets)
    log(f"{len(parts)} parts ({len(datasets)} datasets x {len(cfg.seeds)} seeds), {jobs} at a time, "
        f"{cfg.threads} thread(s) each; logs in {Path(cfg.out) / 'parts'}/<dataset>-s<seed>/log.txt")
    failures: list[str] = []
    finished: list[Part] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_part, cfg, p) for p in parts]
        for i, future in enumerate(as_completed(futures), 1):
            part, rc, seconds = future.result()
            status = "done" if rc == 0 else f"FAILED (exit {rc})"
            log(f"[{i}/{len(parts)}] part {part.name} {status} in {seconds:.0f} s")
            if rc == 0:
                finished.append(part)
            else:
                failures.append(f"part {part.name} failed with exit status {rc}; see {part.log}")
    if not finished:
        return None, failures
    order = {p.name: i for i, p in enumerate(parts)}  # merge in plan order, whatever finished first
    finished.sort(key=lambda p: order[p.name])
    loaded = [load_results(p.out / "results.json") for p in finished]  # each part checked its settings on --resume
    merged = merge_results(loaded, [str(p.out / "results.json") for p in finished])
    merged["config"].update(out=str(cfg.out), threads=cfg.threads, jobs=jobs)
    save_results(merged, Path(cfg.out) / "results.json")
    return merged, failures
