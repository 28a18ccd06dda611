"""Every error class scai raises, in one place.

Every error a user can cause (a bad file, option, configuration value, request or budget) is a
:class:`ScaiError`, so callers can tell "the input is wrong" from "scai has a bug" with one
``except ScaiError``. Each class also keeps the built-in base it always had (``ValueError``,
``TypeError`` or scikit-learn's ``NotFittedError``), so generic handlers keep working. Messages
are one line that names the file, row, column, option or argument, the bad value and what is
allowed. The ``scai`` command line prints any :class:`ScaiError` as one line
``scai COMMAND: error: ...`` with exit status 2; any other exception is a bug and shows its
traceback.

Hierarchy::

    Exception
    +-- ScaiError                         everything a user can cause
    |   +-- CliError                      a command-line mistake (missing file, conflicting options)
    |   +-- ScaiTypeError (TypeError)     an argument of the wrong type (not a Step, not a Pipeline)
    |   +-- NotFittedError (sklearn's)    an estimator or transformer used before ``fit``
    |   +-- ConfigError (ValueError)      a bad option or configuration value
    |   |   +-- ModelConfigError          bad model name, config key/value, stage or mode
    |   |   +-- BudgetError               a compute budget or threshold out of range
    |   |   +-- BenchSettingsError        benchmark settings that cannot run
    |   +-- DataFormatError (ValueError)  a file that cannot be parsed
    |   +-- DataValueError (ValueError)   parsed data with invalid values
    |   +-- LabelError (ValueError)       missing/unknown labels, too few classes
    |   +-- AxisError (ValueError)        spectral-axis problems
    |   +-- ModelFileError (ValueError)   a model directory that is missing, damaged or incompatible
    |   +-- PayloadError (ValueError)     an HTTP request the server refuses (carries ``status``)
    +-- QueueFullError (RuntimeError)     the server is overloaded (HTTP 503); not the user's fault

:class:`QueueFullError` is deliberately *not* a :class:`ScaiError`: a full request queue says
nothing about the request, which is valid and may succeed when retried.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

__all__ = [
    "ScaiError",
    "CliError",
    "ConfigError",
    "ScaiTypeError",
    "DataFormatError",
    "DataValueError",
    "BenchSettingsError",
    "LabelError",
    "AxisError",
    "ModelFileError",
    "ModelConfigError",
    "NotFittedError",
    "BudgetError",
    "PayloadError",
    "QueueFullError",
]


class ScaiError(Exception):
    """Base class of every error a user can cause; the CLI prints it as one line (exit 2)."""


class CliError(ScaiError):
    """A user mistake on the command line (missing file, options that conflict)."""


class ConfigError(ScaiError, ValueError):
    """A bad option or configuration value: out of range, an unknown name or an unknown key."""


class ScaiTypeError(ScaiError, TypeError):
    """An argument of the wrong type, e.g. a pipeline step that is not a scai ``Step``."""


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


class ModelConfigError(ConfigError):
    """Bad model name, configuration key/value, stage index or execution mode."""


class BudgetError(ConfigError):
    """A compute budget or threshold could not be parsed or is out of range."""


class BenchSettingsError(ConfigError):
    """Benchmark settings that cannot run: an unknown method, ``--resume`` with other settings."""


class PayloadError(ScaiError, ValueError):
    """A request body or parameter the server refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = int(status)


if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted

    class NotFittedError(ScaiError, _SklearnNotFitted):
        """An estimator or transformer was used before ``fit`` (also scikit-learn's NotFittedError)."""


_NOT_FITTED_LOCK = threading.Lock()  # one class, even when two threads ask for it first at once


def _not_fitted_error() -> type:
    """:class:`NotFittedError`, defined at its first use: its base is scikit-learn's, and importing
    scikit-learn (~1 s with SciPy's stats) is left to the code that needs it, so that reading files
    (``scai.data``, the Ray read tasks, ``scai --help``) does not pay for it."""
    with _NOT_FITTED_LOCK:
        if "NotFittedError" in globals():
            return globals()["NotFittedError"]
        from sklearn.exceptions import NotFittedError as sklearn_not_fitted

        class NotFittedError(ScaiError, sklearn_not_fitted):
            """An estimator or transformer was used before ``fit`` (also scikit-learn's NotFittedError)."""

        NotFittedError.__qualname__ = "NotFittedError"
        globals()["NotFittedError"] = NotFittedError
        return NotFittedError


def __getattr__(name: str) -> Any:
    if name == "NotFittedError":
        return _not_fitted_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class QueueFullError(RuntimeError):
    """More requests are waiting than the batcher accepts; the server answers 503.

    Not a :class:`ScaiError`: the request is valid and may succeed when retried.
    """
