"""`scai predict` output columns: ids the file carries (a Renishaw map's pixels), unknown-class and domain flags, conformal sets."""

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


def test_predict_writes_unknown_and_domain_flags_and_sets(tmp_path: Path) -> None:
    """The flags of scai predict are those of predict_detailed for the same spectra; --reject-rate
    re-sets the threshold; --sets writes the conformal sets; junk is out of domain."""
    from scai import SCAIClassifier
    from scai.datasets import load

    milk = load("milk_adulteration")
    idx = np.concatenate([np.flatnonzero(milk.y == c)[:8] for c in range(len(milk.class_names))])
    labels = np.asarray(milk.class_names)[milk.y[idx]]
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 2}, cross_fit=3, n_jobs=1,
                         preprocessing="snv").fit(milk.X[idx], labels, axis=milk.axis)
    model = est.save(tmp_path / "m")
    X = np.vstack([milk.X[:12], np.zeros((1, milk.X.shape[1]))])  # 12 real spectra and an all-zero one
    data = tmp_path / "x.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"{v:g}" for v in milk.axis])
        w.writerows(X.tolist())
    want = est.predict_detailed(X, milk.axis, confidence_level=0.9)
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(data), "--out", str(out), "--sets", "0.9", "--threads", "1"]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["unknown"]) for r in rows] == [int(v) for v in want.unknown]
    np.testing.assert_allclose([float(r["unknown_score"]) for r in rows], want.unknown_score, rtol=1e-5)
    assert [int(r["out_of_domain"]) for r in rows] == [int(v) for v in want.out_of_domain]
    assert rows[-1]["out_of_domain"] == "1" and rows[-1]["domain_reason"]  # the all-zero spectrum, with why
    sets = [set(r["prediction_set"].split("|")) - {""} for r in rows]
    assert sets == [{str(c) for c, k in zip(est.classes_, keep) if k} for keep in want.prediction_set]
    # a reject rate of 0.5 flags at least as many as the default 0.05
    out2 = tmp_path / "q.csv"
    assert main(["predict", str(model), str(data), "--out", str(out2), "--reject-rate", "0.5", "--threads", "1"]) == 0
    with open(out2) as fh:
        flagged = sum(int(r["unknown"]) for r in csv.DictReader(fh))
    assert flagged >= sum(int(r["unknown"]) for r in rows) and flagged >= 4


def test_axis_unit_is_stored_and_spectra_in_another_unit_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wdf", reason="the io extra's Renishaw reader (renishaw-wdf) is not installed")
    import json

    import scai

    s = scai.data.read(VENDOR / "Si-map.wdf")  # a Raman map in cm-1
    data = tmp_path / "nm.csv"  # the same numbers, claimed to be an NIR axis in nm
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", *[f"{v:g}" for v in s.axis]])
        w.writerows([[k % 2, *row] for k, row in enumerate(s.X.tolist())])
    model = tmp_path / "m"
    args = ["train", str(data), "--label-column", "label", "--epochs", "1", "--single-split", "--threads", "1",
            "--out", str(model)]
    assert main([*args, "--axis-unit", "nm"]) == 0
    assert json.loads((model / "config.json").read_text())["axis_unit"] == "nm"
    capsys.readouterr()
    assert main(["predict", str(model), str(VENDOR / "Si-map.wdf"), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "the axis is in cm-1, but the model was trained on spectra in nm" in err
    assert not (tmp_path / "p.csv").exists()
    # a unit the file does not state is the user's to give; a unit for point indices is refused
    idx = tmp_path / "idx.csv"
    with open(idx, "w", newline="") as fh:
        csv.writer(fh).writerows([[k % 2, *row] for k, row in enumerate(s.X.tolist())])
    assert main(["train", str(idx), "--label-column", "0", "--axis-unit", "nm", "--epochs", "1", "--single-split",
                 "--out", str(tmp_path / "m2")]) == 2
    assert "has no axis values" in capsys.readouterr().err


def test_a_model_without_a_detector_writes_empty_flag_cells(tmp_path: Path) -> None:
    from scai import SCAIClassifier
    from tests.conftest import make_peaks

    X, y, axis = make_peaks(n_per_class=6)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 1}, cross_fit=0,
                         preprocessing="snv", exit0="none", ood="none", domain_confidence=None,
                         confidence_levels=None).fit(X, y, axis=axis)
    model = est.save(tmp_path / "m")
    np.save(tmp_path / "x.npy", X[:5])
    for name in ("p.csv", "p.json"):
        assert main(["predict", str(model), str(tmp_path / "x.npy"), "--out", str(tmp_path / name), "--threads", "1"]) == 0
    with open(tmp_path / "p.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and all(r["unknown_score"] == "" and r["unknown"] == "" for r in rows)
    import json

    recs = json.loads((tmp_path / "p.json").read_text())
    assert all(r["unknown_score"] is None and r["unknown"] is None for r in recs)
