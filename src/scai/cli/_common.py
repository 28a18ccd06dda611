"""Helpers shared by the ``scai`` sub-commands: loading data by path or name, printing tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CliError", "load_spectra", "print_table", "read_config_file", "parse_macs"]


class CliError(Exception):
    """A user mistake on the command line; printed as one line, exit status 2."""


def load_spectra(source: str, label_column: str | None = None, data_dir: str | None = None, **kwargs: Any) -> Any:
    """Read DATA given as a file/folder path, or as the name of a bundled/data-folder dataset."""
    from scai import data, datasets

    path = Path(source)
    if path.exists():
        label = int(label_column) if label_column is not None and label_column.lstrip("-").isdigit() else label_column
        return data.read(path, label_column=label, **kwargs)
    if path.suffix or "/" in source or "\\" in source:
        raise CliError(f"{source}: no such file or folder")
    try:
        return datasets.load(source, data_dir=data_dir)
    except (KeyError, ValueError) as exc:
        raise CliError(f"{source}: not a file, folder or known dataset name ({exc})") from exc


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

            return tomllib.loads(text)
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is reported the same way
        raise CliError(f"--config {path}: cannot parse ({exc})") from exc


def parse_macs(text: str) -> float:
    """'150k' / '1.2M' / '2e6' -> MACs, for arguments that only accept MAC budgets."""
    from scai.inference import parse_budget

    budget = parse_budget(text)
    if budget.unit != "macs":
        raise CliError(f"{text!r}: expected a budget in MACs (e.g. 150k, 1.2M)")
    return float(budget.value)
