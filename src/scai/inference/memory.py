"""Bounding the memory of a process that predicts for a long time (``scai predict`` streaming an
archive, ``scai serve``, a Ray worker).

oneDNN (PyTorch's CPU convolutions) caches one compiled primitive per input shape, up to 1024 of
them by default. A budgeted batch sends a different number of spectra into each deeper stage
nearly every batch, and a server meets requests of every size, so such a process meets a new shape
nearly every batch: a Ray worker's private memory grew by ~3.5 MiB per batch until the cache was
full (about 400 -> 1000 MiB, measured). 64 keeps the shapes that recur and bounds the rest: on 45
distinct batches of 1024 one process grew by 212 MiB with the default cache and by 99 MiB with 64,
at the same 0.131 CPU s per batch and with the same predictions (benchmarks/results/scale).
"""

from __future__ import annotations

import os

__all__ = ["ONEDNN_CACHE_CAPACITY", "ONEDNN_CACHE_ENV", "bound_onednn_cache"]

ONEDNN_CACHE_ENV, ONEDNN_CACHE_CAPACITY = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", 64


def bound_onednn_cache() -> None:
    """Cap oneDNN's primitive cache at :data:`ONEDNN_CACHE_CAPACITY` (unless the environment sets
    it). oneDNN reads the setting at its first primitive, so this takes effect only in a process
    that has not run a convolution yet (the CLI before its command, a fresh Ray worker, a server
    before its first model)."""
    os.environ.setdefault(ONEDNN_CACHE_ENV, str(ONEDNN_CACHE_CAPACITY))
