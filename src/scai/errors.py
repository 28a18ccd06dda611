"""Error types raised by scai.

Every error a user can trigger with bad input is a subclass of ``ValueError`` or ``TypeError``
(so generic handlers keep working) and carries a one-line message that names the file, row,
column or argument, the bad value and what is allowed.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFitted

__all__ = [
    "ScaiError",
    "DataFormatError",
    "DataValueError",
    "BenchSettingsError",
    "LabelError",
    "AxisError",
    "ModelFileError",
    "NotFittedError",
    "BudgetError",
]


class ScaiError(Exception):
    """Base class of all scai errors."""


class DataFormatError(ScaiError, ValueError):
    """A file could not be parsed: empty, truncated, ragged rows, non-numeric cells, bad keys."""


class DataValueError(ScaiError, ValueError):
    """Parsed data holds invalid values: NaN/inf, wrong length, too few samples per class."""


class LabelError(ScaiError, ValueError):
    """Labels are missing, unknown to the model, or too few classes/samples to train."""


class AxisError(ScaiError, ValueError):
    """Spectral axis problems: duplicates, non-overlapping ranges, length mismatch."""


class ModelFileError(ScaiError, ValueError):
    """A saved model directory is missing files, truncated, tampered with or incompatible."""


class NotFittedError(ScaiError, _SklearnNotFitted):
    """An estimator or transformer was used before ``fit`` (also scikit-learn's NotFittedError)."""


class BudgetError(ScaiError, ValueError):
    """A compute budget or threshold could not be parsed or is out of range."""


class BenchSettingsError(ScaiError, ValueError):
    """Benchmark settings that cannot run: an unknown method, ``--resume`` with other settings."""
