"""Evaluate a fitted classifier: per-exit accuracy, anytime and budgeted-batch curves, confusion.

Used by ``scai evaluate``, ``scai demo`` and the paper benchmark, so that every number in
``metrics.json`` is computed in one place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scai.inference import anytime_curve, budgeted_batch_curve, default_budgets
from scai.report.plots import plot_accuracy_vs_macs, plot_allocation_heatmap, plot_confusion

__all__ = ["evaluate", "exit_table", "write_metrics", "per_class_table", "training_overlap", "validation_note",
           "TINY_VALIDATION"]

#: Held-out spectra per class below which the stored calibration is flagged as resting on few spectra.
TINY_VALIDATION = 5


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def exit_table(
    probs: np.ndarray, costs: np.ndarray, y: np.ndarray, exit_macs: list[int], first: int = 0
) -> list[dict[str, Any]]:
    """One row per exit: full-compute MACs, mean MACs actually spent, accuracy.

    Exits are numbered from ``first`` (0: the 0-based position used by ``predict_detailed``,
    ``scai predict``, the server and the edge; in the default model exit 0 is the linear exit).
    """
    rows = []
    for i in range(probs.shape[0]):
        rows.append(
            {
                "exit": i + first,
                "macs": int(exit_macs[i]),
                "mean_macs": float(np.mean(costs[:, i])),
                "accuracy": float(np.mean(probs[i].argmax(1) == y)),
            }
        )
    return rows


def per_class_table(confusion: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall and support per class from a confusion matrix (rows: true, columns: predicted).

    A class never predicted has precision ``None`` (undefined), not 0.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    rows = []
    for k, name in enumerate(class_names):
        predicted, support = cm[:, k].sum(), cm[k, :].sum()
        rows.append({
            "class": name,
            "precision": float(cm[k, k] / predicted) if predicted else None,
            "recall": float(cm[k, k] / support) if support else None,
            "support": int(support),
        })
    return rows


def training_overlap(X: np.ndarray, training_rows: set[str] | None) -> int | None:
    """How many spectra of ``X`` the model was fitted on (:meth:`scai.model_dir.ModelDir.training_rows`);
    None when the model does not store its training rows."""
    if training_rows is None:
        return None
    from scai.model_dir import row_digests

    return int(sum(d in training_rows for d in row_digests(X)))


def validation_note(estimator: Any) -> str | None:
    """A warning when the held-out spectra that calibration rests on are few, else None."""
    y = np.asarray(estimator.validation_.get("y", np.zeros(0, dtype=np.int64)))
    n_classes = len(estimator.classes_)
    counts = np.bincount(y.astype(np.int64), minlength=n_classes) if y.size else np.zeros(n_classes, dtype=np.int64)
    if counts.min() >= TINY_VALIDATION:
        return None
    where = "out-of-fold predictions" if getattr(estimator, "cross_fit_", None) else "validation split"
    return (f"tiny {where}: {len(y)} held-out spectra, as few as {int(counts.min())} in one class (fewer than "
            f"{TINY_VALIDATION}); temperatures and budgeted-batch thresholds rest on them and may be far off")


def evaluate(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    axis: np.ndarray | None = None,
    *,
    out_dir: str | Path | None = None,
    n_budgets: int = 12,
    title: str = "",
    detail: bool = False,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Score ``estimator`` on labelled spectra; optionally write metrics.json and the plots.

    Budgeted-batch thresholds are calibrated on the validation split stored with the model and
    applied to ``X``, as in the paper's protocol. ``detail`` adds a confusion matrix per exit
    (``confusion_per_exit``) and per-class precision/recall of the final answer (``per_class``);
    ``notes`` (warnings that apply to these numbers) are stored as ``warnings``.
    """
    y_idx = estimator._encode(np.asarray(y), "y")
    probs, costs = estimator.exit_outputs(X, axis)
    val_probs, val_costs = estimator.validation_outputs()
    budgets = default_budgets(costs, n=n_budgets)
    final_pred = probs[-1].argmax(1)
    class_names = [str(c) for c in estimator.classes_]
    metrics: dict[str, Any] = {
        "mac_convention": "MACs = multiply-accumulates per spectrum; FLOPs = 2 x MACs",
        "exit_numbering": "0-based position in the model (as predict_detailed, scai predict, the server and the edge)",
        "n_samples": int(len(y_idx)),
        "exits": exit_table(probs, costs, y_idx, estimator.exit_macs_),
        "anytime": anytime_curve(probs, costs, y_idx, budgets),
        "budgeted_batch": budgeted_batch_curve(val_probs, val_costs, probs, costs, y_idx, budgets),
        "confusion": _confusion(y_idx, final_pred, len(class_names)).tolist(),
        "class_names": class_names,
        "accuracy": float(np.mean(final_pred == y_idx)),
    }
    if detail:
        k = len(class_names)
        metrics["confusion_per_exit"] = [_confusion(y_idx, p.argmax(1), k).tolist() for p in probs]
        metrics["per_class"] = per_class_table(np.asarray(metrics["confusion"]), class_names)
    if notes is not None:
        metrics["warnings"] = list(notes)
    if out_dir is not None:
        write_metrics(metrics, out_dir, title=title)
        _maybe_heatmap(estimator, X, axis, Path(out_dir), title)
    return metrics


def write_metrics(metrics: dict[str, Any], out_dir: str | Path, title: str = "") -> Path:
    """Write ``metrics.json``, ``anytime.png``, ``budgeted_batch.png`` and ``confusion.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    exits = [(r["mean_macs"], r["accuracy"]) for r in metrics["exits"]]
    plot_accuracy_vs_macs(
        {"anytime": metrics["anytime"]}, out / "anytime.png", title=f"{title} anytime".strip(), points={"single exits": exits}
    )
    plot_accuracy_vs_macs(
        {"budgeted batch": metrics["budgeted_batch"]},
        out / "budgeted_batch.png",
        title=f"{title} budgeted batch".strip(),
        points={"single exits": exits},
    )
    plot_confusion(np.asarray(metrics["confusion"]), metrics["class_names"], out / "confusion.png", title=title)
    return out / "metrics.json"


def _maybe_heatmap(estimator: Any, X: np.ndarray, axis: np.ndarray | None, out: Path, title: str) -> None:
    """For PA networks, the mean units executed per position and block (paper Fig. 10)."""
    import torch

    Z = estimator.transform_input(X, axis)
    with torch.inference_mode():
        detail = estimator.network_.forward_detailed(torch.from_numpy(Z).unsqueeze(1))
    if not detail.units_executed:
        return
    units = [u.double().mean(0).numpy() for u in detail.units_executed]
    plot_allocation_heatmap(
        units,
        estimator.pipeline_.output_axis_ if getattr(estimator.pipeline_, "output_axis_", None) is not None else np.arange(Z.shape[1]),
        out / "allocation.png",
        mean_spectrum=Z.mean(0),
        axis_unit=estimator.axis_unit_,
        title=f"{title} computation allocation".strip(),
    )
