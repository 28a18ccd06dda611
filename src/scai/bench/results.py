"""results.json: its schema, reading, writing, merging runs done apart, and resume checks.

``run_benchmark`` writes results.json after every finished (dataset, method, seed) run, so an
interrupted run resumes where it stopped; :func:`check_resume` refuses to add runs with other
settings. :func:`merge_results` combines the files of runs done apart, and
:func:`fill_discriminability` adds the claim (d) profile to results that predate it. MACs are
multiply-accumulates per spectrum; FLOPs = 2 x MACs.
"""

from __future__ import annotations

import copy
import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from scai import datasets
from scai._version import __version__
from scai.bench.config import BenchConfig
from scai.bench.splits import SplitData, discriminability, prepare_split
from scai.errors import BenchSettingsError

__all__ = [
    "SCHEMA",
    "MAC_CONVENTION",
    "RESUME_SETTINGS",
    "load_results",
    "save_results",
    "merge_results",
    "new_results",
    "dataset_info",
    "is_done",
    "check_resume",
    "fill_discriminability",
]

SCHEMA = "scai-bench/1"
MAC_CONVENTION = "MACs = multiply-accumulates per spectrum (conv + linear); FLOPs = 2 x MACs"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read results.json; raises ``ValueError`` when it is not a scai benchmark file."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise BenchSettingsError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    return data


def merge_results(parts: Sequence[dict[str, Any]], sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Combine results.json files of runs done apart (other processes, sessions or machines).

    Runs are keyed by (dataset, method, seed); a key present in two parts is refused rather
    than one copy silently winning. The merged config lists the union of datasets, methods and
    seeds; each run keeps its own ``train_config``/``model_config``, and ``merged_from`` records
    the sources with their configs and environments.

    Raises
    ------
    ValueError
        No parts, a part that is not a scai benchmark file, or a run present twice.
    """
    if not parts:
        raise BenchSettingsError("merge_results needs at least one results.json")
    names = list(sources) if sources is not None else [f"part {i + 1}" for i in range(len(parts))]
    merged = copy.deepcopy(parts[0])
    merged["results"], merged["datasets"] = {}, {}
    seen: dict[tuple[str, str, str], str] = {}
    for part, name in zip(parts, names):
        if part.get("schema") != SCHEMA:
            raise BenchSettingsError(f"{name}: schema {part.get('schema')!r} is not {SCHEMA!r}")
        for ds, info in part.get("datasets", {}).items():
            target = merged["datasets"].setdefault(ds, copy.deepcopy(info))
            target.setdefault("splits", {}).update(info.get("splits", {}))
            target.setdefault("f_score", {}).update(info.get("f_score", {}))
        for ds, methods in part["results"].items():
            for method, runs in methods.items():
                for seed, run in runs.items():
                    key = (ds, method, seed)
                    if key in seen:
                        raise BenchSettingsError(
                            f"{ds} / {method} / seed {seed} is in both {seen[key]} and {name}; "
                            "remove it from one of them before merging"
                        )
                    seen[key] = name
                    merged["results"].setdefault(ds, {}).setdefault(method, {})[seed] = run
    conf = merged["config"]
    for field_name in ("datasets", "methods", "seeds", "depths"):
        values = [v for part in parts for v in part["config"].get(field_name) or []]
        conf[field_name] = sorted(set(values), key=values.index)
    conf["datasets"] = list(merged["results"])
    ran = sorted({int(r["depth"]) for m in merged["results"].values() for runs in m.values() for r in runs.values()
                  if r.get("kind") == "static" and r.get("depth") is not None})
    conf["depths"] = ran or conf["depths"]  # the depths actually in the results
    merged["merged_from"] = [
        {"source": name, "config": part["config"], "environment": part.get("environment")} for part, name in zip(parts, names)
    ]
    return merged


def save_results(data: dict[str, Any], path: str | Path) -> None:
    """Write results.json atomically (strict JSON)."""
    _write_json(data, Path(path))


def _write_json(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    os.replace(tmp, path)  # atomic: a stopped run never leaves half a file


def _environment(cfg: BenchConfig) -> dict[str, Any]:
    import torch  # for its version only: reading or merging results does not load torch

    return {
        "scai": __version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": cfg.threads,
    }


def new_results(cfg: BenchConfig) -> dict[str, Any]:
    """An empty results dictionary for a run with ``cfg`` (settings and environment recorded)."""
    conf = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    return {"schema": SCHEMA, "mac_convention": MAC_CONVENTION, "config": conf, "environment": _environment(cfg), "datasets": {}, "results": {}}


def dataset_info(spectra: Any, data: SplitData) -> dict[str, Any]:
    """The ``datasets`` entry of results.json for ``spectra`` split as ``data`` (split sizes added per seed)."""
    return {
        "n_samples": int(spectra.n_samples),
        "n_points": int(spectra.n_points),
        "n_classes": int(len(spectra.class_names)),
        "class_names": list(spectra.class_names),
        "axis_unit": data.axis_unit,
        "axis": data.axis.tolist(),
        "mean_spectrum": data.Z["train"].mean(0).astype(np.float64).round(5).tolist(),
        "protocol": data.protocol,
        "has_groups": spectra.groups is not None,
        "preprocessing": data.preprocessing,
        "splits": {},
    }


def is_done(results: dict[str, Any], ds: str, method: str, seed: int) -> bool:
    """Whether ``results`` already holds the run of (``ds``, ``method``, ``seed``)."""
    return str(seed) in results["results"].get(ds, {}).get(method, {})


#: Settings every run of one results.json shares; ``--resume`` with other values is refused.
RESUME_SETTINGS = ("epochs", "patience", "batch_size", "depths", "preprocessing", "val_fraction", "test_fraction",
                   "minirocket_kernels", "quick")


def check_resume(results: dict[str, Any], cfg: BenchConfig, path: Path) -> None:
    """Refuse to add runs with other settings to a results.json (its numbers would not compare)."""
    conf = results["config"]
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k in RESUME_SETTINGS}
    wrong = {k: (conf.get(k), v) for k, v in expected.items() if k in conf and conf[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={got!r} (this run: {want!r})" for k, (got, want) in wrong.items())
        raise BenchSettingsError(
            f"--resume: {path} was written with other settings: {detail}; run with those settings, or give another --out"
        )


def fill_discriminability(results: dict[str, Any], log: Callable[[str], None] = print) -> int:
    """Add the per-seed ANOVA F profile to datasets whose results predate it.

    Re-splits and re-preprocesses the dataset with the results' own settings (the split and the
    preprocessing depend only on them and the seed). Datasets that cannot be loaded here are
    left as they are, with a message. Returns the number of profiles added.
    """
    conf = results.get("config", {})
    cfg = BenchConfig(
        data_dir=conf.get("data_dir"),
        preprocessing=conf.get("preprocessing", "auto"),
        val_fraction=conf.get("val_fraction", 0.1),
        test_fraction=conf.get("test_fraction", 0.1),
    )
    added = 0
    for ds, methods in results["results"].items():
        info = results["datasets"].get(ds)
        seeds = sorted({s for runs in methods.values() for s in runs}, key=int)
        missing = [s for s in seeds if info is not None and s not in info.get("f_score", {})]
        if not missing:
            continue
        try:
            spectra = datasets.load(ds, data_dir=cfg.data_dir)
        except Exception as exc:  # noqa: BLE001 - any load failure: report without the profile
            log(f"{ds}: no discriminability profile ({exc}); claim (d) is reported without it")
            continue
        for seed in missing:
            data = prepare_split(spectra, int(seed), cfg)
            if data.Z["train"].shape[1] != len(info["axis"]):
                log(f"{ds}: preprocessing here gives {data.Z['train'].shape[1]} points, results have {len(info['axis'])}; skipped")
                break
            info.setdefault("f_score", {})[seed] = discriminability(data.Z["train"], data.y["train"]).tolist()
            added += 1
    return added

