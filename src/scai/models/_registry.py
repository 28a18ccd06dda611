"""Model registry: ``create_model(name, in_length, n_classes, **config)``.

Each family file registers thin named variants with ``register_model``; a variant is a builder,
the family's frozen config dataclass, and default overrides (e.g. ``depth=8`` for
``resnet1d_8``). Registering a name twice is an error.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from scai.models.base import ModelConfig, ModelConfigError, MultiExitNetwork

__all__ = ["register_model", "create_model", "list_models", "model_config_class", "model_defaults"]

#: (name, in_length, n_classes, config) -> network. The config is an instance of the entry's
#: ``config_class``; each builder takes its own family's class, hence ``Any`` here.
Builder = Callable[[str, int, int, Any], MultiExitNetwork]


@dataclass(frozen=True)
class _Entry:
    builder: Builder  # (name, in_length, n_classes, config) -> network
    config_class: type[ModelConfig]  # frozen dataclass of the family
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the class defaults
    fixed: tuple[str, ...] = ()  # keys a caller may not change (e.g. depth of resnet1d_8)
    description: str = ""


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    builder: Builder,
    config_class: type[ModelConfig],
    defaults: dict[str, Any] | None = None,
    fixed: tuple[str, ...] = (),
    description: str = "",
) -> None:
    """Register ``name``; raises ``ModelConfigError`` if the name is taken."""
    if name in _REGISTRY:
        raise ModelConfigError(f"model name {name!r} is already registered")
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"config_class of {name!r} must be a dataclass; got {config_class!r}")
    _REGISTRY[name] = _Entry(builder, config_class, dict(defaults or {}), tuple(fixed), description)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_config_class(name: str) -> type[ModelConfig]:
    """The frozen config dataclass of the family behind ``name``."""
    return _entry(name).config_class


def model_defaults(name: str) -> ModelConfig:
    """The config instance ``create_model(name, ...)`` uses when given no keywords."""
    return _make_config(name, {})


def _coerce(value: Any, annotation: Any) -> Any:
    """Lists from JSON/YAML become tuples where the field is a tuple."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if isinstance(value, list) and ("tuple" in str(text) or typing.get_origin(annotation) is tuple):
        return tuple(value)
    return value


def _make_config(name: str, overrides: dict[str, Any]) -> ModelConfig:
    entry = _entry(name)
    fields = {f.name: f for f in dataclasses.fields(entry.config_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"unknown config key(s) {unknown} for model {name!r}; valid keys: {', '.join(fields)}"
        )
    for key in entry.fixed:
        if key in overrides and overrides[key] != entry.defaults[key]:
            raise ModelConfigError(
                f"{key} of model {name!r} is fixed at {entry.defaults[key]!r}; got {overrides[key]!r} "
                f"(use the family name instead)"
            )
    values = {**entry.defaults, **overrides}
    values = {k: _coerce(v, fields[k].type) for k, v in values.items()}
    return entry.config_class(**values)


def create_model(name: str, in_length: int, n_classes: int, **config: Any) -> MultiExitNetwork:
    """Build a registered network.

    Parameters
    ----------
    name : str
        One of ``list_models()``.
    in_length : int
        Spectrum length W; the network takes (B, 1, W).
    n_classes : int
    **config
        Fields of ``model_config_class(name)``; unknown keys are an error listing the valid ones.
    """
    if int(in_length) < 1:
        raise ModelConfigError(f"in_length must be a positive integer; got {in_length!r}")
    if int(n_classes) < 2:
        raise ModelConfigError(f"n_classes must be at least 2; got {n_classes!r}")
    cfg = _make_config(name, config)
    return _entry(name).builder(name, int(in_length), int(n_classes), cfg)
