"""The per-exit cost tables in the docs are what ``exit_macs()`` computes.

Parsed, not copied: the tables in the docstrings of scai.models' modules (reST simple tables
whose columns are ``exit K, W`` / ``full, W``) and in docs/models.md (the markdown table whose
columns are ``exit K @ W`` / ``full @ W``). The number of classes is read from the text before
each table, a "(N units)" note in a row sets ``depth``, "a / b" cells belong to rows naming two
models. A shown value must equal the true MACs rounded to the digits shown, so a change that
moves MACs fails here until the tables are updated.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import scai.models
from scai.models import create_model, list_models

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
PACKAGE = Path(scai.models.__file__).parent
COLUMN = re.compile(r"^(?:exit\s+(\d+)|full)\s*(?:,|@)\s*(\d+)$")
VALUE = re.compile(r"^(\d+(?:\.\d+)?)$")
CLASSES = re.compile(r"(\d+)\s+classes")
NO_VALUE = {"–", "-", "—", ""}


@dataclass(frozen=True)
class Cell:
    source: str
    model: str
    config: tuple[tuple[str, int], ...]
    n_classes: int
    in_length: int
    exit_index: int | None  # 0-based; None = the last exit ("full")
    shown: str  # millions as printed, e.g. "0.933"


def _column(header: str) -> tuple[int | None, int] | None:
    m = COLUMN.match(header.strip())
    if m is None:
        return None
    return (int(m.group(1)) - 1 if m.group(1) else None), int(m.group(2))


def _classes(text_before: str, source: str) -> int:
    found = CLASSES.findall(text_before)
    assert found, f"{source}: the text before the cost table must say how many classes it assumes"
    return int(found[-1])


def _row_cells(
    source: str, label: str, values: list[str], columns: list[tuple[int | None, int] | None], n_classes: int
) -> list[Cell]:
    names = re.findall(r"`?([a-z][a-z0-9_]*)`?", label.split("(")[0])
    names = [n for n in names if n in list_models()]
    assert names, f"{source}: row {label!r} names no registered model"
    config: tuple[tuple[str, int], ...] = ()
    units = re.search(r"\((\d+)\s+units\)", label)
    if units:
        config = (("depth", int(units.group(1))),)
    cells = []
    for value, col in zip(values, columns):
        if col is None or value.strip() in NO_VALUE:
            continue
        assert value.strip().endswith("M"), f"{source}: {value!r} is not in millions (M)"
        numbers = [p.strip().removesuffix("M").strip() for p in value.split("/")]
        if len(numbers) == 1:
            numbers *= len(names)
        assert len(numbers) == len(names), f"{source}: {value!r} has {len(numbers)} values for {names}"
        for name, number in zip(names, numbers):
            cells.append(Cell(source, name, config, n_classes, col[1], col[0], number))
    return cells


def docstring_cells() -> list[Cell]:
    cells = []
    for path in sorted(PACKAGE.glob("*.py")):
        module = importlib.import_module(f"scai.models.{path.stem}" if path.stem != "__init__" else "scai.models")
        doc = module.__doc__ or ""
        lines = doc.splitlines()
        for i, line in enumerate(lines):
            # reST simple table: border, header, border, rows, border
            if not re.fullmatch(r"=+(\s+=+)+", line.strip()) or i + 2 >= len(lines):
                continue
            if not re.fullmatch(r"=+(\s+=+)+", lines[i + 2].strip()):
                continue
            spans = [m.span() for m in re.finditer(r"=+", line)]

            def split(row: str) -> list[str]:
                out = []
                for k, (a, _) in enumerate(spans):
                    end = spans[k + 1][0] if k + 1 < len(spans) else len(row)
                    out.append(row[a:end].strip())
                return out

            header = split(lines[i + 1])
            columns = [_column(h) for h in header[1:]]
            if not any(columns):
                continue
            source = f"{path.name} docstring"
            n_classes = _classes("\n".join(lines[:i]), source)
            j = i + 3
            while j < len(lines) and not re.fullmatch(r"=+(\s+=+)+", lines[j].strip()):
                row = split(lines[j])
                cells += _row_cells(source, row[0], row[1:], columns, n_classes)
                j += 1
    return cells


def markdown_cells() -> list[Cell]:
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    cells = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or i + 1 >= len(lines) or not re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            continue
        header = [h.strip() for h in line.strip("|").split("|")]
        columns = [_column(h) for h in header[1:]]
        if not any(columns):
            continue
        source = "docs/models.md"
        n_classes = _classes("\n".join(lines[max(0, i - 5):i]), source)
        j = i + 2
        while j < len(lines) and lines[j].startswith("|"):
            row = [c.strip() for c in lines[j].strip().strip("|").split("|")]
            cells += _row_cells(source, row[0], row[1:], columns, n_classes)
            j += 1
    return cells


DOC_CELLS = docstring_cells()
MD_CELLS = markdown_cells()


def _true_macs(cell: Cell) -> int:
    net = create_model(cell.model, cell.in_length, cell.n_classes, **dict(cell.config))
    macs = net.exit_macs()
    return macs[-1] if cell.exit_index is None else macs[cell.exit_index]


def _matches(shown: str, true_macs: int) -> bool:
    m = VALUE.match(shown)
    assert m, f"cannot read {shown!r} as a number of millions"
    digits = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    return abs(true_macs / 1e6 - float(m.group(1))) <= 0.5 * 10 ** -digits + 1e-12


def test_the_tables_were_found():
    in_scai = [c for c in DOC_CELLS if c.source == "scai.py docstring"]
    assert {c.model for c in in_scai} == {"scai", "scai_plus"} and len(in_scai) == 8
    assert {c.model for c in MD_CELLS} == {"scai", "scai_plus", "resnet1d", "drsn_cs", "drsn_cw"}
    assert len(MD_CELLS) == 4 + 4 + 2 + 2 + 2


@pytest.mark.parametrize("cell", DOC_CELLS + MD_CELLS, ids=lambda c: f"{c.source}-{c.model}-{c.exit_index}-{c.in_length}")
def test_documented_macs_match_exit_macs(cell: Cell):
    true = _true_macs(cell)
    assert _matches(cell.shown, true), (
        f"{cell.source}: {cell.model} ({cell.n_classes} classes, {cell.in_length} points"
        f"{', ' + str(dict(cell.config)) if cell.config else ''}) exit "
        f"{'full' if cell.exit_index is None else cell.exit_index + 1} is documented as {cell.shown} M "
        f"but exit_macs() gives {true / 1e6:.4f} M"
    )


def test_a_moved_mac_fails():
    cell = next(c for c in DOC_CELLS if c.model == "scai" and c.exit_index == 0 and c.in_length == 1000)
    true = _true_macs(cell)
    assert _matches(cell.shown, true)
    assert not _matches(cell.shown, true + 1000)  # 0.001 M more no longer rounds to the table
