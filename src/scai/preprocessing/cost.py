"""What preprocessing costs per spectrum: counted MACs where the arithmetic is fixed, measured ms.

The network's cost is counted layer by layer (``macs(length)``); preprocessing costs as much on
the same spectra (issue 18: 2.25 s of preprocessing against 0.82 s of network for 2,000 milk
spectra), so budgets and cost tables must see it. Steps whose arithmetic is fixed count it next
to their definition (:meth:`scai.preprocessing.Step.macs`: one MAC per multiply, add, divide or
comparison on a point, as the network counts a multiply-accumulate); iterative or selection
steps (baselines, despiking's medians) return ``None`` and are only timed. Timing runs each
step's ``transform`` on a batch of spectra, best of ``repeats``, on the calling machine and
thread settings, so a measured cost describes that machine, as a latency table does. The clock
is wall time (what a latency budget is about) or, with ``clock="cpu"``, the process's CPU time
(the work done, steadier on a shared machine for one-thread runs).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from scai.errors import BudgetError, ConfigError, DataFormatError, NotFittedError

if TYPE_CHECKING:
    from scai.preprocessing.pipeline import Pipeline

__all__ = ["PreprocessingCost", "StepCost", "pipeline_cost"]


@dataclass(frozen=True)
class StepCost:
    """One step's cost per spectrum.

    Attributes
    ----------
    step : str
        The step's class name.
    n_in, n_out : int
        Points per spectrum into and out of the step.
    macs : int or None
        Counted operations per spectrum (:meth:`Step.macs`); ``None`` where the work depends on
        the data (iterative baselines, medians), which only a measurement can give.
    ms : float or None
        Measured milliseconds per spectrum; ``None`` when not measured.
    """

    step: str
    n_in: int
    n_out: int
    macs: int | None
    ms: float | None = None


@dataclass(frozen=True)
class PreprocessingCost:
    """A pipeline's cost per spectrum: every step's, and the totals.

    Attributes
    ----------
    n_points : int
        Points per spectrum going in.
    steps : tuple of StepCost
    batch_size : int or None
        Spectra per timed batch (batched steps cost less per spectrum in larger batches);
        ``None`` when nothing was measured.
    machine : str
        Where the ms were measured.
    clock : str
        ``"wall"`` or ``"cpu"``: what the ms count.
    """

    n_points: int
    steps: tuple[StepCost, ...] = ()
    batch_size: int | None = None
    machine: str = ""
    clock: str = "wall"

    @property
    def macs(self) -> int:
        """Counted MACs per spectrum over the steps that can be counted (see :attr:`counted`)."""
        return int(sum(s.macs for s in self.steps if s.macs is not None))

    @property
    def counted(self) -> bool:
        """Whether every step was counted, so :attr:`macs` is the whole pipeline's arithmetic."""
        return all(s.macs is not None for s in self.steps)

    @property
    def uncounted(self) -> list[str]:
        """Steps whose cost is only measured."""
        return [s.step for s in self.steps if s.macs is None]

    @property
    def ms(self) -> float | None:
        """Measured milliseconds per spectrum of the whole pipeline (``None`` if not measured)."""
        if not self.steps:
            return 0.0
        if any(s.ms is None for s in self.steps):
            return None
        return float(sum(s.ms for s in self.steps))  # type: ignore[misc]

    def network_budget_ms(self, budget_ms: float) -> float:
        """What is left of a per-spectrum latency budget once preprocessing has run.

        Raises
        ------
        BudgetError
            When preprocessing was not measured, or alone takes the whole budget.
        """
        ms = self.ms
        if ms is None:
            raise BudgetError("a latency budget that includes preprocessing needs its measured ms; "
                              "measure it with Pipeline.cost(X)")
        left = float(budget_ms) - ms
        if left <= 0:
            raise BudgetError(f"budget {float(budget_ms):g} ms per spectrum: preprocessing alone takes {ms:.3g} ms; "
                              "raise the budget or use a cheaper preprocessing")
        return left

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: totals first (what a reader wants), then every step."""
        return {
            "n_points": self.n_points,
            "macs": self.macs,
            "counted": self.counted,
            "ms": self.ms,
            "batch_size": self.batch_size,
            "machine": self.machine,
            "clock": self.clock,
            "steps": [
                {"step": s.step, "n_in": s.n_in, "n_out": s.n_out, "macs": s.macs, "ms": s.ms} for s in self.steps
            ],
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "preprocessing cost") -> PreprocessingCost:
        """Inverse of :meth:`to_dict` (the totals are recomputed, not trusted)."""
        try:
            steps = tuple(
                StepCost(str(s["step"]), int(s["n_in"]), int(s["n_out"]),
                         None if s["macs"] is None else int(s["macs"]), None if s["ms"] is None else float(s["ms"]))
                for s in d["steps"]
            )
            return cls(int(d["n_points"]), steps, None if d.get("batch_size") is None else int(d["batch_size"]),
                       str(d.get("machine", "")), str(d.get("clock", "wall")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{source}: not a preprocessing cost ({type(exc).__name__}: {exc})") from None

    def table(self) -> str:
        """A plain-text table, one row per step and a total (for cost tables in the CLI)."""
        rows = [("step", "points", "MACs", f"ms/spectrum ({self.clock})")]
        for s in self.steps:
            rows.append((s.step, f"{s.n_in}->{s.n_out}", "measured" if s.macs is None else f"{s.macs:,}",
                         "-" if s.ms is None else f"{s.ms:.4f}"))
        total_macs = f"{self.macs:,}" + ("" if self.counted else " + measured")
        rows.append(("preprocessing", f"{self.n_points}->{self.steps[-1].n_out if self.steps else self.n_points}",
                     total_macs, "-" if self.ms is None else f"{self.ms:.4f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         for r in rows)


def _synthetic(n_spectra: int, axis: np.ndarray, seed: int = 0) -> np.ndarray:
    """Raman-like spectra on ``axis`` (sloped fluorescence, a few bands, noise) for timing."""
    rng = np.random.default_rng(seed)
    x = (axis - axis[0]) / max(float(axis[-1] - axis[0]), 1e-12)
    background = rng.uniform(200, 2000, (n_spectra, 1)) * np.exp(-rng.uniform(0.5, 3.0, (n_spectra, 1)) * x)
    bands = sum(rng.uniform(50, 500, (n_spectra, 1)) * np.exp(-0.5 * ((x - c) / 0.004) ** 2)
                for c in rng.uniform(0.05, 0.95, 12))
    return background + bands + rng.normal(0.0, 5.0, (n_spectra, x.size))


def pipeline_cost(
    pipeline: Pipeline,
    n_points: int | None = None,
    X: Any = None,
    *,
    measure: bool = True,
    batch_size: int = 256,
    repeats: int = 3,
    clock: str = "wall",
) -> PreprocessingCost:
    """Cost per spectrum of every step of ``pipeline`` (see :meth:`Pipeline.cost`)."""
    timer = {"wall": time.perf_counter, "cpu": time.process_time}.get(clock)
    if timer is None:
        raise ConfigError(f"Pipeline.cost: clock={clock!r} is not allowed; use 'wall' or 'cpu'")
    fitted = hasattr(pipeline, "axis_")
    if fitted:
        width = pipeline.n_features_in_
        if n_points is not None and int(n_points) != width:
            raise ConfigError(f"Pipeline.cost: n_points={n_points} differs from the {width} points the pipeline "
                              "was fitted on; cost an unfitted pipeline for other widths")
    elif n_points is None:
        raise ConfigError("Pipeline.cost: an unfitted pipeline needs n_points (points per spectrum)")
    else:
        width = int(n_points)
    if width < 1:
        raise ConfigError(f"Pipeline.cost: n_points={width} must be >= 1")
    if batch_size < 1 or repeats < 1:
        raise ConfigError(f"Pipeline.cost: batch_size={batch_size} and repeats={repeats} must be >= 1")

    widths: list[tuple[int, int]] = []
    n = width
    for step in pipeline.steps:
        out = step.n_out(n)
        widths.append((n, out))
        n = out
    times: list[float | None] = [None] * len(widths)
    if measure and pipeline.steps:
        if not fitted:
            raise NotFittedError("Pipeline.cost(measure=True) times the fitted steps; fit the pipeline first "
                                 "or pass measure=False for counts only")
        Z = _synthetic(batch_size, pipeline.axis_) if X is None else np.asarray(X, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != width:
            raise ConfigError(f"Pipeline.cost: X must be (n_spectra, {width}); got shape {Z.shape}")
        Z = Z[:batch_size]
        batch_size = Z.shape[0]
        for i, step in enumerate(pipeline.steps):
            best = np.inf
            for _ in range(repeats):
                t0 = timer()
                out = step.transform(Z)
                best = min(best, timer() - t0)
            times[i] = 1e3 * best / batch_size
            Z = np.asarray(out)
    return PreprocessingCost(
        n_points=width,
        steps=tuple(StepCost(type(step).__name__, a, b, step.macs(a), t)
                    for step, (a, b), t in zip(pipeline.steps, widths, times)),
        batch_size=batch_size if measure and pipeline.steps else None,
        machine=f"{platform.node()} ({platform.machine()})" if measure and pipeline.steps else "",
        clock=clock,
    )
