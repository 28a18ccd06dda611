"""Wide CSV/TSV and UCR text files: layout detection and row-block parsing.

Parsing goes through the C ``csv`` reader and one NumPy conversion per block, so an 8 MB file
loads in a fraction of a second; only when that conversion fails do we walk the cells to name
the offending one. The same layout detection and parsing serve Excel sheets (``_excel``), whose
rows arrive as cells too.

European instrument software writes ``;``-separated files with decimal commas (``4160,925``);
:func:`sniff_decimal` recognises them, and every numeric cell is read with that decimal mark.
"""

from __future__ import annotations

import csv
import re
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
#: Rows read ahead of parsing to sniff the decimal mark and to tell headers and transposed files.
PEEK_ROWS = 8

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
_DECIMAL_POINT = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")


def is_number(cell: str, decimal: str = ".") -> bool:
    try:
        float(cell.replace(",", ".") if decimal == "," else cell)
    except ValueError:
        return False
    return True


def sniff_decimal(rows: Sequence[Sequence[str]], delimiter: str) -> str:
    """``","`` when cells like ``4160,925`` occur (and none like ``4160.925``), else ``"."``.

    A comma-delimited file cannot hold decimal commas unquoted, so ``","`` is never sniffed there.
    """
    if delimiter == ",":
        return "."
    cells = [c.strip() for row in rows for c in row]
    if any(_DECIMAL_COMMA.match(c) for c in cells) and not any(_DECIMAL_POINT.match(c) for c in cells):
        return ","
    return "."


def looks_like_axis(values: np.ndarray) -> bool:
    """True when ``values``, sorted, lie on a smooth curve as axis points do (in any column order).

    A spectrum's intensities, sorted, form a quantile function with jumps and ties; an axis,
    even an unevenly spaced or rounded one, stays within half a spacing of a cubic fit.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))
    if values.size < PEEK_ROWS or not np.all(np.isfinite(values)):
        return False
    d = np.diff(values)
    if not np.all(d > 0):
        return False
    t = np.linspace(-1.0, 1.0, values.size)
    fit = np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyfit(t, values, 3))
    return bool(np.max(np.abs(values - fit)) <= 0.5 * float(np.median(d)))


def _is_integer_like(cell: str) -> bool:
    try:
        v = float(cell)
    except ValueError:
        return False
    return np.isfinite(v) and v == round(v)


def text_encoding(path: Path) -> str:
    """``"utf-16"`` for a file with a UTF-16 byte-order mark (Windows "Unicode text"), else UTF-8.

    UTF-16 without a byte-order mark (NUL bytes between the characters) is refused with the
    command that converts it, since its byte order cannot be known for sure.
    """
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if b"\x00" in head:
        order = "UTF-16LE" if head[1:2] == b"\x00" else "UTF-16BE"
        raise DataFormatError(
            f"{path}: holds NUL bytes, so it is binary or {order} text without a byte-order mark; "
            f"convert it to UTF-8 (iconv -f {order} -t UTF-8 {path.name} > {path.stem}-utf8{path.suffix}) or save it as 'CSV UTF-8'"
        )
    return "utf-8-sig"  # drops the byte-order mark Excel writes (e.g. liquor_vintage.csv)


def open_text(path: Path) -> IO[str]:
    """Open as UTF-8 or, with its byte-order mark, UTF-16 (see :func:`text_encoding`)."""
    return open(path, encoding=text_encoding(path), newline="")


def decode_error(path: Path, e: UnicodeDecodeError) -> DataFormatError:
    """The message for a file that is not UTF-8: where it fails and how to convert it."""
    return DataFormatError(
        f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); if it was saved as Latin-1/Windows-1252, "
        f"convert it (iconv -f CP1252 -t UTF-8 {path.name} > {path.stem}-utf8{path.suffix}) or save it as 'CSV UTF-8'"
    )


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
    id_idx: int | None = None
    decimal: str = "."

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
    id_column: str | int | None = None,
    decimal: str = ".",
    next_rows: Sequence[list[str]] = (),
) -> Layout:
    """Decide header / label / group / id / feature columns from the first rows and the arguments.

    ``next_rows`` are the rows after the first (up to :data:`PEEK_ROWS`): they tell an axis
    header written in shuffled column order from a data row, and a transposed file from one
    whose label column is missing.
    """
    cells = [c.strip() for c in first_row]
    n_cols = len(cells)
    numeric = [is_number(c, decimal) for c in cells]
    if header is None:
        if fmt == "ucr" or not all(numeric):
            header = not all(numeric)
        else:
            # An all-numeric first row is a header of axis values only when it is monotonic, or
            # when, sorted, it lies on a smooth curve as axis values do while the next row does
            # not; a measured spectrum (or UCR row with its label first) practically never does.
            vals = np.array([_to_float(c, decimal) for c in cells])
            d = np.diff(vals)
            header = n_cols >= 3 and bool(np.all(d >= 0) or np.all(d <= 0))
            if not header and looks_like_axis(vals) and next_rows:
                second = [c.strip() for c in next_rows[0]]
                header = not (len(second) == n_cols and all(is_number(c, decimal) for c in second)
                              and looks_like_axis(np.array([_to_float(c, decimal) for c in second])))
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
                    _refuse_transposed(source, cells, next_rows, decimal)
                    skip = {_resolve_column(r, columns, n_cols, "ignore_columns", source) for r in ignore_columns}
                    skip |= {_resolve_column(r, columns, n_cols, w, source) for r, w in
                             ((id_column, "id_column"), (group_column, "group_column")) if r is not None}
                    shown = ", ".join(repr(c) for i, (c, k) in enumerate(zip(cells, numeric)) if not k and i not in skip)
                    if shown:
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
    id_idx = _resolve_column(id_column, columns, n_cols, "id_column", source)
    roles = [(i, w) for i, w in ((label_idx, "label_column"), (group_idx, "group_column"), (id_idx, "id_column")) if i is not None]
    for k, (i, what) in enumerate(roles):
        for j, other in roles[k + 1:]:
            if i == j:
                raise LabelError(f"{source}: {what} and {other} are the same column ({i})")
    drop = {i for i, _ in roles}
    for ref in ignore_columns:
        drop.add(_resolve_column(ref, columns, n_cols, "ignore_columns", source))  # type: ignore[arg-type]
    feature_idx = np.array([i for i in range(n_cols) if i not in drop], dtype=np.int64)
    if feature_idx.size == 0:
        raise DataFormatError(f"{source}: no spectral columns left after the label/group/id/ignored columns")
    unit = axis_unit
    if header and all(numeric[i] for i in feature_idx):
        axis = np.array([_to_float(cells[i], decimal) for i in feature_idx])
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
    if label_idx is None and not ucr:
        _warn_transposed(source, feature_idx, next_rows if header else [first_row, *next_rows], decimal)
    return Layout(source, delimiter, n_cols, bool(header), label_idx, group_idx, feature_idx, axis, unit, columns, ucr,
                  id_idx, decimal)


def _to_float(cell: str, decimal: str) -> float:
    return float(cell.replace(",", ".") if decimal == "," else cell)


def _first_column(rows: Sequence[list[str]], col: int, decimal: str) -> np.ndarray | None:
    """Column ``col`` of ``rows`` as numbers, or None when a cell is missing or not a number."""
    try:
        return np.array([_to_float(r[col].strip(), decimal) for r in rows])
    except (IndexError, ValueError):
        return None


_TRANSPOSE_HINT = (
    "scai expects one spectrum per row; transpose the table "
    "(pandas: df.set_index(df.columns[0]).T.to_csv('by_rows.csv'))"
)


def _refuse_transposed(source: str, cells: list[str], next_rows: Sequence[list[str]], decimal: str) -> None:
    """A header of sample names over a first column of axis values: the file holds spectra as columns."""
    first = _first_column(next_rows, 0, decimal)
    if first is not None and looks_like_axis(first) and bool(np.all(np.diff(first) > 0) or np.all(np.diff(first) < 0)):
        raise DataFormatError(
            f"{source}: this looks transposed: column 1 ({cells[0]!r}) runs {first[0]:g}, {first[1]:g}, ... like a "
            f"spectral axis and the other {len(cells) - 1} columns look like spectra; {_TRANSPOSE_HINT}"
        )


def _warn_transposed(source: str, feature_idx: np.ndarray, rows: Sequence[list[str]], decimal: str) -> None:
    """Warn when the first spectral column runs down the rows like an axis (spectra stored as columns)."""
    first = _first_column(rows, int(feature_idx[0]), decimal)
    if first is not None and looks_like_axis(first) and bool(np.all(np.diff(first) > 0) or np.all(np.diff(first) < 0)):
        warnings.warn(
            f"{source}: this looks transposed: column {int(feature_idx[0]) + 1} runs {first[0]:g}, {first[1]:g}, ... "
            f"down the rows like a spectral axis; {_TRANSPOSE_HINT}",
            UserWarning,
            stacklevel=4,
        )


def _ucr_label(cell: str) -> str:
    """UCR labels are often written as floats ("1.0000000e+00"); name the class "1"."""
    try:
        v = float(cell)
    except ValueError:
        return cell
    return str(int(v)) if np.isfinite(v) and v == round(v) and abs(v) < 1e15 else cell


def _metadata_hint(layout: Layout, idx: int) -> str:
    """For a text cell under a header that is no axis value: how to say the column is ids or metadata."""
    if layout.columns is None:
        return ""
    name = layout.columns[idx].strip()
    try:
        float(name.replace(",", ".") if layout.decimal == "," else name)
    except ValueError:
        return (f"; if column {name!r} holds sample ids or metadata, name it: --id-column {name!r} or "
                f"--ignore-columns {name!r} (Python: id_column=, ignore_columns=)")
    return ""


def parse_block(
    layout: Layout, block: list[tuple[int, list[str]]], row_offset: int, last_is_eof: bool
) -> tuple[np.ndarray, list[str] | None, list[str] | None, list[str] | None]:
    """Convert rows to (X float64, labels, groups, ids), naming the file/row/line/column on failure."""
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
    if layout.decimal == ",":
        cells = [[c.replace(",", ".") for c in values] for values in cells]
    try:
        X = np.array(cells, dtype=np.float64)
    except ValueError:
        X = None
        for k, values in enumerate(cells):
            for j, cell in enumerate(values):
                try:
                    float(cell)
                except ValueError:
                    original = block[k][1][int(fi[j])]
                    what = "empty cell" if not cell.strip() else f"non-numeric cell {original!r}"
                    raise DataFormatError(
                        f"{row_text(src, row_offset + k + 1, block[k][0])}, {layout.column_text(int(fi[j]))}: {what}"
                        + _metadata_hint(layout, int(fi[j]))
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
    ids = None if layout.id_idx is None else [row[layout.id_idx].strip() for _, row in block]
    return X, labels, groups, ids
