"""The model directory's owner: atomic writes, the config.json schema, hashes, stored calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scai.errors import ModelFileError
from scai.model_dir import CONFIG_FIELDS, FILES, ModelDir, file_sha256

TINY = {"channels": (4, 6, 8), "units_per_block": 1, "stem_stride": 2}


@pytest.fixture(scope="module")
def fitted() -> Any:
    from scai import SCAIClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(36, 64)).astype(np.float32)
    y = np.repeat(["a", "b", "c"], 12)
    X[y == "b", 20:30] += 2.0
    X[y == "c", 40:50] += 2.0
    return SCAIClassifier(model="scai_plus", model_config=TINY, train_config={"max_epochs": 2},
                          preprocessing="none", val_fraction=0.3, skip_exits=False).fit(X, y)


def test_fit_stores_the_default_calibration_and_deploy_uses_it(fitted: Any, tmp_path: Path) -> None:
    from scai.deploy.manifest import default_thresholds
    from scai.inference.policies import default_budget

    d = fitted.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["default_budget"] == default_budget(cfg["exit_macs"])
    stored = cfg["thresholds"][f"{cfg['default_budget']:g}"]
    assert len(stored["thresholds"]) == len(cfg["exit_macs"]) and stored["thresholds"][-1] == 0.0  # one per exit
    th, source, _ = default_thresholds(__import__("scai").load(d))
    assert source.startswith("stored budgeted-batch calibration")
    assert th == stored["thresholds"]


def test_weights_hash_comes_from_config_and_is_checked(fitted: Any, tmp_path: Path) -> None:
    d = fitted.save(tmp_path / "m")
    md = ModelDir(d)
    assert md.weights_sha256 == file_sha256(d / "model.safetensors")
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        ModelDir(d).weights_sha256


def test_a_failed_save_leaves_the_old_model_and_no_debris(fitted: Any, tmp_path: Path, monkeypatch: Any) -> None:
    d = fitted.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    monkeypatch.setattr(fitted, "thresholds_", {"x": object()})  # not JSON: the save must fail
    with pytest.raises(TypeError, match="cannot store object"):
        fitted.save(d)
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    with pytest.raises(TypeError, match="cannot store object"):
        fitted.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half-written new folder either


def test_save_refuses_a_folder_that_is_not_a_model(fitted: Any, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "spectra.csv").write_text("keep me")
    with pytest.raises(ModelFileError, match="not a model directory"):
        fitted.save(tmp_path / "data")
    assert (tmp_path / "data" / "spectra.csv").read_text() == "keep me"
    fitted.save(tmp_path / "data2")  # a new folder is fine
    fitted.save(tmp_path / "data2")  # and so is replacing a model
    assert (tmp_path / "data2" / "config.json").is_file()


@pytest.mark.parametrize("field, value", [("in_length", "64"), ("class_names", "abc"), ("thresholds", [1]),
                                          ("default_budget", True)])
def test_schema_types_are_checked_on_load(fitted: Any, tmp_path: Path, field: str, value: Any) -> None:
    d = fitted.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg[field] = value
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=f"field '{field}' must be"):
        __import__("scai").load(d)


def test_missing_required_field_is_named(fitted: Any, tmp_path: Path) -> None:
    d = fitted.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["model_config"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="missing required field 'model_config'"):
        ModelDir(d).config


def test_every_written_field_is_in_the_schema_and_documented(fitted: Any, tmp_path: Path) -> None:
    import scai.model_dir as module

    d = fitted.save(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert set(cfg) <= set(CONFIG_FIELDS), set(cfg) - set(CONFIG_FIELDS)
    for name in CONFIG_FIELDS:
        assert f"\n{name}" in module.__doc__, f"{name} is not documented in the schema table"
    assert {p.name for p in d.iterdir()} <= set(FILES)
    with pytest.raises(ModelFileError, match="not a file of a model directory"):
        ModelDir(d).file("weights.pt")
    assert ModelDir(d).history()["best_epoch"] == fitted.history_.best_epoch
