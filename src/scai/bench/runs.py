"""Train and score every method of the benchmark on the same splits (§4.4–4.7).

For each dataset and seed the data are split and preprocessed once (:func:`prepare_split`), and
every method — SCAI, SCAI+, SCAI+ without distillation, ResNet-1D / DRSN-CS / DRSN-CW at several
depths, and the classical anchors SVM-RBF, PLS-DA, logistic regression and MiniRocket — is
trained and scored on exactly those arrays. Networks are scored with
:func:`scai.report.evaluation.evaluate` (per-exit accuracy and MACs, anytime and budgeted-batch
curves), so every number has one definition.

:func:`run_benchmark` writes ``results.json`` after every finished (dataset, method, seed) run,
so an interrupted run resumes where it stopped. torch is imported only where a network runs, so
that reading and rendering results (``--report-only``, ``--merge``) never loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from scai import datasets
from scai.bench.classical import run_classical
from scai.bench.config import BenchConfig
from scai.bench.methods import MethodSpec, default_methods, select_methods
from scai.bench.results import check_resume, dataset_info, is_done, load_results, new_results, save_results
from scai.bench.splits import SplitData, discriminability, prepare_split
from scai.estimators import SCAIClassifier
from scai.report.evaluation import evaluate

__all__ = ["run_network", "run_method", "run_benchmark"]


def _train_overrides(spec: MethodSpec, cfg: BenchConfig, seed: int) -> dict[str, Any]:
    return {
        "max_epochs": cfg.epochs,
        "patience": cfg.patience,
        "min_epochs": min(10, cfg.epochs),
        "batch_size": cfg.batch_size,
        "threads": cfg.threads,
        "seed": seed,
        "progress": False,
        **spec.train_config,
    }


def _history(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("epoch", "train_acc", "val_acc", "val_loss", "train_exit_loss", "epoch_time_s")
    return [{k: e[k] for k in keys if k in e} for e in epochs]


def _allocation(est: Any, Z: np.ndarray) -> list[list[float]] | None:
    """Mean units executed per position of each PA block over ``Z`` (paper Fig. 10)."""
    import torch

    with torch.inference_mode():
        out = est.network_.forward_detailed(torch.from_numpy(Z).unsqueeze(1))
    if not out.units_executed:
        return None
    return [u.double().mean(0).tolist() for u in out.units_executed]


def run_network(spec: MethodSpec, data: SplitData, cfg: BenchConfig) -> dict[str, Any]:
    """Train one network on ``data`` and score it with :func:`scai.report.evaluation.evaluate`."""
    est = SCAIClassifier(
        model=spec.model or spec.family,
        model_config=spec.model_config or None,
        train_config=_train_overrides(spec, cfg, data.seed),
        preprocessing="none",  # already applied once in prepare_split, identically for every method
        random_state=data.seed,
        **{"exit0": "none", **spec.estimator_params},  # the paper's networks, without exit 0
    )
    t0 = time.perf_counter()
    est.fit(data.Z["train"], data.y["train"], axis=data.axis, X_val=data.Z["val"], y_val=data.y["val"], axis_unit=data.axis_unit)
    train_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    est.predict(data.Z["test"])
    infer_time = time.perf_counter() - t0
    metrics = evaluate(est, data.Z["test"], data.y["test"], data.axis)
    metrics.update(
        train_time_s=train_time,
        inference_time_s=infer_time,
        epochs_run=len(est.history_.epochs),
        best_epoch=int(est.history_.best_epoch),
        history=_history(est.history_.epochs),
        model_config={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(est.network_.config).items()},
        train_config={k: v for k, v in _train_overrides(spec, cfg, data.seed).items() if k != "progress"},
        input_scaling=str(est.standardize),  # the estimator's step after the shared preprocessing
    )
    if spec.family in ("scai_plus", "scai_plus_nokd"):
        metrics["allocation"] = _allocation(est, data.Z["test"])
    return metrics


def run_method(spec: MethodSpec, data: SplitData, cfg: BenchConfig) -> dict[str, Any]:
    """Run one (dataset, method, seed) and add the bookkeeping fields."""
    cpu0 = time.process_time()
    run = run_classical(spec, data, cfg) if spec.kind == "classical" else run_network(spec, data, cfg)
    # CPU seconds of all threads: comparable across runs even when the machine is shared
    run["cpu_time_s"] = time.process_time() - cpu0
    run.update(method=spec.name, family=spec.family, kind=spec.kind, depth=spec.depth, seed=data.seed)
    return run


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and score every (dataset, method, seed); write results.json after each run.

    Returns the results dictionary (also at ``<out>/results.json``).
    """
    import torch

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = load_results(path) if cfg.resume and path.is_file() else new_results(cfg)
    check_resume(results, cfg, path)
    names = list(cfg.datasets) or datasets.list(cfg.data_dir)
    methods = select_methods(default_methods(cfg.depths, cfg.quick), cfg.methods)
    total, count = len(names) * len(cfg.seeds) * len(methods), 0
    for ds in names:
        spectra = datasets.load(ds, data_dir=cfg.data_dir)
        for seed in cfg.seeds:
            todo = [m for m in methods if not is_done(results, ds, m.name, seed)]
            count += len(methods) - len(todo)
            if not todo:
                continue
            data = prepare_split(spectra, seed, cfg)
            info = results["datasets"].setdefault(ds, dataset_info(spectra, data))
            info["splits"][str(seed)] = {k: int(len(v)) for k, v in data.y.items()}
            info.setdefault("f_score", {})[str(seed)] = discriminability(data.Z["train"], data.y["train"]).tolist()
            for spec in todo:
                count += 1
                run = run_method(spec, data, cfg)
                run["preprocess_time_s"] = data.preprocess_time_s
                results["results"].setdefault(ds, {}).setdefault(spec.name, {})[str(seed)] = run
                save_results(results, path)
                log(
                    f"[{count}/{total}] {ds} {spec.name} seed={seed}: accuracy {run['accuracy']:.3f}, "
                    f"train {run['train_time_s']:.1f} s, test inference {run['inference_time_s'] * 1e3:.0f} ms"
                    + (f", {run['epochs_run']} epochs" if "epochs_run" in run else "")
                )
    save_results(results, path)
    return results

