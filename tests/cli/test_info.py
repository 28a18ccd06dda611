"""``scai info``: the model card reads what a model directory holds, text and --json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scai.cli.info import NOT_RECORDED, model_card
from scai.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from scai import SCAIClassifier
    from scai.model_dir import SPLIT, ModelDir
    from tests.conftest import TINY_SCAI, make_peaks

    X, y, axis = make_peaks(n_per_class=15)
    Xv, yv, _ = make_peaks(n_per_class=4, seed=1)  # an explicit validation split keeps the fit to one training
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, train_config={"max_epochs": 2, "threads": 1},
                         preprocessing="snv", skip_exits=False, exit0="logistic")
    est.fit(X, y, axis=axis, X_val=Xv, y_val=yv, axis_unit="cm-1")
    out = est.save(tmp_path_factory.mktemp("m") / "model")
    ModelDir(out).write_json(SPLIT, {"seed": 0, "n_train": 40, "n_val": 5})
    return out, est, axis


def test_card_holds_what_the_directory_stores(model_dir):
    out, est, axis = model_dir
    cfg = json.loads((out / "config.json").read_text())
    card = model_card(out)
    d = card["training_data"]
    assert d["classes"] == ["class_0", "class_1", "class_2"]
    assert (d["axis_min"], d["axis_max"], d["axis_points"], d["axis_unit"]) == (axis.min(), axis.max(), axis.size, "cm-1")
    y_val = est.validation_["y"]
    assert d["class_counts_validation"] == {f"class_{k}": int((y_val == k).sum()) for k in range(3)}
    assert (d["n_train"], d["n_val"], d["source_sha256"], d["class_counts_train"]) == (40, 5, None, None)
    assert [e["macs"] for e in card["exits"]] == est.exit_macs_
    assert [e["exit"] for e in card["exits"]] == list(range(len(est.exit_macs_)))  # 0-based, as predict_detailed
    assert card["exits"][0]["validation_accuracy"] == est.exit0_["validation_accuracy"][0]
    assert card["calibration"]["temperatures"] == pytest.approx(list(est.temperatures_))
    # fitted by default at training (docs/ood.md): the card summarises what config.json stores
    assert card["calibration"]["ood"]["score"] == cfg["ood"]["score"] == "relative_mahalanobis"
    assert card["calibration"]["ood"]["thresholds"] == pytest.approx(cfg["ood"]["thresholds"])
    for key in ("anchored", "anchor_weight", "anchor_mean", "anchor_std"):  # the anchor, as stored
        assert card["calibration"]["ood"][key] == cfg["ood"].get(key)
    assert card["calibration"]["conformal"] is not None
    assert card["preprocessing_cost"] == cfg["preprocessing_cost"] and cfg["preprocessing_cost"]["macs"] > 0
    assert [s["step"] for s in card["preprocessing"]["steps"]] == [type(s).__name__ for s in est.pipeline_.steps]
    assert card["hashes"]["weights_sha256"] == cfg["weights_sha256"]
    assert card["versions"]["scai_version"] == cfg["scai_version"]


def test_text_and_json_output(model_dir, capsys):
    out, est, _ = model_dir
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "class_1" in text and f"{est.exit_macs_[-1]:,}" in text and NOT_RECORDED in text
    assert "unit cm-1" in text and "SNV" in text
    assert main(["info", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["exits"] == json.loads(json.dumps(model_card(out)["exits"]))


def test_stored_calibration_records_are_shown(model_dir, tmp_path, capsys, monkeypatch):
    import shutil

    pytest.importorskip("mapie")
    from scai import model_dir as md
    from scai.inference.conformal import ConformalSets

    # config.json's schema gains the field when the integration stores it; here it is added for the test.
    monkeypatch.setitem(md.CONFIG_FIELDS, "conformal", ((dict,), False))

    out, est, _ = model_dir
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    cfg = json.loads((copy / "config.json").read_text())
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(3), size=(len(est.exit_macs_), 40))
    cfg["conformal"] = ConformalSets().fit(P, rng.integers(0, 3, 40)).to_dict()
    (copy / "config.json").write_text(json.dumps(cfg))
    card = model_card(copy)
    assert card["calibration"]["conformal"]["confidence_levels"] == [0.9, 0.95]
    assert main(["info", str(copy)]) == 0
    assert '"library": "mapie"' in capsys.readouterr().out


def test_not_a_model_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scai info: error:") and err.count("\n") == 1
