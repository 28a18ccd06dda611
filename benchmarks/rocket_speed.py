"""What the MiniRocket exit costs per spectrum: the compiled kernel, the PyTorch ops, ONNX, aeon.

For each dataset (real spectra from ``../shared/datasets``, as float32, no preprocessing: the cost does
not depend on the values), aeon's ``MiniRocket`` (10,000 features, seed 0, one thread) is fitted on
the spectra, its parameters copied into a :class:`scai.models.rocket.RocketExit`, and the same
``--n`` spectra are turned into features by

* ``compiled``: ``RocketExit.features`` in eager mode (numba's :func:`scai.models.rocket.ppv_rows`),
* ``pytorch``: the PyTorch ops (``RocketExit._features`` in chunks, what runs without numba),
* ``onnx``: the exported exit in onnxruntime (one thread; what the edge client runs),
* ``aeon``: aeon's own transform (``n_jobs=1``),

in alternating order within each of ``--repeats`` rounds; medians of wall seconds per spectrum. The
features of each are compared with aeon's (fraction equal, largest difference).

Usage (one thread; about a minute)::

    OMP_NUM_THREADS=1 python benchmarks/rocket_speed.py

Writes ``benchmarks/results/rocket_speed/results.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scai.models.rocket import CHUNK, RocketExit, compiled_ppv
from scai.training.rocket_exit import DEFAULT_ROCKET_FEATURES

ROOT = Path(__file__).resolve().parents[1]


def _spectra(name: str, data_dir: Path) -> np.ndarray:
    with np.load(data_dir / f"{name}.npz", allow_pickle=False) as d:
        return np.ascontiguousarray(d["X"], dtype=np.float32)


def _onnx_session(m: RocketExit, X: np.ndarray, path: Path) -> Any:
    import onnxruntime as ort

    torch.onnx.export(m, (torch.from_numpy(X[:2]).unsqueeze(1),), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _one(name: str, data_dir: Path, n: int, repeats: int) -> dict[str, Any]:
    from aeon.transformations.collection.convolution_based import MiniRocket

    X = _spectra(name, data_dir)
    X = X[np.random.default_rng(0).permutation(len(X))[: min(n, len(X))]]
    trf = MiniRocket(n_kernels=DEFAULT_ROCKET_FEATURES, random_state=0, n_jobs=1).fit(X[:, None, :])
    _, _, dil, per, biases = trf.parameters
    m = RocketExit(X.shape[1], 2, dil, per)
    # the head is irrelevant to the cost; an identity-like one keeps the ONNX output the features'
    m.set_weights(biases, np.zeros((2, m.n_features)), np.zeros(2))
    x = torch.from_numpy(X).unsqueeze(1)
    with tempfile.TemporaryDirectory() as tmp:
        sess = _onnx_session(m, X, Path(tmp) / "rocket.onnx")
        outputs: dict[str, np.ndarray] = {}

        def compiled() -> None:
            outputs["compiled"] = m.features(x).numpy()

        def pytorch() -> None:
            outputs["pytorch"] = torch.cat([m._features(p) for p in x.split(CHUNK)]).numpy()

        def onnx() -> None:
            sess.run(None, {"x": X[:, None, :]})

        def aeon() -> None:
            outputs["aeon"] = np.asarray(trf.transform(X[:, None, :]), dtype=np.float32)

        variants = {"compiled": compiled, "pytorch": pytorch, "onnx": onnx, "aeon": aeon}
        seconds: dict[str, list[float]] = {k: [] for k in variants}
        with torch.inference_mode():
            m.features(x[:2])  # compile (or load numba's cache) before timing
            for r in range(repeats):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for k in order:
                    t0 = time.perf_counter()
                    variants[k]()
                    seconds[k].append(time.perf_counter() - t0)
    ms = {k: float(np.median(v)) / len(X) * 1e3 for k, v in seconds.items()}
    ref = outputs["aeon"]
    agree = {k: {"equal_fraction": float(np.mean(outputs[k] == ref)), "max_difference": float(np.abs(outputs[k] - ref).max())}
             for k in ("compiled", "pytorch")}
    return {"dataset": name, "spectra": int(len(X)), "points": int(X.shape[1]), "features": int(m.n_features),
            "dilations": len(m.dilations), "macs": int(m.macs), "ms_per_spectrum": ms, "agreement_with_aeon": agree,
            "speedup_compiled_vs_pytorch": ms["pytorch"] / ms["compiled"], "speedup_compiled_vs_onnx": ms["onnx"] / ms["compiled"]}


def _report(results: dict[str, Any]) -> str:
    lines = [
        "# What the MiniRocket exit costs per spectrum (one thread)", "",
        f"Command: `{results['command']}`  ",
        f"Protocol: aeon MiniRocket ({DEFAULT_ROCKET_FEATURES:,} features, seed 0, n_jobs=1) fitted on each set's spectra "
        f"(float32, no preprocessing), copied into RocketExit; the same spectra featurised by each variant in alternating "
        f"order, median of {results['repeats']} rounds, wall ms per spectrum.  ",
        f"Machine: {results['machine']}; numba kernel: {'yes' if results['compiled_kernel'] else 'NO (the compiled column is the PyTorch ops)'}.",
        "", "| dataset | spectra x points | dilations | MACs | compiled | PyTorch ops | ONNX (onnxruntime) | aeon | compiled vs PyTorch | compiled = aeon | PyTorch = aeon |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["datasets"]:
        ms, ag = r["ms_per_spectrum"], r["agreement_with_aeon"]
        lines.append(
            f"| {r['dataset']} | {r['spectra']} x {r['points']} | {r['dilations']} | {r['macs']:,} | {ms['compiled']:.2f} | "
            f"{ms['pytorch']:.2f} | {ms['onnx']:.2f} | {ms['aeon']:.2f} | {r['speedup_compiled_vs_pytorch']:.1f}x | "
            f"{ag['compiled']['equal_fraction']:.5f} | {ag['pytorch']['equal_fraction']:.5f} |")
    lines += ["", "'= aeon': fraction of features equal to aeon's transform bit for bit (the rest differ by one "
              "position's PPV, 1/W, where a convolution value is within rounding of a bias)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["milk_adulteration", "ucr_strawberry"])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--n", type=int, default=256, help="spectra per set (default 256)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rocket_speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/rocket_speed.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv)),
        "repeats": args.repeats, "compiled_kernel": compiled_ppv() is not None,
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), torch {torch.__version__}, "
                   f"load average {os.getloadavg()[0]:.1f} at start",
        "datasets": [_one(name, args.data_dir, args.n, args.repeats) for name in args.datasets],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = _report(results)
    (args.out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
