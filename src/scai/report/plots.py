"""Figures people would rather look at than read: training curves, accuracy vs compute, confusion.

All functions take plain data (lists/arrays/dicts), write a PNG and return its path; they use the
non-interactive Agg backend so they work on headless machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "plot_training_curves",
    "plot_accuracy_vs_macs",
    "plot_confusion",
    "plot_allocation_heatmap",
    "plot_distillation_curves",
]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(epochs: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Per-exit training/validation accuracy and loss per epoch (the paper's Fig. 11).

    Under cross-fitting "val" is the pooled out-of-fold curve of the folds' networks.
    """
    plt = _plt()
    path = Path(path)
    n_exits = len(epochs[0]["val_acc"]) if epochs else 0
    x = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(n_exits, 1)))
    for i in range(n_exits):
        axes[0].plot(x, [e["val_acc"][i] for e in epochs], color=colors[i], label=f"exit {i + 1} val")
        axes[0].plot(x, [e["train_acc"][i] for e in epochs], color=colors[i], ls=":", alpha=0.7)
        axes[1].plot(x, [e["val_loss"][i] for e in epochs], color=colors[i], label=f"exit {i + 1} val")
        axes[1].plot(x, [e["train_exit_loss"][i] for e in epochs], color=colors[i], ls=":", alpha=0.7)
    axes[0].set(xlabel="epoch", ylabel="accuracy", title="accuracy per exit (solid: val, dotted: train)", ylim=(0, 1.02))
    axes[1].set(xlabel="epoch", ylabel="loss", title="loss per exit (val: CE; train: KD/CE term)")
    axes[1].set_yscale("log")
    if n_exits:
        axes[0].legend(fontsize=8, loc="lower right")
    else:  # cross-fitting found no use for the network, so it was never trained
        for ax in axes:
            ax.text(0.5, 0.5, "no network training\n(the model is exit 0 alone; see config.json cross_fit)",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_macs(
    curves: dict[str, Sequence[dict[str, Any]]],
    path: str | Path,
    *,
    title: str = "",
    points: dict[str, Sequence[tuple[float, float]]] | None = None,
    x_key: str = "mean_macs",
) -> Path:
    """Accuracy against mean MACs per spectrum (log axis), one line per method (Fig. 9)."""
    plt = _plt()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, rows in curves.items():
        rows = sorted(rows, key=lambda r: r[x_key])
        ax.plot([r[x_key] for r in rows], [r["accuracy"] for r in rows], marker="o", ms=3, label=name)
    for name, pts in (points or {}).items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", ls="--", label=name)
    ax.set_xscale("log")
    ax.set(xlabel="mean MACs per spectrum (FLOPs = 2 x MACs)", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    plt = _plt()
    path = Path(path)
    cm = np.asarray(confusion)
    k = len(class_names)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [str(c) for c in class_names], fontsize=8)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if cm[i, j] > top / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_allocation_heatmap(
    units: Sequence[np.ndarray],
    axis: np.ndarray,
    path: str | Path,
    *,
    mean_spectrum: np.ndarray | None = None,
    discriminability: np.ndarray | None = None,
    axis_unit: str = "cm-1",
    title: str = "",
) -> Path:
    """Mean units executed per position for each PA block along the spectral axis (Fig. 10).

    ``units[b]`` is the (W_b,) mean number of units block ``b`` ran at each of its positions;
    positions are mapped onto the input axis by their relative location (blocks downsample).
    ``discriminability`` (the per-position ANOVA F of the classes) is drawn in red over the mean
    spectrum, on its own scale, so the busy positions can be compared with the informative ones.
    """
    plt = _plt()
    path = Path(path)
    axis = np.asarray(axis, dtype=np.float64)
    rows = []
    grid = np.linspace(0.0, 1.0, axis.size)
    for u in units:
        u = np.asarray(u, dtype=np.float64)
        rows.append(np.interp(grid, np.linspace(0.0, 1.0, u.size), u))
    n_plots = 2 if mean_spectrum is not None else 1
    fig, axes = plt.subplots(n_plots, 1, figsize=(10, 1.2 + 0.6 * len(rows) + 1.6 * (n_plots - 1)), sharex=True, squeeze=False)
    if mean_spectrum is not None:
        axes[0, 0].plot(axis, mean_spectrum, color="k", lw=0.8)
        axes[0, 0].set(ylabel="mean input")
        if discriminability is not None:
            twin = axes[0, 0].twinx()
            twin.plot(axis, discriminability, color="tab:red", lw=0.8, alpha=0.8)
            twin.set_ylabel("ANOVA F (classes)", color="tab:red")
    ax = axes[-1, 0]
    im = ax.imshow(
        np.vstack(rows),
        aspect="auto",
        cmap="magma",
        extent=(axis[0], axis[-1], len(rows) + 0.5, 0.5),
        interpolation="nearest",
    )
    ax.set_yticks(range(1, len(rows) + 1), [f"block {i + 1}" for i in range(len(rows))])
    ax.set(xlabel=f"spectral axis ({axis_unit})")
    pad = 0.1 if discriminability is not None and mean_spectrum is not None else 0.05  # room for the F axis
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="mean units executed", shrink=0.9, pad=pad)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_distillation_curves(kd: Sequence[dict[str, Any]], no_kd: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Per-exit accuracy per epoch, SCAI+ vs SCAI+ w/o KD (Fig. 11): solid val, dotted train."""
    plt = _plt()
    path = Path(path)
    n_exits = len(kd[0]["val_acc"]) if kd else len(no_kd[0]["val_acc"])
    fig, axes = plt.subplots(1, n_exits, figsize=(3.2 * n_exits, 3.2), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        for hist, color, label in ((kd, "C0", "SCAI+"), (no_kd, "C3", "SCAI+ w/o KD")):
            x = [e["epoch"] for e in hist]
            ax.plot(x, [e["val_acc"][i] for e in hist], color=color, label=f"{label} val")
            ax.plot(x, [e["train_acc"][i] for e in hist], color=color, ls=":", alpha=0.8, label=f"{label} train")
        ax.set(title=f"exit {i + 1}", xlabel="epoch", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
