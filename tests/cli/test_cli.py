"""The ``scai`` command line end to end on tiny data: train -> evaluate -> predict, plus errors."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scai.cli.main import main
from tests.conftest import TINY_SCAI, make_peaks


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, X: np.ndarray, y: np.ndarray | None, axis: np.ndarray) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow((["label"] if y is not None else []) + [f"{a:.4f}" for a in axis])
        for i, row in enumerate(X):
            w.writerow(([y[i]] if y is not None else []) + [f"{v:.6f}" for v in row])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    X, y, axis = make_peaks(n_per_class=16)
    data = _write_csv(tmp / "train.csv", X, y, axis)
    Xt, yt, _ = make_peaks(n_per_class=6, seed=1)
    test = _write_csv(tmp / "test.csv", Xt, yt, axis)
    config = tmp / "run.json"
    # exit0 none: these tests check the network's exits and policies through the CLI
    config.write_text(json.dumps({"model": "scai", "model_config": TINY_SCAI, "train": {"batch_size": 16, "lr": 3e-3},
                                  "preprocessing": "none", "exit0": "none"}))
    out = tmp / "model"
    code = main(["train", str(data), "--config", str(config), "--epochs", "20", "--patience", "20", "--out", str(out), "--test-data", str(test), "--quiet"])
    assert code == 0
    return tmp, out, test, Xt, yt


def test_train_writes_model_dir_and_curves(trained):
    _, out, *_ = trained
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "history.json", "history.csv", "training_curves.png", "split.json"} <= names
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert [r["exit"] for r in metrics["exits"]] == [0, 1, 2]  # 0-based, as predict_detailed


def test_evaluate_metrics_schema(trained, tmp_path):
    _, out, test, *_ = trained
    assert main(["evaluate", str(out), str(test), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(m) >= {"exits", "anytime", "budgeted_batch", "confusion", "class_names"}
    assert {"exit", "macs", "accuracy"} <= set(m["exits"][0])
    assert {"budget_macs", "mean_macs", "accuracy"} <= set(m["anytime"][0])
    assert {"budget_macs", "mean_macs", "accuracy", "thresholds"} <= set(m["budgeted_batch"][0])
    budgets = [r["budget_macs"] for r in m["anytime"]]
    assert min(budgets) == pytest.approx(m["exits"][0]["macs"]) and max(budgets) == pytest.approx(m["exits"][-1]["macs"])
    assert np.asarray(m["confusion"]).sum() == m["n_samples"]
    # the reliability figures agree with the model's own flags and sets on the same spectra
    import scai

    est = scai.load(out)
    spectra = scai.data.read(test)
    labels = np.asarray(spectra.class_names)[spectra.y]
    full = est.predict_detailed(spectra.X, spectra.axis)
    rel = m["reliability"]
    assert rel["unknown_rate"] == pytest.approx(float(np.mean(full.unknown)))
    assert rel["out_of_domain_rate"] == pytest.approx(float(np.mean(full.out_of_domain)))
    assert [c["level"] for c in rel["conformal"]] == [0.9, 0.95]
    sets = est.predict_detailed(spectra.X, spectra.axis, confidence_level=0.9).prediction_set
    hit = [sets[i, list(map(str, est.classes_)).index(str(v))] for i, v in enumerate(labels)]
    assert rel["conformal"][0]["coverage"] == pytest.approx(float(np.mean(hit)))
    assert rel["conformal"][0]["mean_set_size"] == pytest.approx(float(sets.sum(axis=1).mean()))
    for name in ("anytime.png", "budgeted_batch.png", "confusion.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 1000


@pytest.mark.parametrize(
    "extra",
    [["--policy", "full"], ["--policy", "anytime", "--budget", "1"], ["--policy", "threshold", "--threshold", "0.5"], ["--policy", "batch", "--budget", "5k"]],
)
def test_predict_policies_write_csv(trained, tmp_path, extra):
    tmp, out, test, Xt, yt = trained
    dest = tmp_path / "preds.csv"
    assert main(["predict", str(out), str(test), "--out", str(dest), "--chunk-size", "7", *extra]) == 0
    rows = _rows(dest)
    assert list(rows[0]) == ["index", "prediction", "exit", "confidence", "macs", "flagged", "reason", "held",
                             "unknown_score", "unknown", "out_of_domain", "domain_reason"]
    assert [int(r["index"]) for r in rows] == list(range(len(Xt)))  # nothing dropped across chunks
    exits = {int(r["exit"]) for r in rows}
    if extra[1] == "full":
        assert exits == {2}
    if extra[1] == "anytime":  # a 1-MAC budget cannot even pay for the first exit: it answers
        assert exits == {0}
    # the CSV holds what the Python API answers for the same options (the CLI parses them right)
    import scai
    from scai.data import read

    est, spectra = scai.load(out), read(test, label_column="label")
    opts = {"policy": extra[1]}
    if extra[1] == "threshold":
        opts["threshold"] = float(extra[3])
    if extra[1] in ("anytime", "batch"):
        opts["budget"] = extra[3]
    ref = est.predict_detailed(spectra.X, spectra.axis, **opts)
    assert [int(r["exit"]) for r in rows] == [int(e) for e in ref.exit]  # one numbering: 0-based
    assert [r["prediction"] for r in rows] == [str(p) for p in ref.prediction]
    np.testing.assert_allclose([float(r["macs"]) for r in rows], ref.macs, rtol=1e-6)
    assert [r["reason"] for r in rows] == ref.reason.tolist()
    assert [r["held"] for r in rows] == ref.held.tolist()
    assert [r["flagged"] == "1" for r in rows] == ref.flagged.tolist()
    if extra[1] == "threshold":  # every early answer met the threshold
        assert all(float(r["confidence"]) >= 0.5 - 1e-6 for r in rows if int(r["exit"]) < 2)
    if extra[1] == "batch":  # 5k is below the first exit's cost: every spectrum answers there, at its cost
        assert 5000 < est.exit_macs_[0] and exits == {0}
        assert np.mean([float(r["macs"]) for r in rows]) == est.exit_macs_[0]


def test_predict_holds_unknown_and_ambiguous_spectra_and_says_so(trained, tmp_path, capsys):
    """--on-unknown (default deeper) and --on-ambiguous deeper (with --sets) give predict_detailed's
    exits, reasons and held column; --on-ambiguous deeper without --sets is refused."""
    import scai
    from scai.data import read

    _, out, test, *_ = trained
    est, spectra = scai.load(out), read(test, label_column="label")
    dest = tmp_path / "h.csv"
    for extra, opts in (([], {}), (["--on-unknown", "answer"], {"on_unknown": "answer"}),
                        (["--sets", "0.9", "--on-ambiguous", "deeper"], {"confidence_level": 0.9, "on_ambiguous": "deeper"}),
                        (["--sets", "0.95", "--on-ambiguous", "deeper", "--on-unknown", "answer"],
                         {"confidence_level": 0.95, "on_ambiguous": "deeper", "on_unknown": "answer"})):
        assert main(["predict", str(out), str(test), "--out", str(dest), "--policy", "threshold", "--threshold", "0", *extra]) == 0
        rows = _rows(dest)
        ref = est.predict_detailed(spectra.X, spectra.axis, policy="threshold", threshold=0.0, **opts)
        assert [int(r["exit"]) for r in rows] == ref.exit.tolist(), extra
        assert [r["reason"] for r in rows] == ref.reason.tolist(), extra
        assert [r["held"] for r in rows] == ref.held.tolist(), extra
        held = np.array([r["held"] != "" for r in rows])
        assert all(int(r["exit"]) > 0 for r, h in zip(rows, held) if h)  # a held spectrum went deeper
        assert all(int(r["exit"]) == 0 for r, h in zip(rows, held) if not h)  # threshold 0: the rest left at exit 0
    assert main(["predict", str(out), str(test), "--out", str(dest), "--on-ambiguous", "deeper"]) == 2
    assert "--sets" in capsys.readouterr().err


def test_predict_unlabelled_npy(trained, tmp_path):
    _, out, _, Xt, _ = trained
    np.save(tmp_path / "x.npy", Xt)
    assert main(["predict", str(out), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(_rows(tmp_path / "p.csv")) == len(Xt)


def test_errors_are_one_line_exit_2(trained, tmp_path, capsys):
    tmp, out, test, *_ = trained
    assert main(["predict", str(out), str(test), "--out", str(tmp_path / "p.csv"), "--policy", "anytime"]) == 2
    assert "needs --budget" in capsys.readouterr().err
    assert main(["train", str(tmp / "missing.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nomodel"), str(test), "--out", str(tmp_path / "e")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("label,1,2,3\na,1,2,x\nb,1,2,3\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "'x'" in err


def test_help_mentions_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("train", "demo", "evaluate", "predict"):
        assert cmd in text


def test_default_train_puts_exit0_first(tmp_path):
    """The default CLI model opens with the linear exit 0; on peaks it separates, the network is skipped."""
    X, y, axis = make_peaks(n_per_class=16)
    data = _write_csv(tmp_path / "train.csv", X, y, axis)
    out = tmp_path / "m"
    assert main(["train", str(data), "--model", "scai", "--epochs", "3", "--preprocessing", "none",
                 "--out", str(out), "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["cascade"]["kind"] in ("logistic", "pls") and cfg["cascade"]["uses"][0] is True
    assert cfg["exit_macs"][0] == cfg["cascade"]["fit"]["macs"]  # exit 0 comes first and costs its MACs
    keep = tmp_path / "k"
    assert main(["train", str(data), "--model", "scai", "--epochs", "3", "--preprocessing", "none", "--exit0", "pls",
                 "--keep-exits", "--out", str(keep), "--quiet"]) == 0
    cfg = json.loads((keep / "config.json").read_text())
    assert cfg["cascade"]["kind"] == "pls" and cfg["cascade"]["uses"] == [True] * len(cfg["exit_macs"])


def test_recipe_paper_is_one_option_away(tmp_path):
    X, y, axis = make_peaks(n_per_class=8)
    data = _write_csv(tmp_path / "train.csv", X, y, axis)
    assert main(["train", str(data), "--model", "scai", "--recipe", "paper", "--epochs", "1", "--out",
                 str(tmp_path / "p"), "--quiet"]) == 0
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["cascade"] is None and cfg["preprocessing_selection"] is None
    assert cfg["model_config"]["head_bins"] == 1 and cfg["model_config"]["dropout"] == 0.0
    assert (cfg["train_config"]["lr_schedule"], cfg["train_config"]["weight_decay"], cfg["train_config"]["ema_decay"]) == ("constant", 0.0, 0.0)
    assert cfg["train_config"]["ponder_target"] is None  # the paper's tau-only ponder cost (default 0.5)
    assert cfg["history_summary"]["epoch_cap"]["train_budget"] is None  # no training budget either (default 2e11)
    assert cfg["estimator_params"]["standardize"] == "none"
    assert [s["name"] for s in cfg["preprocessing"]["steps"]] == ["Despike", "BaselineCorrection", "SavitzkyGolay", "SNV"]
    assert cfg["cross_fit"] is None and cfg["estimator_params"]["cross_fit"] == 0  # one validation split


def test_train_cross_fits_by_default_and_says_what_it_cost(tmp_path, capsys):
    X, y, axis = make_peaks(n_per_class=8)
    data = _write_csv(tmp_path / "train.csv", X, y, axis)
    assert main(["train", str(data), "--model", "scai", "--epochs", "2", "--folds", "3", "--jobs", "1",
                 "--keep-exits", "--test-fraction", "0.25", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cross-fitting: 3 folds of 18 spectra (1 at a time); 3 network trainings took" in out
    assert "exits on out-of-fold predictions:" in out
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["cross_fit"]["folds"] == 3 and cfg["cross_fit"]["network"] == "trained on all spectra"
    split = json.loads((tmp_path / "m" / "split.json").read_text())
    assert split["n_train"] == 18 and split["n_val"] == 0 and split["n_test"] == 6  # the val part trains too
    assert main(["train", str(data), "--model", "scai", "--epochs", "1", "--single-split", "--out",
                 str(tmp_path / "s"), "--quiet"]) == 0
    assert json.loads((tmp_path / "s" / "config.json").read_text())["cross_fit"] is None


def test_folds_and_val_fraction_exclude_each_other(tmp_path, capsys):
    X, y, axis = make_peaks(n_per_class=4)
    data = _write_csv(tmp_path / "train.csv", X, y, axis)
    assert main(["train", str(data), "--folds", "3", "--val-fraction", "0.2", "--out", str(tmp_path / "m")]) == 2
    assert "--folds and --val-fraction exclude each other" in capsys.readouterr().err


def test_ms_budgets_are_reproducible_with_a_latency_table(trained, tmp_path, capsys):
    tmp, out, test, *_ = trained
    table = tmp_path / "lat.json"
    base = ["predict", str(out), str(test), "--policy", "anytime", "--latency-table", str(table)]
    args = [*base, "--budget", "0.001ms"]
    assert main([*base, "--budget", "1000ms", "--out", str(tmp_path / "a.csv")]) == 0
    assert "measured and written to" in capsys.readouterr().err
    stored = json.loads(table.read_text())
    # a table whose stage 1 is impossibly cheap and later stages impossibly dear: the budget now
    # buys exactly exit 1 for every spectrum, on any machine, on every run
    stored["ms_per_spectrum"] = [1e-9] + [1e6] * (len(stored["ms_per_spectrum"]) - 1)
    assert stored["preprocessing_ms"] > 0  # the table pins what preprocessing takes too (the budget covers it)
    stored["preprocessing_ms"] = 0.0
    table.write_text(json.dumps(stored))
    for name in ("b.csv", "c.csv"):
        assert main([*args, "--out", str(tmp_path / name)]) == 0
        assert "read from" in capsys.readouterr().err
    b, c = _rows(tmp_path / "b.csv"), _rows(tmp_path / "c.csv")
    assert b == c and {int(r["exit"]) for r in b} == {0}
    stored["model_sha256"] = "0" * 64
    table.write_text(json.dumps(stored))
    assert main([*args, "--out", str(tmp_path / "d.csv")]) == 2
    assert "was measured for model 000000000000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--budget", "300k"], "--budget is used by --policy anytime or batch"),
     (["--policy", "anytime", "--threshold", "0.5", "--budget", "1"], "--threshold is used by --policy threshold"),
     (["--policy", "anytime", "--budget", "300k", "--latency-table", "t.json"], "--latency-table converts a budget in milliseconds")],
)
def test_predict_refuses_options_its_policy_would_ignore(trained, tmp_path, capsys, extra, message):
    _, out, test, *_ = trained
    assert main(["predict", str(out), str(test), "--out", str(tmp_path / "p.csv"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_threads_option_on_predict_and_evaluate(trained, tmp_path):
    import torch

    _, out, test, *_ = trained
    before = torch.get_num_threads()
    try:
        assert main(["predict", str(out), str(test), "--out", str(tmp_path / "p.csv"), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["evaluate", str(out), str(test), "--out", str(tmp_path / "e"), "--threads", "1"]) == 0
        assert main(["predict", str(out), str(test), "--out", str(tmp_path / "q.csv"), "--threads", "0"]) == 2
    finally:
        torch.set_num_threads(before)


def test_train_budget_flag_parses_macs_and_none_and_refuses_the_rest(tmp_path, capsys):
    from scai.cli.train import _train_budget

    assert _train_budget("200G") == 2e11 and _train_budget("2e11") == 2e11 and _train_budget("None") == "none"
    for bad in ("25%", "3ms", "lots", "-5"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a number of MACs"):
            _train_budget(bad)
    X, y, axis = make_peaks(n_per_class=8)
    data = _write_csv(tmp_path / "train.csv", X, y, axis)
    assert main(["train", str(data), "--model", "scai", "--exit0", "none", "--single-split", "--epochs", "30",
                 "--patience", "30", "--train-budget", "1", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "epochs: at most 10 (of --epochs 30): the training budget of 1 MACs" in out  # floor: min_epochs 10
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cap = cfg["history_summary"]["epoch_cap"]
    assert cap["train_budget"] == 1.0 and cap["max_epochs"] == 30 and cap["epochs"] == 10
    assert cfg["train_config"]["max_epochs"] == 10 and cfg["history_summary"]["epochs_run"] <= 10
