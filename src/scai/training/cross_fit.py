"""Cross-fitting: out-of-fold predictions of the training data decide what a validation split used to.

Small spectral data sets leave a validation split of 3-25 spectra, too few to choose the epoch
count, the temperatures, the thresholds and which exits a cascade uses. Cross-fitting trains the
network K times, each time on K - 1 folds of the training data, and keeps, for every epoch, the
logits it gives the held-out fold. The pooled out-of-fold (OOF) predictions then cover every
training spectrum once:

- :func:`choose_epoch` picks the epoch count on the pooled OOF accuracy (last exit first, then
  the mean over exits, then the lower OOF loss -- the order the trainer's checkpoint rule uses);
- :func:`oof_logits` gives the OOF logits at that epoch (n_exits, n, C), on which the estimator
  fits temperatures, thresholds and the exits to use;
- the network is then trained once more on all the data for the chosen epoch count.

Folds run in worker processes, ``n_jobs`` at a time, each with one PyTorch thread (several
multi-threaded trainings on shared cores slow each other down many times over). A fold that stops
early (patience) contributes the logits of its last epoch to later epochs of the pooled curve.
:func:`run_folds` can stop after its first round of folds when the caller's rule says the rest
cannot change the decision (the estimator's rule: the network's exits did not beat exit 0 on the
folds done, even at their best epochs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scai.errors import ConfigError, LabelError

__all__ = [
    "FoldOutput",
    "NetworkSpec",
    "choose_epoch",
    "default_n_jobs",
    "oof_curve",
    "oof_logits",
    "run_folds",
    "start_folds",
    "stratified_folds",
    "tail_size",
]


@dataclass(frozen=True)
class NetworkSpec:
    """What a worker needs to build the same untrained network: registry name, shape, config."""

    name: str
    in_length: int
    n_classes: int
    config: dict[str, Any]


@dataclass
class FoldOutput:
    """One fold's training: the held-out rows and, per epoch, the logits they got."""

    fold: int
    val_idx: np.ndarray  # (n_val,) rows of the training data held out
    logits: np.ndarray  # (E, n_exits, n_val, C) float32, one entry per epoch run
    best_epoch: int  # the fold's own early-stopping choice (1-based)
    fit_time_s: float
    #: compute-knob scales (scai.models.knob.KNOB_SCALES; empty without PA blocks) and, per epoch
    #: and scale, the same held-out logits with the PA blocks at that scale: (E, S, n_exits, n_val, C)
    scales: tuple[float, ...] = ()
    knob_logits: np.ndarray | None = None

    @property
    def epochs_run(self) -> int:
        return int(self.logits.shape[0])


def default_n_jobs(n_folds: int) -> int:
    """Folds to run at once: the cores this process may use, at most ``n_folds``.

    1 under an initialised process group (``torchrun``): worker processes would lack the group,
    so the folds run one after another, each trained data-parallel over the ranks.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(int(n_folds), cores))


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled K-fold splits of ``y`` with K = min(n_folds, smallest class count).

    Raises
    ------
    LabelError
        When the smallest class has fewer than 2 spectra (no split keeps it on both sides).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    smallest = int(np.bincount(y).min())
    k = min(int(n_folds), smallest)
    if k < 2:
        raise LabelError(f"cross-fitting needs at least 2 spectra per class; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(len(y)), y)]


def _train_fold(
    spec: NetworkSpec,
    train_config: dict[str, Any],
    Z: np.ndarray,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    fold: int,
    epochs: int | None = None,
) -> FoldOutput:
    """Train one fold's network (in a worker process, one thread) and keep its per-epoch OOF logits.

    ``epochs``: train at most that many epochs (the learning-rate schedule stays that of
    ``max_epochs``, as in the refit); None: until early stopping."""
    import torch

    from scai.models import create_model
    from scai.models.knob import knob_scales
    from scai.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({**train_config, "threads": 1, "progress": False, "tensorboard_dir": None})
    torch.manual_seed(cfg.seed)
    network = create_model(spec.name, spec.in_length, spec.n_classes, **spec.config)
    per_epoch: list[np.ndarray] = []
    scales = knob_scales(network)
    per_scale: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    t0 = time.perf_counter()
    history = Trainer(cfg).fit(network, Z[tr], y[tr], Z[va], y[va], val_logits=per_epoch, knob_logits=per_scale,
                               epochs=epochs)
    knob = np.stack([np.stack(per_scale[s]) for s in scales], axis=1).astype(np.float32) if scales else None
    return FoldOutput(
        fold=fold,
        val_idx=va,
        logits=np.stack(per_epoch).astype(np.float32),
        best_epoch=int(history.best_epoch),
        fit_time_s=time.perf_counter() - t0,
        scales=scales,
        knob_logits=knob,
    )


def run_folds(
    spec: NetworkSpec,
    train_config: dict[str, Any],
    Z: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    n_jobs: int = 1,
    stop_after_first_round: Callable[[list[FoldOutput]], str | None] | None = None,
    progress: bool = False,
) -> tuple[list[FoldOutput], str | None]:
    """Train one network per fold, ``n_jobs`` folds at a time; returns (outputs, stop reason).

    ``train_config``: :meth:`TrainConfig.to_dict` output; fold ``i`` trains with seed
    ``seed + 1 + i``. After the first round (``max(2, n_jobs)`` folds) ``stop_after_first_round``
    may return a reason to skip the remaining folds (then returned with the outputs so far).
    ``n_jobs == 1`` trains in this process.
    """
    if n_jobs < 1:
        raise ConfigError(f"n_jobs must be >= 1; got {n_jobs}")
    from tqdm.auto import tqdm

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    seed = int(train_config.get("seed", 0))
    jobs = [
        (spec, {**train_config, "seed": seed + 1 + i}, tr, va, i) for i, (tr, va) in enumerate(folds)
    ]
    first_round = min(len(jobs), max(2, n_jobs))
    outputs: list[FoldOutput] = []
    bar = tqdm(total=len(jobs), desc=f"cross-fitting ({n_jobs} at a time)", unit="fold", disable=not progress,
               leave=False)
    try:
        rounds = [jobs[:first_round]] + [jobs[i : i + n_jobs] for i in range(first_round, len(jobs), n_jobs)]
        for r, batch in enumerate(rounds):
            results = _parallel(batch, Z, y, n_jobs) if n_jobs > 1 and len(batch) > 1 else None
            if results is None:  # one at a time, here (or worker processes could not start)
                results = []
                for sp, cfg, tr, va, i in batch:
                    results.append(_train_fold(sp, cfg, Z, y, tr, va, i))
                    bar.update(1)
            else:
                bar.update(len(batch))
            outputs.extend(results)
            if r == 0 and stop_after_first_round is not None and len(outputs) < len(jobs):
                reason = stop_after_first_round(outputs)
                if reason:
                    return outputs, reason
    finally:
        bar.close()
    return outputs, None


def tail_size(n_folds: int, n_jobs: int) -> int:
    """Folds of the last round that train for the chosen epoch count while the final network trains.

    :func:`run_folds` runs rounds of ``n_jobs`` folds (the first of ``max(2, n_jobs)``). When the
    last round would leave a worker idle, its folds take no part in choosing the epoch count:
    they train for the count the earlier folds chose (:func:`start_folds`) while the caller
    trains the final network on all spectra in the free slot, which saves one round. 0 when no
    slot is free (or one process runs everything).
    """
    if n_jobs < 2:
        return 0
    first = min(n_folds, max(2, n_jobs))
    rest = n_folds - first
    if rest <= 0:
        return 0
    last = rest % n_jobs or n_jobs
    return last if last < n_jobs else 0


class PendingFolds:
    """Folds training for a fixed epoch count in worker processes (:func:`start_folds`)."""

    def __init__(self, jobs: list[Any], Z: np.ndarray, y: np.ndarray, epochs: int, outputs: Any) -> None:
        self._jobs, self._Z, self._y, self._epochs, self._outputs = jobs, Z, y, epochs, outputs

    def result(self) -> list[FoldOutput]:
        """The folds' outputs (trained here, one after another, when no worker could start)."""
        if self._outputs is not None:
            return list(self._outputs)
        return [_train_fold(sp, cfg, self._Z, self._y, tr, va, i, self._epochs) for sp, cfg, tr, va, i in self._jobs]


def start_folds(
    spec: NetworkSpec,
    train_config: dict[str, Any],
    Z: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    first_index: int,
    epochs: int,
) -> PendingFolds:
    """Start training ``folds`` (fold numbers from ``first_index``, seeds as :func:`run_folds`'s) for
    ``epochs`` epochs in worker processes, one thread each, and return at once.

    joblib's loky backend (the pool :func:`run_folds` uses) dispatches the folds when called with
    ``return_as="generator"``; :meth:`PendingFolds.result` collects them.
    """
    import warnings

    from joblib import Parallel, delayed

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    seed = int(train_config.get("seed", 0))
    jobs = [(spec, {**train_config, "seed": seed + 1 + i}, tr, va, i)
            for i, (tr, va) in enumerate(folds, start=first_index)]
    try:  # n_jobs >= 2 even for one fold: with 1, joblib would run it lazily in this process
        outputs = Parallel(n_jobs=max(2, len(jobs)), backend="loky", return_as="generator")(
            delayed(_train_fold)(sp, cfg, Z, y, tr, va, i, epochs) for sp, cfg, tr, va, i in jobs
        )
    except (OSError, PermissionError, ImportError) as exc:
        warnings.warn(f"cross-fitting: worker processes could not start ({exc}); training the last folds here",
                      RuntimeWarning, stacklevel=2)
        outputs = None
    return PendingFolds(jobs, Z, y, epochs, outputs)


def _parallel(batch: list[Any], Z: np.ndarray, y: np.ndarray, n_jobs: int) -> list[FoldOutput] | None:
    """The batch's folds in worker processes; None (after a warning) when processes cannot start
    here (a sandbox without /dev/shm or fork), so the caller trains them in this process."""
    import warnings

    from joblib import Parallel, delayed

    try:
        return Parallel(n_jobs=min(n_jobs, len(batch)), backend="loky")(
            delayed(_train_fold)(sp, cfg, Z, y, tr, va, i) for sp, cfg, tr, va, i in batch
        )
    except (OSError, PermissionError, ImportError) as exc:
        warnings.warn(f"cross-fitting: worker processes could not start ({exc}); training the folds one at a time",
                      RuntimeWarning, stacklevel=3)
        return None


def _padded(output: FoldOutput, epochs: int, logits: np.ndarray | None = None) -> np.ndarray:
    """The fold's per-epoch logits (or ``logits``, per epoch like them) for ``epochs`` epochs, its
    last epoch repeated after it stopped."""
    L = output.logits if logits is None else logits
    if L.shape[0] >= epochs:
        return L[:epochs]
    return np.concatenate([L, np.repeat(L[-1:], epochs - L.shape[0], axis=0)])


def oof_curve(outputs: list[FoldOutput], y: np.ndarray) -> dict[str, np.ndarray]:
    """Pooled out-of-fold accuracy and cross-entropy per epoch and exit over the folds' rows.

    Returns ``{"acc": (E, n_exits), "loss": (E, n_exits), "n": rows covered}`` with E the longest
    fold's epoch count (stopped folds repeat their last epoch).
    """
    y = np.asarray(y, dtype=np.int64)
    E = max(o.epochs_run for o in outputs)
    n_exits = outputs[0].logits.shape[1]
    correct = np.zeros((E, n_exits))
    loss = np.zeros((E, n_exits))
    rows = 0
    for o in outputs:
        L = _padded(o, E).astype(np.float64)  # (E, n_exits, n_val, C)
        yv = y[o.val_idx]
        correct += (L.argmax(axis=3) == yv).sum(axis=2)
        m = L.max(axis=3, keepdims=True)
        logp = L - m - np.log(np.exp(L - m).sum(axis=3, keepdims=True))
        loss -= np.take_along_axis(logp, yv[None, None, :, None], axis=3)[..., 0].sum(axis=2)
        rows += len(yv)
    return {"acc": correct / rows, "loss": loss / rows, "n": np.asarray(rows)}


def choose_epoch(outputs: list[FoldOutput], y: np.ndarray) -> int:
    """The epoch count (1-based) with the best pooled OOF accuracy at the last exit; ties go to the
    better mean accuracy over exits, then the lower last-exit OOF loss, then the earlier epoch."""
    curve = oof_curve(outputs, y)
    acc, loss = curve["acc"], curve["loss"]
    keys = [(acc[e, -1], acc[e].mean(), -loss[e, -1], -e) for e in range(acc.shape[0])]
    return int(max(range(len(keys)), key=lambda e: keys[e])) + 1


def oof_logits(outputs: list[FoldOutput], n: int, epoch: int, scale: float | None = None) -> np.ndarray:
    """Out-of-fold logits (n_exits, n, C) at ``epoch`` (1-based), every row from the fold that held it out.

    ``scale``: the logits with the PA blocks at that compute-knob scale (one of the folds'
    ``scales``) instead of the trained setting."""
    first = outputs[0].logits
    out = np.full((first.shape[1], n, first.shape[3]), np.nan, dtype=np.float32)
    for o in outputs:
        if scale is None:
            out[:, o.val_idx] = _padded(o, epoch)[epoch - 1]
            continue
        if scale not in o.scales or o.knob_logits is None:
            raise ConfigError(f"oof_logits: fold {o.fold} kept no logits at compute scale {scale} (it has {list(o.scales)})")
        out[:, o.val_idx] = _padded(o, epoch, o.knob_logits[:, o.scales.index(scale)])[epoch - 1]
    if np.isnan(out).any():
        raise ConfigError("oof_logits: the folds do not cover every row (pass the outputs of all folds)")
    return out
