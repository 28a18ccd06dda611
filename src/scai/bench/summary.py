"""The summary of a results.json: the table rows, the claims and the compute spent, per dataset.

:func:`summarize` is computed from results.json alone; :mod:`scai.bench.report` renders it and
writes it as ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scai.bench.claims import claim_a, claim_b, claim_c, claim_d, seed_runs
from scai.bench.methods import FAMILIES

__all__ = ["summarize", "compute_spent"]


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _method_order(results: dict[str, Any], ds: str) -> list[str]:
    methods = results["results"].get(ds, {})
    order = list(FAMILIES)

    def key(m: str) -> tuple[int, int]:
        first = next(iter(methods[m].values()))
        return order.index(first["family"]), first.get("depth") or 0

    return sorted(methods, key=key)


def _table(results: dict[str, Any], ds: str) -> list[dict[str, Any]]:
    rows = []
    for method in _method_order(results, ds):
        runs = seed_runs(results, ds, method)
        first = runs[0]
        rows.append(
            {
                "method": method,
                "family": first["family"],
                "label": FAMILIES[first["family"]] + (f" ({first['depth']} unit{'s' if first['depth'] > 1 else ''})" if first.get("depth") else ""),
                "final_accuracy": _mean_std([r["accuracy"] for r in runs]),
                "first_exit_accuracy": _mean_std([r["exits"][0]["accuracy"] for r in runs]),
                "full_macs": first["exits"][-1]["macs"],
                "mean_macs": float(np.mean([r["exits"][-1]["mean_macs"] or 0 for r in runs])) if first["exits"][-1]["mean_macs"] else None,
                "train_time_s": _mean_std([r["train_time_s"] for r in runs]),
                "inference_time_s": _mean_std([r["inference_time_s"] for r in runs]),
                "cpu_time_s": _mean_std([r.get("cpu_time_s", 0.0) for r in runs]),
                "epochs_run": _mean_std([r["epochs_run"] for r in runs]) if "epochs_run" in first else None,
            }
        )
    return rows


def compute_spent(results: dict[str, Any], ds: str) -> dict[str, Any]:
    """What the runs of ``ds`` cost: CPU seconds (all threads) and wall seconds of every run, summed.

    Wall time is training + test inference as recorded; CPU time also covers scoring. On a shared
    machine CPU seconds are the comparable number.
    """
    runs = [r for by_seed in results["results"].get(ds, {}).values() for r in by_seed.values()]
    seeds = sorted({int(r["seed"]) for r in runs})
    return {
        "runs": len(runs),
        "seeds": seeds,
        "cpu_time_s": float(sum(r.get("cpu_time_s", 0.0) for r in runs)),
        "wall_time_s": float(sum(r["train_time_s"] + r["inference_time_s"] for r in runs)),
        "cpu_time_s_per_seed": {
            s: float(sum(r.get("cpu_time_s", 0.0) for r in runs if int(r["seed"]) == s)) for s in seeds
        },
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Table rows, curves and the four claims per dataset, computed from results.json alone."""
    summary: dict[str, Any] = {"datasets": {}}
    for ds in results["results"]:
        summary["datasets"][ds] = {
            "table": _table(results, ds),
            "claim_a": claim_a(results, ds),
            "claim_b": claim_b(results, ds),
            "claim_c": claim_c(results, ds),
            "claim_d": claim_d(results, ds),
            "compute": compute_spent(results, ds),
        }
    return summary
