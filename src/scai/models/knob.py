"""The inference compute knob of position-adaptive (PA) blocks, for any module that holds them.

``ScaiNetwork.set_compute(scale)`` divides every PA block's halting scores by ``scale``
(``< 1`` halts sooner and runs fewer units, ``> 1`` more, ``1`` is the trained model). The
functions here reach the PA blocks of whatever wraps them (a ``Cascade`` with exit 0 in front, a
stage module in export), so that the budget solver, the exit loop and the ONNX export can set
the knob without knowing the wrapper.

:data:`KNOB_SCALES` are the settings the budget solver weighs against the exit choice
(``scai.inference.knob``): held-out outputs are kept at each of them when the network has PA
blocks, and a mean budget is met by the (scale, thresholds) pair that answers best on them.
Measured on the dev sets (``benchmarks/results/pa_target/report.md``), scales below ~0.4 save
little more (the units' floor is ~0.27 of S), and scales above 1 cost more than they gain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from scai.errors import ModelConfigError
from scai.models.pa_block import PABlock, check_compute_scale

__all__ = ["KNOB_SCALES", "compute_scale", "current_scale", "has_knob", "knob_scales", "set_compute_scale"]

#: Knob settings besides 1.0 the budget solver considers (ascending).
KNOB_SCALES: tuple[float, ...] = (0.4, 0.7)


def _blocks(module: nn.Module) -> list[PABlock]:
    return [m for m in module.modules() if isinstance(m, PABlock)]


def has_knob(module: nn.Module) -> bool:
    """Whether ``module`` holds a PA block, so that the compute knob changes what it runs."""
    return bool(_blocks(module))


def knob_scales(module: nn.Module) -> tuple[float, ...]:
    """The extra knob settings the solver weighs for ``module``: :data:`KNOB_SCALES`, or none
    when it has no PA block."""
    return KNOB_SCALES if has_knob(module) else ()


def current_scale(module: nn.Module) -> float:
    """The knob setting of ``module``'s PA blocks (1.0 without any)."""
    return next((b.compute_scale for b in _blocks(module)), 1.0)


def set_compute_scale(module: nn.Module, scale: float) -> float:
    """Set the knob of every PA block in ``module``; returns the previous setting.

    Raises
    ------
    ModelConfigError
        ``scale`` not finite and > 0, or != 1 for a module without PA blocks.
    """
    value = check_compute_scale(scale)
    blocks = _blocks(module)
    if not blocks and value != 1.0:
        name = getattr(module, "name", type(module).__name__)
        raise ModelConfigError(f"{name} has no position-adaptive blocks; compute scale must be 1.0, got {scale}")
    previous = blocks[0].compute_scale if blocks else 1.0
    for b in blocks:
        b.compute_scale = value
    return previous


@contextmanager
def compute_scale(module: nn.Module, scale: float | None) -> Iterator[nn.Module]:
    """Run a block of code with ``module``'s knob at ``scale`` (None: leave it as it is)."""
    if scale is None:
        yield module
        return
    previous = set_compute_scale(module, scale)
    try:
        yield module
    finally:
        for b in _blocks(module):
            b.compute_scale = previous
