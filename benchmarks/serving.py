"""Serving benchmark: centre load test, edge ONNX latency, offload payload sizes, SCAI+ dense-ONNX cost.

Run (about 3-6 minutes on 2 cores)::

    python benchmarks/serving.py                       # trains a default-size SCAI+ briefly on milk
    python benchmarks/serving.py --model path/to/model # or uses a trained model directory

Writes ``benchmarks/results/serving.json`` and ``serving.md``. Everything runs on loopback
(127.0.0.1) with bounded request counts (default 2,000 requests at concurrency 32).

What it measures
----------------
1. ``scai serve`` in a subprocess, hammered by ``httpx.AsyncClient``: throughput, p50/p95/p99
   latency, errors, and the micro-batch sizes the server formed.
2. Edge latency for one spectrum: ONNX Runtime stage 0 (exit 1) vs PyTorch's full network.
3. Bytes per offload: raw spectrum (float32 .npy) vs each stage's features (float16 .npy).
4. The cost of exporting SCAI+ on the dense masked path: ONNX stage latency vs PyTorch dense
   and sparse ("auto") paths, vs a plain SCAI graph of the same widths, and full-compute MACs vs
   the adaptive MACs the network accounts on real spectra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _median_ms(fn: Any, repeats: int) -> float:
    for _ in range(5):  # warm-up: sessions, arenas, caches
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def train_model(out: Path, epochs: int) -> Path:
    import torch

    from scai import SCAIClassifier
    from scai.datasets import load

    torch.manual_seed(0)
    milk = load("milk_adulteration")
    est = SCAIClassifier(model="scai_plus", train_config={"max_epochs": epochs}, preprocessing="raman")
    est.fit(milk.X, np.asarray(milk.class_names)[milk.y], axis=milk.axis)
    return est.save(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load_test(url: str, bodies: list[bytes], concurrency: int, path: str = "/v1/predict") -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        health = (await client.get("/v1/health")).json()
        before = health["batching"]
        # every exchange names the model it was made for (409 on a mismatch; /v1/continue requires it)
        headers = {"Content-Type": "application/x-npy", "X-Scai-Model": health["model_sha256"]}

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, content=body, headers=headers)
                    ok = r.status_code == 200
                    key = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        after = (await client.get("/v1/health")).json()["batching"]
    ms = np.asarray(latencies) * 1e3
    return {
        "requests": len(bodies), "concurrency": concurrency, "wall_s": wall,
        "throughput_rps": len(bodies) / wall,
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                       "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())},
        "errors": errors, "n_errors": int(sum(errors.values())),
        "server_batching": {k: (after[k] - before[k]) if k != "largest_batch_rows" else after[k] for k in after},
    }


def bench_server(model_dir: Path, X: np.ndarray, features: np.ndarray, n_requests: int, concurrency: int,
                 threads: int) -> dict[str, Any]:
    from scai.deploy.payloads import encode_npy

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "scai.cli.main", "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.2)
        bodies = [encode_npy(X[i % len(X)][None, :]) for i in range(n_requests)]
        asyncio.run(_load_test(url, bodies[: min(64, n_requests)], concurrency))  # warm-up
        result = asyncio.run(_load_test(url, bodies, concurrency))
        # The same load on /v1/continue from stage 0 (fp16 features): no preprocessing on the centre.
        fbodies = [encode_npy(features[i % len(features)][None].astype(np.float16)) for i in range(n_requests)]
        cont = asyncio.run(_load_test(url, fbodies, concurrency, path="/v1/continue?stage=0"))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["request"] = "one raw spectrum as float32 .npy, policy full"
    result["server_threads"] = threads
    cont["request"] = "stage-0 features of one spectrum as float16 .npy, policy full"
    result["continue"] = cont
    return result


def _stage0_features(export_dir: Path, X: np.ndarray, axis: np.ndarray) -> np.ndarray:
    from scai.deploy.edge import EdgeClient

    edge = EdgeClient(export_dir, bmax="1G")
    return edge.run_stage(0, edge.preprocess(edge.align(X, axis))[:, None, :])[0]


def bench_edge(model_dir: Path, export_dir: Path, X: np.ndarray, axis: np.ndarray, repeats: int) -> dict[str, Any]:
    import torch

    import scai
    from scai.deploy.edge import EdgeClient

    torch.set_num_threads(1)
    est = scai.load(model_dir)
    net = est.network_.eval()
    edge = EdgeClient(export_dir, bmax="1G", threads=1)
    Z = edge.preprocess(edge.align(X[:1], axis))
    x1 = Z[:, None, :]
    xt = torch.from_numpy(x1)

    onnx_first = _median_ms(lambda: edge.run_stage(0, x1), repeats)

    def onnx_all() -> None:
        f = x1
        for k in range(edge.n_exits):
            f, _ = edge.run_stage(k, f)

    onnx_full = _median_ms(onnx_all, repeats)
    out: dict[str, Any] = {"onnx_exit1_ms": onnx_first, "onnx_all_stages_dense_ms": onnx_full}
    with torch.inference_mode():
        for mode in ("dense", "auto"):
            net.set_execution(mode)
            out[f"torch_full_{mode}_ms"] = _median_ms(lambda: net(xt), repeats)
            out[f"torch_exit1_{mode}_ms"] = _median_ms(lambda: net.run_stage(0, xt), repeats)
        net.set_execution("auto")
    out["ratio_torch_full_auto_over_onnx_exit1"] = out["torch_full_auto_ms"] / onnx_first
    out["preprocess_ms"] = _median_ms(lambda: edge.preprocess(edge.align(X[:1], axis)), max(repeats // 4, 5))

    # Offload payloads for one spectrum.
    sizes = {"raw_float32_npy": edge.payload_bytes(-1)["raw"],
             "raw_json": len(json.dumps({"spectra": X[:1].tolist()}).encode())}
    for k in range(edge.n_exits - 1):
        sizes[f"features_stage{k}_float16_npy"] = edge.payload_bytes(k)["features"]
    out["offload_bytes"] = sizes

    # SCAI+ dense-ONNX cost: per stage latency and MACs (full vs adaptive on real spectra).
    per_stage = []
    Zall = est.transform_input(X, axis)
    with torch.inference_mode():
        net.set_execution("auto")
        detailed = net.forward_detailed(torch.from_numpy(Zall).unsqueeze(1))
    adaptive = detailed.macs.double().mean(dim=0).numpy()
    stage_adaptive = np.diff(np.concatenate([[0.0], adaptive]))
    f_onnx, f_torch = x1, xt
    for k in range(edge.n_exits):
        fo = f_onnx
        t_onnx = _median_ms(lambda: edge.run_stage(k, fo), repeats)
        row = {"stage": k, "onnx_dense_ms": t_onnx, "macs_full": int(net.stage_macs(k)),
               "macs_adaptive_mean": float(stage_adaptive[k])}
        with torch.inference_mode():
            for mode in ("dense", "auto"):
                net.set_execution(mode)
                ft = f_torch
                row[f"torch_{mode}_ms"] = _median_ms(lambda: net.run_stage(k, ft), repeats)
            f_torch, _ = net.run_stage(k, f_torch)
        f_onnx, _ = edge.run_stage(k, f_onnx)
        per_stage.append(row)
    out["scai_plus_stages"] = per_stage
    out["plain_scai_onnx_ms"] = _plain_scai_onnx(est, x1, repeats)
    return out


def _plain_scai_onnx(est: Any, x1: np.ndarray, repeats: int) -> list[float]:
    """Per-stage ONNX latency of a plain SCAI (no PA blocks) with the same widths: the baseline
    the dense SCAI+ graph would match if its halting heads and masks were free."""
    import dataclasses
    import warnings

    import onnxruntime as ort
    import torch

    from scai.deploy.onnx_export import _stage_module
    from scai.models import create_model

    cfg = {k: v for k, v in dataclasses.asdict(est.network_.config).items() if k not in ("halting_eps", "halting_bias_init")}
    net = create_model("scai", est.network_.in_length, est.network_.n_classes, **cfg).eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    times = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        x = torch.from_numpy(x1)
        f = x1
        for k in range(net.n_exits):
            path = Path(tmp) / f"s{k}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(_stage_module(net, k), (x,), str(path), dynamo=False, opset_version=17,
                                  input_names=["x"], output_names=["f", "l"])
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            fk = f
            times.append(_median_ms(lambda: sess.run(None, {"x": fk}), repeats))
            f = sess.run(None, {"x": f})[0]
            x, _ = _stage_module(net, k)(x)
    return times


def write_markdown(res: dict[str, Any], path: Path) -> None:
    s, e = res["server"], res["edge"]
    lines = [
        "# Serving benchmark",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']}; model: {res['model']['name']} ({res['model']['note']}), exit MACs "
        + ", ".join(f"{m:,}" for m in res["model"]["exit_macs"]),
        "",
        "## Computing centre (loopback, micro-batched)",
        "",
        f"{s['requests']:,} requests ({s['request']}) at concurrency {s['concurrency']}, server with "
        f"{s['server_threads']} PyTorch thread(s) in a subprocess; client and server share the machine.",
        "",
        "| endpoint | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors | batches | mean batch | largest batch |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {r['throughput_rps']:.0f} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p95']:.1f} | "
          f"{r['latency_ms']['p99']:.1f} | {r['n_errors']} | {r['server_batching']['batches']:,} | "
          f"{r['server_batching']['rows'] / max(r['server_batching']['batches'], 1):.1f} | {r['server_batching']['largest_batch_rows']} |"
          for name, r in (("predict (raw, Raman preprocessing on the centre)", s), ("continue from stage 0 (fp16)", s["continue"]))],
        "",
        "## Edge: one spectrum, 1 thread (median)",
        "",
        "| ONNX exit 1 (ms) | ONNX all stages, dense (ms) | PyTorch full, auto (ms) | PyTorch full, dense (ms) | ratio PyTorch full / ONNX exit 1 | NumPy preprocessing (ms) |",
        "|---|---|---|---|---|---|",
        f"| {e['onnx_exit1_ms']:.3f} | {e['onnx_all_stages_dense_ms']:.3f} | {e['torch_full_auto_ms']:.3f} | "
        f"{e['torch_full_dense_ms']:.3f} | {e['ratio_torch_full_auto_over_onnx_exit1']:.1f}x | {e['preprocess_ms']:.2f} |",
        "",
        "## Bytes per offload (one spectrum)",
        "",
        "| payload | bytes |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:,} |" for k, v in e["offload_bytes"].items()]
    lines += [
        "",
        "## SCAI+ on the dense masked ONNX path (edge cost)",
        "",
        "| stage | ONNX dense (ms) | plain SCAI ONNX (ms) | PyTorch dense (ms) | PyTorch auto/sparse (ms) | MACs full (ONNX executes) | MACs adaptive (mean, milk) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, plain in zip(e["scai_plus_stages"], e["plain_scai_onnx_ms"]):
        lines.append(
            f"| {row['stage']} | {row['onnx_dense_ms']:.3f} | {plain:.3f} | {row['torch_dense_ms']:.3f} | "
            f"{row['torch_auto_ms']:.3f} | {row['macs_full']:,} | {row['macs_adaptive_mean']:,.0f} |"
        )
    full = sum(r["macs_full"] for r in e["scai_plus_stages"])
    adapt = sum(r["macs_adaptive_mean"] for r in e["scai_plus_stages"])
    lines += ["", f"Dense ONNX executes {full:,} MACs for the whole network where the adaptive count is "
              f"{adapt:,.0f} ({full / adapt:.2f}x). Timings on a shared 2-core machine vary by tens of percent."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="trained model directory (default: train SCAI+ on milk briefly)")
    p.add_argument("--epochs", type=int, default=3, help="epochs when training the benchmark model (default 3)")
    p.add_argument("--requests", type=int, default=2000, help="load-test requests (max 20,000)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--server-threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=200, help="timing repetitions (median)")
    p.add_argument("--out", default=str(RESULTS / "serving"), help="output path without suffix")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 20000 or not 1 <= args.concurrency <= 256:
        p.error("--requests must be 1..20000 and --concurrency 1..256")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from scai.datasets import load
    from scai.deploy import export_onnx

    milk = load("milk_adulteration")
    with tempfile.TemporaryDirectory() as tmp:
        note = "given"
        model_dir = Path(args.model) if args.model else None
        if model_dir is None:
            t0 = time.time()
            model_dir = train_model(Path(tmp) / "model", args.epochs)
            note = f"default SCAI+ trained {args.epochs} epochs on milk_adulteration in {time.time() - t0:.0f} s"
        export_dir = export_onnx(model_dir, Path(tmp) / "export")
        manifest = json.loads((export_dir / "manifest.json").read_text())
        edge = bench_edge(model_dir, export_dir, milk.X, milk.axis, args.repeats)
        feats = _stage0_features(export_dir, milk.X[:64], milk.axis)
        server = bench_server(model_dir, milk.X, feats, args.requests, args.concurrency, args.server_threads)
    res = {
        "command": "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "model": {"name": manifest["model_name"], "note": note, "exit_macs": manifest["exit_macs"],
                  "in_length": manifest["in_length"]},
        "server": server,
        "edge": edge,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    write_markdown(res, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text())
    return 0 if server["n_errors"] == 0 and server["continue"]["n_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
