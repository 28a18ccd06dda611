"""The edge client's cost includes the preprocessing it runs (counted MACs and measured ms)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_edge_results_carry_preprocessing_cost(export_dir: Path, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    edge = EdgeClient(export_dir, bmax="1G")
    n, width = 12, milk.X.shape[1]
    results = edge.classify(milk.X[:n], milk.axis)
    # The fixture's pipeline: Despike, asls, SavitzkyGolay(11), SNV, Standardize. Hand count per
    # point: 11 taps + 4 (SNV) + 2 (Standardize); despiking and the baseline are only timed.
    assert [s.step for s in edge.preprocessing_cost.steps] == [
        "Despike", "BaselineCorrection", "SavitzkyGolay", "SNV", "Standardize"]
    assert edge.preprocessing_cost.uncounted == ["Despike", "BaselineCorrection"]
    assert edge.preprocessing_cost.macs == (11 + 4 + 2) * width
    stage_macs = np.cumsum(edge.stage_macs)
    for r in results:
        assert r.preprocessing_macs == (11 + 4 + 2) * width
        assert r.macs_edge_total == r.macs_edge + r.preprocessing_macs
        assert r.macs_edge == int(stage_macs[r.exit])  # the network's cost is reported as before
        assert r.preprocessing_ms > 0
        assert r.latency_ms >= n * r.preprocessing_ms - 1e-6  # latency counts from before preprocessing
    assert len({r.preprocessing_ms for r in results}) == 1  # one call, one per-spectrum share


def test_resampled_input_adds_the_resampling(export_dir: Path, milk: Any) -> None:
    from scai.deploy.edge import EdgeClient

    edge = EdgeClient(export_dir, bmax="1G")
    with pytest.warns(UserWarning, match="resampled"):
        res = edge.classify(milk.X[:2], milk.axis + 1.0)
    assert res[0].preprocessing_macs == edge.preprocessing_cost.macs + 2 * milk.X.shape[1]


def test_results_csv_has_the_cost_columns(export_dir: Path, milk: Any, tmp_path: Path) -> None:
    from scai.deploy.edge import EdgeClient, write_results_csv

    edge = EdgeClient(export_dir, bmax="1G")
    res = edge.classify(milk.X[:3], milk.axis)
    with open(write_results_csv(res, tmp_path / "r.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert {"macs_edge", "preprocessing_macs", "preprocessing_ms", "macs_edge_total"} <= set(rows[0])
    assert int(rows[0]["macs_edge_total"]) == int(rows[0]["macs_edge"]) + int(rows[0]["preprocessing_macs"])
    assert float(rows[0]["preprocessing_ms"]) > 0
