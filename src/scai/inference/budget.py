"""Compute budgets: parsing ``"150k"``, ``"1.2M"``, ``"3ms"``, ``"25%"`` into a typed value.

This module is the one place a budget is parsed or validated. The CLI, the HTTP layer, the
estimator and the edge client turn what the user wrote into a :class:`Budget` with
:func:`parse_budget`; everything below them passes the object on, and only the exit loop turns it
into MACs with :meth:`Budget.to_macs` (or :func:`as_macs_vector` for per-sample MAC arrays).

A budget is a number of multiply-accumulates per spectrum (MACs, the unit every policy works in),
a latency in milliseconds per spectrum (converted into MACs with stage latencies measured on the
machine that runs the model), or a fraction of the model's full path (``"25%"``: a quarter of the
MACs of its last exit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from scai.errors import BudgetError

__all__ = ["Budget", "parse_budget", "as_macs_vector"]

BudgetUnit = Literal["macs", "ms", "fraction"]

_ALLOWED = (
    "a positive number of MACs ('1500', '150k', '1.2M', '2G'), milliseconds ('3ms', '0.5 ms') "
    "or a share of the full path ('25%')"
)
_MAC_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "g": 1e9}
_TIME_SCALE = {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}
# number, optional space, optional magnitude/time suffix, optional "MAC(s)" word.
_PATTERN = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*"
    r"(?P<suffix>ms|us|µs|s|[kKMGg])?\s*(?P<word>macs?)?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Budget:
    """A per-spectrum compute budget.

    Attributes
    ----------
    value : float
        Positive amount in ``unit``.
    unit : {"macs", "ms", "fraction"}
        Multiply-accumulates per spectrum, milliseconds per spectrum, or a share of the full
        path's MACs (``0.25`` for ``"25%"``; above 1 is allowed and means "everything").
    """

    value: float
    unit: BudgetUnit = "macs"

    def __post_init__(self) -> None:
        if self.unit not in ("macs", "ms", "fraction"):
            raise BudgetError(f"Budget unit={self.unit!r} is not allowed; use 'macs', 'ms' or 'fraction'")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise BudgetError(f"Budget value={self.value!r} is not allowed; use a finite number > 0")
        if not math.isfinite(self.value) or self.value <= 0:
            raise BudgetError(f"Budget value={self.value!r} is not allowed; use a finite number > 0")

    def __str__(self) -> str:
        if self.unit == "ms":
            return f"{self.value:g} ms"
        if self.unit == "fraction":
            return f"{100 * self.value:g}% of the full path"
        return f"{self.value:,.0f} MACs"

    def to_macs(self, exit_macs: Sequence[float], stage_ms: Sequence[float] | None = None) -> float:
        """This budget in MACs per spectrum for a model whose exits cost ``exit_macs``.

        Parameters
        ----------
        exit_macs : sequence of float
            Cumulative full-compute MACs to reach each exit.
        stage_ms : sequence of float, optional
            Milliseconds per spectrum of each stage on the machine that runs the model; needed
            only for a latency budget. The conversion is piecewise linear between (cumulative
            ms, cumulative MACs) of the exits and proportional beyond them, so "fits in b ms"
            and "fits in the converted MACs" pick the same exit for a static network.
        """
        macs = np.asarray(exit_macs, dtype=np.float64)
        if self.unit == "macs":
            return float(self.value)
        if self.unit == "fraction":
            return float(self.value * macs[-1])
        if stage_ms is None:
            raise BudgetError(f"budget={self} is a latency; it needs stage latencies measured on this machine")
        cum_ms = np.cumsum(np.asarray(stage_ms, dtype=np.float64))
        v = float(self.value)
        if v < cum_ms[0]:
            return v * macs[0] / cum_ms[0]
        if v > cum_ms[-1]:
            return v * macs[-1] / cum_ms[-1]
        return float(np.interp(v, cum_ms, macs))


def parse_budget(budget: str | float | int | Budget) -> Budget:
    """Parse a budget given on the command line or in a config file.

    Parameters
    ----------
    budget : str, float, int or Budget
        ``"1500"``, ``"150k"``, ``"1.2M"``, ``"2G"`` (MACs; an optional trailing ``"MACs"`` is
        accepted), ``"3ms"``, ``"0.5 ms"``, ``"2 s"``, ``"500us"`` (latency per spectrum). Plain
        numbers are MACs; ``"25%"`` is a share of the full path. Suffixes are case-sensitive where it matters: ``"M"`` is mega, and a
        lone lower-case ``"m"`` is refused because it could mean milli.

    Returns
    -------
    Budget

    Raises
    ------
    BudgetError
        Malformed strings, zero, negative or non-finite values.
    """
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, bool):
        raise BudgetError(f"budget={budget!r} is not allowed; use {_ALLOWED}")
    if isinstance(budget, (int, float)):
        value = float(budget)
        if math.isinf(value) and value > 0:
            raise BudgetError(f"budget={budget!r} is infinite; give a finite number, or use policy 'full' for no budget")
        if not math.isfinite(value) or value <= 0:
            raise BudgetError(f"budget={budget!r} is not allowed; use {_ALLOWED}")
        return Budget(value, "macs")
    if not isinstance(budget, str):
        raise BudgetError(f"budget={budget!r} of type {type(budget).__name__} is not allowed; use {_ALLOWED}")
    text = budget.strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1]) / 100.0
        except ValueError:
            raise BudgetError(f"budget={budget!r} could not be parsed; use {_ALLOWED}") from None
        if not math.isfinite(share) or share <= 0:
            raise BudgetError(f"budget={budget!r} must be a share greater than 0%; use {_ALLOWED}")
        return Budget(share, "fraction")
    if re.fullmatch(r"[+-]?[\d.eE+-]+\s*m", text):
        raise BudgetError(f"budget={budget!r} is ambiguous; write 'M' for mega-MACs or 'ms' for milliseconds")
    match = _PATTERN.match(text)
    if match is None:
        raise BudgetError(f"budget={budget!r} could not be parsed; use {_ALLOWED}")
    number = float(match["num"])
    suffix = match["suffix"] or ""
    if suffix.lower() in ("ms", "us", "s") or suffix == "µs":
        if match["word"]:
            raise BudgetError(f"budget={budget!r} mixes a time and MACs; use {_ALLOWED}")
        unit: BudgetUnit = "ms"
        value = number * _TIME_SCALE[suffix.lower() if suffix != "µs" else suffix]
    else:
        if suffix not in _MAC_SCALE:  # e.g. "1.2m" written as "1.2 m" with a word after it
            raise BudgetError(f"budget={budget!r} is ambiguous; write 'M' for mega-MACs or 'ms' for milliseconds")
        unit = "macs"
        value = number * _MAC_SCALE[suffix]
    if math.isinf(value):
        raise BudgetError(f"budget={budget!r} is too large to be a number; use {_ALLOWED}")
    if value <= 0:
        raise BudgetError(f"budget={budget!r} must be greater than zero; use {_ALLOWED}")
    return Budget(value, unit)


def as_macs_vector(budget: Any, n: int) -> np.ndarray:
    """Per-sample MAC budgets as a float64 ``(n,)`` array: a :class:`Budget` in MACs, a number,
    or an array of shape ``(n,)``; ``inf`` is allowed (no limit), NaN and values <= 0 are not."""
    if isinstance(budget, Budget):
        if budget.unit != "macs":
            raise BudgetError(f"budget={budget} is a {'latency' if budget.unit == 'ms' else 'share of the full path'}; convert it to MACs first (Budget.to_macs)")
        budget = budget.value
    if isinstance(budget, bool):
        raise BudgetError(f"budget={budget!r} is not allowed; use MACs > 0")
    try:
        arr = np.asarray(budget, dtype=np.float64)
    except (TypeError, ValueError):
        raise BudgetError(f"budget={budget!r:.60} is not a number of MACs") from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.shape != (n,):
        raise BudgetError(f"budget has shape {arr.shape}; expected a scalar or ({n},)")
    if np.any(np.isnan(arr)) or np.any(arr <= 0):
        raise BudgetError("budget must be > 0 MACs (inf allowed) for every sample")
    return arr
