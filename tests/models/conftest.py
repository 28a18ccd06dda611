"""Model tests use tiny inputs: one intra-op thread is faster there and immune to the OpenMP
spin-wait slowdowns that a second thread suffers when other processes share the cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
