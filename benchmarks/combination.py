"""Combined exits vs plain exits: out-of-fold fit, test-split score (issue "Never worse than chemometrics", item 2).

For a dev set and seed (splits of ``benchmarks/frontier.py``: qsi-tk sets 8:1:1, UCR sets the
official split with 10 % of train as validation; the model is fitted on train + val), trains the
default ``SCAIClassifier`` with ``combine_exits=False`` and a network that is kept
(``skip_exits=False``, so every exit's logits exist), and stores the out-of-fold logits of the
training spectra and the test logits of every exit. It then compares, per exit, on OOF and test:

* ``plain``: each exit's own logits;
* ``cascade``: :func:`scai.inference.combination.fit_combination` (the default, one running
  state per sample: ``s_k = a_k s_{k-1} + b_k log_softmax(z_k) + c_k``);
* ``ztw``: each exit a free non-negative combination of the log-probabilities of all exits up to
  it (Zero-Time-Waste style; needs every earlier exit's logits at each exit).

Writes ``benchmarks/results/combination/<set>_s<seed>.npz`` (the logits) and
``results.json`` + ``report.md`` (every set/seed run so far).

Command (one thread; ~10-20 min per set and seed on the 2-core machine)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/combination.py --datasets ucr_strawberry --seeds 0
    .venv/bin/python benchmarks/combination.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "combination"
DATA_DIR = ROOT.parent / "shared" / "datasets"


def collect(name: str, seed: int, data_dir: Path, out: Path) -> Path:
    """Train and store OOF + test logits (plain, every exit) of one set and seed."""
    import torch

    from scai import SCAIClassifier
    from scai.bench.splits import split_indices
    from scai.data import read

    torch.set_num_threads(1)
    spectra = read(data_dir / f"{name}.npz")
    (tr, va, te), _ = split_indices(spectra, seed, 0.1, 0.1)
    labels = np.asarray(spectra.class_names)[spectra.y]
    rows = np.sort(np.concatenate([tr, va]))
    t0 = time.perf_counter()
    est = SCAIClassifier(random_state=seed, combine_exits=False, skip_exits=False)
    est.fit(spectra.X[rows], labels[rows], axis=spectra.axis, axis_unit=spectra.axis_unit)
    path = out / f"{name}_s{seed}.npz"
    np.savez(path, oof=est.validation_["logits"], y_oof=est.validation_["y"],
             test=est.exit_logits(spectra.X[te], spectra.axis), y_test=est._encode(labels[te], "y"),
             fit_s=time.perf_counter() - t0)
    return path


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _fit_ztw(L: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    m, n, C = L.shape
    Y = np.eye(C)[y]

    def f(t: np.ndarray) -> tuple[float, np.ndarray]:
        w, c = t[:m], t[m:]
        u = np.tensordot(w, L, 1) + c
        lp = _log_softmax(u)
        g = (np.exp(lp) - Y) / n
        return (-float(np.sum(Y * lp)) / n + ridge * float(c @ c),
                np.concatenate([[np.sum(g * L[j]) for j in range(m)], g.sum(0) + 2 * ridge * c]))

    r = minimize(f, np.r_[np.full(m, 1 / m), np.zeros(C)], jac=True, method="L-BFGS-B",
                 bounds=[(0, None)] * m + [(None, None)] * C)
    return r.x[:m], r.x[m:]


def compare(path: Path) -> dict[str, Any]:
    from scai.inference.combination import fit_combination

    d = np.load(path)
    oof, y, te, yt = d["oof"], d["y_oof"], d["test"], d["y_test"]

    def acc(Z: np.ndarray, labels: np.ndarray) -> list[float]:
        return [float(np.mean(z.argmax(1) == labels)) for z in Z]

    comb = fit_combination(oof, y)
    Lo, Lt = _log_softmax(oof), _log_softmax(te)
    ztw_o, ztw_t = [], []
    for k in range(oof.shape[0]):
        w, c = _fit_ztw(Lo[: k + 1], y)
        ztw_o.append(np.tensordot(w, Lo[: k + 1], 1) + c)
        ztw_t.append(np.tensordot(w, Lt[: k + 1], 1) + c)
    return {
        "file": path.name, "n_oof": int(len(y)), "n_test": int(len(yt)), "exits": int(oof.shape[0]),
        "fit_s": float(d["fit_s"]) if "fit_s" in d else None,
        "plain": {"oof": acc(oof, y), "test": acc(te, yt)},
        "cascade": {"oof": acc(comb.apply(oof), y), "test": acc(comb.apply(te), yt),
                    "a": comb.a.tolist(), "b": comb.b.tolist()},
        "ztw": {"oof": acc(np.stack(ztw_o), y), "test": acc(np.stack(ztw_t), yt)},
    }


def report(rows: list[dict[str, Any]], out: Path) -> str:
    lines = ["# Combined exits vs plain exits", "", "Protocol and command: docstring of `benchmarks/combination.py`. "
             "Accuracy per exit (exit 0 first); `used` = what the default model would answer at full budget: the "
             "last exit whose OOF accuracy beats every earlier one (the `uses` rule).", "",
             "| run | n OOF / test | variant | OOF per exit | test per exit | test, used exit |", "|---|---|---|---|---|---|"]
    for r in rows:
        for v in ("plain", "cascade", "ztw"):
            oof, test = r[v]["oof"], r[v]["test"]
            used, best = 0, oof[0]
            for k, a in enumerate(oof[1:], start=1):
                if a > best:
                    used, best = k, a
            lines.append(f"| {r['file']} | {r['n_oof']} / {r['n_test']} | {v} | {' '.join(f'{a:.3f}' for a in oof)} "
                         f"| {' '.join(f'{a:.3f}' for a in test)} | {test[used]:.3f} (exit {used}) |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="ucr_strawberry")
    p.add_argument("--seeds", default="0")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if not (out / f"{name}_s{seed}.npz").is_file():
                    collect(name, seed, Path(args.data_dir), out)
    print(report([compare(f) for f in sorted(out.glob("*.npz"))], out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
