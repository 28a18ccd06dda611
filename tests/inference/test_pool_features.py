"""pool_features: what an exit head classifies, computed from NumPy stage features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scai.errors import ConfigError, DataValueError
from scai.inference.reliability import pool_features, pool_matrix
from scai.models.layers import bin_pool_matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length,bins", [(12, 4), (13, 4), (7, 3), (5, 1), (9, 9)])
def test_pooling_matches_segment_means_and_the_exit_head(dtype, length, bins):
    rng = np.random.default_rng(length * 10 + bins)
    x = rng.normal(size=(6, 3, length)).astype(dtype)
    got = pool_features(x, bins)
    assert got.dtype == np.float64 and got.shape == (6, 3 * bins)
    # by hand: segment j of each channel is positions floor(j L / b) .. ceil((j+1) L / b)
    want = np.empty((6, 3, bins))
    for j in range(bins):
        lo, hi = (j * length) // bins, -((-(j + 1) * length) // bins)
        want[:, :, j] = x[:, :, lo:hi].astype(np.float64).mean(axis=-1)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want.reshape(6, -1), rtol=tol, atol=tol)
    # the exit head's own pooling (torch, float32), channel by channel
    head = torch.matmul(torch.from_numpy(x.astype(np.float32)), bin_pool_matrix(length, bins)).flatten(1)
    np.testing.assert_allclose(got, head.double().numpy(), rtol=1e-5, atol=1e-6)


def test_flatten_and_errors():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = pool_features(x, 0)
    assert flat.dtype == np.float64 and flat.shape == (2, 12)
    np.testing.assert_array_equal(flat, x.reshape(2, -1))
    np.testing.assert_array_equal(pool_features(np.arange(6).reshape(1, 2, 3), 1), [[1.0, 4.0]])  # ints widen
    with pytest.raises(DataValueError, match="stage features"):
        pool_features(np.zeros((2, 4)), 2)
    with pytest.raises(ConfigError, match="bins"):
        pool_features(x, -1)
    with pytest.raises(ConfigError, match="bins"):
        pool_matrix(4, 5)
    m = pool_matrix(4, 2)
    m[:] = 0  # a copy: the cached matrix is not changed
    np.testing.assert_allclose(pool_matrix(4, 2).sum(axis=0), 1.0)
