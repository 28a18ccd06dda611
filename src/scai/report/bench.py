"""Reproduce the paper's experiments (§4.4–4.7): every method on every dataset, same splits.

For each dataset and seed the data are split once (stratified 8:1:1, or the file's official
train/test split with 10 % of train held out for validation — the protocol of the shared
datasets README), the preprocessing pipeline is fitted once on the training part, and every
method — SCAI, SCAI+, SCAI+ without distillation, ResNet-1D / DRSN-CS / DRSN-CW at several
depths, and the classical anchors SVM-RBF, PLS-DA, logistic regression and MiniRocket — is
trained and scored on exactly those arrays. Networks are scored with
:func:`scai.report.evaluation.evaluate` (per-exit accuracy and MACs, anytime and budgeted-batch
curves), so every number has one definition.

``run_benchmark`` writes ``results.json`` after every finished (dataset, method, seed) run, so
an interrupted run resumes where it stopped; ``summarize`` turns the results into the table and
the claims that :mod:`scai.report.html` renders. MACs are multiply-accumulates per spectrum;
FLOPs = 2 x MACs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scai.errors import BenchSettingsError

__all__ = [
    "SCHEMA",
    "FAMILIES",
    "MethodSpec",
    "BenchConfig",
    "SplitData",
    "default_methods",
    "quick_config",
    "prepare_split",
    "run_method",
    "run_benchmark",
    "load_results",
    "save_results",
    "merge_results",
    "summarize",
    "compute_spent",
    "mean_curve",
    "curve_at",
    "macs_to_reach",
    "allocation_bands",
    "allocation_vs_discriminability",
    "allocation_vs_intensity",
    "discriminability",
    "fill_discriminability",
    "top_bands",
]

SCHEMA = "scai-bench/1"
#: Claim (d) counts as holding on a dataset when the rank correlation between SCAI+'s units
#: executed and the class discriminability (ANOVA F) along the axis reaches this, and the busiest
#: 10 % of positions overlap the most discriminative 10 % at least twice as often as chance.
RHO_INFORMATIVE = 0.3
MAC_CONVENTION = "MACs = multiply-accumulates per spectrum (conv + linear); FLOPs = 2 x MACs"

#: Display name of each method family, in table order.
FAMILIES: dict[str, str] = {
    "scai": "SCAI",
    "scai_plus": "SCAI+",
    "scai_plus_nokd": "SCAI+ w/o KD",
    "resnet1d": "ResNet-1D",
    "drsn_cs": "DRSN-CS",
    "drsn_cw": "DRSN-CW",
    "svm_rbf": "SVM-RBF",
    "pls_da": "PLS-DA",
    "logreg_snv": "logistic (SNV)",
    "minirocket": "MiniRocket",
}
ADAPTIVE = ("scai", "scai_plus", "scai_plus_nokd")
STATIC = ("resnet1d", "drsn_cs", "drsn_cw")
CLASSICAL = ("svm_rbf", "pls_da", "logreg_snv", "minirocket")
DEFAULT_DEPTHS = (2, 4, 8, 16)
QUICK_DEPTHS = (1, 2)
#: Tiny networks for ``--quick``: the point is to exercise the pipeline, not to score.
QUICK_SCAI = {"channels": (4, 4, 4, 4), "units_per_block": 2, "stem_stride": 8}
QUICK_STATIC = {"channels": (4, 4, 4, 4), "stem_stride": 8}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the benchmark.

    ``name`` is the key in results.json (``resnet1d_d4`` for ResNet-1D with 4 units);
    ``family`` a key of :data:`FAMILIES`.
    """

    name: str  # key in results.json
    family: str  # key of FAMILIES
    model: str | None = None  # registered network (None for classical anchors)
    depth: int | None = None  # residual units of a static network
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the family's config
    train_config: dict[str, Any] = field(default_factory=dict)  # overrides of TrainConfig (e.g. distill)
    estimator_params: dict[str, Any] = field(default_factory=dict)  # extra SCAIClassifier parameters

    @property
    def kind(self) -> str:
        """``"adaptive"``, ``"static"`` or ``"classical"``."""
        return "adaptive" if self.family in ADAPTIVE else "static" if self.family in STATIC else "classical"


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run (saved in results.json)."""

    datasets: tuple[str, ...] = ()  # dataset names; () = every dataset in the data folder
    seeds: tuple[int, ...] = (0, 1, 2)  # one split + initialisation per seed
    epochs: int = 200  # maximum epochs per network
    patience: int = 50  # early-stopping patience (paper: 50)
    batch_size: int = 32  # mini-batch size
    depths: tuple[int, ...] = DEFAULT_DEPTHS  # residual units of the static baselines
    methods: tuple[str, ...] = ()  # method names or families to run; () = all
    out: str = "benchmarks/results/paper"  # results folder
    data_dir: str | None = None  # folder of <name>.npz (None: SCAI_DATA_DIR or ../shared/datasets)
    preprocessing: str = "auto"  # "auto" (raman for cm-1 axes, ftir otherwise) or a default_pipeline kind
    threads: int = 2  # torch intra-op threads
    resume: bool = False  # skip (dataset, method, seed) already in results.json
    quick: bool = False  # tiny networks (pipeline check, not a measurement)
    val_fraction: float = 0.1  # validation share (8:1:1 or 10 % of the official train)
    test_fraction: float = 0.1  # test share for sets without an official split
    minirocket_kernels: int = 10000  # MiniRocket kernels (aeon default 10 000)


@dataclass
class SplitData:
    """One dataset split and preprocessed once, shared by every method of a seed."""

    name: str
    seed: int
    protocol: str
    axis: np.ndarray  # the preprocessing pipeline's output axis
    axis_unit: str
    class_names: tuple[str, ...]
    Z: dict[str, np.ndarray]  # "train"/"val"/"test" -> preprocessed float32 (n, W')
    y: dict[str, np.ndarray]  # "train"/"val"/"test" -> int64 labels
    preprocessing: list[str]
    preprocess_time_s: float


# --------------------------------------------------------------------------- configuration
def default_methods(depths: Sequence[int] = DEFAULT_DEPTHS, quick: bool = False) -> list[MethodSpec]:
    """The paper's methods plus the classical anchors, in table order."""
    scai_cfg = dict(QUICK_SCAI) if quick else {}
    static_cfg = dict(QUICK_STATIC) if quick else {}
    methods = [
        MethodSpec("scai", "scai", "scai", model_config=scai_cfg),
        MethodSpec("scai_plus", "scai_plus", "scai_plus", model_config=scai_cfg),
        MethodSpec("scai_plus_nokd", "scai_plus_nokd", "scai_plus", model_config=scai_cfg, train_config={"distill": "none"}),
    ]
    for family in STATIC:
        for d in sorted(depths):
            methods.append(MethodSpec(f"{family}_d{d}", family, family, depth=d, model_config={**static_cfg, "depth": d}))
    methods.extend(MethodSpec(f, f) for f in CLASSICAL)
    return methods


def select_methods(methods: list[MethodSpec], wanted: Sequence[str]) -> list[MethodSpec]:
    """Keep methods named in ``wanted`` (a method name or a family name selects all its depths)."""
    if not wanted:
        return methods
    known = {m.name for m in methods} | {m.family for m in methods}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise BenchSettingsError(f"unknown method(s) {unknown}; choose from {', '.join(sorted(known))}")
    return [m for m in methods if m.name in wanted or m.family in wanted]


def quick_config(**overrides: Any) -> BenchConfig:
    """Settings of ``--quick``: embedded milk_adulteration, seed 0, 2 epochs, tiny networks."""
    base = dict(
        datasets=("milk_adulteration",),
        seeds=(0,),
        epochs=2,
        patience=2,
        batch_size=64,
        depths=QUICK_DEPTHS,
        out="benchmarks/results/paper-quick",
        quick=True,
        minirocket_kernels=840,
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return BenchConfig(**base)


# --------------------------------------------------------------------------- data
def _pipeline_kind(requested: str, axis_unit: str) -> str:
    if requested != "auto":
        return requested
    return "raman" if axis_unit == "cm-1" else "ftir"


def _split_indices(spectra: Any, seed: int, cfg: BenchConfig) -> tuple[tuple[np.ndarray, ...], str]:
    from scai.data import official_split, train_val_test_split

    if spectra.train_idx is not None and spectra.test_idx is not None:
        idx = official_split(spectra, val_fraction=cfg.val_fraction, seed=seed)
        return idx, f"official train/test split of the file, {cfg.val_fraction:.0%} of train (stratified, seeded) for validation"
    tr = 1.0 - cfg.val_fraction - cfg.test_fraction
    idx = train_val_test_split(spectra, ratios=(tr, cfg.val_fraction, cfg.test_fraction), seed=seed)
    ratio = f"{tr * 10:g}:{cfg.val_fraction * 10:g}:{cfg.test_fraction * 10:g}"
    if spectra.groups is not None:
        return idx, f"grouped stratified train/val/test ~{ratio} (replicates of one sample kept in one part)"
    return idx, f"stratified train/val/test {ratio} (random; the file has no replicate group ids)"


def prepare_split(spectra: Any, seed: int, cfg: BenchConfig) -> SplitData:
    """Split ``spectra`` for ``seed`` and fit the preprocessing on the training part only."""
    from scai.preprocessing import default_pipeline

    (tr, va, te), protocol = _split_indices(spectra, seed, cfg)
    kind = _pipeline_kind(cfg.preprocessing, spectra.axis_unit)
    t0 = time.perf_counter()
    pipe = default_pipeline(kind)
    Z = {"train": pipe.fit_transform(spectra.X[tr], axis=spectra.axis)}
    Z.update(val=pipe.transform(spectra.X[va]), test=pipe.transform(spectra.X[te]))
    Z = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in Z.items()}
    out_axis = getattr(pipe, "output_axis_", None)
    return SplitData(
        name=str(spectra.source),
        seed=seed,
        protocol=protocol,
        axis=np.asarray(spectra.axis if out_axis is None else out_axis, dtype=np.float64),
        axis_unit=spectra.axis_unit,
        class_names=tuple(spectra.class_names),
        Z=Z,
        y={"train": spectra.y[tr], "val": spectra.y[va], "test": spectra.y[te]},
        preprocessing=[kind] + [type(s).__name__ for s in getattr(pipe, "steps", [])],
        preprocess_time_s=time.perf_counter() - t0,
    )


def discriminability(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-position one-way ANOVA F statistic of the classes (training spectra; claim d).

    The between-class over within-class variance at every point of the axis: high where the
    classes differ. Constant positions (F undefined) get 0. Rounded to 4 significant digits.
    """
    from sklearn.feature_selection import f_classif

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Features [...] are constant": handled below
        f, _ = f_classif(np.asarray(Z, dtype=np.float64), np.asarray(y))
    f = np.nan_to_num(f, nan=0.0, posinf=0.0)
    return np.asarray([float(f"{v:.4g}") for v in f])


def fill_discriminability(results: dict[str, Any], log: Callable[[str], None] = print) -> int:
    """Add the per-seed ANOVA F profile to datasets whose results predate it.

    Re-splits and re-preprocesses the dataset with the results' own settings (the split and the
    preprocessing depend only on them and the seed). Datasets that cannot be loaded here are
    left as they are, with a message. Returns the number of profiles added.
    """
    from scai import datasets

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


# --------------------------------------------------------------------------- one run
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
    from scai.estimators import SCAIClassifier
    from scai.report.evaluation import evaluate

    est = SCAIClassifier(
        model=spec.model or spec.family,
        model_config=spec.model_config or None,
        train_config=_train_overrides(spec, cfg, data.seed),
        preprocessing="none",  # already applied once in prepare_split, identically for every method
        random_state=data.seed,
        **spec.estimator_params,
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


def _classical_estimator(spec: MethodSpec, cfg: BenchConfig, seed: int) -> Any:
    """The anchor for ``spec``. SVM and logistic regression standardise every point of the axis
    first (fitted on train), as scikit-learn advises for both: unscaled they lose 4-6 points on
    the UCR sets (docs/benchmarks.md), and a weak anchor would flatter the networks."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if spec.family == "svm_rbf":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10.0, gamma="scale"))
    if spec.family == "pls_da":
        return PLSRegression(n_components=10, scale=False)
    if spec.family == "logreg_snv":
        # newton-cg: 10x faster than lbfgs here
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="newton-cg", max_iter=1000))
    from aeon.classification.convolution_based import MiniRocketClassifier

    return MiniRocketClassifier(n_kernels=cfg.minirocket_kernels, random_state=seed, n_jobs=1)


def _classical_fit_predict(spec: MethodSpec, model: Any, data: SplitData) -> tuple[float, float, np.ndarray]:
    """Fit on train, predict test; PLS-DA regresses one-hot targets and takes the argmax."""
    n_classes = len(data.class_names)
    Ztr, Zte = data.Z["train"], data.Z["test"]
    if spec.family == "minirocket":
        Ztr, Zte = Ztr[:, None, :], Zte[:, None, :]
    target = np.eye(n_classes)[data.y["train"]] if spec.family == "pls_da" else data.y["train"]
    if spec.family == "pls_da":
        model.set_params(n_components=max(1, min(model.n_components, Ztr.shape[0] - 1, Ztr.shape[1])))
    t0 = time.perf_counter()
    model.fit(Ztr, target)
    train_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.predict(Zte)
    infer_time = time.perf_counter() - t0
    pred = np.asarray(out).argmax(1) if spec.family == "pls_da" else np.asarray(out)
    return train_time, infer_time, pred.astype(np.int64)


def _classical_macs(spec: MethodSpec, model: Any, width: int, n_classes: int) -> int | None:
    """Rough inference MACs of a fitted classical model (preprocessing excluded; see docs).

    A leading per-point standardisation costs one multiply-add per point (``width``).
    """
    scaling = width if hasattr(model, "steps") else 0
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if spec.family == "svm_rbf":
        n_sv = int(np.sum(final.n_support_))
        return scaling + n_sv * width + n_sv * n_classes  # one distance per support vector + dual sums
    if spec.family == "pls_da":
        k = int(final.n_components)
        return width * k + k * n_classes
    if spec.family == "logreg_snv":
        return scaling + width * n_classes
    return _minirocket_macs(width, n_classes, int(model.n_kernels))


def _minirocket_macs(width: int, n_classes: int, n_kernels: int) -> int:
    """84 base kernels x 9 taps over the series per dilation, plus the ridge readout.

    The dilations follow MiniRocket's rule (unique floors of a base-2 log grid up to
    (W - 1) / 8, at most 32 per kernel); the pooling (PPV) is not a MAC.
    """
    features_per_kernel = max(1, n_kernels // 84)
    max_exp = math.log2(max(width - 1, 9) / 8)
    n_dil = min(32, features_per_kernel)
    dilations = np.unique(np.floor(np.logspace(0, max_exp, n_dil, base=2)).astype(int))
    return int(84 * 9 * width * dilations.size + 84 * features_per_kernel * n_classes)


def run_classical(spec: MethodSpec, data: SplitData, cfg: BenchConfig) -> dict[str, Any]:
    """Fit one classical anchor on the preprocessed split; one 'exit' in the results schema."""
    from threadpoolctl import threadpool_limits

    model = _classical_estimator(spec, cfg, data.seed)
    with threadpool_limits(cfg.threads):  # the same cores as the networks get
        train_time, infer_time, pred = _classical_fit_predict(spec, model, data)
    y = data.y["test"]
    acc = float(np.mean(pred == y))
    macs = _classical_macs(spec, model, data.Z["train"].shape[1], len(data.class_names))
    k = len(data.class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    return {
        "mac_convention": MAC_CONVENTION + "; classical anchors: rough analytical count, preprocessing excluded",
        "n_samples": int(len(y)),
        "exits": [{"exit": 1, "macs": macs, "mean_macs": float(macs) if macs else None, "accuracy": acc}],
        "anytime": [],
        "budgeted_batch": [],
        "confusion": confusion.tolist(),
        "class_names": list(data.class_names),
        "accuracy": acc,
        "train_time_s": train_time,
        "inference_time_s": infer_time,
        "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
    }


def run_method(spec: MethodSpec, data: SplitData, cfg: BenchConfig) -> dict[str, Any]:
    """Run one (dataset, method, seed) and add the bookkeeping fields."""
    cpu0 = time.process_time()
    run = run_classical(spec, data, cfg) if spec.kind == "classical" else run_network(spec, data, cfg)
    # CPU seconds of all threads: comparable across runs even when the machine is shared
    run["cpu_time_s"] = time.process_time() - cpu0
    run.update(method=spec.name, family=spec.family, kind=spec.kind, depth=spec.depth, seed=data.seed)
    return run


# --------------------------------------------------------------------------- the loop
def load_results(path: str | Path) -> dict[str, Any]:
    """Read results.json; raises ``ValueError`` when it is not a scai benchmark file."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA!r}")
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
        raise ValueError("merge_results needs at least one results.json")
    names = list(sources) if sources is not None else [f"part {i + 1}" for i in range(len(parts))]
    merged = copy.deepcopy(parts[0])
    merged["results"], merged["datasets"] = {}, {}
    seen: dict[tuple[str, str, str], str] = {}
    for part, name in zip(parts, names):
        if part.get("schema") != SCHEMA:
            raise ValueError(f"{name}: schema {part.get('schema')!r} is not {SCHEMA!r}")
        for ds, info in part.get("datasets", {}).items():
            target = merged["datasets"].setdefault(ds, copy.deepcopy(info))
            target.setdefault("splits", {}).update(info.get("splits", {}))
            target.setdefault("f_score", {}).update(info.get("f_score", {}))
        for ds, methods in part["results"].items():
            for method, runs in methods.items():
                for seed, run in runs.items():
                    key = (ds, method, seed)
                    if key in seen:
                        raise ValueError(
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
    import sklearn
    import torch

    from scai._version import __version__

    return {
        "scai": __version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": cfg.threads,
    }


def _new_results(cfg: BenchConfig) -> dict[str, Any]:
    conf = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    return {"schema": SCHEMA, "mac_convention": MAC_CONVENTION, "config": conf, "environment": _environment(cfg), "datasets": {}, "results": {}}


def _dataset_info(spectra: Any, data: SplitData) -> dict[str, Any]:
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


def _done(results: dict[str, Any], ds: str, method: str, seed: int) -> bool:
    return str(seed) in results["results"].get(ds, {}).get(method, {})


#: Settings every run of one results.json shares; ``--resume`` with other values is refused.
RESUME_SETTINGS = ("epochs", "patience", "batch_size", "depths", "preprocessing", "val_fraction", "test_fraction",
                   "minirocket_kernels", "quick")


def _check_resume(results: dict[str, Any], cfg: BenchConfig, path: Path) -> None:
    """Refuse to add runs with other settings to a results.json (its numbers would not compare)."""
    conf = results["config"]
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k in RESUME_SETTINGS}
    wrong = {k: (conf.get(k), v) for k, v in expected.items() if k in conf and conf[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={got!r} (this run: {want!r})" for k, (got, want) in wrong.items())
        raise BenchSettingsError(
            f"--resume: {path} was written with other settings: {detail}; run with those settings, or give another --out"
        )


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and score every (dataset, method, seed); write results.json after each run.

    Returns the results dictionary (also at ``<out>/results.json``).
    """
    import torch

    from scai import datasets

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = load_results(path) if cfg.resume and path.is_file() else _new_results(cfg)
    _check_resume(results, cfg, path)
    names = list(cfg.datasets) or datasets.list(cfg.data_dir)
    methods = select_methods(default_methods(cfg.depths, cfg.quick), cfg.methods)
    total, count = len(names) * len(cfg.seeds) * len(methods), 0
    for ds in names:
        spectra = datasets.load(ds, data_dir=cfg.data_dir)
        for seed in cfg.seeds:
            todo = [m for m in methods if not _done(results, ds, m.name, seed)]
            count += len(methods) - len(todo)
            if not todo:
                continue
            data = prepare_split(spectra, seed, cfg)
            info = results["datasets"].setdefault(ds, _dataset_info(spectra, data))
            info["splits"][str(seed)] = {k: int(len(v)) for k, v in data.y.items()}
            info.setdefault("f_score", {})[str(seed)] = discriminability(data.Z["train"], data.y["train"]).tolist()
            for spec in todo:
                count += 1
                run = run_method(spec, data, cfg)
                run["preprocess_time_s"] = data.preprocess_time_s
                results["results"].setdefault(ds, {}).setdefault(spec.name, {})[str(seed)] = run
                _write_json(results, path)
                log(
                    f"[{count}/{total}] {ds} {spec.name} seed={seed}: accuracy {run['accuracy']:.3f}, "
                    f"train {run['train_time_s']:.1f} s, test inference {run['inference_time_s'] * 1e3:.0f} ms"
                    + (f", {run['epochs_run']} epochs" if "epochs_run" in run else "")
                )
    _write_json(results, path)
    return results


# --------------------------------------------------------------------------- curves
def curve_at(rows: Sequence[dict[str, Any]], macs: float, setting: str) -> float | None:
    """Accuracy of one curve at ``macs``; None below its cheapest point.

    Anytime: the budget is per spectrum, so take the last point whose budget fits (a step
    function). Budgeted batch: interpolate accuracy linearly in log mean MACs spent. Above the
    most expensive point both return its accuracy (more budget cannot be used).
    """
    if not rows:
        return None
    key = "budget_macs" if setting == "anytime" else "mean_macs"
    pts = sorted((float(r[key]), float(r["accuracy"])) for r in rows if r.get(key))
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    if macs < xs[0] * (1 - 1e-9):
        return None
    if setting == "anytime":
        return float(ys[np.searchsorted(xs, macs * (1 + 1e-9), side="right") - 1])
    return float(np.interp(np.log(macs), np.log(xs), ys))


def mean_curve(curves: Sequence[Sequence[dict[str, Any]]], setting: str, n: int = 40) -> list[dict[str, float]]:
    """Mean over seeds of curves evaluated on a common log grid of MACs (NaN-free points only)."""
    key = "budget_macs" if setting == "anytime" else "mean_macs"
    xs = [float(r[key]) for c in curves for r in c if r.get(key)]
    if not xs:
        return []
    grid = np.unique(np.geomspace(min(xs), max(xs), n)) if max(xs) > min(xs) else np.array([min(xs)])
    rows = []
    for g in grid:
        vals = [curve_at(c, g, setting) for c in curves]
        vals = [v for v in vals if v is not None]
        if len(vals) == len(curves):
            rows.append({"mean_macs": float(g), "accuracy": float(np.mean(vals)), "std": float(np.std(vals))})
    return rows


def macs_to_reach(points: Sequence[tuple[float, float]], target: float) -> tuple[float | None, str]:
    """MACs a family of static depths needs to reach ``target`` accuracy (log-linear interpolation).

    Returns ``(macs, note)``; ``macs`` is None with note ``"not reached"`` when no depth reaches
    it, and the note is ``"shallowest depth"`` when the cheapest depth already does.
    """
    pts = sorted(points)
    for i, (m, a) in enumerate(pts):
        if a >= target - 1e-12:
            if i == 0:
                return m, "shallowest depth"
            m0, a0 = pts[i - 1]
            t = (target - a0) / (a - a0) if a > a0 else 1.0
            return float(math.exp(math.log(m0) + t * (math.log(m) - math.log(m0)))), "interpolated"
    return None, "not reached"


# --------------------------------------------------------------------------- allocation
def _profile(units: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """Blocks' mean units executed mapped onto the input axis by relative position, then averaged."""
    grid = np.linspace(0.0, 1.0, width)
    rows = [np.interp(grid, np.linspace(0.0, 1.0, len(u)), np.asarray(u, dtype=np.float64)) for u in units]
    return np.mean(rows, axis=0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two profiles along the axis; 0 when either is flat (undefined)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0


def allocation_bands(units: Sequence[Sequence[float]], axis: np.ndarray, top_fraction: float = 0.1, k: int = 5) -> list[dict[str, float]]:
    """The ``k`` spectral ranges where SCAI+ runs the most units (claim d); see :func:`top_bands`."""
    axis = np.asarray(axis, dtype=np.float64)
    return top_bands(_profile(units, axis.size), axis, top_fraction, k)


def top_bands(prof: np.ndarray, axis: np.ndarray, top_fraction: float = 0.1, k: int = 5) -> list[dict[str, float]]:
    """The ``k`` ranges of ``axis`` where the profile ``prof`` is highest.

    Positions in the top ``top_fraction`` of the profile are merged into contiguous ranges
    (gaps under 1 % of the axis are bridged) and ranked by their mean value (``mean_units``).
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = np.asarray(prof, dtype=np.float64)
    hot = prof >= np.quantile(prof, 1.0 - top_fraction)
    gap = max(1, axis.size // 100)
    runs: list[list[int]] = []
    for i in np.flatnonzero(hot):
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    bands = [{"from": float(axis[a]), "to": float(axis[b]), "mean_units": float(prof[a : b + 1].mean())} for a, b in runs]
    return sorted(bands, key=lambda r: -r["mean_units"])[:k]


# --------------------------------------------------------------------------- summary
def _runs(results: dict[str, Any], ds: str, method: str) -> list[dict[str, Any]]:
    return [results["results"][ds][method][s] for s in sorted(results["results"].get(ds, {}).get(method, {}), key=int)]


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _static_points(results: dict[str, Any], ds: str, family: str) -> list[tuple[float, float]]:
    pts = []
    for method, by_seed in results["results"].get(ds, {}).items():
        runs = list(by_seed.values())
        if runs and runs[0]["family"] == family:
            pts.append((float(np.mean([r["exits"][0]["macs"] for r in runs])), float(np.mean([r["accuracy"] for r in runs]))))
    return sorted(pts)


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
        runs = _runs(results, ds, method)
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


def _claim_a(results: dict[str, Any], ds: str) -> dict[str, Any]:
    """SCAI / SCAI+ vs every static depth at the static network's MACs, anytime and batch."""
    out: dict[str, Any] = {"comparisons": [], "wins": 0, "losses": 0, "skipped": 0}
    for adaptive in ("scai", "scai_plus"):
        runs = _runs(results, ds, adaptive) if adaptive in results["results"].get(ds, {}) else []
        if not runs:
            continue
        for setting, key in (("anytime", "anytime"), ("batch", "budgeted_batch")):
            for family in STATIC:
                for m, a in _static_points(results, ds, family):
                    vals = [curve_at(r[key], m, setting) for r in runs]
                    if any(v is None for v in vals):
                        out["skipped"] += 1
                        continue
                    acc = float(np.mean(vals))
                    win = acc >= a - 1e-12
                    out["wins" if win else "losses"] += 1
                    out["comparisons"].append({"method": adaptive, "setting": setting, "baseline": family, "macs": m, "baseline_acc": a, "acc": acc, "win": win})
    return out


def _min_macs_reaching(rows: Sequence[dict[str, float]], target: float) -> float | None:
    hits = [r["mean_macs"] for r in rows if r["accuracy"] >= target - 1e-12]
    return min(hits) if hits else None


def _claim_b(results: dict[str, Any], ds: str) -> dict[str, Any] | None:
    """MACs ResNet-1D needs to reach SCAI+'s final-exit accuracy, against SCAI+'s own cost."""
    points = _static_points(results, ds, "resnet1d")
    if "scai_plus" not in results["results"].get(ds, {}) or not points:
        return None  # not tested: "no depth reaches it" needs depths that ran
    runs = _runs(results, ds, "scai_plus")
    target = float(np.mean([r["accuracy"] for r in runs]))
    batch = mean_curve([r["budgeted_batch"] for r in runs], "batch")
    own = _min_macs_reaching(batch, target) or float(np.mean([r["exits"][-1]["mean_macs"] for r in runs]))
    macs, note = macs_to_reach(points, target)
    return {
        "target_accuracy": target,
        "scai_plus_macs": own,
        "resnet_macs": macs,
        "note": note,
        "ratio": macs / own if macs else None,
        "deepest_ratio": max(m for m, _ in points) / own,  # how far "not reached" was looked for
    }


def _claim_c(results: dict[str, Any], ds: str) -> dict[str, Any] | None:
    """Per-exit accuracy of SCAI+ minus SCAI+ w/o KD (shallow exits should gain)."""
    have = results["results"].get(ds, {})
    if "scai_plus" not in have or "scai_plus_nokd" not in have:
        return None
    kd = np.array([[e["accuracy"] for e in r["exits"]] for r in _runs(results, ds, "scai_plus")])
    nokd = np.array([[e["accuracy"] for e in r["exits"]] for r in _runs(results, ds, "scai_plus_nokd")])
    diff = kd.mean(0) - nokd.mean(0)
    return {
        "kd": kd.mean(0).tolist(),
        "no_kd": nokd.mean(0).tolist(),
        "kd_std": kd.std(0).tolist(),
        "no_kd_std": nokd.std(0).tolist(),
        "diff": diff.tolist(),
        "shallow_lifted": bool(np.all(diff[:-1] > 0)) if diff.size > 1 else False,
    }


def _claim_d(results: dict[str, Any], ds: str) -> dict[str, Any] | None:
    """Where SCAI+ spends its units: per-block mean profile over seeds, and the top bands."""
    runs = [r for r in _runs(results, ds, "scai_plus") if r.get("allocation")] if "scai_plus" in results["results"].get(ds, {}) else []
    if not runs:
        return None
    axis = np.asarray(results["datasets"][ds]["axis"])
    units = [np.mean([r["allocation"][b] for r in runs], axis=0).tolist() for b in range(len(runs[0]["allocation"]))]
    s = runs[0]["model_config"].get("units_per_block", 4)
    out = {
        "units": units,
        "units_per_block": s,
        "mean_fraction": float(np.mean([np.mean(u) for u in units]) / s),
        "bands": allocation_bands(units, axis),
        "axis_unit": results["datasets"][ds]["axis_unit"],
    }
    f_by_seed = results["datasets"][ds].get("f_score") or {}
    seeds = [str(r["seed"]) for r in runs if str(r.get("seed")) in f_by_seed]
    if seeds:
        out["informative"] = allocation_vs_discriminability(units, np.mean([f_by_seed[k] for k in seeds], axis=0), axis)
    mean_spectrum = results["datasets"][ds].get("mean_spectrum")
    if mean_spectrum:
        out["intensity"] = allocation_vs_intensity(units, np.asarray(mean_spectrum), axis)
    return out


def allocation_vs_discriminability(
    units: Sequence[Sequence[float]], f_score: np.ndarray, axis: np.ndarray, top_fraction: float = 0.1
) -> dict[str, Any]:
    """Does SCAI+ spend its units where the classes differ? (claim d, quantified)

    ``spearman``: rank correlation over the axis between mean units executed and the ANOVA F
    profile; ``top_overlap``: share of the ``top_fraction`` busiest positions that are also among
    the ``top_fraction`` most discriminative ones (``chance`` = ``top_fraction``);
    ``f_bands``: the most discriminative ranges, for comparison with the busiest ones;
    ``holds``: the rule of :data:`RHO_INFORMATIVE`.
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = _profile(units, axis.size)
    f = np.asarray(f_score, dtype=np.float64)
    rho = _spearman(prof, f)
    busy = prof >= np.quantile(prof, 1.0 - top_fraction)  # ties at the threshold all count
    informative = f >= np.quantile(f, 1.0 - top_fraction)
    overlap, chance = float(np.sum(busy & informative) / np.sum(busy)), float(np.mean(informative))
    return {
        "spearman": rho,
        "top_overlap": overlap,
        "chance": chance,
        "holds": bool(rho >= RHO_INFORMATIVE and overlap >= 2 * chance),
        "f_bands": top_bands(f, axis, top_fraction),
        "f_profile": f.round(4).tolist(),
    }


def allocation_vs_intensity(
    units: Sequence[Sequence[float]], mean_spectrum: np.ndarray, axis: np.ndarray, fraction: float = 0.05
) -> dict[str, Any]:
    """Where SCAI+ saves its units, against the strength of the (preprocessed) mean spectrum.

    ``spearman``: rank correlation over the axis between mean units executed and the mean
    training spectrum; ``skip_overlap``: share of the ``fraction`` least busy positions that are
    among the ``fraction`` strongest positions of the mean spectrum (``chance`` = ``fraction``);
    ``quiet_bands``: the ranges with the fewest units executed, quietest first;
    ``skips_peaks``: ``skip_overlap`` is at least twice chance.
    """
    axis = np.asarray(axis, dtype=np.float64)
    prof = _profile(units, axis.size)
    spec = np.asarray(mean_spectrum, dtype=np.float64)
    rho = _spearman(prof, spec)
    quiet = prof <= np.quantile(prof, fraction)  # ties at the threshold all count
    strong = spec >= np.quantile(spec, 1.0 - fraction)
    overlap, chance = float(np.sum(quiet & strong) / np.sum(quiet)), float(np.mean(strong))
    bands = [{**b, "mean_units": -b["mean_units"]} for b in top_bands(-prof, axis, fraction)]
    return {
        "spearman": rho,
        "skip_overlap": overlap,
        "chance": chance,
        "skips_peaks": bool(overlap >= 2 * chance),
        "quiet_bands": bands,
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Table rows, curves and the four claims per dataset, computed from results.json alone."""
    summary: dict[str, Any] = {"datasets": {}}
    for ds in results["results"]:
        summary["datasets"][ds] = {
            "table": _table(results, ds),
            "claim_a": _claim_a(results, ds),
            "claim_b": _claim_b(results, ds),
            "claim_c": _claim_c(results, ds),
            "claim_d": _claim_d(results, ds),
            "compute": compute_spent(results, ds),
        }
    return summary
