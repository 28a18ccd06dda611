"""Trainer: early stopping, best-checkpoint selection, history files, schedules and weight averaging."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from scai.errors import ConfigError
from scai.models import create_model
from scai.training import Augmentation, TrainConfig, Trainer
from scai.training.trainer import evaluate_exits
from tests.conftest import TINY_SCAI, make_peaks


@pytest.fixture(scope="module")
def data():
    X, y, _ = make_peaks(n_per_class=16, seed=1)
    _, codes = np.unique(y, return_inverse=True)
    X = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    tr, va = order[:36], order[36:]
    return X[tr], codes[tr], X[va], codes[va]


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("scai", in_length=96, n_classes=3, **TINY_SCAI)


def _fit(data, **cfg):
    net = _net()
    # constant rate and raw weights unless a test asks otherwise: each mechanism is tested alone
    base = {"max_epochs": 8, "patience": 50, "batch_size": 12, "lr": 3e-3, "progress": False, "threads": 1,
            "lr_schedule": "constant", "ema_decay": 0.0}
    history = Trainer(TrainConfig(**{**base, **cfg})).fit(net, *data)
    return net, history


def test_keeps_the_best_epoch_and_restores_its_weights(data):
    net, history = _fit(data, max_epochs=10)
    Xv, yv = data[2], data[3]
    keys = [(e["val_acc"][-1], float(np.mean(e["val_acc"])), -e["val_loss"][-1]) for e in history.epochs]
    best = max(range(len(keys)), key=lambda i: keys[i])  # first maximum, as the trainer keeps
    assert history.best_epoch == best + 1
    # the network handed back is the best epoch's, not the last epoch's
    now = evaluate_exits(net, Xv, yv)
    np.testing.assert_allclose(now["acc"], history.epochs[best]["val_acc"])
    np.testing.assert_allclose(now["loss"], history.epochs[best]["val_loss"], rtol=1e-5)
    assert not net.training


def test_early_stopping_after_patience(data):
    _, history = _fit(data, max_epochs=40, patience=2, min_epochs=3)
    assert history.stopped_early
    assert len(history.epochs) == max(history.best_epoch + 3, 3)
    assert len(history.epochs) < 40


def test_min_epochs_and_time_cap(data):
    _, history = _fit(data, max_epochs=6, patience=0, min_epochs=6)
    assert len(history.epochs) == 6  # patience 0 cannot stop before min_epochs
    _, history = _fit(data, max_epochs=50, max_time_s=0.0)
    assert history.stopped_early and len(history.epochs) == 1


def test_seeded_runs_are_identical(data):
    a, ha = _fit(data, seed=3)
    b, hb = _fit(data, seed=3)
    assert [e["val_loss"] for e in ha.epochs] == [e["val_loss"] for e in hb.epochs]
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k


def test_history_is_per_exit_and_saved(data, tmp_path):
    _, history = _fit(data, max_epochs=3)
    e = history.epochs[0]
    assert len(e["val_acc"]) == len(e["train_acc"]) == len(e["train_exit_loss"]) == 3
    assert e["lr"] == 3e-3
    json_path, csv_path = history.save(tmp_path)
    assert json.loads(json_path.read_text())["best_epoch"] == history.best_epoch
    header = csv_path.read_text().splitlines()[0].split(",")
    assert {"val_acc_exit1", "val_acc_exit3", "train_exit_loss_exit2", "lr"} <= set(header)


def test_cosine_schedule_follows_the_formula(data):
    _, history = _fit(data, max_epochs=6, lr_schedule="cosine")
    lrs = [e["lr"] for e in history.epochs]  # the rate each epoch trained with
    expected = [3e-3 * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_cosine_follows_the_time_cap_when_it_ends_first():
    from scai.training.trainer import _progress

    cfg = TrainConfig(max_epochs=100, max_time_s=60.0)
    assert _progress(10, 30.0, cfg) == 0.5  # half the time gone after a tenth of the epochs
    assert _progress(80, 30.0, cfg) == 0.8  # epochs ahead of the clock
    assert _progress(10, 90.0, cfg) == 1.0
    assert _progress(10, 1e9, TrainConfig(max_epochs=100)) == 0.1  # no cap: epochs only


def test_ema_copies_first_then_decays_at_its_rate():
    from scai.training.trainer import _ema

    net = torch.nn.Linear(1, 1, bias=False)
    avg = _ema(net, 0.9)
    for step in range(5):
        with torch.no_grad():
            net.weight.fill_(float(step + 1))
        avg.update_parameters(net)
    # w1 = 1 (copied), then w <- 0.9 w + 0.1 x for x = 2, 3, 4, 5
    w = 1.0
    for x in (2.0, 3.0, 4.0, 5.0):
        w = 0.9 * w + 0.1 * x
    assert float(avg.module.weight.detach()) == pytest.approx(w, rel=1e-6)


def test_plateau_schedule_halves_when_val_loss_stalls(data, monkeypatch):
    import scai.training.trainer as trainer_module

    real = trainer_module.evaluate_exits

    def stalled(*args, **kwargs):  # the real pass, but the last exit's val loss never improves
        out = real(*args, **kwargs)
        out["loss"][-1] = 1.0
        return out

    monkeypatch.setattr(trainer_module, "evaluate_exits", stalled)
    _, history = _fit(data, max_epochs=30, lr_schedule="plateau")
    lrs = [e["lr"] for e in history.epochs]
    # ReduceLROnPlateau(patience=10): the first epoch sets the best; 11 epochs later the rate halves
    assert lrs[:12] == [3e-3] * 12
    assert lrs[12:23] == [1.5e-3] * 11 and lrs[23] == 0.75e-3


def test_ema_weights_are_what_is_validated_and_kept(data):
    net, history = _fit(data, max_epochs=6, ema_decay=0.9)
    raw, _ = _fit(data, max_epochs=6)
    # same seed and data: without averaging the kept weights differ
    diff = [not torch.equal(a, b) for a, b in zip(net.state_dict().values(), raw.state_dict().values())]
    assert any(diff)
    now = evaluate_exits(net, data[2], data[3])
    np.testing.assert_allclose(now["loss"], history.epochs[history.best_epoch - 1]["val_loss"], rtol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
        ({"lr": 0.0}, "lr"),
        ({"distill": "prev"}, "distill"),
        ({"batch_size": 0}, "batch_size"),
        ({"patience": -1}, "patience must be >= 0; got -1"),
        ({"min_epochs": -2}, "min_epochs must be >= 0; got -2"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"max_time_s": -1.0}, "max_time_s must be >= 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"alpha": 1.5}, "alpha must be in"),
        ({"weight_decay": -1e-3}, "weight_decay must be >= 0"),
        ({"tau": -1.0}, "tau must be >= 0"),
    ],
)
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig(**bad)
    assert isinstance(info.value, ValueError)  # still a ValueError for generic handlers


def test_config_round_trip_and_unknown_keys():
    cfg = TrainConfig(lr_schedule="cosine", ema_decay=0.99, augment=Augmentation(noise_std=0.01))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['learning_rate'\]; valid options: .*\blr\b"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match=r"unknown augment option\(s\) \['noise'\]; valid options: .*noise_std"):
        TrainConfig.from_dict({"augment": {"noise": 0.1}})


def test_epoch_cap_is_the_training_budget_by_hand():
    cfg = TrainConfig(max_epochs=200, min_epochs=10, train_budget=1e9)
    assert cfg.epoch_cap(100, 1e6) == 10  # 1e9 / (100 spectra x 1e6 MACs)
    assert cfg.epoch_cap(40, 1e6) == 25  # floor(1e9 / 4e7)
    assert cfg.epoch_cap(1000, 1e6) == 10  # never below min_epochs
    assert cfg.epoch_cap(10, 1e3) == 200  # never above max_epochs
    assert TrainConfig(train_budget=None).epoch_cap(10**6, 1e9) == 200
    assert TrainConfig(min_epochs=0, train_budget=1.0).epoch_cap(10, 1e6) == 1
    r = cfg.resolved(40, 1e6)
    assert (r.max_epochs, r.train_budget) == (25, None) and r.resolved(10**6, 1e9) == r  # spent: stays
    assert TrainConfig().train_budget == 2e11


def test_trainer_stops_at_the_budgets_epoch_cap_and_anneals_over_it(data):
    net = _net()
    per_epoch = len(data[0]) * net.exit_macs()[-1]
    _, history = _fit(data, max_epochs=50, min_epochs=1, lr_schedule="cosine", train_budget=3.5 * per_epoch)
    assert len(history.epochs) == 3
    lrs = [e["lr"] for e in history.epochs]
    np.testing.assert_allclose(lrs, [3e-3 * 0.5 * (1 + math.cos(math.pi * t / 3)) for t in range(3)], rtol=1e-6)
    with pytest.raises(ConfigError, match="train_budget must be > 0"):
        TrainConfig(train_budget=0.0)
