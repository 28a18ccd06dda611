"""Archive-scale benchmark: one process vs Ray Data with 2 workers on the same Parquet shards.

Run in parts, each a few minutes on 2 cores (5 GB of scratch disk for the archive)::

    python benchmarks/scale.py --work /tmp/scai-scale --parts side    # 500k: one process vs Ray, end to end
    python benchmarks/scale.py --work /tmp/scai-scale --parts side --side 1000000 --rounds 3   # alternating pairs
    python benchmarks/scale.py --work /tmp/scai-scale --parts faults  # killed worker, stopped driver + resume
    python benchmarks/scale.py --work /tmp/scai-scale --parts large   # Ray on 100k and on 1M (memory, wall time)

Writes ``benchmarks/results/scale/results.json`` and ``report.md``; a part's results replace
that part's earlier ones, the other parts' are kept. Needs the ``distributed`` extra
(``pip install 'scai[distributed]'``). Every prediction run is a child process of its own, so its
peak RSS is its own; the machine's load (``/proc/loadavg``) is recorded next to each figure, and
each process's CPU seconds by kind (driver, actors, read tasks, raylet, GCS).

What it does
------------
1. Trains a small SCAI+ (exit 0 + 3 network exits, 15 epochs, ``cross_fit=0``, one thread) on
   400 ``synthetic_liquor`` spectra (10 brands, 1024 points, SNV), and checks the budget binds:
   the network costs ~20x exit 0, and the 25 % budgeted batch sends part of the spectra into it.
   A model already in ``--work`` is reused.
2. Writes a sharded Parquet archive of ``--large`` spectra (shards of 50,000) with
   ``python -m scai.distributed.write_archive`` (its peak RSS shows the writer's memory is
   bounded), or reuses it; the first shards are the smaller sets.
3. ``side``: on ``--side`` spectra, policy ``batch`` at 25 %: ``engine="inline"`` (one process, one
   thread) and Ray local with 2 workers (one thread each), back to back: spectra/s end to end and
   from the first result on, peak memory per worker, mean MACs against the budget and per batch,
   row counts and ids (nothing lost, nothing doubled).
4. ``faults``: Ray with 2 workers on ``--small`` spectra while one worker is killed (SIGKILL) at
   ~30 % of the rows; then a run whose driver stops at ~50 % and a rerun that resumes it: rows and
   ids exactly once.
5. ``large``: Ray with 2 workers on ``--small`` spectra and on the whole ``--large`` archive: wall
   time, rows, ids, peak private memory per worker (it must not grow with the archive).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "scale"
SHARD = 50_000
N_POINTS = 1024
N_CLASSES = 10
SEED = 7
PIECE_ROWS = 16384  # one row group per piece: output shards of 16,384 rows, so a stopped run leaves some done
BUDGET = "25%"
# Rows per Ray batch = per budgeted batch, for both engines. At 256 (scai predict's default) Ray's
# per-batch costs in the actor (dispatch, block/batch conversion, stats) were measured at about
# 25 ms per batch, as much as predicting the batch; at 1024 they are a quarter per spectrum.
BATCH = 1024


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# --------------------------------------------------------------------------- child: one run


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One predict_dataset run in this (fresh) process; what it measured, as JSON."""
    import torch

    from scai.distributed import predict_dataset

    torch.set_num_threads(1)
    events: list[tuple[float, int]] = []
    killed: list[int] = []
    first_cpu: list[float] = []
    trace: list[tuple[int, int, float]] = []
    t0 = time.perf_counter()  # reset below, once Ray runs

    class Stop(Exception):
        pass

    def on_batch(e: Any) -> None:
        if not events:  # CPU spent until the first result: start-up; after it: the cost per spectrum
            first_cpu.append(_tree_cpu_s())
        events.append((time.perf_counter() - t0, e.rows_done))
        if spec.get("trace") and e.rows_done >= len(trace) * spec["trace"]:  # private memory every `trace` rows
            trace.append((e.rows_done, e.pid, round(e.private_kib / 1024, 1)))
        total = e.rows_total or 1
        if spec.get("kill_at") and not killed and e.rows_done >= spec["kill_at"] * total:
            killed.append(e.pid)
            os.kill(e.pid, signal.SIGKILL)
        if spec.get("stop_at") and e.rows_done >= spec["stop_at"] * total:
            raise Stop

    kw = {k: spec[k] for k in ("engine", "num_workers") if spec.get(k) is not None}
    out: dict[str, Any] = {"spec": spec, "load_before": _loadavg()}
    if spec["engine"] == "ray":  # started here (as predict_dataset would) so its processes can be counted
        from scai.distributed._ray import start_ray

        start_ray(None, spec["num_workers"])  # as predict_dataset starts a local Ray
    cpu0 = _tree_cpu_s()
    t0 = time.perf_counter()
    try:
        s = predict_dataset(spec["model"], spec["inputs"], spec["out"], policy="batch", budget=BUDGET, batch_size=BATCH,
                            threads=1, piece_rows=PIECE_ROWS, on_batch=on_batch, **kw)
    except Stop:
        out.update(stopped=True, rows_done=events[-1][1] if events else 0, wall_s=time.perf_counter() - t0)
        out["shards_on_disk"] = len(list(Path(spec["out"]).glob("*.parquet")))
        return out
    finally:
        cpu_kinds = _tree_cpu(by_kind=True)  # before the shutdown ends Ray's processes
        cpu_at_end = sum(cpu_kinds.values())
        if spec["engine"] == "ray":
            import ray

            ray.shutdown()
    wall = time.perf_counter() - t0
    cpu = cpu_at_end - cpu0
    first_t, first_rows = events[0] if events else (wall, 0)
    steady = (s.rows_predicted - first_rows) / max(wall - first_t, 1e-9)
    out.update(
        stopped=False, rows=s.rows, rows_predicted=s.rows_predicted, shards=s.shards, shards_skipped=s.shards_skipped,
        duplicates_dropped=s.duplicates_dropped, wall_s=wall, first_result_s=first_t,
        spectra_per_s=s.rows_predicted / wall, steady_spectra_per_s=steady, mean_macs=s.mean_macs,
        budget_macs=s.budget_macs, workers=s.workers, killed_pid=killed[0] if killed else None,
        worker_peak_rss_mib={str(k): round(v / 1024, 1) for k, v in s.worker_peak_rss_kib.items()},
        worker_peak_private_mib={str(k): round(v / 1024, 1) for k, v in s.worker_peak_private_kib.items()},
        driver_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        load_after=_loadavg(), cpu_s_all_processes=cpu, cpu_ms_per_spectrum=1e3 * cpu / max(s.rows_predicted, 1),
        cpu_s_to_first_result=first_cpu[0] - cpu0 if first_cpu else None, private_memory_trace=trace,
        cpu_s_by_process=cpu_kinds,
        cpu_ms_per_spectrum_after_first=(1e3 * (cpu_at_end - first_cpu[0]) / max(s.rows_predicted - first_rows, 1)
                                         if first_cpu else None),
    )
    return out


def _process_kind(cmdline: str) -> str:
    """What a descendant of the driver is, from its command line (Ray names its workers ``ray::...``)."""
    if "MapWorker" in cmdline:
        return "actors"
    if cmdline.startswith("ray::"):
        return "read tasks and idle workers"
    for key in ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env"):
        if key in cmdline:
            return key
    return "other"


def _tree_cpu(by_kind: bool = False) -> Any:
    """CPU seconds (user + system) of this process and every living descendant (Ray's raylet,
    GCS, workers and actors), from /proc: what the run cost whatever else the machine ran.
    ``by_kind``: a dict of seconds per kind of process (:func:`_process_kind`; ``driver`` is this one)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    kinds: dict[str, float] = {"driver": self_usage.ru_utime + self_usage.ru_stime}
    for pid, seconds in cpu.items():
        p = pid
        while p not in (0, 1, me) and p in parent:
            p = parent[p]
        if p == me and pid != me:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
            except OSError:
                cmdline = ""
            kind = _process_kind(cmdline)
            kinds[kind] = kinds.get(kind, 0.0) + seconds
    return {k: round(v, 2) for k, v in kinds.items()} if by_kind else sum(kinds.values())


def _tree_cpu_s() -> float:
    return float(_tree_cpu())


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- checks


def _check_outputs(out_dir: Path, n: int, width: int) -> dict[str, Any]:
    """Rows and ids of every output shard against the archive's ids s0..s(n-1): lost, doubled?"""
    import pyarrow.parquet as pq

    table = pq.read_table(out_dir, columns=["id", "macs", "batch", "exit"])
    ids = np.asarray(table.column("id").to_pylist())
    expected = np.asarray([f"s{i:0{width}d}" for i in range(n)])
    unique = np.unique(ids)
    macs = table.column("macs").to_numpy()
    batches = table.column("batch").to_numpy(zero_copy_only=False)
    order = np.argsort(batches, kind="stable")
    _, starts = np.unique(batches[order], return_index=True)
    per_batch = np.add.reduceat(macs[order].astype(np.float64), starts) / np.diff(np.append(starts, len(order)))
    exits = table.column("exit").to_numpy()
    return {"rows": int(ids.size), "unique_ids": int(unique.size), "ids_equal_archive": bool(np.array_equal(unique, expected)),
            "doubled": int(ids.size - unique.size), "lost": int(np.setdiff1d(expected, unique).size),
            "batches": int(per_batch.size), "max_batch_mean_macs": float(per_batch.max()),
            "mean_macs": float(macs.mean()), "exit_shares": (np.bincount(exits, minlength=4) / exits.size).round(4).tolist()}


# --------------------------------------------------------------------------- main

LARGE_N = 1_000_000


def _train(model_dir: Path) -> dict[str, Any]:
    import torch

    from scai import SCAIClassifier
    from scai.datasets import synthetic_liquor

    torch.manual_seed(0)
    torch.set_num_threads(1)
    # One draw of the archive's brands (the brands depend on the seed): 400 spectra to train on,
    # the next 4096 to check the model on. The archive's first rows are these same spectra.
    everything = synthetic_liquor(400 + 4096, n_classes=N_CLASSES, n_points=N_POINTS, seed=SEED)
    s, test = everything.subset(np.arange(400)), everything.subset(np.arange(400, 4496))
    t = time.perf_counter()
    est = SCAIClassifier(model="scai_plus", model_config={"channels": (4, 6, 8), "units_per_block": 2, "stem_stride": 4},
                         train_config={"max_epochs": 15}, cross_fit=0, skip_exits=False, preprocessing="snv",
                         val_fraction=0.25, n_jobs=1)
    est.fit(s.X, np.asarray(s.class_names)[s.y], axis=s.axis)
    fit_s = time.perf_counter() - t
    est.save(model_dir)
    res = {}
    for name, kw in (("full", {"policy": "full"}), ("batch_25", {"policy": "batch", "budget": BUDGET})):
        r = est.predict_detailed(test.X, axis=test.axis, **kw)
        res[name] = {"mean_macs": r.mean_macs, "accuracy": float(np.mean(r.class_index == test.y)),
                     "exit_shares": (np.bincount(r.exit, minlength=4) / r.exit.size).round(4).tolist()}
    return {"fit_s": round(fit_s, 1), "exit_macs": [int(v) for v in est.exit_macs_], "held_out_4096": res,
            "note": "accuracy on the 4096 spectra after the 400 training spectra of the same draw (same brands)"}


def _write_archive(archive: Path, n: int) -> dict[str, Any]:
    done = sorted(archive.glob("part-*.parquet"))
    if len(done) >= -(-n // SHARD):  # a larger archive of the same seed starts with the same spectra
        return {"reused": True, "shards": len(done)}
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "scai.distributed.write_archive", str(archive), str(n), "--shard-size", str(SHARD),
                    "--classes", str(N_CLASSES), "--points", str(N_POINTS), "--seed", str(SEED), "--overwrite"], check=True)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"reused": False, "shards": -(-n // SHARD), "wall_s": round(time.perf_counter() - t, 1),
            "writer_peak_rss_mib": round(max(rss, before) / 1024, 1), "load_after": _loadavg(),
            "bytes": sum(p.stat().st_size for p in archive.glob("part-*.parquet"))}


PARTS = ("side", "faults", "large")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/scai-scale", help="scratch folder (archive, model, outputs)")
    p.add_argument("--side", type=int, default=500_000,
                   help="spectra of the side-by-side runs, end to end (a multiple of 50000)")
    p.add_argument("--rounds", type=int, default=1,
                   help="side: rounds of the pair, alternating which runs first; the speed-up of the median wall "
                        "times is reported beside every round's (the table details the first round)")
    p.add_argument("--small", type=int, default=100_000,
                   help="spectra of the fault runs and of the Ray run the large one's memory is compared with")
    p.add_argument("--large", type=int, default=LARGE_N, help="spectra of the archive and the end-to-end run")
    p.add_argument("--parts", default=",".join(PARTS),
                   help="comma-separated parts to run: side (one process vs Ray), faults (killed worker, resume), "
                        "large (Ray on --small and on --large spectra); the others' results are kept from results.json")
    p.add_argument("--results", default=str(RESULTS), help="folder of results.json and report.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    out_dir = Path(args.results)
    parts = [x for x in args.parts.split(",") if x]
    if not parts or set(parts) - set(PARTS):
        p.error(f"--parts takes a comma-separated subset of {', '.join(PARTS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n_archive = max(args.large, args.side, args.small)
    previous = json.loads((out_dir / "results.json").read_text()) if (out_dir / "results.json").is_file() else {}
    # the other parts' results of earlier runs of this layout (each part records its own command and load)
    results: dict[str, Any] = {k: v for k, v in previous.items()
                               if k in PARTS_KEYS.values() and isinstance(v, dict) and "run" in v}
    import ray

    run_info: dict[str, Any] = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "ray": ray.__version__},
        "settings": {"policy": "batch", "budget": BUDGET, "batch_size": BATCH, "shard_size": SHARD, "piece_rows": PIECE_ROWS,
                     "threads_per_worker": 1},
        "load_start": _loadavg()}
    model = work / "model"
    if (model / "config.json").is_file():
        print("reusing the model ...", file=sys.stderr)
        run_info["model"] = json.loads((work / "model.json").read_text())
    else:
        print("training the model ...", file=sys.stderr)
        run_info["model"] = _train(model)
        (work / "model.json").write_text(json.dumps(run_info["model"]))
    archive = work / "archive"
    print(f"writing the archive of {n_archive} spectra ...", file=sys.stderr)
    run_info["archive"] = {"n": n_archive, **_write_archive(archive, n_archive)}
    shards = sorted(str(s) for s in archive.glob("part-*.parquet"))
    width = len(str(max(n_archive, len(shards) * SHARD) - 1))  # the ids' width is the whole archive's

    def run(name: str, n: int, **spec: Any) -> dict[str, Any]:
        out = work / f"out-{name}"
        if not spec.pop("keep", False):
            shutil.rmtree(out, ignore_errors=True)
        print(f"run {name} ...", file=sys.stderr)
        r = _run_child({"model": str(model), "inputs": shards[: -(-n // SHARD)], "out": str(out), **spec})
        if not r.get("stopped"):
            r["check"] = _check_outputs(out, n, width)
        print(json.dumps({k: r.get(k) for k in ("wall_s", "spectra_per_s", "steady_spectra_per_s", "rows")}), file=sys.stderr)
        return r

    if "side" in parts:
        rounds = []
        for i in range(args.rounds):  # alternating order (inline first, then Ray first, ...): drift hits both
            order = ("inline", "ray") if i % 2 == 0 else ("ray", "inline")
            pair = {name: run(name, args.side, engine=name, **({"num_workers": 2} if name == "ray" else {}))
                    for name in order}
            rounds.append({"order": list(order), "single_process": pair["inline"], "ray_2_workers": pair["ray"]})
        side = {"n": args.side, "single_process": rounds[0]["single_process"],
                "ray_2_workers": rounds[0]["ray_2_workers"]}
        if len(rounds) > 1:
            walls = {k: [r[k]["wall_s"] for r in rounds] for k in ("single_process", "ray_2_workers")}
            side["rounds"] = [{"order": r["order"], "inline_wall_s": r["single_process"]["wall_s"],
                               "ray_wall_s": r["ray_2_workers"]["wall_s"],
                               "ray_first_result_s": r["ray_2_workers"]["first_result_s"],
                               "speedup_end_to_end": r["single_process"]["wall_s"] / r["ray_2_workers"]["wall_s"],
                               "lost": r["ray_2_workers"]["check"]["lost"] + r["single_process"]["check"]["lost"],
                               "doubled": r["ray_2_workers"]["check"]["doubled"] + r["single_process"]["check"]["doubled"]}
                              for r in rounds]
            side["median_wall_s"] = {k: float(np.median(v)) for k, v in walls.items()}
            side["speedup_end_to_end_median_walls"] = side["median_wall_s"]["single_process"] / side["median_wall_s"]["ray_2_workers"]
        one, two = side["single_process"], side["ray_2_workers"]
        side["speedup_end_to_end"] = two["spectra_per_s"] / one["spectra_per_s"]
        side["speedup_steady"] = two["steady_spectra_per_s"] / one["steady_spectra_per_s"]
        # What 2 dedicated cores would give if the CPU work of all of Ray's processes overlapped perfectly.
        side["speedup_2_idle_cores_from_cpu_time"] = (2 * one["cpu_ms_per_spectrum_after_first"]
                                                      / two["cpu_ms_per_spectrum_after_first"])
        results["side_by_side"] = {**side, "run": run_info}
    if "faults" in parts:
        faults = {"killed_worker": run("kill", args.small, engine="ray", num_workers=2, kill_at=0.3)}
        faults["driver_stopped"] = run("resume", args.small, engine="ray", num_workers=2, stop_at=0.5)
        faults["resumed"] = run("resume", args.small, engine="ray", num_workers=2, keep=True)
        results["faults"] = {**faults, "n": args.small, "run": run_info}
    if "large" in parts:
        results["large"] = {"n": args.large, "small_n": args.small, "run": run_info,
                            "small": run("ray-small", args.small, engine="ray", num_workers=2,
                                         trace=max(args.small // 20, 1)),
                            "large": run("large", args.large, engine="ray", num_workers=2,
                                         trace=max(args.large // 20, 1))}
    run_info["load_end"] = _loadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "report.md").write_text(_report(results))
    print(f"wrote {out_dir / 'results.json'} and report.md", file=sys.stderr)
    return 0


#: results.json keys of the parts
PARTS_KEYS = {"side": "side_by_side", "faults": "faults", "large": "large"}


def _rss(r: dict[str, Any]) -> str:
    """Peak private memory (RssAnon) / peak RSS per worker, MiB."""
    private, rss = r["worker_peak_private_mib"], r["worker_peak_rss_mib"]
    return ", ".join(f"{private[k]:.0f} / {rss[k]:.0f}" for k in rss)


def _cpu(r: dict[str, Any]) -> str:
    kinds = r.get("cpu_s_by_process") or {}
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


def _header(info: dict[str, Any]) -> list[str]:
    m = info["model"]
    return [
        (f"`{info['command']}` on {info['machine']['cpus']} CPUs ({info['machine']['platform']}, Ray "
         f"{info['machine']['ray']}); load average (1, 5, 15 min) {info['load_start']} at the start, "
         f"{info.get('load_end')} at the end."),
        "",
        (f"Model: SCAI+ (exit 0 + 3 network exits), exit MACs {m['exit_macs']}, trained in {m['fit_s']} s. On 4096 "
         f"held-out spectra: full network {m['held_out_4096']['full']['mean_macs']:,.0f} MACs, accuracy "
         f"{m['held_out_4096']['full']['accuracy']:.3f}; budgeted batch at {BUDGET} "
         f"{m['held_out_4096']['batch_25']['mean_macs']:,.0f} MACs, accuracy "
         f"{m['held_out_4096']['batch_25']['accuracy']:.3f}, exit shares {m['held_out_4096']['batch_25']['exit_shares']}."),
        "",
    ]


def _report(res: dict[str, Any]) -> str:
    lines = ["# Archive scale: one process vs Ray Data (2 workers)", "",
             "Run each part alone on the machine (nothing else heavy; the load average is recorded beside every "
             "figure); every prediction run is a child process of its own.", ""]
    if "side_by_side" in res:
        lines += _side(res["side_by_side"])
    if "faults" in res:
        lines += _faults(res["faults"])
    if "large" in res:
        lines += _large(res["large"])
    return "\n".join(lines) + "\n"


def _side(side: dict[str, Any]) -> list[str]:
    one, two = side["single_process"], side["ray_2_workers"]
    lines = [f"## Side by side: {side['n']:,} spectra end to end (policy batch, {BUDGET} budget, batches of {BATCH})", "",
             *_header(side["run"]),
             ("| run | spectra | wall s | spectra/s (end to end) | spectra/s (from first result) | first result s | "
              "peak private / peak RSS per worker MiB | CPU s to the first result + ms per spectrum after it (all processes) | "
              "mean MACs | budget MACs | max batch mean MACs | lost | doubled | load before -> after |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in (("one process (inline, 1 thread)", one), ("Ray local, 2 workers", two)):
        c = r["check"]
        lines.append(f"| {name} | {c['rows']:,} | {r['wall_s']:.1f} | {r['spectra_per_s']:,.0f} | {r['steady_spectra_per_s']:,.0f} | "
                     f"{r['first_result_s']:.1f} | {_rss(r)} | {r['cpu_s_to_first_result']:.1f} + "
                     f"{r['cpu_ms_per_spectrum_after_first']:.3f} | {r['mean_macs']:,.0f} | {r['budget_macs']:,.0f} | "
                     f"{c['max_batch_mean_macs']:,.0f} | {c['lost']} | {c['doubled']} | {r['load_before']} -> {r['load_after']} |")
    lines += [
        "",
        (f"Speed-up of Ray (2 workers) over one process: **{side['speedup_end_to_end']:.2f}x end to end** (Ray start, actor "
         f"start and model loading included), **{side['speedup_steady']:.2f}x from the first result on** (target >= 1.6x). "
         f"From CPU time (all of Ray's processes counted): 2 x {one['cpu_ms_per_spectrum_after_first']:.3f} / "
         f"{two['cpu_ms_per_spectrum_after_first']:.3f} ms = {side['speedup_2_idle_cores_from_cpu_time']:.2f}x, what 2 idle "
         "cores would give if Ray's work overlapped perfectly."),
        "",
        f"CPU seconds per process (since it started, Ray's start included): one process: {_cpu(one)}; Ray: {_cpu(two)}.",
        "",
    ]
    if side.get("rounds"):
        med = side["median_wall_s"]
        lines += [f"{len(side['rounds'])} rounds, alternating which engine runs first (the table above is round 1):", "",
                  "| round | order | one process wall s | Ray wall s | Ray first result s | speed-up end to end | lost | doubled |",
                  "|---|---|---|---|---|---|---|---|",
                  *[f"| {i + 1} | {' then '.join(r['order'])} | {r['inline_wall_s']:.1f} | {r['ray_wall_s']:.1f} | "
                    f"{r['ray_first_result_s']:.1f} | {r['speedup_end_to_end']:.2f}x | {r['lost']} | {r['doubled']} |"
                    for i, r in enumerate(side["rounds"])],
                  "",
                  (f"Median wall times: one process {med['single_process']:.1f} s, Ray {med['ray_2_workers']:.1f} s: "
                   f"**{side['speedup_end_to_end_median_walls']:.2f}x end to end** (target >= 1.6x)."), ""]
    return lines


def _faults(faults: dict[str, Any]) -> list[str]:
    lines = [f"## Faults ({faults['n']:,} spectra, Ray local, 2 workers)", "", *_header(faults["run"])]
    k = faults["killed_worker"]
    lines.append(f"- Worker {k['killed_pid']} killed (SIGKILL) at 30 % of the rows: Ray restarted the actor and re-ran its "
                 f"batches; {k['check']['rows']:,} rows written, {k['check']['lost']} lost, {k['check']['doubled']} doubled, "
                 f"{k['duplicates_dropped']} re-run rows dropped by the writer, ids equal the archive's: "
                 f"{k['check']['ids_equal_archive']}; wall {k['wall_s']:.1f} s.")
    d, r = faults["driver_stopped"], faults["resumed"]
    lines.append(f"- Driver stopped at {d['rows_done']:,} rows ({d['shards_on_disk']} shards on disk); the rerun skipped "
                 f"{r['shards_skipped']} of {r['shards']} shards, predicted {r['rows_predicted']:,} rows, and the output holds "
                 f"{r['check']['rows']:,} rows, {r['check']['lost']} lost, {r['check']['doubled']} doubled, ids equal the "
                 f"archive's: {r['check']['ids_equal_archive']}.")
    return [*lines, ""]


def _large(large: dict[str, Any]) -> list[str]:
    small, g = large["small"], large["large"]
    lines = [f"## {large['n']:,} spectra end to end (Ray local, 2 workers), and its memory against {large['small_n']:,}", "",
             *_header(large["run"])]
    a = large["run"]["archive"]
    peak_small = max(small["worker_peak_private_mib"].values())
    peak_large = max(g["worker_peak_private_mib"].values())
    lines += [
        f"- Archive: {a['shards']} shards" + (f", written in {a['wall_s']:.0f} s ({a['bytes'] / 1e9:.2f} GB), writer peak "
                                             f"RSS {a['writer_peak_rss_mib']:.0f} MiB" if not a.get("reused") else " (reused)") + ".",
        (f"- Wall time **{g['wall_s']:.0f} s** ({g['spectra_per_s']:,.0f} spectra/s end to end, "
         f"{g['steady_spectra_per_s']:,.0f} from the first result on, first result after {g['first_result_s']:.1f} s), "
         f"load {g['load_before']} -> {g['load_after']}."),
        (f"- Rows {g['check']['rows']:,}: {g['check']['lost']} lost, {g['check']['doubled']} doubled, ids equal the archive's: "
         f"{g['check']['ids_equal_archive']}; mean MACs {g['mean_macs']:,.0f} against a budget of {g['budget_macs']:,.0f} "
         f"(largest batch mean {g['check']['max_batch_mean_macs']:,.0f} over {g['check']['batches']:,} batches)."),
        (f"- Peak private memory (RssAnon, sampled at every batch) / peak RSS per worker: {_rss(g)} MiB at "
         f"{large['n']:,} spectra against {_rss(small)} MiB at {large['small_n']:,} ({small['wall_s']:.0f} s): the largest "
         f"private peak is **{peak_large / peak_small:.2f}x** the small run's (target: within ~1.15x). Driver peak RSS "
         f"{g['driver_peak_rss_mib']:.0f} MiB against {small['driver_peak_rss_mib']:.0f} MiB. A worker's RSS also counts "
         "the pages of Ray's shared-memory object store it has read blocks from."),
        ("- Private memory (MiB) of the worker that answered, every 5 % of the rows, large run: "
         + ", ".join(f"{rows // 1000:,}k: {mib:.0f}" for rows, _, mib in g.get("private_memory_trace", []))
         + "; small run: " + ", ".join(f"{rows // 1000:,}k: {mib:.0f}" for rows, _, mib in small.get("private_memory_trace", []))
         + "."),
        f"- CPU seconds per process (large run): {_cpu(g)}.",
    ]
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main())
