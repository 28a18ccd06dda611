"""Importing and starting Ray, only when the Ray engine is used."""

from __future__ import annotations

import logging
from typing import Any

from scai.errors import ConfigError, ScaiError

__all__ = ["import_ray", "start_ray", "unwrap_error"]

INSTALL = "pip install 'scai[distributed]'"


def import_ray() -> Any:
    """``ray`` with Ray Data, or an error saying how to install them."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(f"the Ray engine needs Ray Data (ray[data]>=2.9): {INSTALL} ({exc})") from None
    return ray


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to the cluster at ``address``, or start a local one; ``True`` when this call started it.

    A Ray already initialised in this process (a notebook, a test) is used as it is. A local Ray
    runs its workers at this process's own priority (niceness), as ``engine="inline"`` runs:
    Ray's default adds 15 to their niceness (``worker_niceness``, an increment on the raylet's,
    which is this process's), below every ordinary process, and beside two other
    busy processes on 2 cores each actor then got ~3.5 % of a core (a 50,000-spectra run took
    257 s against 13 s in one process; measured, see docs/distributed.md).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, _system_config={"worker_niceness": 0}, **kwargs)
    return True


def unwrap_error(exc: BaseException) -> BaseException | None:
    """The scai error a Ray task failed with (Ray wraps it in its own), or ``None``."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ScaiError) and type(e).__module__.startswith("scai"):
            return type(e)(str(e).splitlines()[0] if str(e) else str(e))
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None
