"""Tables a command writes (``scai predict --out``): the file's extension chooses the format.

``.csv`` (and ``.tsv``), ``.json`` (a list of one object per row) and ``.parquet`` (through
pyarrow); ``-`` writes CSV to standard output, so ``scai predict m data.csv --out - | head``
works. Files appear only when complete (written beside the target, then renamed), as
:func:`scai.cli._common.atomic_output` does for CSV. Anything else is refused before any work,
naming the formats that exist.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scai.cli._common import atomic_output
from scai.errors import CliError

__all__ = ["FORMATS", "RELIABILITY_COLUMNS", "SET_COLUMN", "STDOUT", "arrow_type", "column_array", "output_format",
           "reliability_columns", "reliability_values", "table_output"]

#: ``--out`` value that means standard output (CSV).
STDOUT = "-"
#: File extension -> format.
FORMATS: dict[str, str] = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
#: Column kinds a table declares, so that every format stores the same types.
KINDS = ("int", "float", "bool", "str")

#: The reliability columns of every prediction table (``scai predict --out``, ``--engine ray``'s
#: shards), in order: the answering exit's unknown-class score and whether it passes the threshold
#: calibrated at training (0/1), whether the spectrum is out of the training domain (0/1) and why.
RELIABILITY_COLUMNS: tuple[tuple[str, str], ...] = (("unknown_score", "float"), ("unknown", "int"),
                                                    ("out_of_domain", "int"), ("domain_reason", "str"))
#: With conformal sets asked for (``--sets``), last: the classes of the set joined with ``|``.
SET_COLUMN: tuple[str, str] = ("prediction_set", "str")

Rows = Sequence[Sequence[Any]]


def reliability_columns(with_sets: bool) -> list[tuple[str, str]]:
    """``(name, kind)`` of the reliability columns, with ``prediction_set`` when ``with_sets``."""
    return [*RELIABILITY_COLUMNS, *([SET_COLUMN] if with_sets else [])]


def reliability_values(res: Any, classes: Sequence[Any]) -> dict[str, list[Any]]:
    """The reliability columns of a :class:`~scai.inference.PredictionBatch`, column by column
    (``prediction_set`` only when the batch carries sets). ``None`` is an empty cell (CSV) or a null
    (JSON, Parquet): the model stores no detector (or no domain check)."""
    n = len(res.prediction)
    empty = [None] * n
    values: dict[str, list[Any]] = {
        "unknown_score": empty if res.unknown_score is None else [float(v) for v in res.unknown_score.tolist()],
        "unknown": empty if res.unknown is None else [int(v) for v in res.unknown.tolist()],
        "out_of_domain": empty if res.out_of_domain is None else [int(v) for v in res.out_of_domain.tolist()],
        "domain_reason": empty if res.domain_reason is None else [str(v) for v in res.domain_reason.tolist()],
    }
    if res.prediction_set is not None:
        names = [str(c) for c in classes]
        values["prediction_set"] = ["|".join(c for c, keep in zip(names, row) if keep)
                                    for row in res.prediction_set.tolist()]
    return values


def arrow_type(pa: Any, kind: str) -> Any:
    """The Arrow type a column of ``kind`` is stored as in Parquet (int64, float64, bool, string)."""
    return {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}[kind]


def column_array(pa: Any, values: Sequence[Any], kind: str) -> Any:
    """One column as ``--out x.parquet`` stores it: cells of ``kind``'s Arrow type, a non-finite
    float or ``None`` as null."""
    return pa.array([_cell(v, kind) for v in values], type=arrow_type(pa, kind))


def output_format(path: str) -> str:
    """The format ``--out PATH`` asks for: ``csv``, ``tsv``, ``json`` or ``parquet``.

    Raises
    ------
    CliError
        For an extension with no format (listing the ones there are).
    """
    if path == STDOUT:
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        allowed = ", ".join(FORMATS)
        raise CliError(f"--out {path}: the extension chooses the format; use one of {allowed}, or - for CSV on standard output")
    return FORMATS[suffix]


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        v = float(value)
        return v if math.isfinite(v) else None
    if kind == "bool":
        return bool(value)
    return str(value)


@contextlib.contextmanager
def table_output(path: str, columns: Sequence[tuple[str, str]], *, float_format: str = "{:.6f}") -> Iterator[Callable[[Rows], None]]:
    """Open ``path`` for a table of ``columns`` (``(name, kind)``, kind in ``int/float/bool/str``).

    Yields ``write(rows)``, to be called once per chunk of rows. CSV floats are written with
    ``float_format``; JSON and Parquet keep full precision and their own types.
    """
    bad = [k for _, k in columns if k not in KINDS]
    if bad:
        raise ValueError(f"column kinds must be in {KINDS}; got {bad}")
    fmt = output_format(path)
    names = [n for n, _ in columns]
    kinds = [k for _, k in columns]
    if fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else ","

        def as_text(rows: Rows) -> list[list[Any]]:
            return [[float_format.format(v) if k == "float" and v is not None else v for v, k in zip(row, kinds)] for row in rows]

        if path == STDOUT:
            writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
            writer.writerow(names)
            yield lambda rows: writer.writerows(as_text(rows))
            sys.stdout.flush()
            return
        with atomic_output(path) as fh:
            writer = csv.writer(fh, delimiter=delimiter)
            writer.writerow(names)
            yield lambda rows: writer.writerows(as_text(rows))
        return
    if fmt == "json":
        with atomic_output(path, newline=None) as fh:
            state = {"first": True}
            fh.write("[")

            def write_json(rows: Rows) -> None:
                for row in rows:
                    record = {n: _cell(v, k) for n, v, k in zip(names, row, kinds)}
                    fh.write(("\n " if state["first"] else ",\n ") + json.dumps(record, ensure_ascii=False))
                    state["first"] = False

            yield write_json
            fh.write("\n]\n")
        return
    yield from _parquet(path, names, kinds)


def _parquet(path: str, names: list[str], kinds: list[str]) -> Iterator[Callable[[Rows], None]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise CliError(f"--out {path}: writing Parquet needs pyarrow (pip install pyarrow), or use .csv / .json") from None
    types = {k: arrow_type(pa, k) for k in KINDS}
    schema = pa.schema([(n, types[k]) for n, k in zip(names, kinds)])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; the output gets the usual mode
    try:
        with pq.ParquetWriter(tmp, schema) as writer:

            def write_parquet(rows: Rows) -> None:
                if not rows:
                    return
                cols = [column_array(pa, [row[j] for row in rows], k) for j, k in enumerate(kinds)]
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))

            yield write_parquet
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
