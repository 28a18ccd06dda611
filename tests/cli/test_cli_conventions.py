"""Everyday CLI conventions: one exit numbering, ``--out`` by extension and ``-``, integer labels,
train/evaluate overlap, ``--save-test``, threads, warnings on one line, every option in --help."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from scai.cli.main import _build, _warning_printer, main
from tests.conftest import TINY_SCAI, make_peaks

N_PER_CLASS = 12


def _write_csv(path: Path, X: np.ndarray, y: list[int], axis: np.ndarray) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", *(f"{a:.4f}" for a in axis)])
        for label, row in zip(y, X):
            w.writerow([label, *(f"{v:.6f}" for v in row)])
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A SCAI+ cascade (exit 0 + 3 network exits, all kept) trained on integer labels 0/1/2,
    with a quarter of the file held out and saved by --save-test."""
    tmp = tmp_path_factory.mktemp("conventions")
    X, y, axis = make_peaks(n_per_class=N_PER_CLASS)
    labels = [int(s.split("_")[1]) for s in y]
    data = _write_csv(tmp / "data.csv", X, labels, axis)
    config = tmp / "run.json"
    config.write_text(json.dumps({"model": "scai_plus", "model_config": TINY_SCAI, "train": {"batch_size": 16, "lr": 3e-3},
                                  "preprocessing": "snv"}))
    out = tmp / "model"
    code = main(["train", str(data), "--config", str(config), "--epochs", "4", "--single-split", "--keep-exits",
                 "--test-fraction", "0.25", "--save-test", str(tmp / "held_out.csv"), "--out", str(out), "--quiet"])
    assert code == 0
    return tmp, data, out


def test_cli_trained_model_keeps_integer_labels(trained):
    import pandas as pd

    import scai

    tmp, _data, out = trained
    est = scai.load(out)
    assert est.classes_.dtype.kind == "i" and est.classes_.tolist() == [0, 1, 2]
    df = pd.read_csv(tmp / "held_out.csv")
    X = df.drop(columns="label").to_numpy()
    # integer labels from pandas score directly ("Mix of label input types" before)
    expected = float(np.mean(est.predict(X) == df["label"].to_numpy()))
    assert est.score(X, df["label"]) == pytest.approx(expected)


def test_save_test_writes_exactly_the_held_out_rows(trained):
    from scai.data import read

    tmp, data, out = trained
    split = json.loads((out / "split.json").read_text())
    full, held = read(data), read(tmp / "held_out.csv")
    assert held.n_samples == split["n_test"] == len(split["test_rows"]) == round(0.25 * full.n_samples)
    np.testing.assert_array_equal(held.X, full.X[split["test_rows"]])  # same float32 values, same order
    np.testing.assert_array_equal(held.axis, full.axis)
    assert held.labels.tolist() == full.labels[split["test_rows"]].tolist()


def test_training_rows_are_stored_and_exclude_the_test_split(trained):
    from scai.data import read
    from scai.model_dir import ModelDir, row_digests

    _tmp, data, out = trained
    stored = ModelDir(out).training_rows()
    full = read(data)
    test_rows = set(json.loads((out / "split.json").read_text())["test_rows"])
    digests = row_digests(full.X)
    assert stored == {d for i, d in enumerate(digests) if i not in test_rows}
    assert not stored & {digests[i] for i in test_rows}


def test_evaluate_warns_on_training_rows_with_the_count(trained, tmp_path, capsys):
    tmp, data, out = trained
    n_test = len(json.loads((out / "split.json").read_text())["test_rows"])
    n_total = 3 * N_PER_CLASS
    assert main(["evaluate", str(out), str(data), "--out", str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "evaluation on training spectra" in ln]
    assert len(lines) == 1 and lines[0].startswith("scai evaluate: warning: ")
    assert f"{n_total - n_test} of the {n_total} spectra" in lines[0]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert any(f"{n_total - n_test} of the {n_total}" in w for w in metrics["warnings"])
    # the held-out rows: no overlap warning
    assert main(["evaluate", str(out), str(tmp / "held_out.csv"), "--out", str(tmp_path / "ev2")]) == 0
    assert "evaluation on training spectra" not in capsys.readouterr().err
    assert not any("training spectra" in w for w in json.loads((tmp_path / "ev2" / "metrics.json").read_text())["warnings"])


def test_tiny_validation_split_is_flagged(trained, tmp_path):
    from types import SimpleNamespace

    from scai.report.evaluation import TINY_VALIDATION, validation_note

    tmp, _data, out = trained
    assert main(["evaluate", str(out), str(tmp / "held_out.csv"), "--out", str(tmp_path / "ev")]) == 0
    notes = json.loads((tmp_path / "ev" / "metrics.json").read_text())["warnings"]
    assert any(w.startswith("tiny validation split") for w in notes)  # 10% of 27 training spectra
    classes = np.array(["a", "b"])
    enough = SimpleNamespace(classes_=classes, cross_fit_=None, validation_={"y": np.repeat([0, 1], TINY_VALIDATION)})
    few = SimpleNamespace(classes_=classes, cross_fit_=None, validation_={"y": np.array([0] * 9 + [1] * (TINY_VALIDATION - 1))})
    missing = SimpleNamespace(classes_=classes, cross_fit_={"folds": 5}, validation_={"y": np.zeros(20, dtype=int)})
    assert validation_note(enough) is None
    assert f"as few as {TINY_VALIDATION - 1} in one class" in validation_note(few)
    assert "out-of-fold" in validation_note(missing) and "as few as 0" in validation_note(missing)


def test_info_shows_the_stored_training_rows(trained, capsys):
    from scai.cli.info import model_card
    from scai.model_dir import ModelDir

    _tmp, _data, out = trained
    n = len(ModelDir(out).training_rows())
    assert model_card(out)["training_data"]["fitted_rows_stored"] == n == 3 * N_PER_CLASS - round(0.25 * 3 * N_PER_CLASS)
    assert main(["info", str(out)]) == 0
    assert f"fitted rows   {n} spectrum digests stored" in capsys.readouterr().out


def test_model_without_training_rows_still_loads_and_evaluates(trained, tmp_path, capsys):
    import shutil

    from scai.model_dir import TRAINING_ROWS, ModelDir

    _tmp, data, out = trained
    old = tmp_path / "old_model"
    shutil.copytree(out, old)
    (old / TRAINING_ROWS).unlink()  # as written by an older scai, or saved from Python
    assert ModelDir(old).training_rows() is None
    assert main(["evaluate", str(old), str(data), "--out", str(tmp_path / "ev")]) == 0
    assert "evaluation on training spectra" not in capsys.readouterr().err


def test_edited_training_rows_file_is_refused_naming_it(trained, tmp_path):
    import shutil

    from scai.errors import ModelFileError
    from scai.model_dir import TRAINING_ROWS, ModelDir

    _tmp, _data, out = trained
    bad = tmp_path / "bad_model"
    shutil.copytree(out, bad)
    (bad / TRAINING_ROWS).write_text(json.dumps({"digest": "md5", "digests": [1, 2]}))
    with pytest.raises(ModelFileError, match=TRAINING_ROWS):
        ModelDir(bad).training_rows()


def test_save_test_needs_test_fraction(tmp_path, capsys):
    X, _y, axis = make_peaks(n_per_class=4)
    data = _write_csv(tmp_path / "d.csv", X, [0] * len(X), axis)
    assert main(["train", str(data), "--save-test", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "--test-fraction" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_predict_exit_numbering_is_the_python_one(trained, tmp_path):
    import scai
    from scai.data import read

    tmp, _data, out = trained
    est, spectra = scai.load(out), read(tmp / "held_out.csv")
    dest = tmp_path / "p.csv"
    for extra in (["--policy", "full"], ["--policy", "anytime", "--budget", "1"]):
        assert main(["predict", str(out), str(tmp / "held_out.csv"), "--out", str(dest), *extra]) == 0
        rows = _rows(dest)
        ref = est.predict_detailed(spectra.X, spectra.axis, policy=extra[1], **({"budget": "1"} if len(extra) > 2 else {}))
        assert [int(r["exit"]) for r in rows] == ref.exit.tolist()
    # full policy: the last of the model's exits, numbered n_exits - 1 (exit 0 is the linear exit)
    assert main(["predict", str(out), str(tmp / "held_out.csv"), "--out", str(dest)]) == 0
    assert {int(r["exit"]) for r in _rows(dest)} == {len(est.exit_macs_) - 1}


def test_predict_out_extension_chooses_the_format(trained, tmp_path, capsys):
    import pandas as pd

    tmp, _data, out = trained
    src = str(tmp / "held_out.csv")
    assert main(["predict", str(out), src, "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["predict", str(out), src, "--out", str(tmp_path / "p.json")]) == 0
    assert main(["predict", str(out), src, "--out", str(tmp_path / "p.tsv")]) == 0
    rows = _rows(tmp_path / "p.csv")
    records = json.loads((tmp_path / "p.json").read_text())
    assert isinstance(records, list) and len(records) == len(rows)
    assert [r["prediction"] for r in records] == [r["prediction"] for r in rows]
    assert [r["exit"] for r in records] == [int(r["exit"]) for r in rows]
    assert all(isinstance(r["confidence"], float) and isinstance(r["macs"], int) for r in records)
    np.testing.assert_allclose([r["confidence"] for r in records], [float(r["confidence"]) for r in rows], atol=1e-6)
    tsv = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert tsv["prediction"].astype(str).tolist() == [r["prediction"] for r in rows]
    pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow")
    assert main(["predict", str(out), src, "--out", str(tmp_path / "p.parquet")]) == 0
    pq = pd.read_parquet(tmp_path / "p.parquet")
    assert list(pq.columns) == list(rows[0])
    assert pq["exit"].tolist() == [int(r["exit"]) for r in rows] and pq["macs"].dtype.kind == "i"


def test_predict_out_dash_is_stdout(trained, tmp_path, capsys, monkeypatch):
    tmp, _data, out = trained
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(out), str(tmp / "held_out.csv"), "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert not (tmp_path / "-").exists()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "index,prediction,exit,confidence,macs,flagged,reason,held,unknown_score,unknown,out_of_domain,domain_reason"
    assert len(lines) == 1 + round(0.25 * 3 * N_PER_CLASS)
    assert "wrote" in captured.err and "standard output" in captured.err  # messages stay off stdout


def test_predict_unknown_extension_is_refused_before_any_work(trained, tmp_path, capsys):
    tmp, _data, out = trained
    assert main(["predict", str(out), str(tmp / "held_out.csv"), "--out", str(tmp_path / "p.xlsx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".csv" in err and ".json" in err and ".parquet" in err
    assert not list(tmp_path.iterdir())


def test_train_prints_pipeline_and_cost_table_without_a_test_set(tmp_path, capsys):
    X, y, axis = make_peaks(n_per_class=8)
    data = _write_csv(tmp_path / "d.csv", X, [int(s[-1]) for s in y], axis)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": "scai", "model_config": TINY_SCAI, "preprocessing": [
        {"step": "SavitzkyGolay", "window": 7, "polyorder": 2, "deriv": 1}, {"step": "SNV"}]}))
    assert main(["train", str(data), "--config", str(config), "--epochs", "1", "--single-split", "--keep-exits",
                 "--out", str(tmp_path / "m"), "--quiet"]) == 0
    out = capsys.readouterr().out
    import scai

    est = scai.load(tmp_path / "m")
    assert "preprocessing: SavitzkyGolay(deriv=1, polyorder=2, window=7) -> SNV -> Standardize(scale=global)" in out
    assert "per-exit cost" in out
    table = out[out.index("per-exit cost"):].splitlines()
    for k, macs in enumerate(est.exit_macs_):  # one row per exit, 0-based, with the stored MACs
        assert any(line.split()[:2] == [str(k), f"{macs:,}"] for line in table)


def test_warnings_print_on_one_line():
    import io

    buf = io.StringIO()
    show = _warning_printer("evaluate")
    show("first line\n  second line", UserWarning, "/some/path.py", 12, file=buf)
    show("resampled", RuntimeWarning, "/x.py", 1, file=buf)
    assert buf.getvalue().splitlines() == ["scai evaluate: warning: first line; second line",
                                           "scai evaluate: warning: resampled [RuntimeWarning]"]
    assert "/some/path.py" not in buf.getvalue()


def test_main_restores_the_warning_printer(tmp_path):
    before = warnings.showwarning
    main(["info", str(tmp_path)])  # fails (not a model directory); the printer must still be put back
    assert warnings.showwarning is before


def test_every_option_has_help_and_every_preset_is_listed(capsys):
    from scai.preprocessing import PIPELINE_KINDS

    _parser, commands = _build()
    for name, p in commands.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"scai {name} {action.option_strings or action.dest}"
    for name in ("train", "bench"):
        text = commands[name].format_help()
        missing = [k for k in PIPELINE_KINDS if k not in text]
        assert not missing, f"scai {name} --help does not list {missing}"


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "demo", "bench", "export", "serve", "edge"])
def test_threads_on_every_command_that_computes(command):
    _, commands = _build()
    assert "--threads" in commands[command]._option_string_actions


def test_default_threads_leaves_busy_cores_alone(monkeypatch):
    from scai.cli import _common

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert _common.default_threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert _common.default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert _common.default_threads() == 1  # never 0


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_omp_wait_policy_defaults_to_passive_before_torch_loads(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, sys; import scai.cli.main; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [expected, "False"]  # set, and torch not loaded yet (it reads the variable once)


@pytest.mark.parametrize(("labels", "expected"), [
    (["0", "1", "-2"], [0, 1, -2]),
    (["007", "1"], ["007", "1"]),  # not canonical: converting would change a label
    (["1.0", "2"], ["1.0", "2"]),
    (["a", "b"], ["a", "b"]),
])
def test_natural_labels(labels, expected):
    from scai.cli._common import natural_labels

    out = natural_labels(np.asarray(labels, dtype=object))
    assert out.tolist() == expected
    assert (out.dtype.kind == "i") == all(isinstance(v, int) for v in expected)


def test_edge_out_extension_chooses_the_format(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="scai edge needs the onnx extra")
    pytest.importorskip("onnx", reason="exporting for scai edge needs the onnx extra")
    tmp, _data, out = trained
    src = str(tmp / "held_out.csv")
    assert main(["export", str(out), "--out", str(tmp_path / "exp")]) == 0
    base = ["edge", str(tmp_path / "exp"), src, "--bmax", "100%"]
    assert main([*base, "--out", str(tmp_path / "e.csv")]) == 0
    assert main([*base, "--out", str(tmp_path / "e.json")]) == 0
    capsys.readouterr()
    assert main([*base, "--out", "-"]) == 0
    captured = capsys.readouterr()
    rows = _rows(tmp_path / "e.csv")
    records = json.loads((tmp_path / "e.json").read_text())
    assert [r["prediction"] for r in records] == [r["prediction"] for r in rows]
    assert [r["exit"] for r in records] == [int(r["exit"]) for r in rows]
    assert all(isinstance(r["offload_failed"], bool) for r in records)
    stdout = captured.out.strip().splitlines()
    assert stdout[0].split(",") == list(rows[0]) and len(stdout) == 1 + len(rows)
    assert "decided on the edge" in captured.err
    assert main([*base, "--out", str(tmp_path / "e.txt")]) == 2
