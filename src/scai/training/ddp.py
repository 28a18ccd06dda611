"""Data-parallel training with PyTorch DDP, launched by ``torchrun`` (one process per core or GPU).

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`process_group` reads them, initialises the process
group (gloo on CPU; with CUDA, gloo for CPU tensors and nccl for GPU ones) and destroys it at the
end. While a group is initialised, :class:`scai.training.Trainer` trains data-parallel through
:func:`current`:

- each epoch, :class:`~torch.utils.data.DistributedSampler` shuffles the rows (seeded with the
  training seed and the epoch) and gives every rank an equal share of them; a rank's mini-batch is
  ``ceil(batch_size / world_size)`` rows, so one optimiser step still sees about ``batch_size``;
- :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients. SCAI+'s PA blocks
  stop running units where every position has halted, so which parameters a step uses depends on
  the data (and differs between ranks): they are wrapped with ``find_unused_parameters=True``.
  Every loss term (distillation, ponder cost, compute target) is computed from what the wrapped
  forward returns, so DDP sees the whole graph;
- the per-epoch training loss and accuracy are summed over all ranks, so the history is the
  whole epoch's; validation runs on rank 0 (its weights and their moving average) and its result
  is broadcast, so early stopping, the learning-rate schedule and the time cap decide the same on
  every rank;
- at the end rank 0's kept weights (the best epoch, or the moving average) are broadcast, so all
  ranks hold identical weights; the caller writes files on rank 0 only (:func:`is_main`).

Same seed and same number of processes give the same result; a different number of processes
shards the epochs differently and gives a different (equally valid) model.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from scai.errors import ConfigError, ScaiError
from scai.models.base import NetworkOutput
from scai.models.pa_block import PABlock

__all__ = [
    "Distributed",
    "LaunchEnv",
    "ReplicaMismatchError",
    "check_same",
    "current",
    "default_backend",
    "epoch_order",
    "group_threads",
    "is_main",
    "launch_env",
    "process_group",
    "rank_batch_size",
    "state_digest",
]

#: The variables ``torchrun`` sets for every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class ReplicaMismatchError(ScaiError):
    """The processes of a data-parallel run ended with different models."""


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a ``torchrun`` launch."""

    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # processes in the whole job (all nodes)
    local_rank: int  # rank on this node: the GPU it uses


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The ``torchrun`` launch this process belongs to, or None when none of its variables is set.

    Raises
    ------
    ConfigError
        When only some of ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` are set, or a value is not an
        integer or is out of range.
    """
    env = os.environ if environ is None else environ
    present = [k for k in LAUNCH_VARIABLES if k in env]
    if not present:
        return None
    missing = [k for k in LAUNCH_VARIABLES if k not in env]
    if missing:
        raise ConfigError(f"torchrun environment incomplete: {', '.join(present)} set but {', '.join(missing)} missing; "
                          "start the processes with torchrun")
    values: dict[str, int] = {}
    for key in LAUNCH_VARIABLES:
        try:
            values[key] = int(env[key])
        except ValueError:
            raise ConfigError(f"torchrun environment: {key}={env[key]!r} is not an integer") from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} are not "
                          "consistent (need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0)")
    return LaunchEnv(rank=rank, world_size=world, local_rank=local)


def default_backend() -> str:
    """gloo on CPU; with CUDA, gloo for CPU tensors and nccl for GPU ones."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def process_group(backend: str | None = None) -> Iterator[LaunchEnv]:
    """Initialise the process group of this ``torchrun`` launch for the block, then destroy it.

    Yields the :class:`LaunchEnv`. When the block ends normally the ranks meet at a barrier
    before the group is destroyed, and no thread of the group outlives it
    (:func:`group_threads`); when it raises, the group is destroyed at once. A group that is
    already initialised (by the caller) is used and left alone.

    Raises
    ------
    ConfigError
        Outside ``torchrun`` (no ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), naming the command to use.
    """
    env = launch_env()
    if env is None:
        raise ConfigError("data-parallel training needs processes started by torchrun, e.g. "
                          "torchrun --standalone --nproc_per_node=2 -m scai.cli train DATA --ddp")
    if dist.is_initialized():
        yield env
        return
    backend = backend or default_backend()
    if "nccl" in backend:
        torch.cuda.set_device(env.local_rank)
    # DistributedDataParallel imports torch._dynamo on first use; imported while a group exists,
    # it keeps that group alive after destroy_process_group (torch 2.13, measured): its gloo
    # worker threads, TCP loop and store thread then run on into interpreter exit, where a
    # rank can abort ("terminate called without an active exception"). Imported before the
    # group, nothing holds the group and destroying it ends every one of those threads.
    importlib.import_module("torch._dynamo")
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    try:
        yield env
    except BaseException:
        dist.destroy_process_group()  # no barrier: another rank may never reach it
        raise
    dist.barrier()  # every rank is done with every collective before any rank tears down
    dist.destroy_process_group()


def group_threads() -> list[str]:
    """Names of this process's threads that belong to a process group (gloo workers and TCP
    loop, nccl watchdogs, the store client): none should be left once :func:`process_group`
    ended. Empty where ``/proc/self/task`` is not there (not on Linux)."""
    names = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                name = fh.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if any(key in name for key in ("gloo", "nccl", "tcpstore", "c10d")):
            names.append(name)
    return sorted(names)


def is_main() -> bool:
    """True outside a process group and on rank 0: the process that prints and writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def epoch_order(n: int, epoch: int, seed: int, rank: int, world_size: int) -> Tensor:
    """This rank's rows for ``epoch``: :class:`DistributedSampler`'s seeded shuffle and shard.

    Every rank gets ``ceil(n / world_size)`` rows (the shuffled order is padded by repeating its
    start), so all ranks run the same number of steps.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def rank_batch_size(batch_size: int, world_size: int) -> int:
    """Rows per rank and step, so that one step over all ranks sees about ``batch_size`` rows."""
    return max(1, math.ceil(batch_size / world_size))


def state_digest(module: nn.Module, extra: bytes = b"") -> str:
    """SHA-256 of ``module``'s state (names, dtypes, shapes and values, in order) and ``extra``."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(extra)
    return h.hexdigest()


def check_same(digest: str, what: str) -> None:
    """Refuse to go on when the ranks' ``digest`` of ``what`` differ (a no-op outside a group).

    Raises
    ------
    ReplicaMismatchError
        Naming the ranks whose ``what`` differs from rank 0's.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    odd = [r for r, d in enumerate(digests) if d != digests[0]]
    if odd:
        raise ReplicaMismatchError(f"data-parallel ranks {odd} ended with another {what} than rank 0 "
                                   f"(sha256 {digests[0]!s:.12} on rank 0)")


class _Detailed(nn.Module):
    """``forward`` = the network's ``forward_detailed`` as a tuple, for DDP to wrap and traverse."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, ...], Tensor, Tensor, Tensor | None]:
        out = self.network.forward_detailed(x)
        return tuple(out.logits), out.ponder, out.macs, out.units_fraction


def _has_data_dependent_graph(network: nn.Module) -> bool:
    """True for networks with PA blocks: they skip units once every position has halted."""
    return any(isinstance(m, PABlock) for m in network.modules())


@dataclass(frozen=True)
class Distributed:
    """The initialised process group, as the trainer uses it (see the module docstring)."""

    rank: int
    world_size: int
    device: torch.device  # where this rank trains: cpu, or cuda:LOCAL_RANK under nccl

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's seed for dropout and augmentation (ranks draw different noise)."""
        return int(np.random.SeedSequence([int(seed), self.rank]).generate_state(1)[0])

    def epoch_order(self, n: int, epoch: int, seed: int) -> Tensor:
        return epoch_order(n, epoch, seed, self.rank, self.world_size)

    def batch_size(self, batch_size: int) -> int:
        return rank_batch_size(batch_size, self.world_size)

    def wrap(self, network: nn.Module) -> nn.Module:
        """The network in DDP (its weights broadcast from rank 0); call it for ``forward_detailed``."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(_Detailed(network), device_ids=device_ids,
                                       find_unused_parameters=_has_data_dependent_graph(network))

    def forward(self, wrapped: nn.Module, x: Tensor) -> NetworkOutput:
        """``wrapped(x)`` as the :class:`~scai.models.base.NetworkOutput` the losses take."""
        logits, ponder, macs, fraction = wrapped(x)
        return NetworkOutput(logits=list(logits), ponder=ponder, macs=macs, units_fraction=fraction)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """``values`` (float) summed over all ranks."""
        # a copy the tensor owns (as_tensor would share the array's memory, and freeing such a
        # tensor needs the interpreter's lock, which a gloo worker thread should never wait for)
        t = torch.tensor(np.asarray(values, dtype=np.float64), device=self._comm_device())
        dist.all_reduce(t)
        return t.cpu().numpy()

    def broadcast(self, values: np.ndarray | None, src: int = 0) -> np.ndarray:
        """Rank ``src``'s array (any shape, float32 or float64) on every rank; others pass None."""
        dev = self._comm_device()
        head = torch.zeros(8, dtype=torch.int64, device=dev)
        if self.rank == src:
            assert values is not None
            arr = np.array(values, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
            if arr.ndim > 6 or arr.dtype not in (np.float32, np.float64):
                raise ValueError(f"broadcast takes float32/float64 arrays of up to 6 dims; got {arr.dtype} {arr.shape}")
            head[0], head[1] = arr.ndim, int(arr.dtype == np.float64)
            head[2 : 2 + arr.ndim] = torch.tensor(arr.shape, dtype=torch.int64)
        dist.broadcast(head, src)
        ndim, wide = int(head[0]), bool(head[1])
        shape = tuple(int(s) for s in head[2 : 2 + ndim])
        dtype = torch.float64 if wide else torch.float32
        t = torch.tensor(arr, device=dev) if self.rank == src else torch.empty(shape, dtype=dtype, device=dev)
        dist.broadcast(t, src)
        return t.cpu().numpy()

    def broadcast_state(self, module: nn.Module, src: int = 0) -> None:
        """Overwrite every rank's parameters and buffers with rank ``src``'s, in place."""
        with torch.no_grad():
            for t in module.state_dict().values():
                dist.broadcast(t, src)

    def _comm_device(self) -> torch.device:
        return self.device


def current() -> Distributed | None:
    """The initialised process group as a :class:`Distributed`, or None (single-process training)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend()).lower():
        device = torch.device("cuda", torch.cuda.current_device())
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
