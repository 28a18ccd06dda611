"""Figures people would rather look at than read: training curves, accuracy vs compute, confusion.

All functions take plain data (lists/arrays/dicts), write a PNG and return its path; they use the
non-interactive Agg backend so they work on headless machines.

Class names may be Chinese (or Japanese, Korean): matplotlib's own font has no CJK glyphs and
draws them as boxes. :func:`cjk_font` finds a font that has them and every figure falls back to it
for the characters DejaVu Sans lacks: first one shipped inside an installed wheel (the ``report``
extra, ``pip install 'scai[report]'``, brings ``noto-cjk-sans-otc``: Noto Sans CJK, SIL OFL 1.1;
the Noto Sans CJK of ``mplfonts`` and the Noto Sans SC of ``pylopdf-fonts-zh-cn`` are used as well
when installed), registered with matplotlib from the file itself, nothing downloaded and the
package not imported; else a system one (e.g. Debian's ``fonts-noto-cjk``). Without one, a figure
whose text needs it warns once, naming the text and the extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "cjk_font",
    "plot_band_importance",
    "plot_training_curves",
    "plot_accuracy_vs_macs",
    "plot_confusion",
    "plot_allocation_heatmap",
    "plot_distillation_curves",
]


#: Font families known to cover CJK glyphs, in order of preference.
CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR", "Noto Sans SC",
    "Source Han Sans SC", "Source Han Sans CN", "Source Han Sans", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
    "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB",
)
_CJK: dict[str, str | None] = {}


#: Wheels that ship a CJK font file: (module, glob patterns inside its folder), in order of preference.
#: noto-cjk-sans-otc is the report extra's; the others are used when they happen to be installed.
CJK_FONT_PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("noto_cjk_sans_otc", ("NotoSansCJK-Regular.ttc",)),
    ("mplfonts", ("fonts/NotoSansCJKsc-Regular.otf", "fonts/NotoSans*CJK*.otf")),
    ("pylopdf_fonts_zh_cn", ("NotoSansSC-Regular.otf",)),
)
#: The extra that brings a CJK font (named in the warning when none is found).
CJK_EXTRA = "scai[report]"


def _packaged_cjk_fonts() -> list[Path]:
    """CJK font files shipped inside installed wheels, found without importing those packages."""
    import importlib.util

    files: list[Path] = []
    for module, patterns in CJK_FONT_PACKAGES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        for pattern in patterns:
            files += [f for f in sorted(folder.glob(pattern)) if f not in files]
    return files


def _register(path: Path) -> str | None:
    """Add one font file (a .ttc registers every face) to matplotlib; the CJK family it holds, or None."""
    from matplotlib import font_manager

    before = len(font_manager.fontManager.ttflist)
    try:
        font_manager.fontManager.addfont(str(path))
    except (OSError, RuntimeError, ValueError):
        return None
    names = [f.name for f in font_manager.fontManager.ttflist[before:]]
    if not names:  # already registered (matplotlib's cache or an earlier call)
        names = [f.name for f in font_manager.fontManager.ttflist if Path(f.fname) == path]
    return next((n for n in CJK_FAMILIES if n in names), names[0] if names else None)


def cjk_font() -> str | None:
    """The family name of an installed font with CJK glyphs, registered with matplotlib; or None."""
    if "family" in _CJK:
        return _CJK["family"]
    from matplotlib import font_manager

    found = None
    for path in _packaged_cjk_fonts():
        found = _register(path)
        if found is not None:
            break
    if found is None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        found = next((n for n in CJK_FAMILIES if n in names), None)
    _CJK["family"] = found
    return found


def _needs_cjk(texts: Sequence[str]) -> list[str]:
    """Texts with characters of the CJK blocks (which DejaVu Sans does not cover)."""
    def cjk(ch: str) -> bool:
        o = ord(ch)
        return 0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FA1F
    return [t for t in texts if any(cjk(ch) for ch in str(t))]


def _plt(texts: Sequence[str] = ()) -> Any:
    """pyplot on the Agg backend, with the CJK fallback font when one is installed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    family = cjk_font()
    if family is not None:
        # an explicit family list: matplotlib falls back glyph by glyph along it (not along a generic alias's list)
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", family]
    elif _needs_cjk(texts):
        import warnings

        if not _CJK.get("warned"):
            _CJK["warned"] = "yes"
            warnings.warn(
                f"no font with CJK glyphs is installed, so {_needs_cjk(texts)[0]!r} draws as boxes in the figures; "
                f"install one: pip install '{CJK_EXTRA}' (or apt-get install fonts-noto-cjk)",
                UserWarning, stacklevel=3)
        # that one line says it all: not also matplotlib's warning per missing glyph and figure
        # (set again at each figure: a caller's catch_warnings may have dropped it; an identical filter is replaced)
        warnings.filterwarnings("ignore", message=r"Glyph \d+ \(.*\) missing from font\(s\) DejaVu Sans\.?$",
                                category=UserWarning)
    return plt


def plot_training_curves(
    epochs: Sequence[dict[str, Any]], path: str | Path, title: str = "", *, best_epoch: int | None = None, first_exit: int = 1
) -> Path:
    """Per-exit training/validation accuracy and loss per epoch (the paper's Fig. 11).

    Under cross-fitting "val" is the pooled out-of-fold curve of the folds' networks.
    ``best_epoch`` (the epoch whose weights were kept) is marked by a vertical line;
    ``first_exit`` is the model's number of the network's first exit (1 behind the linear exit 0,
    else 0: the 0-based numbering of scai predict and predict_detailed).
    """
    plt = _plt([title])
    path = Path(path)
    n_exits = len(epochs[0]["val_acc"]) if epochs else 0
    x = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(n_exits, 1)))
    for i in range(n_exits):
        axes[0].plot(x, [e["val_acc"][i] for e in epochs], color=colors[i], label=f"exit {i + first_exit} val")
        axes[0].plot(x, [e["train_acc"][i] for e in epochs], color=colors[i], ls=":", alpha=0.7)
        axes[1].plot(x, [e["val_loss"][i] for e in epochs], color=colors[i], label=f"exit {i + first_exit} val")
        axes[1].plot(x, [e["train_exit_loss"][i] for e in epochs], color=colors[i], ls=":", alpha=0.7)
    axes[0].set(xlabel="epoch", ylabel="accuracy", title="accuracy per exit (solid: val, dotted: train)", ylim=(0, 1.02))
    axes[1].set(xlabel="epoch", ylabel="loss", title="loss per exit (val: CE; train: KD/CE term)")
    axes[1].set_yscale("log")
    if best_epoch is not None and n_exits:
        for ax in axes:
            ax.axvline(best_epoch, color="tab:red", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
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
    plt = _plt([title, *curves, *(points or {})])
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
    plt = _plt([title, *map(str, class_names)])
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
    plt = _plt([title])
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
    plt = _plt([title])
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


def plot_band_importance(
    axis: np.ndarray,
    importance: np.ndarray,
    path: str | Path,
    *,
    class_means: dict[str, np.ndarray] | None = None,
    axis_unit: str = "cm-1",
    title: str = "",
) -> Path:
    """Band importance (mean input-gradient magnitude, normalised to a maximum of 1) over the axis,
    above the mean preprocessed spectrum of each class: where the answer is sensitive to the input."""
    names = list(class_means or {})
    plt = _plt([title, *names])
    path = Path(path)
    axis = np.asarray(axis, dtype=np.float64)
    n_plots = 2 if class_means else 1
    fig, axes = plt.subplots(n_plots, 1, figsize=(10, 2.2 * n_plots + 0.6), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.fill_between(axis, 0, importance, color="tab:orange", alpha=0.4, lw=0)
    ax.plot(axis, importance, color="tab:orange", lw=0.9)
    ax.set(ylabel="importance (max 1)", ylim=(0, 1.05))
    if class_means:
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(names), 1)))
        for color, name in zip(colors, names):
            axes[1, 0].plot(axis, class_means[name], color=color, lw=0.8, label=name)
        axes[1, 0].set(ylabel="class mean (preprocessed)")
        if len(names) <= 12:
            axes[1, 0].legend(fontsize=7, ncol=min(len(names), 6), loc="upper right")
    axes[-1, 0].set(xlabel=f"spectral axis ({axis_unit})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
