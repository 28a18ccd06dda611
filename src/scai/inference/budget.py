"""Compute budgets: parsing ``"150k"``, ``"1.2M"``, ``"3ms"`` into a typed value.

A budget is either a number of multiply-accumulates (MACs, the unit every policy works in) or a
latency in milliseconds per spectrum, which the :class:`~scai.inference.Predictor` converts into
MACs with stage latencies measured on the machine it runs on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from scai.errors import BudgetError

__all__ = ["Budget", "parse_budget"]

BudgetUnit = Literal["macs", "ms"]

_ALLOWED = "a positive number of MACs ('1500', '150k', '1.2M', '2G') or milliseconds ('3ms', '0.5 ms')"
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
    unit : {"macs", "ms"}
        Multiply-accumulates per spectrum, or milliseconds per spectrum.
    """

    value: float
    unit: BudgetUnit = "macs"

    def __post_init__(self) -> None:
        if self.unit not in ("macs", "ms"):
            raise BudgetError(f"Budget unit={self.unit!r} is not allowed; use 'macs' or 'ms'")
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value) or self.value <= 0:
            raise BudgetError(f"Budget value={self.value!r} is not allowed; use a finite number > 0")

    def __str__(self) -> str:
        if self.unit == "ms":
            return f"{self.value:g} ms"
        return f"{self.value:,.0f} MACs"


def parse_budget(budget: str | float | int | Budget) -> Budget:
    """Parse a budget given on the command line or in a config file.

    Parameters
    ----------
    budget : str, float, int or Budget
        ``"1500"``, ``"150k"``, ``"1.2M"``, ``"2G"`` (MACs; an optional trailing ``"MACs"`` is
        accepted), ``"3ms"``, ``"0.5 ms"``, ``"2 s"``, ``"500us"`` (latency per spectrum). Plain
        numbers are MACs. Suffixes are case-sensitive where it matters: ``"M"`` is mega, and a
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
        if not math.isfinite(value) or value <= 0:
            raise BudgetError(f"budget={budget!r} is not allowed; use {_ALLOWED}")
        return Budget(value, "macs")
    if not isinstance(budget, str):
        raise BudgetError(f"budget={budget!r} of type {type(budget).__name__} is not allowed; use {_ALLOWED}")
    text = budget.strip()
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
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget={budget!r} must be greater than zero; use {_ALLOWED}")
    return Budget(value, unit)
