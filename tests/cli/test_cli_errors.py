"""Every bad option value of every ``scai`` sub-command: exit status 2 and one line on stderr.

Each case runs ``scai.cli.main.main`` in-process and checks that stderr is exactly one line
``scai COMMAND: error: ...`` naming the option (or file), with no traceback. Nearly all cases are
refused by argparse before any work; the few checked later (after loading the model or the data)
use the tiny model trained once below. A genuine bug (any exception that is not a ScaiError)
must still propagate with its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scai.cli.main import main
from scai.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "milk_adulteration_30.csv"
TINY = {"channels": [4, 6, 8], "units_per_block": 2, "stem_stride": 4}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SCAI+ trained for one epoch on the 30 milk spectra, through ``scai train``."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    config = tmp / "tiny.json"
    config.write_text(json.dumps({"model": "scai_plus", "model_config": TINY, "train": {"batch_size": 16}}))
    out = tmp / "model"
    assert main(["train", str(DATA), "--config", str(config), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


def _base(cmd: str, model: str, out: Path) -> list[str]:
    """Arguments that make ``cmd`` valid, so a case only adds the one bad option."""
    data = str(DATA)
    return {
        "train": [data, "--out", str(out / "m"), "--quiet"],
        "demo": ["--out", str(out / "demo"), "--quiet"],
        "evaluate": [model, data, "--out", str(out / "ev")],
        "predict": [model, data, "--out", str(out / "p.csv")],
        "export": [model, "--out", str(out / "x")],
        "serve": [model],
        "edge": [model, data, "--bmax", "1M", "--out", str(out / "e.csv")],
        # never a real run: an unknown dataset stops it if an option slipped through
        "bench": ["--datasets", "no_such_dataset", "--out", str(out / "b"), "--no-report"],
    }[cmd]


def _cases() -> list[Any]:
    bad_int = [("0", "zero"), ("-1", "negative"), ("1.5", "not an integer"), ("abc", "not a number")]
    cases: list[Any] = []

    def add(cmd: str, args: list[str], names: str, marks: Any = ()) -> None:
        cases.append(pytest.param(cmd, args, names, id=f"{cmd} {' '.join(args)}", marks=marks))

    # counts that must be >= 1
    for cmd, opts in {
        "train": ["--epochs", "--batch-size", "--threads"],
        "demo": ["--epochs"],
        "predict": ["--batch-size", "--chunk-size"],
        "serve": ["--max-batch", "--threads"],
        "edge": ["--batch-size"],
    }.items():
        for opt in opts:
            for value, _ in bad_int:
                add(cmd, [opt, value], opt)
    # counts that may be 0 but not negative
    for cmd in ("train", "demo"):
        add(cmd, ["--patience", "-1"], "--patience")
        add(cmd, ["--patience", "x"], "--patience")
    # seeds: integers >= 0
    for cmd in ("train", "demo"):
        add(cmd, ["--seed", "-1"], "--seed")
        add(cmd, ["--seed", "2.5"], "--seed")
    # positive numbers
    for cmd, opt in (("train", "--lr"), ("demo", "--max-time"), ("serve", "--max-body-mb"), ("edge", "--timeout")):
        for value in ("0", "-1", "nan", "inf", "x"):
            add(cmd, [opt, value], opt)
    add("serve", ["--batch-wait-ms", "-1"], "--batch-wait-ms")
    add("serve", ["--batch-wait-ms", "x"], "--batch-wait-ms")
    # fractions in (0, 1)
    for opt in ("--val-fraction", "--test-fraction"):
        for value in ("0", "1", "-0.1", "1.5", "x"):
            add("train", [opt, value], opt)
    add("train", ["--val-fraction", "0.5", "--test-fraction", "0.5"], "--test-fraction")  # nothing left to train
    add("train", ["--val-data", str(DATA), "--val-fraction", "0.2"], "--val-fraction")  # mutually exclusive
    # probabilities in [0, 1]
    for cmd in ("predict", "export", "edge"):
        for value in ("-0.1", "1.5", "2", "x"):
            add(cmd, ["--threshold", value], "--threshold")
    # integer ranges
    for value in ("-1", "65536", "x"):
        add("serve", ["--port", value], "--port")
    for value in ("0", "-1", "5", "999", "x"):
        add("export", ["--opset", value], "--opset")
    for value in ("0", "1", "-3", "x"):
        add("evaluate", ["--budgets", value], "--budgets")
    # budgets (checked by scai.inference.budget.parse_budget)
    for cmd in ("predict", "export"):
        for value in ("0", "-5", "foo", "1.2m", "inf"):
            add(cmd, ["--budget", value], "--budget")
    for value in ("0", "foo", "2ms", "-5"):
        add("edge", ["--bmax", value], "--bmax")
    add("export", ["--budget", "2ms"], "--budget")  # thresholds are calibrated for MACs, not time
    add("predict", ["--policy", "batch", "--budget", "2ms"], "--budget")
    add("predict", ["--policy", "anytime"], "--budget")  # a policy without its budget
    add("predict", ["--policy", "batch"], "--budget")
    add("predict", ["--policy", "threshold"], "--threshold")
    add("export", ["--budget", "300k", "--threshold", "0.5"], "--threshold")  # not both
    # unknown names
    for cmd in ("train", "demo"):
        add(cmd, ["--model", "no_such_net"], "--model")
    add("train", ["--preprocessing", "foo"], "--preprocessing")
    add("train", ["--distill", "prev"], "--distill")
    add("predict", ["--policy", "fastest"], "--policy")
    add("edge", ["--server", "not-a-url"], "--server")
    add("edge", ["--server", "ftp://host"], "--server")
    add("serve", ["--host", "999.1.1.1"], "--host")
    # files and folders that do not exist
    add("train", ["--config", "/no/such/run.json"], "--config")
    add("train", ["--data-dir", "/no/such/folder"], "--data-dir")
    add("evaluate", ["--data-dir", "/no/such/folder"], "--data-dir")
    add("train", ["--val-data", "/no/such/val.csv"], "/no/such/val.csv")
    add("train", ["--test-data", "/no/such/test.csv"], "/no/such/test.csv")
    for cmd in ("serve", "edge"):
        add(cmd, ["--token-file", "/no/such/token"], "--token-file")
    # options a command does not have
    for cmd in ("train", "demo", "evaluate", "predict", "export", "serve", "edge", "bench"):
        add(cmd, ["--no-such-option"], "--no-such-option")
    # scai bench (src/scai/cli/bench.py parses its own options)
    for opt in ("--epochs", "--threads", "--jobs"):
        add("bench", [opt, "0"], opt)
        add("bench", [opt, "x"], opt)
    add("bench", ["--seeds", "a,b"], "--seeds")
    add("bench", ["--seeds", ","], "--seeds")
    add("bench", ["--depths", "x"], "--depths")
    add("bench", ["--patience", "-1"], "--patience")
    add("bench", ["--seeds", "-1"], "--seeds")
    add("bench", ["--depths", "0"], "--depths")
    add("bench", ["--preprocessing", "foo"], "--preprocessing")
    add("bench", ["--data-dir", "/no/such/folder"], "--data-dir")
    return cases


def _one_error_line(capsys: pytest.CaptureFixture[str], cmd: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith(f"scai {cmd}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("cmd, args, names", _cases())
def test_bad_option_is_one_line_exit_2(cmd: str, args: list[str], names: str, model_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main([cmd, *_base(cmd, str(model_dir), tmp_path), *args]) == 2
    line = _one_error_line(capsys, cmd)
    assert names in line, f"the message does not name {names}: {line}"


@pytest.mark.parametrize(
    "argv, names",
    [
        (["evaluate", "{tmp}/no_model", str(DATA), "--out", "{tmp}/e"], "no_model"),
        (["predict", "{model}", "{tmp}/missing.csv", "--out", "{tmp}/p.csv"], "missing.csv"),
        (["train", "{tmp}/missing.csv", "--out", "{tmp}/m"], "missing.csv"),
        (["edge", "{tmp}", str(DATA), "--bmax", "1M", "--out", "{tmp}/e.csv"], "neither an export directory"),
        (["train", str(DATA), "--label-column", "no_such_column", "--out", "{tmp}/m"], "no_such_column"),
    ],
    ids=["evaluate: not a model dir", "predict: missing DATA", "train: missing DATA", "edge: not a model",
         "train: unknown label column"],
)
def test_bad_paths_are_one_line_exit_2(argv: list[str], names: str, model_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(model_dir)) for a in argv]
    assert main(argv) == 2
    assert names in _one_error_line(capsys, argv[0])


@pytest.mark.parametrize(
    "config, names",
    [
        ({"train": {"max_epochs": 0}}, "max_epochs"),
        ({"train": {"learning_rate": 1e-3}}, "valid options"),
        ({"train": {"max_epochs": "ten"}}, "max_epochs"),
        ({"model": "no_such_net"}, "no_such_net"),
        ({"model_config": {"chanels": [4]}}, "valid keys"),
        ({"preprocessing": "uv"}, "uv"),
        ({"seed": -1}, "seed"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"sections": {}}, "unknown section"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(config: dict[str, Any], names: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    assert main(["train", str(DATA), "--config", str(path), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    line = _one_error_line(capsys, "train")
    assert str(path) in line and names in line


def test_top_level_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scai: error: ") and "no-such-command" in err and "\n" not in err


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    assert info.value.code == 0
    assert "--threshold" in capsys.readouterr().out


def test_scai_error_inside_a_command_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(args: Any) -> int:
        raise ConfigError("first line\nsecond line")

    monkeypatch.setattr("scai.cli.evaluate._run", refuse)
    assert main(["evaluate", str(tmp_path), str(DATA), "--out", str(tmp_path / "e")]) == 2
    assert _one_error_line(capsys, "evaluate") == "scai evaluate: error: first line; second line"


@pytest.mark.parametrize(
    "bug",
    [RuntimeError("internal bug"), ValueError("plain ValueError: a bug, not a user error"),
     KeyError("k"), ImportError("cannot import name 'x' from 'scai.models'")],
    ids=["RuntimeError", "ValueError", "KeyError", "ImportError"],
)
def test_internal_bugs_propagate(bug: Exception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: Any) -> int:
        raise bug

    monkeypatch.setattr("scai.cli.evaluate._run", broken)
    with pytest.raises(type(bug)) as info:
        main(["evaluate", str(tmp_path), str(DATA), "--out", str(tmp_path / "e")])
    assert info.value is bug
    assert "error:" not in capsys.readouterr().err  # not swallowed into a one-line message


def test_missing_optional_package_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def needs_extra(args: Any) -> int:
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")

    monkeypatch.setattr("scai.cli.evaluate._run", needs_extra)
    assert main(["evaluate", str(tmp_path), str(DATA), "--out", str(tmp_path / "e")]) == 2
    assert "onnxruntime" in _one_error_line(capsys, "evaluate")


def test_serve_on_a_port_in_use_is_one_line(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(model_dir), "--port", str(port)]) == 2
    line = _one_error_line(capsys, "serve")
    assert f"--port {port}" in line and "cannot listen" in line


def test_load_spectra_refuses_unknown_options() -> None:
    from scai.cli._common import load_spectra

    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['nan_polcy'\]; valid options: .*nan_policy"):
        load_spectra(str(DATA), nan_polcy="interpolate")
