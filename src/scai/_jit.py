"""numba compilation shared by scai's compiled kernels (asls baselines, the MiniRocket exit).

numba is optional (``pip install "scai[fast]"``): every compiled kernel has a NumPy or PyTorch
path that computes the same thing, and :func:`jit` returns ``None`` where numba is missing or
switched off with ``SCAI_NUMBA=0``, so callers fall back to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["jit"]


def jit(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``fn`` compiled by numba (``nogil``), or ``None`` without numba or with ``SCAI_NUMBA=0``.

    The compiled code is cached on disk (next to the module, else in numba's user cache); where no
    cache can be written (a read-only install without a writable home), each process compiles it
    once, ~2 s, at its first call.
    """
    if os.environ.get("SCAI_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache next to the module or in the user's cache: compile per process
        return numba.njit(cache=False, nogil=True)(fn)
