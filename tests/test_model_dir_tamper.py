"""A model directory that was edited, truncated or rearranged: every case is a one-line
ModelFileError naming the file (or, for a symbolic link, a warning naming the target), never a
silent load of something else and never a traceback from deep inside."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scai
from scai.errors import ModelFileError, ScaiError
from scai.model_dir import CONFIG_FIELDS, ModelDir

TINY = {"channels": (4, 6, 8), "units_per_block": 1, "stem_stride": 2}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scai import SCAIClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(36, 64)).astype(np.float32)
    y = np.repeat(["a", "b", "c"], 12)
    X[y == "b", 20:30] += 2.0
    X[y == "c", 40:50] += 2.0
    est = SCAIClassifier(model="scai", model_config=TINY, train_config={"max_epochs": 1},
                         preprocessing="snv", val_fraction=0.3, skip_exits=False).fit(X, y)
    return est.save(tmp_path_factory.mktemp("tamper") / "m")


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "m"))


def _edit(d: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = json.loads((d / "config.json").read_text())
    change(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def _refused(d: Path, *needles: str) -> str:
    with pytest.raises(ModelFileError) as info:
        scai.load(d)
    text = str(info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def test_missing_weights_hash_is_an_error_even_with_flipped_weights(copy: Path) -> None:
    _edit(copy, lambda c: c.pop("weights_sha256"))
    w = copy / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01
    w.write_bytes(bytes(data))
    _refused(copy, "config.json", "weights_sha256")


def test_unknown_top_level_key_lists_the_valid_ones(copy: Path) -> None:
    _edit(copy, lambda c: c.update(wieghts_sha256="x"))
    text = _refused(copy, "config.json", "'wieghts_sha256'")
    assert all(k in text for k in CONFIG_FIELDS)


def test_unknown_estimator_param_lists_the_estimators_own(copy: Path) -> None:
    _edit(copy, lambda c: c["estimator_params"].update(lerning_rate=1))
    text = _refused(copy, "config.json", "estimator_params", "lerning_rate")
    assert all(k in text for k in scai.SCAIClassifier._get_param_names())


def test_unknown_train_config_key_names_the_file(copy: Path) -> None:
    _edit(copy, lambda c: c["train_config"].update(max_epoch=3))
    _refused(copy, "config.json", "train_config", "max_epoch")


@pytest.mark.parametrize("where", ["pipeline", "step", "params", "state"])
def test_unknown_preprocessing_key_is_refused(copy: Path, where: str) -> None:
    def change(c: dict[str, Any]) -> None:
        doc = c["preprocessing"]
        target = {"pipeline": doc, "step": doc["steps"][0], "params": doc["steps"][0]["params"],
                  "state": doc["steps"][0]["state"]}[where]
        target["surprise"] = 1

    _edit(copy, change)
    _refused(copy, "config.json", "preprocessing", "surprise")


def test_class_names_shorter_than_n_classes(copy: Path) -> None:
    _edit(copy, lambda c: c.update(class_names=c["class_names"][:2]))
    _refused(copy, "config.json", "class_names has 2")


@pytest.mark.parametrize("content", ['{"epochs": [', '{"epochs": 5}', '[1, 2]', '{"epochs": [], "extra": 1}'])
def test_broken_history_names_the_file(copy: Path, content: str) -> None:
    (copy / "history.json").write_text(content)
    _refused(copy, "history.json")


def test_truncated_side_files(copy: Path) -> None:
    val = copy / "validation.safetensors"
    val.write_bytes(val.read_bytes()[:100])
    _refused(copy, "validation.safetensors")


def test_symlinked_weights_load_with_a_warning(copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "annex" / "blob"
    store.parent.mkdir()
    shutil.move(str(copy / "model.safetensors"), store)
    (copy / "model.safetensors").symlink_to(store)
    with pytest.warns(UserWarning, match="symbolic link to .*blob"):
        scai.load(copy)
    store.unlink()
    _refused(copy, "symbolic link", "does not exist")


def test_a_directory_where_a_file_belongs(copy: Path) -> None:
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").mkdir()
    _refused(copy, "model.safetensors", "is a directory")


def test_config_json_directory_and_missing_dir(copy: Path, tmp_path: Path) -> None:
    _refused(tmp_path / "nope", "does not exist")
    (copy / "config.json").unlink()
    (copy / "config.json").mkdir()
    _refused(copy, "config.json", "is a directory")
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "is a file")


def test_saving_refuses_an_unknown_field(saved: Path, tmp_path: Path) -> None:
    from scai.model_dir import ModelFiles, save_model_dir

    files = ModelDir(saved).load()
    files.config["surprise"] = 1
    with pytest.raises(ModelFileError, match="unknown field"):
        save_model_dir(tmp_path / "new", ModelFiles(files.config, files.state_dict, files.validation))
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- property

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
_paths = st.sampled_from([(), ("estimator_params",), ("train_config",), ("preprocessing",), ("preprocessing", "steps", 0),
                          ("preprocessing", "steps", 0, "params"), ("model_config",), ("thresholds",)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=_paths, key=st.one_of(st.sampled_from(sorted(CONFIG_FIELDS)), st.text(min_size=1, max_size=10)),
       value=_json, delete=st.booleans())
def test_any_edit_of_config_json_loads_or_is_one_line(saved: Path, tmp_path_factory: pytest.TempPathFactory,
                                                     path: tuple[Any, ...], key: str, value: Any, delete: bool) -> None:
    """Set or delete one key anywhere in config.json: ModelDir.load either succeeds or raises a
    one-line ModelFileError naming config.json."""
    d = Path(shutil.copytree(saved, tmp_path_factory.mktemp("prop") / "m"))
    cfg = json.loads((d / "config.json").read_text())
    node: Any = cfg
    for p in path:
        node = node[p] if isinstance(node, dict) or (isinstance(node, list) and len(node) > p) else None
        if node is None:
            return
    if not isinstance(node, dict):
        return
    if delete:
        node.pop(key, None)
    else:
        node[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ModelDir(d).load()
        except ScaiError as exc:
            text = str(exc)
            assert "\n" not in text and "config.json" in text, text
