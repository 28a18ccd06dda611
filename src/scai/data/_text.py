"""Wide CSV/TSV and UCR text files: layout detection and row-block parsing.

Parsing goes through the C ``csv`` reader and one NumPy conversion per block, so an 8 MB file
loads in a fraction of a second; only when that conversion fails do we walk the cells to name
the offending one.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from scai.data._checks import Columns, row_text
from scai.errors import DataFormatError, LabelError

LABEL_NAMES = ("label", "class", "y", "target")
UCR_SUFFIXES = (".tsv", ".txt")


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_integer_like(cell: str) -> bool:
    try:
        v = float(cell)
    except ValueError:
        return False
    return np.isfinite(v) and v == round(v)


def open_text(path: Path) -> IO[str]:
    """Open as UTF-8, dropping a byte-order mark (Excel writes one, e.g. liquor_vintage.csv)."""
    return open(path, encoding="utf-8-sig", newline="")


def sniff_delimiter(line: str) -> str:
    """Pick the delimiter from the first line: tab, then ';', then ',', else whitespace.

    Counting is more robust than ``csv.Sniffer`` on thousands of numeric fields; ``" "`` means
    runs of whitespace (old UCR ``.txt`` files).
    """
    for d in ("\t", ";", ","):
        if d in line:
            return d
    return " " if len(line.split()) > 1 else ","


def iter_rows(f: IO[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(file line, cells)`` for every non-blank row."""
    if delimiter == " ":
        for lineno, line in enumerate(f, 1):
            cells = line.split()
            if cells:
                yield lineno, cells
        return
    reader = csv.reader(f, delimiter=delimiter)
    try:
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                yield reader.line_num, row
    except csv.Error as e:
        raise DataFormatError(f"{getattr(f, 'name', '<text>')}: line {reader.line_num}: {e}") from None


@dataclass
class Layout:
    """What each column of a text file holds."""

    source: str
    delimiter: str
    n_cols: int
    has_header: bool
    label_idx: int | None
    group_idx: int | None
    feature_idx: np.ndarray
    axis: np.ndarray
    axis_unit: str
    columns: list[str] | None
    ucr: bool = False

    @property
    def cols(self) -> Columns:
        names = None if self.columns is None else [self.columns[i] for i in self.feature_idx]
        return Columns(self.feature_idx + 1, names)

    def column_text(self, idx: int) -> str:
        if self.columns is None:
            return f"column {idx + 1}"
        return f"column {idx + 1} ({self.columns[idx]!r})"


def _resolve_column(ref: str | int | None, columns: list[str] | None, n_cols: int, what: str, source: str) -> int | None:
    if ref is None:
        return None
    if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
        idx = int(ref)
        if not -n_cols <= idx < n_cols:
            raise LabelError(f"{source}: {what}={ref} is out of range; the file has {n_cols} columns (0..{n_cols - 1})")
        return idx % n_cols
    if columns is None:
        raise LabelError(f"{source}: {what}={ref!r} names a column, but the file has no header row; pass its 0-based index")
    name = str(ref)
    if name in columns:
        return columns.index(name)
    lowered = [c.strip().lower() for c in columns]
    if name.strip().lower() in lowered:
        return lowered.index(name.strip().lower())
    shown = ", ".join(repr(c) for c in columns[:8]) + (f", ... ({len(columns)} columns)" if len(columns) > 8 else "")
    raise LabelError(f"{source}: no column named {name!r} for {what}; available columns: {shown}")


def detect_layout(
    source: str,
    first_row: list[str],
    suffix: str,
    *,
    fmt: str | None,
    label_column: str | int | None,
    group_column: str | int | None,
    ignore_columns: Sequence[str | int],
    header: bool | None,
    delimiter: str,
    axis_unit: str | None,
) -> Layout:
    """Decide header / label / group / feature columns from the first row and the arguments."""
    cells = [c.strip() for c in first_row]
    n_cols = len(cells)
    numeric = [is_number(c) for c in cells]
    if header is None:
        if fmt == "ucr" or not all(numeric):
            header = not all(numeric)
        else:
            # An all-numeric first row is a header of axis values only when it is monotonic;
            # a measured spectrum (or UCR row with its label first) practically never is.
            vals = np.array([float(c) for c in cells])
            d = np.diff(vals)
            header = n_cols >= 3 and bool(np.all(d >= 0) or np.all(d <= 0))
    columns = cells if header else None
    ucr = False
    if header:
        label_idx = _resolve_column(label_column, columns, n_cols, "label_column", source)
        if label_idx is None and label_column is None:
            lowered = [c.lower() for c in cells]
            for name in LABEL_NAMES:
                if name in lowered:
                    label_idx = lowered.index(name)
                    break
            else:
                if not all(numeric):
                    shown = ", ".join(repr(c) for c, k in zip(cells, numeric) if not k)
                    raise LabelError(
                        f"{source}: cannot tell which column holds the labels (no column named "
                        f"{'/'.join(LABEL_NAMES)}); pass label_column (CLI: --label-column) naming one of: "
                        f"{shown[:200]}"
                    )
    else:
        ucr = fmt == "ucr" or (
            fmt is None and label_column is None and suffix in UCR_SUFFIXES and _is_integer_like(cells[0])
        )
        label_idx = 0 if ucr else _resolve_column(label_column, None, n_cols, "label_column", source)
    group_idx = _resolve_column(group_column, columns, n_cols, "group_column", source)
    if group_idx is not None and group_idx == label_idx:
        raise LabelError(f"{source}: group_column and label_column are the same column ({group_idx})")
    drop = {i for i in (label_idx, group_idx) if i is not None}
    for ref in ignore_columns:
        drop.add(_resolve_column(ref, columns, n_cols, "ignore_columns", source))  # type: ignore[arg-type]
    feature_idx = np.array([i for i in range(n_cols) if i not in drop], dtype=np.int64)
    if feature_idx.size == 0:
        raise DataFormatError(f"{source}: no spectral columns left after the label/group columns")
    unit = axis_unit
    if header and all(numeric[i] for i in feature_idx):
        axis = np.array([float(cells[i]) for i in feature_idx])
        unit = unit or "unknown"
    else:
        if header:
            bad = next(cells[i] for i in feature_idx if not numeric[i])
            warnings.warn(
                f"{source}: column names are not all numeric (e.g. {bad!r}); using the point index as axis",
                UserWarning,
                stacklevel=4,
            )
        axis = np.arange(feature_idx.size, dtype=np.float64)
        unit = "index"
    return Layout(source, delimiter, n_cols, bool(header), label_idx, group_idx, feature_idx, axis, unit, columns, ucr)


def _ucr_label(cell: str) -> str:
    """UCR labels are often written as floats ("1.0000000e+00"); name the class "1"."""
    try:
        v = float(cell)
    except ValueError:
        return cell
    return str(int(v)) if np.isfinite(v) and v == round(v) and abs(v) < 1e15 else cell


def parse_block(
    layout: Layout, block: list[tuple[int, list[str]]], row_offset: int, last_is_eof: bool
) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    """Convert rows to (X float64, labels, groups), naming the file/row/line/column on failure."""
    src = layout.source
    n_cols = layout.n_cols
    for k, (line, row) in enumerate(block):
        if len(row) != n_cols:
            hint = " — the file looks truncated" if last_is_eof and k == len(block) - 1 and len(row) < n_cols else ""
            raise DataFormatError(
                f"{row_text(src, row_offset + k + 1, line)}: has {len(row)} columns, expected {n_cols} "
                f"(ragged row){hint}"
            )
    fi = layout.feature_idx
    contiguous = fi.size and fi[-1] - fi[0] + 1 == fi.size
    a, b = int(fi[0]), int(fi[-1]) + 1
    if contiguous:
        cells = [row[a:b] for _, row in block]
    else:
        idx = fi.tolist()
        cells = [[row[i] for i in idx] for _, row in block]
    try:
        X = np.array(cells, dtype=np.float64)
    except ValueError:
        X = None
        for k, values in enumerate(cells):
            for j, cell in enumerate(values):
                try:
                    float(cell)
                except ValueError:
                    what = "empty cell" if not cell.strip() else f"non-numeric cell {cell!r}"
                    raise DataFormatError(
                        f"{row_text(src, row_offset + k + 1, block[k][0])}, {layout.column_text(int(fi[j]))}: {what}"
                    ) from None
        raise  # pragma: no cover - numpy refused something float() accepts
    if X.ndim != 2:
        X = X.reshape(len(block), fi.size)
    labels = groups = None
    if layout.label_idx is not None:
        li = layout.label_idx
        labels = [row[li].strip() for _, row in block]
        for k, lab in enumerate(labels):
            if not lab:
                raise LabelError(f"{row_text(src, row_offset + k + 1, block[k][0])}, {layout.column_text(li)}: empty label")
        if layout.ucr:
            labels = [_ucr_label(v) for v in labels]
    if layout.group_idx is not None:
        gi = layout.group_idx
        groups = [row[gi].strip() for _, row in block]
    return X, labels, groups
