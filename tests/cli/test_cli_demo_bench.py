"""``scai demo``'s epoch cap and time estimate, and ``scai bench --data`` on a user's file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from scai.cli.demo import RECIPE_EPOCHS, estimate_epoch_seconds, training_cut_short
from scai.cli.main import main
from scai.training import History
from tests.conftest import make_peaks


def _history(n_epochs: int, stopped_early: bool, fit_time_s: float = 1.0) -> History:
    return History(epochs=[{"epoch": k + 1} for k in range(n_epochs)], best_epoch=n_epochs, stopped_early=stopped_early,
                   fit_time_s=fit_time_s)


def test_cut_short_by_the_epoch_cap_is_named():
    assert training_cut_short(_history(80, stopped_early=False), 80) == "--epochs 80"
    assert training_cut_short(_history(3, stopped_early=False), 3) == "--epochs 3"
    # the training budget capped the epochs below --epochs: that is the default recipe (scai train
    # stops there too), so the figures are the default model's, not a demo shortcut's
    assert training_cut_short(_history(41, stopped_early=False), 80, budget_epochs=41) is None
    assert training_cut_short(_history(30, stopped_early=True), 80, budget_epochs=41) is None
    # ... but --epochs below the budget's cap is the demo's cut
    assert training_cut_short(_history(20, stopped_early=False), 20, budget_epochs=41) == "--epochs 20"


def test_early_stopping_is_not_a_cut():
    assert training_cut_short(_history(35, stopped_early=True), 80) is None
    # the recipe's own cap is the recipe, not a demo shortcut
    assert training_cut_short(_history(RECIPE_EPOCHS, stopped_early=False), RECIPE_EPOCHS) is None


def test_cut_short_by_the_time_cap_is_named():
    assert training_cut_short(_history(4, stopped_early=True, fit_time_s=181.0), 80, max_time_s=180.0) == "--max-time 180 s"
    assert training_cut_short(_history(4, stopped_early=True, fit_time_s=20.0), 80, max_time_s=180.0) is None


def test_epoch_estimate_is_a_positive_time():
    s = estimate_epoch_seconds("scai", 96, 3, n_train=64, batch_size=32, steps=2)
    assert math.isfinite(s) and 0 < s < 60


def test_demo_help_says_it_is_capped_by_epochs(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "capped by --epochs" in text and "not representative" in text and "--threads" in text


def _write_csv(path: Path, X: np.ndarray, y: np.ndarray, axis: np.ndarray) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", *(f"{a:.4f}" for a in axis)])
        w.writerows([[label, *(f"{v:.6f}" for v in row)] for label, row in zip(y, X)])
    return path


def test_bench_data_compares_the_model_with_the_anchors(tmp_path, capsys):
    X, y, axis = make_peaks(n_per_class=10)
    data = _write_csv(tmp_path / "mine.csv", X, y, axis)
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(data), "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    methods = {"scai", "pls_da", "logreg_snv"}
    try:
        import aeon  # noqa: F401

        methods.add("minirocket")
    except ModuleNotFoundError:
        pass
    assert set(results["runs"]) == methods
    split = results["splits"]["0"]
    assert split["n_train"] + split["n_val"] + split["n_test"] == len(X)
    for method, by_seed in results["runs"].items():
        acc = by_seed["0"]["accuracy"]
        assert 0.0 <= acc <= 1.0 and abs(acc * split["n_test"] - round(acc * split["n_test"])) < 1e-9, method
    for name in ("scai (default model)", "PLS-DA", "logistic regression"):
        assert name in printed


def test_bench_data_refuses_paper_benchmark_options(tmp_path, capsys):
    X, y, axis = make_peaks(n_per_class=4)
    data = _write_csv(tmp_path / "mine.csv", X, y, axis)
    assert main(["bench", "--data", str(data), "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err
    assert main(["bench", "--label-column", "label"]) == 2
    assert "--data" in capsys.readouterr().err
