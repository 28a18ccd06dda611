"""Trainer for multi-exit networks: Adam, early stopping on validation, best-checkpoint selection.

The trainer works on preprocessed NumPy arrays; preprocessing and label encoding belong to the
estimator. Everything it records per epoch is kept per exit so the paper's Fig. 11 (per-exit
training curves) can be drawn from the history alone.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from scai.errors import ConfigError, ScaiTypeError
from scai.models.knob import compute_scale
from scai.models.pa_block import PABlock
from scai.training import ddp
from scai.training.augment import Augmentation
from scai.training.losses import DISTILL_MODES, allocation_penalty, allocation_weights, exit_losses

__all__ = ["LR_SCHEDULES", "History", "TrainConfig", "Trainer", "evaluate_exits"]

LR_SCHEDULES = ("constant", "cosine", "plateau")
#: Default training compute cap, in forward MACs (epochs x training spectra x the network's full-path
#: MACs). Training time is close to proportional to it: about 1.3 GMAC/s per core for the default
#: SCAI+ (forward + backward + validation; milk_adulteration folds, benchmarks/results/train_time.md),
#: so 2e11 is ~150 s per fold, e.g. 41 epochs for 400 spectra of 1738 points. Small sets (the
#: common case: tens to a few hundred short spectra) stay at max_epochs.
TRAIN_BUDGET = 2e11
PONDER_ALLOCATIONS = ("uniform", "anova")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Defaults follow the paper (§4.3) except where noted."""

    lr: float = 1e-3  # Adam learning rate (paper: 1e-3)
    weight_decay: float = 1e-3  # Adam weight decay (L2; paper: none stated)
    batch_size: int = 32  # mini-batch size
    max_epochs: int = 200  # hard cap on epochs (early stopping usually ends sooner)
    patience: int = 30  # epochs without validation improvement before stopping (paper: 50)
    min_epochs: int = 10  # never stop before this many epochs
    max_time_s: float | None = None  # optional wall-clock cap for the whole fit
    train_budget: float | None = TRAIN_BUDGET  # forward MACs a fit may spend: epochs x training spectra x full-path MACs caps max_epochs; None = no cap
    seed: int = 0  # seeds weight init, shuffling and augmentation
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    distill: str = "last"  # "last" (paper), "next" (step-by-step), "none" (w/o KD ablation)
    temperature: float = 1.0  # distillation temperature T (KL scaled by T^2)
    alpha: float = 0.0  # weight of an early exit's own cross-entropy mixed into its KD loss
    tau: float = 1e-5  # ponder-cost weight for PA blocks (paper: 1e-5)
    ponder_target: float | None = 0.5  # share of the S units a PA position runs on average, in (0, 1]; None = tau only (the paper)
    ponder_allocation: str = "uniform"  # "uniform" (any position may halt) or "anova": PA units move to the positions whose ANOVA F is highest (losses.allocation_penalty)
    lr_schedule: str = "cosine"  # "cosine" (to 0 over max_epochs or max_time_s), "plateau", "constant" (paper)
    ema_decay: float = 0.99  # > 0: validate and keep an exponential moving average of the weights
    augment: Augmentation = field(default_factory=Augmentation)  # off by default
    eval_batch_size: int = 512  # batch size for validation passes
    progress: bool = True  # show a progress bar with per-exit validation accuracy
    tensorboard_dir: str | None = None  # write TensorBoard scalars here (needs `tensorboard`)

    def __post_init__(self) -> None:
        self._check_types()
        if self.distill not in DISTILL_MODES:
            raise ConfigError(f"distill must be one of {DISTILL_MODES}; got {self.distill!r}")
        for name in ("batch_size", "max_epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("patience", "min_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None (torch's default); got {self.threads}")
        if self.train_budget is not None and not self.train_budget > 0:
            raise ConfigError(f"train_budget must be > 0 MACs or None (no cap); got {self.train_budget}")
        if self.max_time_s is not None and not self.max_time_s >= 0:
            raise ConfigError(f"max_time_s must be >= 0 or None (no cap); got {self.max_time_s}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0; got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1]; got {self.alpha}")
        if not self.tau >= 0:
            raise ConfigError(f"tau must be >= 0; got {self.tau}")
        if self.ponder_target is not None and not 0.0 < self.ponder_target <= 1.0:
            raise ConfigError(f"ponder_target must be in (0, 1] or None (tau only, the paper); got {self.ponder_target}")
        if self.ponder_allocation not in PONDER_ALLOCATIONS:
            raise ConfigError(f"ponder_allocation must be one of {PONDER_ALLOCATIONS}; got {self.ponder_allocation!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {LR_SCHEDULES}; got {self.lr_schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1); got {self.ema_decay}")

    def _check_types(self) -> None:
        """Refuse values of the wrong type (a string epoch count from a config file, ...)."""
        for name in ("batch_size", "max_epochs", "eval_batch_size", "patience", "min_epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ScaiTypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
        for name in ("lr", "weight_decay", "temperature", "alpha", "tau", "ema_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ScaiTypeError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
        for name, kinds in (("threads", (int, np.integer)), ("max_time_s", (int, float, np.integer, np.floating)),
                            ("train_budget", (int, float, np.integer, np.floating)),
                            ("ponder_target", (int, float, np.integer, np.floating))):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ScaiTypeError(f"{name} must be a number or None; got {value!r} ({type(value).__name__})")
        if not isinstance(self.augment, Augmentation):
            raise ScaiTypeError(
                f"augment must be an Augmentation or a dict of its options; got {self.augment!r} ({type(self.augment).__name__})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def epoch_cap(self, n_train: int, full_macs: float) -> int:
        """Most epochs a fit on ``n_train`` spectra of a network costing ``full_macs`` per spectrum may
        run: ``max_epochs``, lowered to fit ``train_budget`` (never below ``min_epochs`` or 1)."""
        if self.train_budget is None or n_train < 1 or not full_macs > 0:
            return self.max_epochs
        fits = int(self.train_budget // (float(n_train) * float(full_macs)))
        return int(min(self.max_epochs, max(fits, self.min_epochs, 1)))

    def resolved(self, n_train: int, full_macs: float) -> TrainConfig:
        """This config with ``max_epochs`` set to :meth:`epoch_cap` and the budget spent (None), so
        that several fits (cross-fitting folds, the refit) share one epoch count and one schedule."""
        return replace(self, max_epochs=self.epoch_cap(n_train, full_macs), train_budget=None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from a plain dict (``to_dict`` output, a config file's ``train`` section).

        Raises
        ------
        ConfigError
            For an unknown key (listing the valid ones) or a value out of range.
        """
        d = dict(d)
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
        if isinstance(d.get("augment"), dict):
            aug_valid = set(Augmentation.__dataclass_fields__)
            aug_unknown = sorted(set(d["augment"]) - aug_valid)
            if aug_unknown:
                raise ConfigError(
                    f"unknown augment option(s) {aug_unknown}; valid options: {', '.join(sorted(aug_valid))}"
                )
            d["augment"] = Augmentation(**d["augment"])
        return cls(**d)


@dataclass
class History:
    """Per-epoch record; each ``*_acc``/``*_loss`` list entry holds one value per exit."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    fit_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "fit_time_s": self.fit_time_s,
            "epochs": self.epochs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(
            epochs=list(d.get("epochs", [])),
            best_epoch=int(d.get("best_epoch", -1)),
            stopped_early=bool(d.get("stopped_early", False)),
            fit_time_s=float(d.get("fit_time_s", 0.0)),
        )

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``history.json`` and a flat ``history.csv`` (one column per exit and metric)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "history.json"
        json_path.write_text(json.dumps(self.to_dict(), indent=1))
        csv_path = directory / "history.csv"
        rows = [_flatten(e) for e in self.epochs]
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return json_path, csv_path


def _flatten(epoch: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in epoch.items():
        if isinstance(value, list):
            for i, v in enumerate(value):
                flat[f"{key}_exit{i + 1}"] = v
        else:
            flat[key] = value
    return flat


@torch.inference_mode()
def evaluate_exits(
    network: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 512, *, return_logits: bool = False
) -> dict[str, Any]:
    """Per-exit cross-entropy and accuracy of ``network`` on ``(X, y)`` in eval mode.

    With ``return_logits`` the reply also holds ``"logits"``: (n_exits, n, C) float32.
    """
    was_training = network.training
    network.eval()
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")  # a GPU in data-parallel training
    n_exits = int(network.n_exits)
    loss_sum = np.zeros(n_exits)
    correct = np.zeros(n_exits)
    ponder_sum = 0.0
    kept: list[np.ndarray] = []
    for start in range(0, len(X), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(X[start : start + batch_size], dtype=np.float32)).unsqueeze(1)
        yb = torch.from_numpy(np.asarray(y[start : start + batch_size], dtype=np.int64))
        xb, yb = xb.to(device), yb.to(device)
        out = network.forward_detailed(xb)
        for i, logits in enumerate(out.logits):
            loss_sum[i] += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct[i] += float((logits.argmax(1) == yb).sum())
        if return_logits:
            kept.append(np.stack([t.float().cpu().numpy() for t in out.logits]))
        ponder_sum += float(out.ponder) * len(yb)
    network.train(was_training)
    n = max(len(X), 1)
    reply: dict[str, Any] = {
        "loss": (loss_sum / n).tolist(),
        "acc": (correct / n).tolist(),
        "ponder": ponder_sum / n,
    }
    if return_logits:
        reply["logits"] = np.concatenate(kept, axis=1) if kept else np.zeros((n_exits, 0, 0), np.float32)
    return reply


class Trainer:
    """Fits a multi-exit network with self-distillation and early stopping.

    The checkpoint kept is the epoch with the best validation accuracy at the last exit, ties
    broken by the mean accuracy over all exits (so among equally good final classifiers the one
    with better early exits wins), then by the lower validation loss at the last exit. With
    ``ema_decay > 0`` the moving average of the weights is what is validated and kept.

    Under an initialised process group (``torchrun``, :mod:`scai.training.ddp`) the same fit runs
    data-parallel: each rank trains on its shard of every epoch, gradients are averaged, rank 0
    validates, and all ranks end with rank 0's kept weights.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit(
        self,
        network: nn.Module,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
        *,
        epochs: int | None = None,
        val_logits: list[np.ndarray] | None = None,
        knob_logits: dict[float, list[np.ndarray]] | None = None,
    ) -> History:
        """Train ``network`` in place; returns the per-epoch history.

        With a validation set, early stopping keeps the best epoch (see the class docstring).
        Without one (``X_val=None``) it trains exactly ``epochs`` epochs (the epoch count chosen
        by cross-fitting) with the same learning-rate schedule and keeps the weights (or their
        moving average) of the last one. ``val_logits``: a list that receives, per epoch, the
        validated weights' logits on the validation set, (n_exits, n_val, C) float32 -- the
        out-of-fold predictions cross-fitting chooses the epoch count on. ``knob_logits``: per
        compute-knob scale (:mod:`scai.models.knob`), a list that receives the same logits with
        the PA blocks at that scale (what the budget solver weighs the knob on). Under a process group
        every rank must call ``fit`` with the same arguments. With a ``ponder_target`` the
        halting heads of every PA block start at the target (``PABlock.init_halting``), so
        ``fit`` is meant for an untrained network.
        """
        cfg = self.config.resolved(len(X_train), _full_macs(network))
        fixed = X_val is None
        if fixed and (epochs is None or epochs < 1):
            raise ConfigError("Trainer.fit without a validation set needs epochs >= 1 (the epoch count to train)")
        if not fixed and y_val is None:
            raise ConfigError("Trainer.fit: X_val was given without y_val")
        n_epochs = cfg.max_epochs if epochs is None else min(int(epochs), cfg.max_epochs)
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        group = ddp.current()  # None: one process, as always
        main = group is None or group.is_main  # the process that validates, shows and writes
        seed = cfg.seed if group is None else group.seed(cfg.seed)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(seed)

        if cfg.ponder_target is not None:  # start the halting heads at the target (PABlock.init_halting)
            for block in network.modules():
                if isinstance(block, PABlock):
                    block.init_halting(cfg.ponder_target)
        allocation = _allocation(network, X_train, y_train) if cfg.ponder_allocation == "anova" else None
        X_t = torch.from_numpy(np.ascontiguousarray(X_train, dtype=np.float32)).unsqueeze(1)
        y_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        batch_size = cfg.batch_size
        wrapped: nn.Module | None = None
        if group is not None:
            network.to(group.device)
            wrapped = group.wrap(network)  # broadcasts rank 0's weights
            batch_size = group.batch_size(cfg.batch_size)
        optimizer = torch.optim.Adam(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = _scheduler(optimizer, cfg)
        averaged = _ema(network, cfg.ema_decay)
        scored = averaged.module if averaged is not None else network  # what is validated and kept
        writer = _tensorboard_writer(cfg.tensorboard_dir) if main else None

        def elapsed() -> float:  # rank 0's clock under a group, so the time cap decides alike
            t = time.perf_counter() - start_time
            return t if group is None else float(group.broadcast(np.array(t)))

        history = History()
        best_key: tuple[float, float, float] = (-math.inf, -math.inf, -math.inf)
        best_state: dict[str, Tensor] | None = None
        since_best = 0
        n = len(X_t)
        n_exits = int(network.n_exits)
        start_time = time.perf_counter()
        bar = tqdm(range(n_epochs), desc="training", unit="epoch", disable=not (cfg.progress and main), leave=False)
        for epoch in bar:
            if cfg.lr_schedule == "cosine":  # over the epochs or the time cap, whichever ends first
                _set_lr(optimizer, cfg.lr * _cosine(_progress(epoch, elapsed(), cfg)))
            network.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=gen) if group is None else group.epoch_order(n, epoch, cfg.seed)
            sums: dict[str, float] = {}
            correct = np.zeros(n_exits)
            seen = 0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2 and n >= 2:  # BatchNorm needs >1 sample in training mode
                    continue
                xb, yb = X_t[idx], y_t[idx]
                if cfg.augment.enabled:
                    xb = cfg.augment.apply(xb, rng, yb)
                if group is None:
                    out = network.forward_detailed(xb)
                else:
                    xb, yb = xb.to(group.device), yb.to(group.device)
                    out = group.forward(wrapped, xb)
                losses = exit_losses(
                    out.logits,
                    yb,
                    ponder=out.ponder,
                    mode=cfg.distill,
                    temperature=cfg.temperature,
                    alpha=cfg.alpha,
                    tau=cfg.tau,
                    ponder_target=cfg.ponder_target,
                    units_fraction=out.units_fraction,
                )
                if allocation is not None and out.units_executed is not None:
                    losses["allocation"] = allocation_penalty(out.units_executed, *allocation)
                    losses["total"] = losses["total"] + losses["allocation"]
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                if averaged is not None:
                    averaged.update_parameters(network)
                b = len(yb)
                seen += b
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) * b
                with torch.no_grad():
                    for i, logits in enumerate(out.logits):
                        correct[i] += float((logits.argmax(1) == yb).sum())
            if group is not None:  # the whole epoch's loss and accuracy, the same on every rank
                sums, correct, seen = _summed(group, sums, correct, seen)
            seen = max(seen, 1)
            lr_now = optimizer.param_groups[0]["lr"]
            if fixed:
                history.epochs.append(self._train_record(epoch, sums, correct, seen, n_exits, lr_now, t0))
                bar.set_postfix_str("train acc " + " ".join(f"{a / seen:.2f}" for a in correct))
                if writer is not None:
                    _log_tensorboard(writer, history.epochs[-1])
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(history.epochs[-1]["train_loss"])
                history.best_epoch = epoch + 1
                if cfg.max_time_s is not None and elapsed() > cfg.max_time_s:
                    history.stopped_early = True
                    break
                continue
            if group is None:
                val = evaluate_exits(scored, X_val, y_val, cfg.eval_batch_size, return_logits=val_logits is not None)
            else:
                val = _validated_on_rank0(group, scored, X_val, y_val, cfg.eval_batch_size, val_logits is not None)
            if val_logits is not None:
                val_logits.append(val.pop("logits"))
            for scale, kept in (knob_logits or {}).items():
                with compute_scale(scored, scale):
                    at = (evaluate_exits(scored, X_val, y_val, cfg.eval_batch_size, return_logits=True) if group is None
                          else _validated_on_rank0(group, scored, X_val, y_val, cfg.eval_batch_size, True))
                kept.append(at["logits"])
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val["loss"][-1])

            record = self._train_record(epoch, sums, correct, seen, n_exits, lr_now, t0)
            record.update(val_loss=val["loss"], val_acc=val["acc"], val_ponder=val["ponder"])
            history.epochs.append(record)
            if writer is not None:
                _log_tensorboard(writer, record)
            key = (val["acc"][-1], float(np.mean(val["acc"])), -val["loss"][-1])
            if key > best_key:
                best_key = key
                best_state = copy.deepcopy(scored.state_dict())
                history.best_epoch = epoch + 1
                since_best = 0
            else:
                since_best += 1
            bar.set_postfix_str(
                "val acc " + " ".join(f"{a:.2f}" for a in val["acc"]) + f" | best@{history.best_epoch}"
            )
            if epoch + 1 >= cfg.min_epochs and since_best > cfg.patience:
                history.stopped_early = True
                break
            if cfg.max_time_s is not None and elapsed() > cfg.max_time_s:
                history.stopped_early = True
                break
        bar.close()
        if writer is not None:
            writer.close()
        if fixed and averaged is not None:  # the moving average is what a validated run keeps too
            best_state = copy.deepcopy(scored.state_dict())
        if best_state is not None:
            network.load_state_dict(best_state)
        if group is not None:  # every rank ends with rank 0's kept weights (BatchNorm statistics included)
            group.broadcast_state(network)
            network.to("cpu")
        network.eval()
        history.fit_time_s = time.perf_counter() - start_time
        return history


    @staticmethod
    def _train_record(
        epoch: int, sums: dict[str, float], correct: np.ndarray, seen: int, n_exits: int, lr: float, t0: float
    ) -> dict[str, Any]:
        return {
            "epoch": epoch + 1,
            "train_loss": sums.get("total", 0.0) / seen,
            "train_ponder": sums.get("ponder", 0.0) / seen,
            "train_exit_loss": [sums.get(f"exit_{i}", 0.0) / seen for i in range(n_exits - 1)]
            + [sums.get("ce_last", 0.0) / seen],
            "train_acc": (correct / seen).tolist(),
            "lr": lr,
            "epoch_time_s": time.perf_counter() - t0,
        }


def _summed(
    group: ddp.Distributed, sums: dict[str, float], correct: np.ndarray, seen: int
) -> tuple[dict[str, float], np.ndarray, int]:
    """One rank's epoch totals summed over all ranks (every rank computes the same loss terms)."""
    keys = sorted(sums)
    total = group.sum(np.concatenate([[sums[k] for k in keys], correct, [seen]]))
    return dict(zip(keys, total[: len(keys)].tolist())), total[len(keys) : -1], int(total[-1])


def _validated_on_rank0(
    group: ddp.Distributed, network: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int, with_logits: bool
) -> dict[str, Any]:
    """:func:`evaluate_exits` on rank 0, broadcast: the ranks' BatchNorm statistics differ slightly,
    and early stopping must decide the same everywhere."""
    n_exits = int(network.n_exits)
    val = evaluate_exits(network, X, y, batch_size, return_logits=with_logits) if group.is_main else None
    packed = group.broadcast(np.array([*val["loss"], *val["acc"], val["ponder"]]) if val is not None else None)
    reply: dict[str, Any] = {"loss": packed[:n_exits].tolist(), "acc": packed[n_exits : 2 * n_exits].tolist(),
                             "ponder": float(packed[-1])}
    if with_logits:
        reply["logits"] = group.broadcast(val["logits"] if val is not None else None)
    return reply


def _full_macs(network: nn.Module) -> float:
    """MACs per spectrum of the network's full path (0 when it does not count them)."""
    exit_macs = getattr(network, "exit_macs", None)
    return float(exit_macs()[-1]) if callable(exit_macs) else 0.0


def _progress(epoch: int, elapsed_s: float, cfg: TrainConfig) -> float:
    """Share of the training budget used before ``epoch``: epochs, or wall time when capped."""
    p = epoch / cfg.max_epochs
    if cfg.max_time_s is not None and cfg.max_time_s > 0:
        p = max(p, elapsed_s / cfg.max_time_s)
    return min(p, 1.0)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _allocation(network: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[list[Tensor], list[int]] | None:
    """Per-position weights and unit counts of the PA blocks for ``ponder_allocation="anova"``:
    the classes' ANOVA F along the training spectra (``losses.allocation_weights``). None when
    the network has no PA blocks or there is one class only."""
    from sklearn.feature_selection import f_classif

    blocks = getattr(network, "blocks", None)
    shapes = network.stage_shapes() if hasattr(network, "stage_shapes") else None
    if blocks is None or shapes is None or len(np.unique(y)) < 2:
        return None
    pa = [(b, w) for b, (_, w) in zip(blocks, shapes) if isinstance(b, PABlock)]
    if not pa:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        f, _ = f_classif(np.asarray(X, dtype=np.float64), np.asarray(y))
    return allocation_weights(f, [w for _, w in pa]), [len(b.units) for b, _ in pa]


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """Plateau schedule object for ``lr_schedule="plateau"``; cosine is set per epoch in ``fit``."""
    if cfg.lr_schedule == "plateau":  # halve the rate when the last exit's val loss stalls
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=10)
    return None


def _ema(network: nn.Module, decay: float) -> Any:
    """An exponential moving average of the weights (and BatchNorm statistics), or None."""
    if decay <= 0.0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _tensorboard_writer(directory: str | None) -> Any:
    if directory is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # pragma: no cover - depends on the optional package
        raise ImportError(
            "tensorboard_dir was given but TensorBoard is not installed; run `pip install tensorboard`"
        ) from exc
    return SummaryWriter(directory)


def _log_tensorboard(writer: Any, record: dict[str, Any]) -> None:
    step = record["epoch"]
    for key, value in _flatten(record).items():
        if key != "epoch":
            writer.add_scalar(key, value, step)
