"""Settings of one benchmark run (:class:`BenchConfig`, saved in results.json) and ``--quick``'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scai.bench.methods import DEFAULT_DEPTHS, QUICK_DEPTHS

__all__ = ["BenchConfig", "quick_config"]

@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run (saved in results.json)."""

    datasets: tuple[str, ...] = ()  # dataset names; () = every dataset in the data folder
    seeds: tuple[int, ...] = (0, 1, 2)  # one split + initialisation per seed
    epochs: int = 200  # maximum epochs per network
    patience: int = 50  # early-stopping patience (paper: 50)
    batch_size: int = 32  # mini-batch size
    depths: tuple[int, ...] = DEFAULT_DEPTHS  # residual units of the static baselines
    methods: tuple[str, ...] = ()  # method names or families to run; () = all
    out: str = "benchmarks/results/paper"  # results folder
    data_dir: str | None = None  # folder of <name>.npz (None: SCAI_DATA_DIR or ../shared/datasets)
    preprocessing: str = "auto"  # "auto" (raman for cm-1 axes, ftir otherwise) or a default_pipeline kind
    threads: int = 2  # torch intra-op threads
    resume: bool = False  # skip (dataset, method, seed) already in results.json
    quick: bool = False  # tiny networks (pipeline check, not a measurement)
    val_fraction: float = 0.1  # validation share (8:1:1 or 10 % of the official train)
    test_fraction: float = 0.1  # test share for sets without an official split
    minirocket_kernels: int = 10000  # MiniRocket kernels (aeon default 10 000)



def quick_config(**overrides: Any) -> BenchConfig:
    """Settings of ``--quick``: embedded milk_adulteration, seed 0, 2 epochs, tiny networks."""
    base = dict(
        datasets=("milk_adulteration",),
        seeds=(0,),
        epochs=2,
        patience=2,
        batch_size=64,
        depths=QUICK_DEPTHS,
        out="benchmarks/results/paper-quick",
        quick=True,
        minirocket_kernels=840,
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return BenchConfig(**base)
