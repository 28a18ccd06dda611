"""``scai.datasets.write_archive``: the shards hold exactly ``synthetic_liquor``'s spectra, in the
documented layout, whatever the chunk size; an occupied folder is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (scai[distributed]) is not installed")

from scai.datasets import synthetic_liquor, write_archive
from scai.datasets.archive import main
from scai.errors import ConfigError, DataFormatError


def test_shards_hold_synthetic_liquor_rows_in_order(tmp_path):
    paths = write_archive(tmp_path / "a", 1000, 300, n_classes=3, n_points=64, seed=2, chunk_size=128, row_group_size=100)
    assert [p.name for p in paths] == [f"part-{k:05d}.parquet" for k in range(4)]
    tables = [pq.read_table(p) for p in paths]
    assert [t.num_rows for t in tables] == [300, 300, 300, 100]
    groups = pq.ParquetFile(paths[0]).metadata
    assert [groups.row_group(g).num_rows for g in range(groups.num_row_groups)] == [100, 100, 100]
    s = synthetic_liquor(1000, n_classes=3, n_points=64, seed=2)
    X = np.concatenate([t.column("spectrum").combine_chunks().flatten().to_numpy().reshape(-1, 64) for t in tables])
    np.testing.assert_array_equal(X, s.X)
    labels = [v for t in tables for v in t.column("label").to_pylist()]
    assert labels == list(np.asarray(s.class_names)[s.y])
    ids = [v for t in tables for v in t.column("id").to_pylist()]
    assert ids == [f"s{i:03d}" for i in range(1000)]
    meta = tables[0].schema.metadata
    np.testing.assert_allclose(json.loads(meta[b"scai.axis"]), s.axis)
    assert meta[b"scai.axis_unit"] == b"cm-1"
    assert str(tables[0].schema.field("spectrum").type) == "fixed_size_list<element: float>[64]"


def test_occupied_folder_and_bad_sizes_are_refused(tmp_path, capsys):
    write_archive(tmp_path, 10, 5, n_points=16)
    with pytest.raises(DataFormatError, match="already holds 2 shard"):
        write_archive(tmp_path, 10, 5, n_points=16)
    assert len(write_archive(tmp_path, 10, 10, n_points=16, overwrite=True)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]  # no temporary file left
    with pytest.raises(ConfigError, match="shard_size=0 must be a positive integer"):
        write_archive(tmp_path / "b", 10, 0)
    assert main([str(tmp_path / "c"), "7", "--shard-size", "4", "--points", "16"]) == 0
    assert "wrote 7 spectra in 2 shard(s)" in capsys.readouterr().err
