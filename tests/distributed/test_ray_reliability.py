"""The reliability columns and options of the Ray engine (issue #17): ``unknown_score``,
``unknown``, ``out_of_domain``, ``domain_reason`` and, with sets, ``prediction_set`` equal
``scai predict``'s on the same rows with the same Parquet types, and ``on_unknown`` /
``confidence_level`` (``--sets``) / ``on_ambiguous`` / ``reject_rate`` decide as they do there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.distributed.conftest import N_POINTS

pa = pytest.importorskip("pyarrow", reason="pyarrow (scai[distributed]) is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (scai[distributed]) is not installed")

from scai.cli._output import RELIABILITY_COLUMNS
from scai.cli.main import main
from scai.distributed import predict_dataset
from scai.distributed.worker import OUTPUT_COLUMNS
from scai.errors import ConfigError

RELIABILITY = [name for name, _ in RELIABILITY_COLUMNS]
BATCH = ["--policy", "batch", "--budget", "25%", "--batch-size", "64"]
SETS = ["--sets", "0.95", "--on-ambiguous", "deeper"]
ANSWER = ["--policy", "threshold", "--threshold", "0.8", "--on-unknown", "answer", "--reject-rate", "0.2"]


def _spectra(path: Path) -> np.ndarray:
    column = pq.read_table(path, columns=["spectrum"]).column(0).combine_chunks()
    return column.flatten().to_numpy().reshape(-1, N_POINTS)


def _outputs(out_dir: Path) -> Any:
    return pq.read_table(out_dir).sort_by([("source", "ascending"), ("row", "ascending")])


def _scai_predict_per_batch(model: Path, X: np.ndarray, table: Any, tmp: Path, *options: str) -> Any:
    """``scai predict --out x.parquet`` on exactly the rows of each Ray batch of ``table``, in
    ``table``'s order: which spectra share a batch decides what the batch guard sends out (held
    spectra count against the budget), so each batch is predicted on its own."""
    batches = np.asarray(table.column("batch").to_pylist())
    rows = np.asarray(table.column("row").to_pylist())
    tmp = tmp / f"local{len(list(tmp.glob('local*')))}"
    tmp.mkdir()
    parts = []
    for j, b in enumerate(dict.fromkeys(batches.tolist())):
        idx = rows[batches == b]
        assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)) and len(idx) <= 64  # one batch of contiguous rows
        np.save(tmp / f"b{j}.npy", X[idx])
        out = tmp / f"b{j}.parquet"
        code = main(["predict", str(model), str(tmp / f"b{j}.npy"), "--out", str(out), "--batch-size", "64", *options])
        assert code == 0
        parts.append(pq.read_table(out))
    return pa.concat_tables(parts)


def _same_as_scai_predict(table: Any, local: Any, with_sets: bool) -> None:
    names = RELIABILITY + (["prediction_set"] if with_sets else [])
    assert table.num_rows == local.num_rows
    for name in names:  # the same Parquet types as scai predict's
        assert table.schema.field(name).type == local.schema.field(name).type, name
    for name in ("prediction", "exit", "macs", "reason", "held", "unknown", "out_of_domain", "domain_reason",
                 *(["prediction_set"] if with_sets else [])):
        assert table.column(name).to_pylist() == local.column(name).to_pylist(), name
    assert [int(f) for f in table.column("flagged").to_pylist()] == local.column("flagged").to_pylist()
    np.testing.assert_allclose(table.column("confidence").to_numpy(), local.column("confidence").to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(table.column("unknown_score").to_numpy(), local.column("unknown_score").to_numpy(),
                               rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def sets_run(ray_local, liquor_model, archive, tmp_path_factory) -> Any:
    """``scai predict --engine ray`` on the first shard: budgeted batch at 25 %, conformal sets at
    0.95, ambiguous spectra held (and unknown ones, the default)."""
    out = tmp_path_factory.mktemp("sets") / "ray"
    assert main(["predict", str(liquor_model), str(archive[0]), "--engine", "ray", "--workers", "1",
                 "--chunk-size", "64", *BATCH, *SETS, "--out", str(out)]) == 0
    return out


def test_reliability_columns_equal_scai_predict_per_batch(sets_run, liquor_model, archive, tmp_path):
    table = _outputs(sets_run)
    assert tuple(table.column_names) == (*OUTPUT_COLUMNS[:-1], "prediction_set", "batch")
    X = _spectra(archive[0])
    local = _scai_predict_per_batch(liquor_model, X, table, tmp_path, *BATCH, *SETS)
    _same_as_scai_predict(table, local, with_sets=True)
    # Not trivially equal: the model stores a detector, a domain check and sets, and they say something.
    assert table.column("unknown_score").null_count == 0 and 0 < sum(table.column("unknown").to_pylist()) < 250
    reasons = table.column("domain_reason").to_pylist()
    assert 0 < sum(table.column("out_of_domain").to_pylist()) == sum(r != "" for r in reasons) < 250
    sizes = {len(s.split("|")) if s else 0 for s in table.column("prediction_set").to_pylist()}
    assert len(sizes) > 1


def test_on_ambiguous_deeper_holds_as_in_scai_predict(sets_run, liquor_model, archive, tmp_path):
    """--on-ambiguous deeper holds spectra whose set has 2+ classes: the Ray shards hold the same
    spectra as scai predict does, and the answers differ from scai predict's default on them."""
    table = _outputs(sets_run)
    held = table.column("held").to_pylist()
    assert any("ambiguous" in h for h in held) and any("unknown" in h for h in held)  # both holds at work
    default = _scai_predict_per_batch(liquor_model, _spectra(archive[0]), table, tmp_path, *BATCH)
    assert not any("ambiguous" in h for h in default.column("held").to_pylist())
    changed = [(a, b) for a, b in zip(zip(table.column("exit").to_pylist(), table.column("reason").to_pylist()),
                                      zip(default.column("exit").to_pylist(), default.column("reason").to_pylist()))
               if a != b]
    assert changed  # the hold changed where some spectra left (or why), exactly as scai predict's own run


def test_on_unknown_answer_and_reject_rate_decide_as_in_scai_predict(ray_local, liquor_model, archive, tmp_path):
    summary = predict_dataset(liquor_model, archive[0], tmp_path / "ray", policy="threshold", threshold=0.8,
                              on_unknown="answer", reject_rate=0.2, num_workers=1, batch_size=64, block_rows=64)
    table = _outputs(tmp_path / "ray")
    assert tuple(table.column_names) == OUTPUT_COLUMNS  # no sets asked for: no prediction_set column
    assert summary.manifest["on_unknown"] == "answer" and summary.manifest["reject_rate"] == 0.2
    X = _spectra(archive[0])
    local = _scai_predict_per_batch(liquor_model, X, table, tmp_path, *ANSWER)
    _same_as_scai_predict(table, local, with_sets=False)
    # answer: an unknown spectrum confident at an early exit leaves there, flagged; nothing is held.
    unknown = np.asarray(table.column("unknown").to_pylist()) == 1
    exits = np.asarray(table.column("exit").to_pylist())
    assert set(table.column("held").to_pylist()) == {""} and np.any(unknown & (exits < 3))
    # scai predict's default (deeper) holds spectra instead, and the model's own reject rate flags fewer.
    default = _scai_predict_per_batch(liquor_model, X, table, tmp_path, "--policy", "threshold", "--threshold", "0.8")
    assert "unknown" in set(default.column("held").to_pylist())
    assert not np.array_equal(exits, default.column("exit").to_numpy())
    assert unknown.sum() > sum(default.column("unknown").to_pylist())


def test_bad_reliability_options_are_refused_before_any_worker_starts(liquor_model, archive, tmp_path, capsys):
    shard = archive[2]
    cases = [
        ({"on_unknown": "maybe"}, r"on_unknown='maybe' is not allowed; use one of \['deeper', 'answer'\]"),
        ({"on_ambiguous": "later"}, r"on_ambiguous='later' is not allowed; use one of \['deeper', 'answer'\]"),
        ({"on_ambiguous": "deeper"}, r"on_ambiguous='deeper' .* needs the sets' confidence level"),
        ({"confidence_level": 0.8}, r"confidence_level=0.8 was not calibrated; calibrated: \[0.9, 0.95\]"),
        ({"confidence_level": 1.5}, r"confidence_level=1.5 is not allowed; use a calibrated level in \(0, 1\)"),
        ({"confidence_level": "0.95"}, r"confidence_level='0.95' is not allowed"),
        ({"reject_rate": 1.0}, r"reject_rate=1.0 is not allowed; .* in \[0, 1\)"),
    ]
    for kwargs, message in cases:  # engine="ray": refused on the driver, before Ray is started
        with pytest.raises(ConfigError, match=message):
            predict_dataset(liquor_model, shard, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    base = ["predict", str(liquor_model), str(shard), "--engine", "ray", "--out", str(tmp_path / "cli")]
    assert main([*base, "--on-ambiguous", "deeper"]) == 2
    assert "--on-ambiguous deeper holds spectra" in capsys.readouterr().err
    assert main([*base, "--sets", "0.8"]) == 2
    assert "confidence_level=0.8 was not calibrated" in capsys.readouterr().err
    assert main([*base, "--on-unknown", "maybe"]) == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
    # A rerun with other reliability options into the same folder is refused, not mixed.
    predict_dataset(liquor_model, shard, tmp_path / "inline", engine="inline")
    with pytest.raises(ConfigError, match=r"different settings on_unknown"):
        predict_dataset(liquor_model, shard, tmp_path / "inline", engine="inline", on_unknown="answer")
    predict_dataset(liquor_model, shard, tmp_path / "inline", engine="inline", on_unknown="deeper")  # the default


def test_raw_domain_checks_see_the_raw_spectra(liquor_model, archive, tmp_path):
    """The workers give the predictor the raw spectra too, so a saturated spectrum is out of domain
    for the raw checks as in scai predict (the in-process engine runs the same worker class)."""
    X = _spectra(archive[2])[:40].copy()
    for i in (3, 17):
        X[i] = np.minimum(X[i], np.quantile(X[i], 0.9))  # a tenth of the points at the maximum
    spectrum = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), N_POINTS)
    pq.write_table(pa.table({"spectrum": spectrum}).replace_schema_metadata(pq.read_schema(archive[2]).metadata),
                   tmp_path / "saturated.parquet")
    predict_dataset(liquor_model, tmp_path / "saturated.parquet", tmp_path / "out", engine="inline", batch_size=64)
    table = _outputs(tmp_path / "out")
    np.save(tmp_path / "saturated.npy", X)
    npy, out = str(tmp_path / "saturated.npy"), str(tmp_path / "l.parquet")
    assert main(["predict", str(liquor_model), npy, "--out", out]) == 0
    local = pq.read_table(tmp_path / "l.parquet")
    _same_as_scai_predict(table, local, with_sets=False)
    reasons = table.column("domain_reason").to_pylist()
    assert all("saturated" in reasons[i] for i in (3, 17)) and table.column("out_of_domain")[3].as_py() == 1
