"""The CLI on lab files: European CSVs with an id column, ids in predict output, no partial
output on failure, data errors that name the file, pipelines in --config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from scai.cli.main import main
from scai.data import read

DATA = Path(__file__).resolve().parents[1] / "data" / "milk_adulteration_30.csv"
TINY = {"channels": [4, 6, 8], "units_per_block": 2, "stem_stride": 4}


def _european(path: Path, n_points: int | None = None, label: str | None = None) -> Path:
    """milk_adulteration_30 as European software writes it: ';', decimal commas, a sample column."""
    s = read(DATA)
    w = n_points or s.n_points
    def comma(v: float) -> str:
        return f"{v:.6g}".replace(".", ",")

    lines = [";".join(["sample", "label", *(comma(v) for v in s.axis[:w])])]
    for i in range(s.n_samples):
        lines.append(";".join([f"S{i:02d}", label or s.labels[i], *(comma(v) for v in s.X[i, :w])]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lab")
    config = tmp / "tiny.json"
    config.write_text(json.dumps({"model_config": TINY, "train": {"batch_size": 16}}))
    eu = _european(tmp / "eu.csv")
    out = tmp / "model"
    argv = ["train", str(eu), "--id-column", "sample", "--preprocessing", "snv", "--config", str(config),
            "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return {"tmp": tmp, "model": out, "eu": eu, "config": config}


def test_predict_writes_sample_ids(lab: dict[str, Path]) -> None:
    out = lab["tmp"] / "p.csv"
    assert main(["predict", str(lab["model"]), str(lab["eu"]), "--id-column", "sample", "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["index", "id", "prediction"]
    assert [r[1] for r in rows[1:4]] == ["S00", "S01", "S02"] and len(rows) == 31


def test_failed_predict_leaves_no_file(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    short = _european(lab["tmp"] / "short.csv", n_points=300)
    out = lab["tmp"] / "none.csv"
    assert main(["predict", str(lab["model"]), str(short), "--id-column", "sample", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"scai predict: error: {short}: input axis") and "\n" not in err
    assert not out.exists() and not list(lab["tmp"].glob(".none.csv*"))


def test_failed_predict_keeps_the_previous_output(lab: dict[str, Path]) -> None:
    out = lab["tmp"] / "kept.csv"
    out.write_text("old\n")
    short = _european(lab["tmp"] / "short2.csv", n_points=300)
    assert main(["predict", str(lab["model"]), str(short), "--id-column", "sample", "--out", str(out)]) == 2
    assert out.read_text() == "old\n"


def test_evaluate_errors_name_the_file(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = _european(lab["tmp"] / "unknown.csv", label="zzz")
    assert main(["evaluate", str(lab["model"]), str(bad), "--id-column", "sample", "--out", str(lab["tmp"] / "ev")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: " in err and "'zzz'" in err


def test_column_options_refused_for_dataset_names(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(lab["model"]), "milk_adulteration", "--id-column", "sample", "--out", str(lab["tmp"] / "e")]) == 2
    assert "--id-column can only be used with a file" in capsys.readouterr().err


def test_ignore_columns_option(lab: dict[str, Path]) -> None:
    out = lab["tmp"] / "ign.csv"
    argv = ["predict", str(lab["model"]), str(lab["eu"]), "--ignore-columns", "sample", "--out", str(out)]
    assert main(argv) == 0
    assert next(csv.reader(out.open()))[:2] == ["index", "prediction"]


def test_an_unnamed_id_column_error_says_which_option_names_it(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --id-column the sample column is read as spectrum: the error names the cell and the
    two options (a header that is a wavenumber gets no such hint: there the cell is the problem)."""
    out = lab["tmp"] / "noid.csv"
    assert main(["predict", str(lab["model"]), str(lab["eu"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"scai predict: error: {lab['eu']}: row 1 (line 2), column 1 ('sample'): non-numeric cell 'S00'; "
                   "if column 'sample' holds sample ids or metadata, name it: --id-column 'sample' or "
                   "--ignore-columns 'sample' (Python: id_column=, ignore_columns=)")
    assert not out.exists()
    bad = lab["tmp"] / "bad_cell.csv"
    lines = lab["eu"].read_text().splitlines()
    cells = lines[2].split(";")
    cells[5] = "n/a"
    bad.write_text("\n".join([lines[0], lines[1], ";".join(cells), *lines[3:]]) + "\n")
    assert main(["predict", str(lab["model"]), str(bad), "--id-column", "sample", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    header = lines[0].split(";")[5]
    assert err.endswith(f"row 2 (line 3), column 6 ({header!r}): non-numeric cell 'n/a'") and "--ignore-columns" not in err


def test_config_pipeline_with_an_unknown_key_is_refused(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = lab["tmp"] / "bad.json"
    config.write_text(json.dumps({"preprocessing": [{"step": "SavitzkyGolay", "window": 15, "derivative": 1}]}))
    assert main(["train", str(DATA), "--config", str(config), "--out", str(lab["tmp"] / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "preprocessing: step 0 (SavitzkyGolay): unknown key(s) ['derivative']; valid keys: step, deriv, polyorder, window" in err


def test_config_pipeline_trains_saves_and_predicts(lab: dict[str, Path]) -> None:
    config = lab["tmp"] / "pipe.json"
    steps = [{"step": "SavitzkyGolay", "window": 15, "polyorder": 2, "deriv": 1}, {"step": "SNV"}]
    config.write_text(json.dumps({"model_config": TINY, "train": {"batch_size": 16}, "preprocessing": steps}))
    out = lab["tmp"] / "piped"
    assert main(["train", str(DATA), "--config", str(config), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "config.json").read_text())["estimator_params"]["preprocessing"]
    assert saved == {"steps": steps}
    assert main(["predict", str(out), str(DATA), "--out", str(lab["tmp"] / "piped.csv")]) == 0
