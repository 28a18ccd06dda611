"""Ray Data batch inference (``scai.distributed.predict_dataset``) on a local Ray with 2 CPUs and
one actor: the same answers as ``scai predict``, the budget per batch, exactly-once output after
an interrupted run or a killed worker, and bad input named by file and row."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.distributed.conftest import N_POINTS

pa = pytest.importorskip("pyarrow", reason="pyarrow (scai[distributed]) is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (scai[distributed]) is not installed")

from scai.cli.main import main
from scai.datasets.archive import archive_schema, spectra_table
from scai.distributed import predict_dataset
from scai.errors import AxisError, ConfigError, DataFormatError, DataValueError


def _spectra(paths: list[Path]) -> np.ndarray:
    """The archive's spectra in file order, read back independently with pyarrow."""
    parts = [pq.read_table(p, columns=["spectrum"]).column(0).combine_chunks().flatten().to_numpy() for p in paths]
    return np.concatenate(parts).reshape(-1, N_POINTS)


def _outputs(out_dir: Path) -> Any:
    return pq.read_table(out_dir).sort_by([("source", "ascending"), ("row", "ascending")])


def _scai_predict(model: Path, data: Path, out: Path, *options: str) -> list[dict[str, str]]:
    assert main(["predict", str(model), str(data), "--out", str(out), *options]) == 0
    with out.open() as fh:
        return list(csv.DictReader(fh))


def _same_answers(table: Any, rows: list[dict[str, str]]) -> None:
    assert table.num_rows == len(rows)
    assert table.column("prediction").to_pylist() == [r["prediction"] for r in rows]
    assert table.column("exit").to_pylist() == [int(r["exit"]) for r in rows]
    assert table.column("macs").to_pylist() == [int(r["macs"]) for r in rows]
    assert table.column("reason").to_pylist() == [r["reason"] for r in rows]
    assert table.column("held").to_pylist() == [r["held"] for r in rows]  # why a spectrum ran deeper
    assert [int(f) for f in table.column("flagged").to_pylist()] == [int(r["flagged"]) for r in rows]
    np.testing.assert_allclose(table.column("confidence").to_numpy(), [float(r["confidence"]) for r in rows], atol=2e-6)


def test_predictions_equal_scai_predict_on_the_same_rows(ray_local, liquor_model, archive, tmp_path):
    np.save(tmp_path / "all.npy", _spectra(archive))
    # Every spectrum through the whole network: the last exit's answers and costs are compared.
    expected = _scai_predict(liquor_model, tmp_path / "all.npy", tmp_path / "local.csv", "--policy", "full")
    summary = predict_dataset(liquor_model, str(archive[0].parent / "*.parquet"), tmp_path / "ray", num_workers=1,
                              piece_rows=200, batch_size=64, policy="full")
    table = _outputs(tmp_path / "ray")
    _same_answers(table, expected)
    assert summary.rows == 600 and summary.shards == 5  # 250 + 250 + 100 rows, pieces of 2 row groups
    assert table.column("source").to_pylist() == [str(p) for p in archive for _ in range(pq.ParquetFile(p).metadata.num_rows)]
    ids = pq.read_table(archive[0].parent).column("id").to_pylist()
    assert table.column("id").to_pylist() == ids
    assert set(table.column("exit").to_pylist()) == {3}  # exit 0 and the network's three exits


@pytest.fixture(scope="module")
def batch_run(ray_local, liquor_model, archive, tmp_path_factory) -> tuple[dict[str, Any], Any, list[dict[str, str]]]:
    """Budgeted batch at 25 % on the first shard through ``scai predict --engine ray``, and
    ``scai predict`` (local) on the same rows."""
    tmp = tmp_path_factory.mktemp("batch")
    np.save(tmp / "shard0.npy", _spectra(archive[:1]))
    options = ["--policy", "batch", "--budget", "25%", "--batch-size", "64"]
    expected = _scai_predict(liquor_model, tmp / "shard0.npy", tmp / "local.csv", *options)
    code = main(["predict", str(liquor_model), str(archive[0]), "--engine", "ray", "--workers", "1", "--chunk-size", "64",
                 *options, "--out", str(tmp / "ray")])
    assert code == 0
    return json.loads((tmp / "ray" / "_manifest.json").read_text()), _outputs(tmp / "ray"), expected


def test_budgeted_batch_equals_scai_predict(batch_run, liquor_model, archive, tmp_path):
    """Each Ray batch is one budgeted batch: its answers are scai predict's on the same rows.

    Ray cuts the file at its own row counts (not always the --batch-size), and which spectra share
    a batch decides what the guard sends out (spectra held as unknown count against the budget),
    so each Ray batch is compared with scai predict run on exactly its rows."""
    _, table, _ = batch_run
    X = _spectra(archive[:1])
    batches = np.asarray(table.column("batch").to_pylist())
    rows = np.asarray(table.column("row").to_pylist())
    expected: list[dict[str, str]] = []
    for j, b in enumerate(dict.fromkeys(batches.tolist())):
        idx = rows[batches == b]
        assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)) and len(idx) <= 64  # contiguous rows, one batch
        np.save(tmp_path / f"b{j}.npy", X[idx])
        expected += _scai_predict(liquor_model, tmp_path / f"b{j}.npy", tmp_path / f"b{j}.csv",
                                  "--policy", "batch", "--budget", "25%", "--batch-size", "64")
    _same_answers(table, expected)


def test_budget_holds_per_batch_and_overall(batch_run, liquor_model):
    import scai

    manifest, table, _ = batch_run
    est = scai.load(liquor_model)
    budget = 0.25 * float(est.exit_macs_[-1])
    assert manifest["budget_macs"] == pytest.approx(budget)
    macs = table.column("macs").to_numpy()
    batches = np.asarray(table.column("batch").to_pylist())
    assert len(set(batches)) == 4  # 250 rows in Ray batches of 64
    for b in set(batches):  # truncated ints, so the exact float mean is at most 1 MAC above
        assert macs[batches == b].mean() <= budget + 1
    assert macs.mean() <= budget + 1
    assert manifest["mean_macs"] == pytest.approx(macs.mean()) and manifest["rows"] == 250
    # The budget binds: the network answers some spectra, and not every spectrum runs to the end.
    exits = table.column("exit").to_numpy()
    assert 0 < np.mean(exits > 0) and np.mean(exits == est.network_.n_exits - 1) < 1
    assert macs.mean() > float(est.exit_macs_[0])


def test_resume_after_interrupted_run_gives_every_row_once(ray_local, liquor_model, archive, tmp_path):
    out = tmp_path / "ray"
    kw = {"policy": "threshold", "threshold": 0.8, "piece_rows": 100, "batch_size": 50, "num_workers": 1}

    class Interrupt(Exception):
        pass

    def stop_when_a_shard_is_written(event: Any) -> None:
        if any(out.glob("*.parquet")):
            raise Interrupt

    with pytest.raises(Interrupt):
        predict_dataset(liquor_model, archive, out, on_batch=stop_when_a_shard_is_written, **kw)
    written = sorted(p.name for p in out.glob("*.parquet"))
    assert 1 <= len(written) < 7  # pieces of one row group: 3 + 3 + 1
    (out / f".{written[0]}.tmp").write_bytes(b"half a shard")  # as a driver killed mid-write leaves it
    summary = predict_dataset(liquor_model, archive, out, **kw)
    assert summary.shards_skipped == len(written) and summary.shards_written == 7 - len(written)
    assert not list(out.glob(".*.tmp"))
    table = _outputs(out)
    keys = list(zip(table.column("source").to_pylist(), table.column("row").to_pylist()))
    assert len(keys) == len(set(keys)) == 600
    reference = predict_dataset(liquor_model, archive, tmp_path / "inline", engine="inline",
                                **{k: v for k, v in kw.items() if k != "num_workers"})
    assert reference.rows == 600
    ref = _outputs(tmp_path / "inline")
    for column in ("source", "row", "prediction", "exit", "macs"):
        assert table.column(column).to_pylist() == ref.column(column).to_pylist()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == 600 and len(manifest["shards"]) == 7


def test_killed_worker_is_replaced_and_rows_are_written_once(ray_local, liquor_model, archive, tmp_path):
    killed: list[int] = []

    def kill_the_worker_once(event: Any) -> None:
        if not killed:
            killed.append(event.pid)
            os.kill(event.pid, signal.SIGKILL)

    summary = predict_dataset(liquor_model, archive, tmp_path / "ray", policy="full", piece_rows=100, batch_size=50,
                              num_workers=1, on_batch=kill_the_worker_once)
    assert killed and summary.rows == 600
    table = _outputs(tmp_path / "ray")
    keys = list(zip(table.column("source").to_pylist(), table.column("row").to_pylist()))
    assert len(set(keys)) == 600
    pids = {int(b.split("-")[0]) for b in table.column("batch").to_pylist()}
    assert len(pids) == 2 and killed[0] in pids  # rows before the kill, and rows from the restarted actor


def test_rerun_with_other_settings_or_a_rewritten_input_is_refused(liquor_model, archive, tmp_path):
    shard = tmp_path / "shard.parquet"
    shutil.copyfile(archive[2], shard)
    predict_dataset(liquor_model, shard, tmp_path / "out", engine="inline")
    with pytest.raises(ConfigError, match=r"different settings budget, policy"):
        predict_dataset(liquor_model, shard, tmp_path / "out", engine="inline", policy="batch", budget="25%")
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 99), shard)  # the file changed after the run
    with pytest.raises(ConfigError, match=r"different inputs"):
        predict_dataset(liquor_model, shard, tmp_path / "out", engine="inline")


# --------------------------------------------------------------------------- bad input


def _write(path: Path, X: Any, *, axis_points: int = N_POINTS, variable: bool = False, drop_spectrum: bool = False) -> Path:
    axis = np.linspace(200.0, 3800.0, axis_points)
    if drop_spectrum:
        pq.write_table(pa.table({"id": ["a", "b"], "intensity": [[1.0], [2.0]]}), path)
    elif variable:
        meta = archive_schema(axis, "cm-1", with_ids=False, with_labels=False).metadata
        pq.write_table(pa.table({"spectrum": pa.array(X, type=pa.list_(pa.float32()))}).replace_schema_metadata(meta), path)
    else:
        meta = archive_schema(axis, "cm-1", with_ids=False, with_labels=False).metadata
        X = np.asarray(X, dtype=np.float32)
        table = spectra_table(X, archive_schema(np.arange(X.shape[1]), "index", with_ids=False, with_labels=False))
        pq.write_table(table.replace_schema_metadata(meta), path)
    return path


def test_missing_spectrum_column_names_the_shard(liquor_model, tmp_path):
    bad = _write(tmp_path / "bad.parquet", None, drop_spectrum=True)
    with pytest.raises(DataFormatError, match=r"bad\.parquet: no column 'spectrum' \(columns: id, intensity\)"):
        predict_dataset(liquor_model, bad, tmp_path / "out", engine="inline")


def test_axis_of_another_length_than_the_spectra_is_refused(liquor_model, tmp_path):
    bad = _write(tmp_path / "axis.parquet", np.ones((3, N_POINTS)), axis_points=N_POINTS + 1)
    with pytest.raises(AxisError, match=rf"axis\.parquet: .*{N_POINTS + 1} values but column 'spectrum' holds {N_POINTS}"):
        predict_dataset(liquor_model, bad, tmp_path / "out", engine="inline")


def test_nan_and_wrong_length_name_the_shard_and_row_through_ray(ray_local, liquor_model, archive, tmp_path):
    X = _spectra(archive[2:])[:40].copy()
    X[27, 5] = np.nan
    nan_file = _write(tmp_path / "nan.parquet", X)
    with pytest.raises(DataValueError, match=r"nan\.parquet: row 27: spectrum holds nan at point 5"):
        predict_dataset(liquor_model, nan_file, tmp_path / "out_nan", num_workers=1)
    rows = [list(r) for r in _spectra(archive[2:])[:40]]
    rows[33] = rows[33][:-3]
    short = _write(tmp_path / "short.parquet", rows, variable=True)
    with pytest.raises(DataValueError, match=rf"short\.parquet: row 33: spectrum has {N_POINTS - 3} points; expected {N_POINTS}"):
        predict_dataset(liquor_model, short, tmp_path / "out_short", num_workers=1)
    assert not list((tmp_path / "out_short").glob("*.parquet"))  # nothing half-written under a final name


def test_hdf5_and_csv_shards_are_read_through_iter_chunks(liquor_model, archive, tmp_path):
    # The readers are those of the Ray read tasks; the in-process engine runs them without Ray.
    h5py = pytest.importorskip("h5py", reason="h5py (scai[io]) is not installed")
    X = _spectra(archive[2:])
    axis = np.linspace(200.0, 3800.0, N_POINTS)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["X"] = X[:60]
        f["axis"] = axis
    with (tmp_path / "b.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", *[f"{a:.6f}" for a in axis]])
        w.writerows([[f"id{i}", *[repr(float(v)) for v in row]] for i, row in enumerate(X[60:100])])
    predict_dataset(liquor_model, tmp_path / "a.h5", tmp_path / "out", engine="inline", block_rows=16)
    predict_dataset(liquor_model, tmp_path / "b.csv", tmp_path / "out_csv", engine="inline", block_rows=16,
                    read_options={"id_column": "sample"})
    h5, table = _outputs(tmp_path / "out"), _outputs(tmp_path / "out_csv")
    assert h5.column("row").to_pylist() == list(range(60)) and table.column("row").to_pylist() == list(range(40))
    assert table.column("id").to_pylist() == [f"id{i}" for i in range(40)]
    predictions = h5.column("prediction").to_pylist() + table.column("prediction").to_pylist()
    np.save(tmp_path / "same.npy", X[:100])
    expected = _scai_predict(liquor_model, tmp_path / "same.npy", tmp_path / "local.csv")
    assert predictions == [r["prediction"] for r in expected]


# --------------------------------------------------------------------------- CLI and import


def test_cli_refuses_ray_options_without_engine_ray(liquor_model, archive, tmp_path, capsys):
    assert main(["predict", str(liquor_model), str(archive[0]), "--workers", "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--workers is used by --engine ray" in capsys.readouterr().err
    assert main(["predict", str(liquor_model), str(archive[0]), "--engine", "ray", "--policy", "batch", "--budget", "1ms",
                 "--out", str(tmp_path / "preds")]) == 2
    assert "is a latency" in capsys.readouterr().err


def test_import_scai_does_not_import_ray():
    code = "import sys, scai, scai.distributed, scai.datasets, scai.cli.main; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_local_ray_runs_its_workers_at_the_drivers_priority():
    # Ray's default starts workers at niceness 15, below every ordinary process (beside two busy
    # processes each actor then got ~3.5 % of a core); the local Ray scai starts gives them the
    # driver's own niceness, here 3 (what `nice -n 3 scai predict ...` would give)
    pytest.importorskip("ray", reason="the distributed extra (pip install 'scai[distributed]') is not installed")
    code = ("import os; from scai.distributed._ray import start_ray; import ray\n"
            "assert start_ray(None, 1)\n"
            "@ray.remote\n"
            "def nice(): return os.nice(0)\n"
            "print('niceness', os.nice(0), ray.get(nice.remote()))\n"
            "ray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False,
                          preexec_fn=lambda: os.nice(3))
    assert done.returncode == 0, done.stderr[-2000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("niceness")][-1]
    assert line == "niceness 3 3"


_OWN_RAY = """
import json, sys
import ray
import scai.distributed._ray as R
from scai.distributed import predict_dataset
from scai.errors import BudgetError

model, shard, out = sys.argv[1:4]
starts = []
real_start = R.start_ray
R.start_ray = lambda *a: starts.append(real_start(*a)) or starts[-1]  # True: this call started Ray
res = {}
try:  # a bad option: refused after the local Ray started, and before out_dir is written
    predict_dataset(model, shard, out, engine="ray", num_workers=1, policy="threshold")
except BudgetError as exc:
    res["error"] = str(exc)
res["out_after_error"] = __import__("os").path.exists(out)
res["ray_after_error"] = ray.is_initialized()
s = predict_dataset(model, shard, out, engine="ray", num_workers=1)
res["rows"], res["written"], res["ray_after_run"] = s.rows, s.shards_written, ray.is_initialized()
s = predict_dataset(model, shard, out, engine="ray", num_workers=1)  # every shard done: no Ray to start
res["skipped"], res["starts"] = s.shards_skipped, sum(starts)
print("RESULT", json.dumps(res))
"""


def test_a_run_starts_its_own_local_ray_checks_options_meanwhile_and_shuts_it_down(liquor_model, archive, tmp_path):
    # what `scai predict ... --engine ray` does in a fresh process (the other tests share one Ray):
    # the model is loaded to check the options while Ray starts; a bad option fails before out_dir
    # is written and Ray is shut down; a finished run resumed starts no Ray at all
    pytest.importorskip("ray", reason="the distributed extra (pip install 'scai[distributed]') is not installed")
    out = tmp_path / "preds"
    done = subprocess.run([sys.executable, "-c", _OWN_RAY, str(liquor_model), str(archive[2]), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads([x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT "):])
    assert "policy 'threshold' needs a threshold" in res["error"]
    assert res["out_after_error"] is False and res["ray_after_error"] is False
    assert (res["rows"], res["written"], res["ray_after_run"]) == (100, 1, False)
    assert res["skipped"] == 1 and res["starts"] == 2  # the bad call and the first run; not the resumed one
    assert _outputs(out).column("row").to_pylist() == list(range(100))
