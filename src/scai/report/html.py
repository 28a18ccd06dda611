"""A self-contained HTML evaluation report (``scai evaluate MODEL DATA --report report.html``).

One file that opens anywhere, offline: styles are inline and every figure is a base64 PNG in a
``data:`` URI, so there is no external reference to load (no script, font, stylesheet or link).
Built, like the benchmark's report (:mod:`scai.bench.report`), as a list of blocks (headings,
paragraphs, tables, images) rendered once. It holds:

* the warnings that apply to the numbers (evaluation on training spectra, a tiny validation
  split, and any warning raised while evaluating);
* per-exit accuracy and MACs, a confusion matrix per exit, per-class precision and recall;
* the anytime and budgeted-batch accuracy-vs-MACs curves;
* for SCAI+ (position-adaptive) models, the computation allocation over the axis;
* band importance (input-gradient saliency) over the preprocessed axis;
* the training curves with the kept epoch marked.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from scai._version import __version__
from scai.report.plots import plot_accuracy_vs_macs, plot_band_importance, plot_confusion, plot_training_curves

__all__ = ["Block", "render_html", "write_evaluation_report"]

#: ("h", level, text) | ("p", text) | ("warn", text) | ("table", headers, rows) | ("img", png path, caption)
Block = tuple[Any, ...]

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.4;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}"
    "figcaption{font-size:85%;color:#555}.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:.5em 1em;margin:.5em 0}"
    ".meta{color:#555;font-size:90%}"
)


def _inline(text: str) -> str:
    """Escape, then turn **bold** into <b> (the only inline markup the blocks use)."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as one HTML document (images embedded; nothing loaded from elsewhere): the
    evaluation report's and the paper benchmark's."""
    body = []
    for b in blocks:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "meta":
            body.append(f'<p class="meta">{html.escape(b[1])}</p>')
        elif b[0] == "warn":
            body.append(f'<div class="warn">{html.escape(b[1])}</div>')
        elif b[0] == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            caption = html.escape(b[2])
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>')
        else:
            raise ValueError(f"unknown block kind {b[0]!r}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 10 else f"{v:,.0f}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return str(v)


def _curve_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[_num(float(r["budget_macs"])), _num(float(r["mean_macs"])), _num(float(r["accuracy"]))] for r in rows]


def write_evaluation_report(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    axis: np.ndarray | None,
    metrics: dict[str, Any] | None,
    path: str | Path,
    *,
    source: str = "",
    model_dir: str = "",
    notes: Sequence[str] = (),
) -> Path:
    """Write the report of ``estimator`` on ``X``/``y`` to ``path``; returns ``path``.

    ``metrics`` is what :func:`scai.report.evaluation.evaluate` (``detail=True``) returned for the
    same spectra, or None to compute it here. ``notes`` are the warnings that apply (e.g. from
    :func:`scai.report.evaluation.training_overlap` and ``validation_note``). The file is written
    beside ``path`` and renamed into place, so a failure leaves none behind.
    """
    from scai.report.evaluation import _maybe_heatmap, evaluate, per_class_table
    from scai.report.saliency import band_importance

    if metrics is None:
        metrics = evaluate(estimator, X, y, axis, detail=True)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = metrics["class_names"]
    title = f"scai evaluation: {Path(model_dir).name or 'model'} on {Path(source).name or 'data'}"
    with tempfile.TemporaryDirectory(prefix="scai-report-") as tmp_dir:
        tmp = Path(tmp_dir)
        blocks: list[Block] = [
            ("h", 1, title),
            ("meta", (f"model {model_dir or '(in memory)'} ({estimator.network_.name}, {len(estimator.exit_macs_)} exits); "
                      f"data {source or '(in memory)'}: {metrics['n_samples']} labelled spectra, {len(names)} classes; "
                      f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by scai {__version__}")),
        ]
        blocks.append(("h", 2, "Warnings"))
        blocks += [("warn", n) for n in notes] if notes else [("p", "None applied to these numbers.")]

        blocks.append(("h", 2, "Per-exit accuracy and cost"))
        blocks.append(("p", ("Exits are numbered from 0, as scai predict, predict_detailed, the server and the edge number "
                             "them. MACs = multiply-accumulates per spectrum (cumulative, full compute); mean MACs = what "
                             "the spectra actually spent to reach that exit; FLOPs = 2 x MACs.")))
        blocks.append(("table", ["exit", "MACs (full)", "mean MACs spent", "accuracy"],
                       [[r["exit"], _num(r["macs"]), _num(float(r["mean_macs"])), _num(float(r["accuracy"]))] for r in metrics["exits"]]))

        blocks.append(("h", 2, "Per-class precision and recall (final answer)"))
        per_class = metrics.get("per_class") or per_class_table(np.asarray(metrics["confusion"]), names)
        blocks.append(("table", ["class", "precision", "recall", "support"],
                       [[r["class"], _num(r["precision"]), _num(r["recall"]), r["support"]] for r in per_class]))

        blocks.append(("h", 2, "Accuracy against compute"))
        exits = [(r["mean_macs"], r["accuracy"]) for r in metrics["exits"]]
        for key, label, what in (("anytime", "anytime", "the same budget for every spectrum: each answers with the deepest exit that fits"),
                                 ("budgeted_batch", "budgeted batch", "a mean budget per spectrum; thresholds calibrated on the model's validation split")):
            fig = plot_accuracy_vs_macs({label: metrics[key]}, tmp / f"{key}.png", title=label, points={"single exits": exits})
            blocks.append(("img", fig, f"{label}: {what}"))
            blocks.append(("table", ["budget MACs", "mean MACs spent", "accuracy"], _curve_rows(metrics[key])))

        blocks.append(("h", 2, "Confusion matrices per exit"))
        blocks.append(("p", "Rows: true class; columns: predicted class; counts in the cells."))
        per_exit = metrics.get("confusion_per_exit") or [metrics["confusion"]]
        for k, cm in enumerate(per_exit):
            number = metrics["exits"][k]["exit"] if k < len(metrics["exits"]) else k
            fig = plot_confusion(np.asarray(cm), names, tmp / f"confusion_{k}.png", title=f"exit {number}")
            blocks.append(("img", fig, f"exit {number}: accuracy {_num(float(metrics['exits'][k]['accuracy']))}"))

        Z = estimator.transform_input(X, axis)
        _maybe_heatmap(estimator, X, axis, tmp, "")
        if (tmp / "allocation.png").is_file():
            blocks.append(("h", 2, "Computation allocation (SCAI+)"))
            blocks.append(("p", "Mean units executed per position in each position-adaptive block, over the mean preprocessed spectrum."))
            blocks.append(("img", tmp / "allocation.png", "computation allocation over the axis"))

        blocks.append(("h", 2, "Band importance"))
        y_idx = estimator._encode(np.asarray(y), "y")
        band_axis, importance = band_importance(estimator, Z, y_idx)
        means = {str(names[k]): Z[y_idx == k].mean(0) for k in range(len(names)) if np.any(y_idx == k)}
        fig = plot_band_importance(band_axis, importance, tmp / "band_importance.png", class_means=means,
                                   axis_unit=getattr(estimator, "axis_unit_", "cm-1"), title="band importance")
        blocks.append(("img", fig, ("mean |d logit(true class) / d input| of the answering exit over the preprocessed "
                                    "axis (vanilla saliency, max = 1): where the answer is sensitive to the spectrum")))

        blocks.append(("h", 2, "Training curves"))
        history = getattr(estimator, "history_", None)
        epochs = list(getattr(history, "epochs", []) or [])
        if epochs:
            first = 1 if estimator.first_exit_number == 0 else 0
            best = int(history.best_epoch)
            fig = plot_training_curves(epochs, tmp / "training_curves.png", best_epoch=best, first_exit=first)
            blocks.append(("img", fig, f"per-exit accuracy and loss per epoch; dashed red line: epoch {best}, whose weights were kept"))
        else:
            blocks.append(("p", ("No network training history is stored with this model (the network was not trained, "
                                 "or the model was saved without its history).")))
        text = render_html(blocks, title)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(text, encoding="utf-8")
    tmp_out.replace(out)
    return out
