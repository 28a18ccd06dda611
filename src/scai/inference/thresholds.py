"""Exit confidence thresholds: one parser, one vector type.

Users write a threshold as one number (``0.9``: every exit), one value per non-final exit, or one
per exit; on the command line and in query strings as ``"0.9"`` or ``"0.95,0.9,0.8"``; in JSON as
a number or a list where ``null`` means "nobody leaves at this exit" (what a calibration sets when
an exit should not be used). :func:`parse_thresholds` turns any of these into a
:class:`Thresholds` once, at the boundary; the exit loop, the manifest and the model directory
take the object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from scai.errors import BudgetError

__all__ = ["Thresholds", "parse_thresholds", "as_thresholds"]

#: Calibrated thresholds are probabilities and may exceed 1 by round-off.
_TOL = 1e-9
_ALLOWED = "a number in [0, 1], or one per exit (comma-separated or a list; null/inf = never leave there)"


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Confidence a sample needs to leave at each exit (``>=`` comparison).

    Attributes
    ----------
    values : ndarray of float64, shape (n_exits,)
        In [0, 1], or ``inf`` for an exit nobody leaves at. The last entry is always 0: the
        last exit answers every sample that reaches it.
    """

    values: np.ndarray

    def __post_init__(self) -> None:
        v = np.array(self.values, dtype=np.float64).reshape(-1)
        if v.size < 1:
            raise BudgetError("thresholds needs at least one exit")
        head = v[:-1]
        if np.any(np.isnan(head)) or np.any(head < 0) or np.any((head > 1 + _TOL) & np.isfinite(head)):
            raise BudgetError(f"thresholds {head.tolist()} are not allowed; use {_ALLOWED}")
        v[:-1] = np.where(np.isfinite(head), np.minimum(head, 1.0), head)  # round-off above 1
        v[-1] = 0.0
        v.setflags(write=False)
        object.__setattr__(self, "values", v)

    @property
    def n_exits(self) -> int:
        """Number of exits the vector is for."""
        return int(self.values.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thresholds) and np.array_equal(self.values, other.values)

    def __hash__(self) -> int:
        return hash(self.values.tobytes())

    def to_json(self) -> list[float | None]:
        """JSON-ready list; ``inf`` becomes ``None``."""
        return [float(t) if math.isfinite(t) else None for t in self.values]

    def __str__(self) -> str:
        return ", ".join("never" if not math.isfinite(t) else f"{t:.4g}" for t in self.values[:-1]) or "(one exit)"


def _numbers(value: Any, name: str) -> list[float]:
    if isinstance(value, Thresholds):
        return value.values.tolist()
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            return [math.inf if p.lower() in ("inf", "never", "null", "none") else float(p) for p in parts]
        except ValueError:
            raise BudgetError(f"{name}={value!r:.60} is not {_ALLOWED}") from None
    if isinstance(value, bool):
        raise BudgetError(f"{name}={value!r} is not {_ALLOWED}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return [float(value)]
    if isinstance(value, (list, tuple, np.ndarray)):
        out: list[float] = []
        for v in np.asarray(value, dtype=object).reshape(-1).tolist():
            if v is None:
                out.append(math.inf)
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out.append(float(v))
            else:
                raise BudgetError(f"{name} holds {v!r:.40}; expected {_ALLOWED}")
        return out
    raise BudgetError(f"{name} of type {type(value).__name__} is not {_ALLOWED}")


def parse_thresholds(value: Any, n_exits: int, *, name: str = "threshold") -> Thresholds:
    """Parse a user's threshold(s) for a model with ``n_exits`` exits.

    Parameters
    ----------
    value : float, str, sequence or Thresholds
        One value (used at every non-final exit), ``n_exits - 1`` values, or ``n_exits`` values
        (the last is ignored: the last exit always answers). ``None``/``inf``/``"never"`` entries
        mean nobody leaves at that exit. Finite values must lie in [0, 1].
    n_exits : int
    name : str
        The option's name, for messages (``"--threshold"``, ``"threshold"``).

    Raises
    ------
    BudgetError
        Wrong count, non-numbers, NaN or values outside [0, 1].
    """
    values = _numbers(value, name)
    if not values:
        raise BudgetError(f"{name} is empty; use {_ALLOWED}")
    if any(math.isnan(v) or (math.isfinite(v) and not 0.0 <= v <= 1.0 + _TOL) or v < 0 for v in values):
        raise BudgetError(f"{name} values must be in [0, 1]; got {values}")
    if len(values) == 1:
        values = values * n_exits
    elif len(values) == n_exits - 1:
        values = [*values, 0.0]
    elif len(values) != n_exits:
        raise BudgetError(
            f"{name} has {len(values)} values; give 1, {n_exits - 1} or {n_exits} for a model with {n_exits} exits"
        )
    return Thresholds(np.asarray(values, dtype=np.float64))


def as_thresholds(value: Sequence[float | None] | np.ndarray | Thresholds, n_exits: int) -> Thresholds:
    """Stored or calibrated thresholds (JSON lists with ``None``, arrays with ``inf``) as :class:`Thresholds`."""
    return value if isinstance(value, Thresholds) and value.n_exits == n_exits else parse_thresholds(
        value, n_exits, name="thresholds"
    )
