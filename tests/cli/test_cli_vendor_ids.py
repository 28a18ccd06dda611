"""`scai predict` on an instrument file writes the ids the file carries (here: a Renishaw map's pixels)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scai.cli.main import main
from tests.conftest import TINY_SCAI

VENDOR = Path(__file__).resolve().parents[1] / "data" / "vendor"


def test_predict_on_a_wdf_map_writes_each_pixel_id(tmp_path: Path) -> None:
    pytest.importorskip("wdf", reason="the io extra's Renishaw reader (renishaw-wdf) is not installed")
    import scai
    from scai import SCAIClassifier

    s = scai.data.read(VENDOR / "Si-map.wdf")
    y = np.arange(len(s.X)) % 2  # any labels: the test is about the rows' ids, not accuracy
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 1}, cross_fit=0,
                         preprocessing="snv", exit0="none").fit(s.X, y, axis=s.axis, axis_unit=s.axis_unit)
    model = est.save(tmp_path / "m")
    out = tmp_path / "map.csv"
    assert main(["predict", str(model), str(VENDOR / "Si-map.wdf"), "--out", str(out), "--threads", "1"]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [str(v) for v in s.ids]  # one row per pixel, in file order
    assert [int(r["index"]) for r in rows] == list(range(len(s.X)))
