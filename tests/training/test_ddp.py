"""Data-parallel training (scai.training.ddp): torchrun launch parsing, shards, and 2-process runs on CPU (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from scai.cli.main import main
from scai.errors import ConfigError
from scai.estimators import SCAIClassifier
from scai.models import create_model
from scai.training import TrainConfig, Trainer, ddp
from scai.training.cross_fit import default_n_jobs
from tests.conftest import TINY_SCAI, make_peaks

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_ddp_worker.py")
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")
LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_launch(monkeypatch):
    for key in LAUNCH:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


# ---- without subprocesses ---------------------------------------------------------------------

def test_launch_env_reads_torchrun_variables():
    assert ddp.launch_env({}) is None
    env = ddp.launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK missing"):
        ddp.launch_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer"):
        ddp.launch_env({"RANK": "0", "WORLD_SIZE": "two", "LOCAL_RANK": "0"})
    with pytest.raises(ConfigError, match="not consistent"):
        ddp.launch_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


@pytest.mark.parametrize("n, world", [(10, 3), (12, 2), (5, 1), (3, 4)])
def test_epoch_shards_cover_every_row_equally(n, world):
    shards = [ddp.epoch_order(n, epoch=2, seed=7, rank=r, world_size=world).tolist() for r in range(world)]
    per_rank = -(-n // world)
    assert all(len(s) == per_rank for s in shards)  # the same number of steps on every rank
    rows = np.concatenate(shards)
    assert set(rows.tolist()) == set(range(n))  # every row is trained on
    assert len(rows) - n == per_rank * world - n  # only the padding repeats rows
    again = [ddp.epoch_order(n, epoch=2, seed=7, rank=r, world_size=world).tolist() for r in range(world)]
    assert again == shards  # seeded
    if n >= 10:
        other = [ddp.epoch_order(n, epoch=3, seed=7, rank=r, world_size=world).tolist() for r in range(world)]
        assert other != shards  # reshuffled every epoch


def test_rank_batch_size_keeps_the_global_batch():
    assert ddp.rank_batch_size(32, 1) == 32
    assert ddp.rank_batch_size(32, 2) == 16
    assert ddp.rank_batch_size(33, 2) == 17
    assert ddp.rank_batch_size(2, 4) == 1


def test_state_digest_sees_every_value():
    torch.manual_seed(0)
    net = create_model("scai", in_length=96, n_classes=3, **TINY_SCAI)
    before = ddp.state_digest(net)
    assert ddp.state_digest(net) == before
    assert ddp.state_digest(net, b"x") != before
    with torch.no_grad():
        next(iter(net.buffers())).add_(1e-6)  # a BatchNorm statistic
    assert ddp.state_digest(net) != before


# ---- the backend: gloo on CPU, nccl for CUDA tensors (no GPU here: the selection logic alone) --------

def test_default_backend_is_gloo_without_cuda_and_adds_nccl_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ddp.default_backend() == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ddp.default_backend() == "cpu:gloo,cuda:nccl"  # CPU tensors still go through gloo


@pytest.mark.parametrize("cuda, backend, device", [(False, "gloo", None), (True, "cpu:gloo,cuda:nccl", 1)])
def test_process_group_starts_the_chosen_backend_on_the_local_gpu(no_launch, monkeypatch, cuda, backend, device):
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        no_launch.setenv(key, value)
    calls: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(dist, "barrier", lambda: calls.append(("barrier",)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    with ddp.process_group() as env:
        assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)
    expected = [("set_device", device)] if device is not None else []
    expected += [("init", {"backend": backend, "rank": 3, "world_size": 4}), ("barrier",), ("destroy",)]
    assert calls == expected
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"), ddp.process_group("gloo"):
        raise RuntimeError("boom")
    assert calls == [("init", {"backend": "gloo", "rank": 3, "world_size": 4}), ("destroy",)]  # no barrier a rank may never reach


@pytest.mark.parametrize("backend, device", [("gloo", "cpu"), ("cpu:gloo,cuda:nccl", "cuda:2"), ("nccl", "cuda:2")])
def test_current_trains_on_the_gpu_only_under_nccl(monkeypatch, backend, device):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: backend)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    group = ddp.current()
    assert (group.rank, group.world_size, str(group.device), group.is_main) == (1, 4, device, False)


def test_outside_torchrun_ddp_is_refused(no_launch, tmp_path, capsys):
    with pytest.raises(ConfigError, match="torchrun"), ddp.process_group():
        pass
    assert main(["train", "milk_adulteration", "--ddp", "--out", str(tmp_path / "m")]) == 2
    assert "torchrun --standalone --nproc_per_node=2 -m scai.cli train DATA --ddp" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@needs_gloo
def test_a_one_process_group_trains_and_folds_run_in_turn(no_launch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        no_launch.setenv(key, value)
    cores = default_n_jobs(64)
    X, y, _ = make_peaks(n_per_class=8, seed=1)
    _, codes = np.unique(y, return_inverse=True)
    X = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)
    with ddp.process_group() as env:
        assert env.world_size == 1 and dist.is_initialized()
        assert default_n_jobs(5) == 1  # no loky workers without the group
        torch.manual_seed(0)
        net = create_model("scai_plus", in_length=96, n_classes=3, **TINY_SCAI)
        cfg = TrainConfig(max_epochs=4, batch_size=8, lr=3e-3, progress=False, threads=1)
        history = Trainer(cfg).fit(net, X, codes, None, None, epochs=4)
        ddp.check_same(ddp.state_digest(net), "model")  # one rank agrees with itself
    assert not dist.is_initialized()
    assert ddp.group_threads() == []  # the gloo worker threads and TCP loop ended with the group
    assert default_n_jobs(64) == cores
    losses = [e["train_loss"] for e in history.epochs]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert not net.training and next(net.parameters()).device.type == "cpu"


# ---- two processes under torchrun --------------------------------------------------------------

@needs_gloo
def test_two_ranks_train_alike_and_learn(tmp_path):
    _torchrun(str(WORKER), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["n_jobs"] for r in ranks] == [1, 1]  # cross-fitting would run its folds in turn
    # a check between ranks refuses values that differ, naming the rank
    assert all("ranks [1]" in r["mismatch_refused"] for r in ranks)
    for name in ("scai", "scai_plus", "scai_plus_halted"):
        a, b = ranks[0]["cases"][name], ranks[1]["cases"][name]
        assert a["digests"][0] == b["digests"][0], f"{name}: the ranks ended with different weights"
        assert a["train_loss"] == b["train_loss"]  # the history is the whole epoch's, on every rank
        losses = a["train_loss"][0]
        assert losses[-1] < losses[0], f"{name}: training loss did not fall: {losses}"
    plus = ranks[0]["cases"]["scai_plus"]
    assert plus["digests"][0] == plus["digests"][1], "the same seed gave other weights"
    assert all(p > 0 for p in plus["train_ponder"][0])  # the ponder cost and compute target were trained
    # the estimator's own steps on every rank (preprocessing search, exit 0, folds, calibration) agree
    est = [r["estimator"] for r in ranks]
    assert est[0] == est[1], est
    assert est[0]["network"] == "trained on all spectra" and est[0]["preprocessing"] and est[0]["exit0"]
    # no thread of the group runs on into interpreter exit (where a live gloo thread can abort the rank)
    assert [r["threads_after"] for r in ranks] == [[], []]
    halted = ranks[0]["cases"]["scai_plus_halted"]
    assert halted["units_max_before"] == 1.0 < halted["units_per_block"]  # units were skipped


@needs_gloo
def test_torchrun_scai_train_writes_one_model_dir(tmp_path, no_launch):
    X, y, axis = make_peaks(n_per_class=14, seed=3)
    data = tmp_path / "peaks.csv"
    rows = ["label," + ",".join(f"{a:.3f}" for a in axis)]
    rows += [f"{c}," + ",".join(f"{v:.6g}" for v in x) for x, c in zip(X, y)]
    data.write_text("\n".join(rows) + "\n")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model_config": TINY_SCAI}))
    options = ["--model", "scai_plus", "--config", str(config), "--epochs", "5", "--lr", "0.01", "--folds", "2",
               "--preprocessing", "snv", "--exit0", "none", "--quiet"]
    done = _torchrun("-m", "scai.cli", "train", str(data), *options, "--ddp", "--out", str(tmp_path / "ddp"))
    assert done.stdout.count("model written to") == 1  # rank 1 printed nothing
    assert main(["train", str(data), *options, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    ddp_files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert ddp_files == sorted(p.name for p in (tmp_path / "one").iterdir())  # the same model directory
    cfg_ddp = json.loads((tmp_path / "ddp" / "config.json").read_text())
    cfg_one = json.loads((tmp_path / "one" / "config.json").read_text())
    assert sorted(cfg_ddp) == sorted(cfg_one)
    assert cfg_ddp["cross_fit"]["network"] == "trained on all spectra"
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    losses = [e["train_loss"] for e in history["epochs"]]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    est = SCAIClassifier.load(tmp_path / "ddp")
    pred = est.predict(X, axis=axis)
    assert pred.shape == (len(y),) and set(pred) <= set(y)
    assert np.mean(pred == y) > 1 / 3  # better than chance on its training spectra
    assert main(["predict", str(tmp_path / "ddp"), str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(y) + 1
