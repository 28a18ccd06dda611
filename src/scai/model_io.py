"""Saved model directories: ``config.json`` + ``model.safetensors`` (+ ``validation.safetensors``).

Nothing here unpickles. ``config.json`` is plain JSON; tensors are read with safetensors, whose
format is a JSON header plus raw little-endian buffers, so loading a model cannot execute code.
The weights' SHA-256 is stored in ``config.json`` and checked on load, so a truncated or
tampered weights file is reported as such instead of failing somewhere deep in PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scai._version import __version__
from scai.errors import ModelFileError

__all__ = ["FORMAT_VERSION", "ModelFiles", "save_model_dir", "load_model_dir", "file_sha256"]

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
VALIDATION = "validation.safetensors"


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


def save_model_dir(directory: str | Path, files: ModelFiles) -> Path:
    """Write a model directory; returns its path. Existing files there are overwritten."""
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    # safetensors refuses shared or non-contiguous storage: give it private contiguous copies.
    save_file({k: v.detach().contiguous().clone() for k, v in files.state_dict.items()}, str(weights))
    config = dict(files.config)
    config["format_version"] = FORMAT_VERSION
    config["scai_version"] = __version__
    config["weights_sha256"] = file_sha256(weights)
    if files.validation:
        val = directory / VALIDATION
        save_numpy({k: np.ascontiguousarray(v) for k, v in files.validation.items()}, str(val))
        config["validation_sha256"] = file_sha256(val)
    (directory / CONFIG).write_text(json.dumps(config, indent=1, default=_json_default))
    return directory


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in config.json")


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a model directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: not a model directory (expected a folder with {CONFIG} and {WEIGHTS})")
    path = directory / CONFIG
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; a model directory holds {CONFIG} and {WEIGHTS}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); the file is truncated or corrupted") from exc
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object at top level")
    version = config.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: no integer 'format_version'; not a scai model file")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format {version} is newer than this scai ({__version__}) reads "
            f"(format {FORMAT_VERSION}); upgrade scai"
        )
    for key in ("model_name", "in_length", "n_classes", "model_config", "class_names"):
        if key not in config:
            raise ModelFileError(f"{path}: missing required field {key!r}")
    return config


def _checked_path(directory: Path, name: str, expected_sha: str | None) -> Path:
    path = directory / name
    if not path.is_file():
        raise ModelFileError(f"{path}: missing")
    if expected_sha is not None and file_sha256(path) != expected_sha:
        raise ModelFileError(
            f"{path}: SHA-256 does not match config.json; the file was truncated, replaced or tampered with"
        )
    return path


def load_model_dir(directory: str | Path, *, load_validation: bool = True) -> ModelFiles:
    """Read a model directory without executing code from it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_config(directory)
    weights = _checked_path(directory, WEIGHTS, config.get("weights_sha256"))
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
