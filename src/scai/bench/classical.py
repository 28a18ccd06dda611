"""The classical anchors: SVM-RBF, PLS-DA, logistic regression and MiniRocket.

Each is fitted on the same preprocessed split as the networks and written to results.json as a
run with one 'exit', placed at a rough analytical MAC count of its inference (preprocessing
excluded). MiniRocket needs the ``bench`` extra (aeon), imported only when it runs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from scai.bench.config import BenchConfig
from scai.bench.methods import MethodSpec
from scai.bench.results import MAC_CONVENTION
from scai.bench.splits import SplitData

__all__ = ["run_classical"]


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
