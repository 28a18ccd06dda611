"""Wall time of sparse vs dense position-adaptive (PA) inference on CPU.

Run from the repository root::

    python benchmarks/pa_sparse.py                  # full run, writes benchmarks/results/pa_sparse.{json,md}
    python benchmarks/pa_sparse.py --quick          # fewer fractions and repeats (smoke test)
    python benchmarks/pa_sparse.py --threads 1      # pin the number of intra-op threads

What is measured: the default ``scai_plus`` network (in_length 1000, 4 blocks x 4 units, widths
12/24/36/48) in eval mode, with the halting scores forced (``PABlock.forced_halting``) so that in
every block a contiguous band covering a fraction ``f`` of the positions (random offset per sample)
runs all units while the other positions halt after unit 1 (unit 1 always runs everywhere). The
same forced scores are used for both paths, so both compute the same result (checked). Times are
the minimum over interleaved repeats (robust to other processes on a shared machine).

Two rows per setting:

* ``network``: whole forward (stem, transitions and exit heads included);
* ``pa units``: the PA blocks alone (their inputs precomputed), i.e. the part sparsity acts on.

``macs ratio`` = MACs spent / MACs at full compute (per-sample accounting of the model);
``time ratio`` = t_sparse / t_dense; ``efficiency`` = (1 - time ratio) / (1 - macs ratio): the
share of the MAC saving that turns into wall time (target >= 0.8 at batch 256, f <= 0.5).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from scai.models import create_model
from scai.models.pa_block import PABlock

RESULTS = Path(__file__).resolve().parent / "results"


def forced_scores(blocks: list[PABlock], lengths: list[int], batch: int, frac: float,
                  gen: torch.Generator) -> list[torch.Tensor]:
    """Per block (S-1, B, W) scores: a band of ``frac`` of the positions never halts (h = 0),
    the rest halt after unit 1 (h = 0.99)."""
    out = []
    for block, w in zip(blocks, lengths):
        n_units = len(block.units)
        h = torch.full((n_units - 1, batch, w), 0.0)
        width = max(1, round(frac * w))
        starts = torch.randint(0, w - width + 1, (batch,), generator=gen)
        for b in range(batch):
            h[0, b, :] = 0.99
            h[0, b, starts[b] : starts[b] + width] = 0.0
        out.append(h)
    return out


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(net, x: torch.Tensor, frac: float, repeats: int, mode: str) -> dict:
    blocks = list(net.blocks)
    lengths = [w for _, w in net.stage_shapes()]
    scores = forced_scores(blocks, lengths, x.shape[0], frac, torch.Generator().manual_seed(0))
    for block, h in zip(blocks, scores):
        block.forced_halting = h
    # Inputs of every PA block, for timing the blocks alone.
    with torch.inference_mode():
        net.set_execution("dense")
        block_inputs, f = [], x
        for i in range(net.n_exits):
            block_inputs.append(net._entry(i)(f))
            f, _ = net.run_stage(i, f)
        dense_out = net.forward_detailed(x)
        net.set_execution(mode)
        sparse_out = net.forward_detailed(x)
    diff = max((a - b).abs().max().item() for a, b in zip(dense_out.logits, sparse_out.logits))
    macs_ratio = (sparse_out.macs[:, -1].double().mean() / net.exit_macs()[-1]).item()
    pa_full = sum(b.macs(w) for b, w in zip(blocks, lengths))
    # A position runs unit s (0-based) iff it executed more than s units.
    pa_spent = sum(
        b._macs_from_counts([(u > s).sum(dim=1).long() for s in range(len(b.units))]).double().mean().item()
        for b, u in zip(blocks, sparse_out.units_executed)
    )

    def run_net(m: str):
        net.set_execution(m)
        with torch.inference_mode():
            net(x)

    def run_blocks(m: str):
        net.set_execution(m)
        with torch.inference_mode():
            for block, xin in zip(blocks, block_inputs):
                block(xin)

    times = {}
    for label, fn in (("network", run_net), ("pa units", run_blocks)):
        td, ts = [], []
        for _ in range(repeats):  # interleave so both see the same machine load
            td.append(best_time(lambda: fn("dense"), 1))
            ts.append(best_time(lambda: fn(mode), 1))
        times[label] = (min(td), min(ts))
    for block in blocks:
        block.forced_halting = None
    net.set_execution("dense")
    rows = []
    for label, (td, ts) in times.items():
        mr = macs_ratio if label == "network" else pa_spent / pa_full
        tr = ts / td
        rows.append({
            "part": label, "batch": x.shape[0], "active_fraction": frac, "mode": mode,
            "t_dense_ms": 1e3 * td, "t_sparse_ms": 1e3 * ts, "time_ratio": tr, "macs_ratio": mr,
            "efficiency": (1 - tr) / (1 - mr) if mr < 1 else float("nan"), "max_abs_diff": diff,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 fractions, fewer repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--mode", default="auto", choices=("sparse", "auto"))
    ap.add_argument("--in-length", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fracs = [0.1, 0.5, 1.0] if args.quick else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    torch.manual_seed(0)
    net = create_model("scai_plus", args.in_length, 5).eval()
    rows = []
    for batch, rep in ((1, 30), (256, 5)):
        repeats = args.repeats or (max(3, rep // 3) if args.quick else rep)
        x = torch.randn(batch, 1, args.in_length)
        for frac in fracs:
            for row in measure(net, x, frac, repeats, args.mode):
                rows.append(row)
                print("{part:9s} B={batch:<4d} f={active_fraction:.1f}  dense {t_dense_ms:8.2f} ms  "
                      "sparse {t_sparse_ms:8.2f} ms  time {time_ratio:.2f}  macs {macs_ratio:.2f}  "
                      "eff {efficiency:5.2f}  diff {max_abs_diff:.1e}".format(**row), flush=True)
    meta = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "processor": platform.processor(), "mode": args.mode, "in_length": args.in_length,
        "model": "scai_plus defaults", "timing": "min over interleaved repeats",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pa_sparse.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Sparse vs dense PA inference (`python benchmarks/pa_sparse.py`)", "",
        f"torch {meta['torch']}, {meta['threads']} threads, mode `{args.mode}`, default `scai_plus` at "
        f"{args.in_length} points; f = fraction of positions active in units 2-4 of every block.", "",
        "| part | batch | f | t dense (ms) | t sparse (ms) | time ratio | MACs ratio | efficiency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append("| {part} | {batch} | {active_fraction:.1f} | {t_dense_ms:.2f} | {t_sparse_ms:.2f} | "
                     "{time_ratio:.2f} | {macs_ratio:.2f} | {efficiency:.2f} |".format(**r))
    lines += ["", "efficiency = (1 - time ratio) / (1 - MACs ratio); target >= 0.8 at batch 256, f <= 0.5."]
    (args.out / "pa_sparse.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'pa_sparse.json'} and {args.out / 'pa_sparse.md'}")


if __name__ == "__main__":
    main()
