"""Helpers shared by the ``scai`` sub-commands: option validators, loading data, printing tables.

Every numeric or choice option is checked where argparse reads it: the ``type=`` helpers below
raise :class:`argparse.ArgumentTypeError`, which the ``scai`` parser prints as one line
``scai COMMAND: error: argument --OPTION: ... (see scai COMMAND --help)`` with exit status 2, so
a bad value never reaches the library (and never shows a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from scai.errors import AxisError, BudgetError, CliError, ConfigError, DataValueError, LabelError
from scai.inference.budget import parse_budget

__all__ = [
    "CliError",
    "load_spectra",
    "add_column_arguments",
    "column_options",
    "naming_file",
    "atomic_output",
    "print_table",
    "add_threads_argument",
    "apply_threads",
    "default_threads",
    "natural_labels",
    "write_spectra_csv",
    "labels_for_model",
    "read_config_file",
    "positive_int",
    "non_negative_int",
    "int_at_least",
    "int_in_range",
    "random_seed",
    "port",
    "positive_float",
    "non_negative_float",
    "fraction",
    "probability",
    "existing_file",
    "existing_dir",
    "budget",
    "mac_budget",
    "http_url",
    "listen_host",
    "model_name",
    "preprocessing_kind",
    "onnx_opset",
]

# --------------------------------------------------------------------------- option validators
# Each takes the text argparse read and returns the parsed value, or raises ArgumentTypeError with
# a message saying what was given and what is allowed (argparse prefixes "argument --OPTION: ").


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give a finite number")
    return value


def int_at_least(low: int, what: str | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` accepting integers ``>= low`` (``what`` describes them in errors)."""
    allowed = what or f"an integer >= {low}"

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; use {allowed}")
        return value

    parse.__name__ = f"int_at_least_{low}"
    return parse


def int_in_range(low: int, high: int, what: str | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` accepting integers in ``low..high`` (both included)."""
    allowed = what or f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; use {allowed}")
        return value

    parse.__name__ = f"int_in_range_{low}_{high}"
    return parse


#: A count, size or number of epochs/threads: 1, 2, 3, ...
positive_int = int_at_least(1, "a positive integer (>= 1)")
#: A patience or other count that may be 0.
non_negative_int = int_at_least(0, "an integer >= 0")
#: A random seed (NumPy and scikit-learn take 0 .. 2**32 - 1).
random_seed = int_in_range(0, 2**32 - 1, "an integer in 0..4294967295")
#: A TCP port (0 lets the operating system choose one).
port = int_in_range(0, 65535, "a port number in 0..65535")


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (a learning rate, a time, a size)."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; use a number > 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number ``>= 0`` (a waiting time that may be zero)."""
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; use a number >= 0")
    return value


def fraction(text: str) -> float:
    """A share strictly between 0 and 1 (a validation or test split)."""
    value = _float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; use a fraction strictly between 0 and 1, e.g. 0.1")
    return value


def probability(text: str) -> float:
    """A probability in [0, 1] (a confidence threshold)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; use a confidence threshold in [0, 1]")
    return value


def existing_file(text: str) -> str:
    """The path of a file that exists (returned as given)."""
    if not Path(text).is_file():
        what = "a folder, not a file" if Path(text).is_dir() else "no such file"
        raise argparse.ArgumentTypeError(f"{text}: {what}")
    return text


def existing_dir(text: str) -> str:
    """The path of a folder that exists (returned as given)."""
    if not Path(text).is_dir():
        what = "a file, not a folder" if Path(text).exists() else "no such folder"
        raise argparse.ArgumentTypeError(f"{text}: {what}")
    return text


def budget(text: str) -> str:
    """A compute budget (``150k``, ``1.2M``, ``2ms``, ``25%``), checked by
    :func:`scai.inference.budget.parse_budget`; returned as given for the library to parse again."""

    try:
        parse_budget(text)
    except BudgetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def mac_budget(text: str) -> str:
    """A budget in MACs or a share of the full path (``300k``, ``1.2M``, ``25%``), not a latency."""

    budget(text)
    if parse_budget(text).unit == "ms":
        raise argparse.ArgumentTypeError(
            f"{text!r} is a latency; this budget is in MACs (e.g. 300k, 1.2M) or a share of the full path (25%)"
        )
    return text


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use an http:// or https:// URL such as http://127.0.0.1:8000")
    return text


def listen_host(text: str) -> str:
    """An address to listen on: an IP address, or a host name this machine can resolve."""
    import ipaddress
    import socket

    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    try:
        socket.getaddrinfo(text, None)
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an IP address nor a host name this machine resolves; use e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    return text


def model_name(text: str) -> str:
    """A registered network name (see ``scai.models.list_models()``)."""
    from scai.models import list_models

    names = list_models()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; registered models: {', '.join(names)}")
    return text


def preprocessing_kind(text: str) -> str:
    """A default preprocessing pipeline name (``raman``, ``nir``, ``ftir``, ``snv``, ``none``)."""
    from scai.preprocessing import PIPELINE_KINDS

    if text != "auto" and text not in PIPELINE_KINDS:
        raise argparse.ArgumentTypeError(f"unknown preprocessing {text!r}; use auto or one of {', '.join(PIPELINE_KINDS)}")
    return text


#: Lowest ONNX opset of the exported stage graphs (``Where`` needs 9).
MIN_ONNX_OPSET = 9


def onnx_opset(text: str) -> int:
    """An ONNX opset the per-stage export supports: 9 up to the newest the installed torch writes."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET as high
    except ImportError:  # torch missing or reorganised: the export itself will say so
        high = 20
    return int_in_range(MIN_ONNX_OPSET, int(high), f"an ONNX opset in {MIN_ONNX_OPSET}..{high} (default 17)")(text)


# --------------------------------------------------------------------------- data and output

def _read_options() -> list[str]:
    """Keyword options of :func:`scai.data.read` that :func:`load_spectra` passes on."""
    from scai import data

    params = inspect.signature(data.read).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _column_ref(text: str | None) -> str | int | None:
    """A column given on the command line: a 0-based index written as digits, else a name."""
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def column_list(text: str) -> list[str]:
    """``--ignore-columns a,b,3``: names or 0-based indices, comma-separated."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give names or 0-based indices separated by commas")
    return items


def add_column_arguments(p: argparse.ArgumentParser) -> None:
    """``--id-column`` and ``--ignore-columns``: what a table holds besides labels and spectra."""
    p.add_argument("--id-column", default=None,
                   help="column of sample ids (name or 0-based index): not a spectral column; scai predict writes it to OUT")
    p.add_argument("--ignore-columns", type=column_list, action="extend", default=None, metavar="COLS",
                   help="metadata columns to skip, comma-separated names or 0-based indices (repeatable)")


def column_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`scai.data.read` keywords of :func:`add_column_arguments`' options (only those given)."""
    out: dict[str, Any] = {}
    if getattr(args, "id_column", None) is not None:
        out["id_column"] = _column_ref(args.id_column)
    if getattr(args, "ignore_columns", None):
        out["ignore_columns"] = [_column_ref(c) for c in args.ignore_columns]
    return out


@contextlib.contextmanager
def naming_file(source: Any) -> Iterator[None]:
    """Prefix data errors raised inside with the file they concern (the model's checks cannot know it)."""
    try:
        yield
    except (AxisError, LabelError, DataValueError) as exc:
        text = str(exc)
        if str(source) in text:
            raise
        raise type(exc)(f"{source}: {text}") from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | Path, newline: str | None = "") -> Iterator[IO[str]]:
    """Write ``path`` through a temporary file beside it, renamed into place only on success.

    A command that fails half-way leaves no partial (e.g. header-only) output behind, and an
    existing file is kept until the new one is complete.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the output gets the usual mode
        with os.fdopen(fd, "w", newline=newline) as fh:
            yield fh
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_spectra(source: str, label_column: str | None = None, data_dir: str | None = None, **kwargs: Any) -> Any:
    """Read DATA given as a file/folder path, or as the name of a bundled/data-folder dataset.

    Parameters
    ----------
    source : str
        A file or folder path, or a dataset name (``scai.datasets.list()``).
    label_column : str, optional
        Label column name, or a 0-based index written as digits.
    data_dir : str, optional
        Folder of extra ``<name>.npz`` datasets.
    **kwargs
        Keyword options of :func:`scai.data.read` (``format``, ``nan_policy``, ...).

    Raises
    ------
    ConfigError
        For a keyword :func:`scai.data.read` does not take (listing the valid ones).
    CliError
        For a path that does not exist or a name that is no dataset.
    """
    from scai import data, datasets

    valid = _read_options()
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"load_spectra: unknown option(s) {unknown}; valid options: {', '.join(valid)}")
    path = Path(source)
    if path.exists():
        return data.read(path, label_column=_column_ref(label_column), **kwargs)
    if path.suffix or "/" in source or "\\" in source:
        raise CliError(f"{source}: no such file or folder")
    given = sorted(k for k, v in kwargs.items() if k in ("id_column", "ignore_columns") and v not in (None, (), []))
    if given:
        raise CliError(f"{source}: {', '.join('--' + k.replace('_', '-') for k in given)} can only be used with a file; {source!r} is a dataset name")
    try:
        return datasets.load(source, data_dir=data_dir)
    except (KeyError, ValueError) as exc:
        raise CliError(f"{source}: not a file, folder or known dataset name ({exc})") from exc


_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


def natural_labels(labels: Any) -> np.ndarray:
    """Labels read from a file, as integers when every one is written as one (``"3"``, ``"-1"``).

    Files hold text, so a CSV whose label column is 0/1/2 gives the strings "0", "1", "2"; a model
    trained on those would refuse ``clf.score(X, df.label)`` with integer labels ("Mix of label
    input types"). Only canonical spellings convert ("007" and "1.0" stay text, so no label is
    changed by the conversion).
    """
    arr = np.asarray(labels, dtype=object)
    texts = [str(v) for v in arr.tolist()]
    if texts and all(_CANONICAL_INT.match(t) for t in texts):
        return np.asarray([int(t) for t in texts], dtype=np.int64)
    return np.asarray(texts, dtype=object) if arr.size else arr


def labels_for_model(labels: Any, classes: np.ndarray) -> np.ndarray:
    """File labels in the type of a model's ``classes_``: integers for a model with integer classes
    (trained by ``scai train`` on integer labels, or in Python), else text."""
    if np.asarray(classes).dtype.kind in "iu":
        return natural_labels(labels)
    return np.asarray([str(v) for v in np.asarray(labels, dtype=object).tolist()], dtype=object)


def write_spectra_csv(spectra: Any, path: str | Path) -> Path:
    """Write ``spectra`` as a wide CSV that :func:`scai.data.read` reads back to the same values.

    Columns: ``label`` (when labelled), ``id`` (when the spectra carry ids), then one column per
    axis value. Numbers are written in their shortest exact form, so each spectrum reads back to
    the same float32 values (and the same :func:`scai.model_dir.row_digests`).
    """
    out = Path(path)
    labels = spectra.labels
    with atomic_output(out) as fh:
        writer = csv.writer(fh)
        head = (["label"] if labels is not None else []) + (["id"] if spectra.ids is not None else [])
        writer.writerow(head + [repr(float(a)) for a in spectra.axis])
        for i, row in enumerate(spectra.X):
            lead = ([labels[i]] if labels is not None else []) + ([spectra.ids[i]] if spectra.ids is not None else [])
            writer.writerow(lead + [repr(float(v)) for v in row])
    return out


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], file: Any = None) -> None:
    """Print a plain aligned table (works in logs and terminals alike)."""
    file = file or sys.stdout
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), file=file)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=file)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def read_config_file(path: str) -> dict[str, Any]:
    """Read a JSON or TOML run configuration (sections: model, model_config, train, preprocessing)."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"--config {path}: no such file")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            cfg = tomllib.loads(text)
        else:
            cfg = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is reported the same way
        raise CliError(f"--config {path}: cannot parse ({' '.join(str(exc).split())})") from exc
    if not isinstance(cfg, dict):
        raise CliError(f"--config {path}: expected an object with sections, got {type(cfg).__name__}")
    return cfg


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """``--threads N``: PyTorch CPU threads for the command (same meaning on every command)."""
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for PyTorch, >= 1 (default: the cores that are idle now, at least 1; "
                        "see docs/inference.md, 'Threads')")


def default_threads() -> int:
    """The cores not busy now: usable cores minus the 1-minute load average, at least 1.

    On a shared machine PyTorch's default (every core) is the slow choice: with the other
    processes' work on the cores, OpenMP threads wait for each other. Measured on a 2-core machine
    with two other busy processes: SCAI+ on milk_adulteration took 2.0 s per epoch with 1 thread
    and 22.6 s with 2 (docs/inference.md, 'Threads').
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, cores - round(busy)))


def apply_threads(n: int | None) -> int:
    """Set PyTorch's intra-op threads to ``n`` (``--threads``), or to :func:`default_threads`;
    returns the number set."""
    import torch

    threads = int(n) if n is not None else default_threads()
    torch.set_num_threads(threads)
    return threads


def preprocessing_cost_line(cost: Any) -> str:
    """One line for cost tables: what preprocessing costs per spectrum before the first exit.

    ``cost``: a :class:`scai.preprocessing.cost.PreprocessingCost`, its ``to_dict()``, or None.
    """
    from scai.preprocessing.cost import PreprocessingCost

    if cost is None:
        return "preprocessing: cost not recorded (model written before scai stored it)"
    if isinstance(cost, dict):
        cost = PreprocessingCost.from_dict(cost)
    macs = f"{cost.macs:,} MACs" + ("" if cost.counted else f" counted + {', '.join(cost.uncounted)} (timed only)")
    ms = "not timed" if cost.ms is None else f"{cost.ms:.3f} ms/spectrum ({cost.clock} time, where it was measured)"
    return f"preprocessing before exit 0: {macs}; {ms}"
