"""Shared fixtures: tiny synthetic spectra and tiny network configurations keep the suite fast."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Two cores on CI: keep torch from oversubscribing when pytest runs alongside other work.
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

TINY_SCAI = {"channels": (4, 6, 8), "units_per_block": 2, "stem_stride": 2}


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets folder {SHARED_DATASETS} is not present")
    return SHARED_DATASETS


def make_peaks(n_per_class: int = 20, n_classes: int = 3, width: int = 96, seed: int = 0):
    """Classes differ by the position of one Gaussian peak: easy, so a tiny net learns it fast."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(400.0, 1800.0, width)
    X, y = [], []
    for c in range(n_classes):
        centre = 600.0 + c * 1000.0 / max(n_classes - 1, 1)
        for _ in range(n_per_class):
            peak = np.exp(-0.5 * ((axis - centre - rng.normal(0, 10)) / 40.0) ** 2)
            X.append(1.0 + peak * rng.uniform(0.8, 1.2) + rng.normal(0, 0.03, width))
            y.append(f"class_{c}")
    return np.asarray(X, dtype=np.float32), np.asarray(y), axis


@pytest.fixture
def peaks():
    return make_peaks()
