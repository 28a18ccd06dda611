"""Excel workbooks (``.xlsx``/``.xlsm``) as rows of cells, through openpyxl (the ``io`` extra).

The rows go through the same layout detection and parsing as CSV (``_text``), so a sheet fails
with the same messages, naming the sheet row. openpyxl is used directly rather than through
``pandas.read_excel``: it streams rows in read-only mode and spares the edge runtime pandas.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scai.errors import DataFormatError

__all__ = ["EXCEL_SUFFIXES", "sheet_rows"]

EXCEL_SUFFIXES = (".xlsx", ".xlsm")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return str(value)


@contextmanager
def sheet_rows(path: Path) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """``(sheet row number, cells as text)`` for every non-blank row of the first sheet.

    Other sheets are named in a warning, not read. Trailing cells that are empty in every row
    up to the widest header cell are cut, since Excel keeps formatted but empty columns.
    """
    try:
        openpyxl = importlib.import_module("openpyxl")
    except ImportError:
        raise DataFormatError(
            f"{path}: reading Excel files needs the 'openpyxl' package: pip install openpyxl (or scai[io]); "
            "or save the sheet as CSV"
        ) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as e:
        raise DataFormatError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - openpyxl raises its own InvalidFileException and others
        raise DataFormatError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        names = list(book.sheetnames)
        if not names:
            raise DataFormatError(f"{path}: the workbook has no sheets")
        if len(names) > 1:
            warnings.warn(
                f"{path}: read sheet {names[0]!r} only; the workbook's other sheets are ignored: "
                f"{', '.join(repr(n) for n in names[1:])}",
                UserWarning,
                stacklevel=4,
            )
        yield _rows(book.worksheets[0])
    finally:
        book.close()


def _rows(sheet: Any) -> Iterator[tuple[int, list[str]]]:
    width: int | None = None
    for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
        cells = [_cell_text(v) for v in values]
        if not any(c.strip() for c in cells):
            continue
        if width is None:
            width = max(i + 1 for i, c in enumerate(cells) if c.strip())
        if not any(c.strip() for c in cells[width:]):
            cells = cells[:width]  # formatted, empty columns right of the table
        yield number, cells
