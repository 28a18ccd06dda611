"""The saved model directory: its files, the ``config.json`` schema, hashes, history, calibration.

This module is the one owner of a model directory; the estimator, the CLI and deploy read and
write it through :class:`ModelDir` and the functions below, never by literal file names.

Layout (``FILES``)::

    config.json              the schema below (plain JSON)
    model.safetensors        network weights
    validation.safetensors   the preprocessed validation split ("X", "y"): calibration data
    history.json, .csv       per-epoch training history (scai.training.History)
    split.json               how scai train split the data (written by the CLI)
    training_rows.json       digests of the spectra the model was fitted on (train + validation),
                             so that scoring them again is flagged (written by the CLI; optional)
    training_curves.png      per-exit training curves (written by the CLI)
    test/                    scai train --test-fraction: held-out metrics and plots

Nothing here unpickles. ``config.json`` is plain JSON; tensors are read with safetensors, whose
format is a JSON header plus raw little-endian buffers, so loading a model cannot execute code.
The SHA-256 of the weights (and of the validation split) is stored in ``config.json`` and checked
on load, so a truncated or tampered file is reported as such instead of failing somewhere deep in
PyTorch; the weights hash is required, so deleting it cannot switch the check off. Deploy takes
the model's identity from :attr:`ModelDir.weights_sha256`.

``config.json`` is read strictly (:func:`check_config`): an unknown key is refused at the top level
(valid keys: ``CONFIG_FIELDS``), in ``estimator_params`` (valid: the estimator's own parameters),
in ``train_config`` (``TrainConfig``'s fields), and in ``preprocessing``, each of its steps, their
parameters and fitted state (valid: what the rebuilt pipeline writes itself). A key this scai does
not know means the file was edited or written by another version, and ignoring it would run a
model other than the one described. Each error names the file and lists the valid keys.

Symbolic links: a file of the directory that is a symbolic link is followed with a warning naming
the target. Large-file stores (git-annex, DVC) keep model files as links, and the weights'
content is hash-checked whatever path it comes from, so refusing links would break those set-ups
without making the model safer. A directory is
written to a temporary sibling first and then renamed into place, so a failed save never leaves a
half-written model behind.

``config.json`` schema, format version 1 (``CONFIG_FIELDS``; fields marked * are required):

==================  =========  ===============================================================
field               type       meaning
==================  =========  ===============================================================
format_version*     int        this schema's version; a newer one is refused with a hint
scai_version        str        the scai that wrote it
model_name*         str        registered network (``scai.models.list_models()``)
in_length*          int        points per preprocessed spectrum
n_classes*          int        number of classes
model_config*       object     the network family's config dataclass as a dict
cascade             object     exit 0 in front of the network (scai.models.Cascade): "kind",
                               "rank", "uses" (per exit: answers or repeats the previous),
                               "n_exits", "fit" (how exit 0 was chosen), "combination" (how each exit
                               builds on the one before, scai.inference.combination); null: no exit 0
class_names*        list       class labels, in class-index order
class_dtype         str        numpy dtype kind of the labels ("U", "i", "f")
axis*               list       the training spectral axis (raw spectra are aligned to it)
axis_unit           str        "cm-1", "nm", "index", ... or "unknown"
n_features_in       int        points per raw spectrum
preprocessing*      object     the fitted pipeline (``Pipeline.to_json``)
preprocessing_selection  object  preprocessing="auto": "chosen", "inner_cv_accuracy" per candidate, "rule"
cross_fit           object     cross-fitting (SCAIClassifier ``cross_fit``): folds, epochs chosen, out-of-fold
                               accuracy per exit, whether the network was trained, times; null: one split
preprocessing_cost  object     per spectrum: counted MACs and timed ms of each step and in total
                               (scai.preprocessing.cost.PreprocessingCost.to_dict)
ood                 object     unknown-class detector (scai.inference.ood.UnknownDetector.to_dict + "pooling",
                               "calibration"); null: none; absent: written before scai stored one
domain              object     input-domain check (scai.inference.domain.DomainCheck.to_dict + "calibration")
conformal           object     conformal quantiles per exit and level (scai.inference.conformal.ConformalSets.to_dict)
exit_macs*          list       cumulative full-compute MACs per exit (checked against the network)
mac_convention      str        "multiply-accumulates; FLOPs = 2 x MACs"
temperatures        list       per-exit temperature (calibration on the validation split)
thresholds          object     budgeted-batch calibrations, one per budget: {"<macs>": {
                               "budget_macs", "thresholds" (null = never leave), "expected_mean_macs"}}
default_budget      number     the budget (MACs) whose calibration is the model's default thresholds
train_config        object     scai.training.TrainConfig as a dict
estimator_params    object     SCAIClassifier parameters
history_summary     object     best_epoch, epochs_run, fit_time_s (the network's training), epoch_cap (the
                               training budget's epoch cap: max_epochs, train_budget, n_train, net_macs,
                               epochs), estimator_fit_s (the whole fit)
weights_sha256*     str        SHA-256 of model.safetensors (required: without it the weights could not be checked)
validation_sha256   str        SHA-256 of validation.safetensors (when present)
==================  =========  ===============================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

from scai._version import __version__
from scai.errors import ModelFileError, ScaiTypeError

__all__ = [
    "FORMAT_VERSION",
    "CONFIG_FIELDS",
    "FILES",
    "ModelDir",
    "ModelFiles",
    "save_model_dir",
    "load_model_dir",
    "read_config",
    "read_json_object",
    "check_config",
    "file_sha256",
    "row_digests",
    "TRAINING_ROWS",
]

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
VALIDATION = "validation.safetensors"
HISTORY = "history.json"
HISTORY_CSV = "history.csv"
SPLIT = "split.json"
TRAINING_ROWS = "training_rows.json"
CURVES = "training_curves.png"
TEST_DIR = "test"
#: Every file or folder a model directory may hold.
FILES: tuple[str, ...] = (CONFIG, WEIGHTS, VALIDATION, HISTORY, HISTORY_CSV, SPLIT, TRAINING_ROWS, CURVES, TEST_DIR)
#: How :func:`row_digests` fingerprints a spectrum (stored in training_rows.json).
ROW_DIGEST = "blake2b-64 of the raw spectrum as little-endian float32 bytes"

_NUMBER = (int, float)
_NULL = type(None)
#: name -> (allowed JSON types, required); the meaning of each is in the module docstring. A field
#: may be null only where its types include NoneType.
CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "format_version": ((int,), True),
    "scai_version": ((str,), False),
    "model_name": ((str,), True),
    "in_length": ((int,), True),
    "n_classes": ((int,), True),
    "model_config": ((dict,), True),
    "cascade": ((dict, _NULL), False),
    "preprocessing_selection": ((dict, _NULL), False),
    "cross_fit": ((dict, _NULL), False),
    "preprocessing_cost": ((dict, _NULL), False),
    "ood": ((dict, _NULL), False),
    "domain": ((dict, _NULL), False),
    "conformal": ((dict, _NULL), False),
    "class_names": ((list,), True),
    "class_dtype": ((str,), False),
    "axis": ((list,), True),
    "axis_unit": ((str,), False),
    "n_features_in": ((int,), False),
    "preprocessing": ((dict,), True),
    "exit_macs": ((list,), True),
    "mac_convention": ((str,), False),
    "temperatures": ((list,), False),
    "thresholds": ((dict,), False),
    "default_budget": ((*_NUMBER, _NULL), False),
    "train_config": ((dict,), False),
    "estimator_params": ((dict,), False),
    "history_summary": ((dict,), False),
    "weights_sha256": ((str,), True),
    "validation_sha256": ((str,), False),
}
#: Lists of config.json whose items have one JSON type.
CONFIG_LIST_ITEMS: dict[str, tuple[type, ...]] = {
    "class_names": (str, *_NUMBER),
    "axis": _NUMBER,
    "exit_macs": (int,),
    "temperatures": _NUMBER,
}
#: class_dtype values (numpy dtype kinds) and the JSON type of class_names they need.
_CLASS_KINDS: dict[str, tuple[type, ...]] = {"U": (str,), "S": (str,), "O": (str, *_NUMBER), "i": (int,), "u": (int,), "f": _NUMBER}


@dataclass
class ModelFiles:
    """Everything a model directory holds, in memory."""

    config: dict[str, Any]
    state_dict: dict[str, Any]  # name -> torch.Tensor
    validation: dict[str, np.ndarray] = field(default_factory=dict)  # "X", "y" (preprocessed)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def row_digests(X: Any) -> list[str]:
    """One short digest per spectrum (row of ``X``), of its values as float32 (how readers hold them).

    The same spectrum read again from the same file, or from a file written by ``scai train
    --save-test``, gives the same digest; 64 bits make a chance collision between two different
    spectra negligible for any realistic number of rows.
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype="<f4"))
    if arr.ndim != 2:
        raise ScaiTypeError(f"row_digests: X must be 2-D (n_spectra, n_points); got shape {arr.shape}")
    arr = arr + np.float32(0.0)  # -0.0 -> 0.0: the same number, so the same digest
    return [hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in arr]


def save_model_dir(directory: str | Path, files: ModelFiles, *, history: Any = None,
                   fitted_rows: Any = None) -> Path:
    """Write a model directory atomically; returns its path.

    Everything is written to a temporary sibling folder, which then replaces ``directory``. An
    existing model directory there is replaced; an existing non-empty folder that is not a model
    directory is refused, so a mistyped ``--out`` never deletes unrelated files.

    Parameters
    ----------
    directory : str or Path
    files : ModelFiles
    history : scai.training.History, optional
        Written as history.json / history.csv.
    fitted_rows : list of str, optional
        :func:`row_digests` of the spectra the model was fitted on, written as training_rows.json.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise ModelFileError(f"{directory}: exists and is not a folder; choose a new or empty folder for the model")
        if any(directory.iterdir()) and not (directory / CONFIG).is_file():
            raise ModelFileError(
                f"{directory}: not empty and not a model directory; choose a new or empty folder for the model"
            )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        weights = tmp / WEIGHTS
        # safetensors refuses shared or non-contiguous storage: give it private contiguous copies.
        save_file({k: v.detach().contiguous().clone() for k, v in files.state_dict.items()}, str(weights))
        config = dict(files.config)
        config["format_version"] = FORMAT_VERSION
        config["scai_version"] = __version__
        config["weights_sha256"] = file_sha256(weights)
        if files.validation:
            val = tmp / VALIDATION
            save_numpy({k: np.ascontiguousarray(v) for k, v in files.validation.items()}, str(val))
            config["validation_sha256"] = file_sha256(val)
        _check_schema(config, str(directory / CONFIG))
        (tmp / CONFIG).write_text(json.dumps(config, indent=1, default=_json_default))
        if history is not None:
            history.save(tmp)
        if fitted_rows is not None:
            digests = sorted(set(fitted_rows))
            (tmp / TRAINING_ROWS).write_text(json.dumps({"digest": ROW_DIGEST, "n_rows": len(fitted_rows), "digests": digests}, indent=1))
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_schema(config: dict[str, Any], where: str) -> None:
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise ModelFileError(f"{where}: unknown field(s) {unknown}; valid fields: {', '.join(CONFIG_FIELDS)}")
    for key, (types, required) in CONFIG_FIELDS.items():
        if key not in config:
            if required:
                why = "; the weights cannot be checked without it (re-save the model)" if key == "weights_sha256" else ""
                raise ModelFileError(f"{where}: missing required field {key!r}{why}")
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join("null" if t is _NULL else t.__name__ for t in types)
            raise ModelFileError(f"{where}: field {key!r} must be {names}; got {_json_type(value)}")
        items = CONFIG_LIST_ITEMS.get(key)
        if items is not None:
            bad = next((i for i, v in enumerate(value) if isinstance(v, bool) or not isinstance(v, items)), None)
            if bad is not None:
                names = " or ".join(t.__name__ for t in items)
                raise ModelFileError(f"{where}: field {key!r}[{bad}] must be {names}; got {_json_type(value[bad])}")


def _json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise ScaiTypeError(f"cannot store {type(obj).__name__} in config.json")


def read_json_object(path: Path, hint: str = "the file is truncated or corrupted") -> dict[str, Any]:
    """A JSON file holding one object (config.json, history.json, manifest.json), or a
    ModelFileError naming the file."""
    _regular_file(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); {hint}") from exc
    except RecursionError:
        raise ModelFileError(f"{path}: JSON nested too deeply; {hint}") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object at top level")
    return data


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a model directory."""
    directory = Path(directory)
    if not directory.exists():
        raise ModelFileError(f"{directory}: does not exist, so it is not a model directory; give the folder `scai train --out` wrote")
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: is a file, not a model directory (a folder with {CONFIG} and {WEIGHTS})")
    path = directory / CONFIG
    if not path.exists() and not path.is_symlink():
        raise ModelFileError(f"{path}: missing; a model directory holds {CONFIG} and {WEIGHTS}")
    config = read_json_object(path)
    version = config.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: no integer 'format_version'; not a scai model file")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format {version} is newer than this scai ({__version__}) reads "
            f"(format {FORMAT_VERSION}); upgrade scai"
        )
    _check_schema(config, str(path))
    return config


def _regular_file(path: Path) -> Path:
    """``path`` if it is a file (a symbolic link to one is followed, with a warning); else a
    ModelFileError saying what is there instead."""
    if path.is_symlink():
        target = os.readlink(path)
        if not path.exists():
            raise ModelFileError(f"{path}: is a symbolic link to {target}, which does not exist")
        warnings.warn(f"{path} is a symbolic link to {target}; reading the target", UserWarning, stacklevel=3)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a file")
    if not path.exists():
        raise ModelFileError(f"{path}: missing")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a regular file")
    return path


def _checked_path(directory: Path, name: str, expected_sha: str) -> Path:
    path = _regular_file(directory / name)
    if file_sha256(path) != expected_sha:
        raise ModelFileError(
            f"{path}: SHA-256 does not match config.json; the file was truncated, replaced or tampered with"
        )
    return path


def check_config(config: dict[str, Any], path: str | Path, *, estimator_params: Iterable[str] | None = None) -> None:
    """Check what ``config.json`` holds beyond its schema, against the code that will read it.

    Each nested section is checked by its own reader, so the valid keys have one source each:
    ``estimator_params`` against the estimator's parameters, ``train_config`` by
    ``TrainConfig.from_dict``, ``preprocessing`` by rebuilding the pipeline and comparing its keys
    with what the rebuilt pipeline writes. Also checks that ``class_names`` has ``n_classes`` names.

    Raises
    ------
    ModelFileError
        Naming ``path``, the section and key, and the valid keys.
    """
    where = str(path)
    names, n_classes = config.get("class_names"), config.get("n_classes")
    if isinstance(names, list) and isinstance(n_classes, int) and len(names) != n_classes:
        raise ModelFileError(
            f"{where}: class_names has {len(names)} name(s) but n_classes is {n_classes}; "
            "the names and the shape of the network's output must agree"
        )
    kind = config.get("class_dtype", "U")
    if kind not in _CLASS_KINDS:
        raise ModelFileError(f"{where}: class_dtype {kind!r} is not a label kind scai writes; valid: {', '.join(_CLASS_KINDS)}")
    if isinstance(names, list) and any(isinstance(v, bool) or not isinstance(v, _CLASS_KINDS[kind]) for v in names):
        raise ModelFileError(f"{where}: class_names do not fit class_dtype {kind!r} (labels of numpy kind {kind!r})")
    params = config.get("estimator_params")
    if params:
        if estimator_params is None:
            from scai.estimators import SCAIClassifier  # the estimator's parameters are the one source

            estimator_params = SCAIClassifier._get_param_names()
        valid = sorted(estimator_params)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ModelFileError(f"{where}: estimator_params: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
    if config.get("train_config") is not None:
        from scai.training.trainer import TrainConfig

        try:
            TrainConfig.from_dict(config["train_config"])
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{where}: train_config: {exc}") from None
    if config.get("preprocessing") is not None:
        _check_preprocessing(config["preprocessing"], where)


def _check_preprocessing(doc: dict[str, Any], where: str) -> None:
    """Rebuild the stored pipeline and refuse any key the rebuilt one would not write."""
    from scai.preprocessing import Pipeline

    try:
        rebuilt = json.loads(Pipeline.from_json(json.dumps(doc)).to_json())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"{where}: preprocessing: {str(exc)[:200]}") from None
    _known_keys(doc, rebuilt, f"{where}: preprocessing")
    for i, (step, again) in enumerate(zip(doc["steps"], rebuilt["steps"])):
        label = f"{where}: preprocessing step {i} ({again['name']})"
        _known_keys(step, again, label)
        for part in ("params", "state"):
            if isinstance(step.get(part), dict) and isinstance(again.get(part), dict):
                _known_keys(step[part], again[part], f"{label} {part}")


def _known_keys(stored: dict[str, Any], rebuilt: dict[str, Any], label: str) -> None:
    unknown = sorted(set(stored) - set(rebuilt))
    if unknown:
        raise ModelFileError(f"{label}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(rebuilt))}")


def load_model_dir(
    directory: str | Path, *, load_validation: bool = True, estimator_params: Iterable[str] | None = None
) -> ModelFiles:
    """Read a model directory without executing code from it.

    Parameters
    ----------
    directory : str or Path
    load_validation : bool
        Also read the validation split (calibration data).
    estimator_params : iterable of str, optional
        The estimator's parameter names, which ``estimator_params`` may hold (default:
        ``SCAIClassifier``'s); see :func:`check_config`.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_config(directory)
    check_config(config, directory / CONFIG, estimator_params=estimator_params)
    weights = _checked_path(directory, WEIGHTS, config["weights_sha256"])
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights}: cannot be read as safetensors ({exc})") from exc
    validation: dict[str, np.ndarray] = {}
    if load_validation and "validation_sha256" in config:
        val_path = _checked_path(directory, VALIDATION, config["validation_sha256"])
        try:
            validation = load_numpy(str(val_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(f"{val_path}: cannot be read as safetensors ({exc})") from exc
    return ModelFiles(config=config, state_dict=state, validation=validation)


def load_state_checked(network: Any, state: dict[str, Any], source: str) -> None:
    """Load ``state`` into ``network`` and explain any missing, unexpected or mis-shaped tensor."""
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelFileError(
            f"{source}: weights do not fit the architecture in config.json "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ModelFileError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)} but the architecture "
                f"in config.json expects {tuple(own[name].shape)}"
            )
    network.load_state_dict(state)


class ModelDir:
    """A model directory on disk: where each file is, and what ``config.json`` says about them.

    Parameters
    ----------
    path : str or Path
        The folder (``scai train --out`` / ``SCAIClassifier.save``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._config: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """``config.json``, read and schema-checked once."""
        if self._config is None:
            self._config = read_config(self.path)
        return self._config

    def file(self, name: str) -> Path:
        """Path of one of the directory's :data:`FILES`."""
        if name not in FILES:
            raise ModelFileError(f"{name!r} is not a file of a model directory; known: {list(FILES)}")
        return self.path / name

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights, as config.json records it (checked against the file)."""
        sha = self.config["weights_sha256"]  # required by the schema
        _checked_path(self.path, WEIGHTS, sha)
        return sha

    def load(self, *, load_validation: bool = True, estimator_params: Iterable[str] | None = None) -> ModelFiles:
        """Config (checked by :func:`check_config`), weights and validation split (hash-checked)."""
        return load_model_dir(self.path, load_validation=load_validation, estimator_params=estimator_params)

    def history(self) -> dict[str, Any] | None:
        """The training history as stored (checked by ``History.from_dict``, which rebuilds it), or None."""
        path = self.path / HISTORY
        if not path.exists() and not path.is_symlink():
            return None
        data = read_json_object(path, hint="the file is truncated or corrupted; delete it to load the model without its history")
        from scai.training.trainer import History

        try:
            rebuilt = History.from_dict(data).to_dict()
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFileError(f"{path}: not a training history ({str(exc)[:120]})") from None
        _known_keys(data, rebuilt, str(path))
        return data

    def write_training_rows(self, X: Any) -> Path:
        """Store the digests of the spectra the model was fitted on (:func:`row_digests`)."""
        digests = sorted(set(row_digests(X)))
        return self.write_json(TRAINING_ROWS, {"digest": ROW_DIGEST, "n_rows": len(X), "digests": digests})

    def training_rows(self) -> set[str] | None:
        """Digests of the spectra the model was fitted on, or None for a model that does not store
        them (saved from Python, or by an older scai)."""
        path = self.path / TRAINING_ROWS
        if not path.exists() and not path.is_symlink():
            return None
        data = read_json_object(path, hint="the file is truncated or corrupted; delete it to load the model without it")
        digests = data.get("digests")
        if data.get("digest") != ROW_DIGEST or not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            raise ModelFileError(f"{path}: expected {{'digest': {ROW_DIGEST!r}, 'digests': [hex strings]}}; "
                                 "the file was edited or written by another scai")
        return set(digests)

    def write_json(self, name: str, obj: Any) -> Path:
        """Write one of the JSON side files (``split.json``)."""
        path = self.file(name)
        path.write_text(json.dumps(obj, indent=1, default=_json_default))
        return path
