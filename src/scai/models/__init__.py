"""Multi-exit 1-D residual networks for spectra, with per-layer MAC accounting.

``create_model(name, in_length, n_classes, **config)`` builds any registered network; see
``list_models()`` and ``docs/models.md``. MACs = multiply-accumulates (conv and linear layers
only); FLOPs = 2 x MACs wherever FLOPs are shown.
"""

from __future__ import annotations

# Importing the family modules registers their models.
from scai.models import drsn, resnet1d, scai  # noqa: F401
from scai.models._registry import create_model, list_models, model_config_class, model_defaults, register_model
from scai.models.base import (
    EXECUTION_MODES,
    BackboneConfig,
    ModelConfig,
    ModelConfigError,
    MultiExitNetwork,
    NetworkOutput,
)
from scai.models.drsn import DRSN, DRSNConfig
from scai.models.pa_block import PABlock
from scai.models.resnet1d import ResNet1D, ResNet1DConfig
from scai.models.scai import ScaiConfig, ScaiNetwork, ScaiPlusConfig

__all__ = [
    "create_model",
    "list_models",
    "model_config_class",
    "model_defaults",
    "register_model",
    "MultiExitNetwork",
    "NetworkOutput",
    "ModelConfig",
    "BackboneConfig",
    "ModelConfigError",
    "EXECUTION_MODES",
    "ScaiConfig",
    "ScaiPlusConfig",
    "ScaiNetwork",
    "PABlock",
    "ResNet1DConfig",
    "ResNet1D",
    "DRSNConfig",
    "DRSN",
]
