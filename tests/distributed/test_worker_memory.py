"""A worker caps oneDNN's primitive cache before its first convolution (its memory otherwise grew with
every new batch shape, benchmarks/results/scale/report.md); the cap itself, and that a user's is
kept, is tested in tests/inference/test_memory.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pyarrow", reason="pyarrow (scai[distributed]) is not installed")

from scai.distributed.shards import plan_inputs
from scai.distributed.worker import ONEDNN_CACHE_ENV, BatchPredictor


def test_a_fresh_worker_process_has_the_cap_before_torch_runs(liquor_model, archive):
    # what a Ray actor does: a new process that builds the predictor (and only then runs the network)
    code = (
        "import os, sys; from scai.distributed.shards import plan_inputs; from scai.distributed.worker import BatchPredictor;"
        f"assert '{ONEDNN_CACHE_ENV}' not in os.environ;"
        f"BatchPredictor({str(liquor_model)!r}, plan_inputs({str(archive[0])!r}));"
        f"print(os.environ['{ONEDNN_CACHE_ENV}'])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != ONEDNN_CACHE_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "64"


def test_the_predictor_sets_the_cap_when_it_starts(monkeypatch, liquor_model, archive):
    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    BatchPredictor(str(liquor_model), plan_inputs(archive[0]))
    import os

    assert os.environ[ONEDNN_CACHE_ENV] == "64"
