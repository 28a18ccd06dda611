"""JCAMP-DX files through the ``jcamp`` package, with the text repairs real files need first.

``jcamp`` (the ``io`` extra) does the parsing; this module only hands it text it can parse and
checks what comes back:

- a trailing DOS end-of-file mark (Ctrl-Z, ``\\x1a``) after ``##END=`` is cut (``jcamp`` raises
  "Unknown character" on it);
- DUP counts (``S``..``Z``, ``s``: "repeat the previous value") are expanded before parsing:
  ``jcamp`` repeats the previous *difference* token only, so after a SQZ value
  (``B1399TB1410``) it walks off the line and raises IndexError, and DUP counts of more than
  one digit (``S2`` = 12) are misread;
- ``$$`` comments at the end of data lines are dropped (the specification allows them);
- compound (``##DATA TYPE=LINK``) files return every block that holds XY data, titled, provided
  the blocks share one axis; blocks without XY data (structures, peak assignments) are named in a
  warning;
- repeated x values within a block are merged: y values at one x are averaged, with a warning
  that says how many were merged and by how much they disagreed.

What ``jcamp`` prints about its own X/Y checks is caught and re-issued as one warning that
names the file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scai.errors import AxisError, DataFormatError

__all__ = ["JcampSpectra", "expand_dup", "read_jcamp_file"]

_UNITS = {"1/CM": "cm-1", "CM-1": "cm-1", "CM^-1": "cm-1", "NANOMETERS": "nm", "NM": "nm", "MICROMETERS": "um",
          "MICRONS": "um", "UM": "um"}
_SQZ = set("@ABCDEFGHIabcdefghi")
_DIF = set("%JKLMNOPQRjklmnopqr")
_DUP = {"S": 1, "T": 2, "U": 3, "V": 4, "W": 5, "X": 6, "Y": 7, "Z": 8, "s": 9}
_SIGNS = set("+-")
_CTRL_Z = "\x1a"


@dataclass(frozen=True)
class JcampSpectra:
    """The XY blocks of one JCAMP-DX file on their shared axis (rows in file order)."""

    x: np.ndarray
    Y: np.ndarray
    unit: str
    titles: list[str]


def expand_dup(line: str) -> str:
    """Rewrite the DUP counts of one compressed data line as explicit repeats.

    ``"5000B1399TB1410"`` becomes ``"5000B1399B1399B1399B1410"``: a DUP count is the number of
    times the previous value (an SQZ, DIF or plain number token) occurs in all, itself included.
    """
    if not any(c in _DUP for c in line):
        return line
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace() or c == ",":
            j = i + 1
            while j < n and (line[j].isspace() or line[j] == ","):
                j += 1
            if j < n and (line[j].isdigit() or line[j] == "."):
                k = j + 1
                while k < n and (line[k].isdigit() or line[k] == "."):
                    k += 1
                tokens.append(" " + line[j:k])
                i = k
            else:
                i = j
            continue
        j = i + 1
        while j < n and (line[j].isdigit() or line[j] == "."):
            j += 1
        token = line[i:j]
        if c in _DUP:
            count = int(str(_DUP[c]) + token[1:])
            values = [t for t in tokens if t[0] not in _DUP]
            if len(values) < 2:  # the first token is the abscissa: nothing to repeat yet
                raise ValueError(f"DUP count {token!r} with no value before it")
            tokens.extend([values[-1]] * (count - 1))
        elif c in _SQZ or c in _DIF or c in _SIGNS or c.isdigit() or c == ".":
            tokens.append(token)
        else:
            raise ValueError(f"unknown character {c!r} in data line")
        i = j
    return "".join(tokens).lstrip()


def _repair(text: str) -> list[str]:
    """The file's lines, ready for ``jcamp``: Ctrl-Z cut, data-line comments dropped, DUP expanded."""
    stripped = text.rstrip()
    while stripped.endswith(_CTRL_Z):
        stripped = stripped[:-1].rstrip()
    lines = stripped.splitlines()
    out: list[str] = []
    compressed = False  # inside ##XYDATA=(X++(Y..Y)), where SQZ/DIF/DUP may be used
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("##"):
            label, _, value = line.lstrip()[2:].partition("=")
            compressed = label.strip().upper().replace(" ", "") == "XYDATA" and "++" in value
            out.append(line + "\n")
            continue
        if "$$" in line:
            line = line.split("$$", 1)[0]
            if not line.strip():
                continue
        if compressed:
            try:
                line = expand_dup(line)
            except ValueError as e:
                raise DataFormatError(f"line {number}: {e}") from None
        out.append(line + "\n")
    return out


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark would hide the first ##TITLE from jcamp
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # DOS-era files: one byte per character, never fails


def _parse(path: Path) -> dict[str, Any]:
    try:
        jcamp = importlib.import_module("jcamp")
    except ImportError:
        raise DataFormatError(
            f"{path}: reading JCAMP-DX files needs the 'jcamp' package: pip install jcamp (or scai[io])"
        ) from None
    try:
        lines = _repair(_decode(path))
    except DataFormatError as e:
        raise DataFormatError(f"{path}: not a readable JCAMP-DX file ({e})") from None
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):
            d = jcamp.read(lines)
    except Exception as e:  # noqa: BLE001 - the parser raises anything on malformed input
        raise DataFormatError(f"{path}: not a readable JCAMP-DX file ({type(e).__name__}: {e})") from None
    checks = [ln for ln in said.getvalue().splitlines() if "Check failed" in ln]
    if checks:
        warnings.warn(
            f"{path}: the jcamp parser reported {len(checks)} failed line check(s), first: {checks[0]}",
            UserWarning,
            stacklevel=5,
        )
    return d


def _unit(block: dict[str, Any]) -> str:
    raw = str(block.get("xunits", "")).strip().upper()
    return _UNITS.get(raw, raw.lower() or "unknown")


def _merge_repeated_x(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Average the y values that share one x; keep the file's order of first appearance."""
    uniq, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True, return_counts=True)
    if uniq.size == x.size:
        return x, y
    means = np.bincount(inverse, weights=y) / counts
    spread = np.zeros(uniq.size)
    np.maximum.at(spread, inverse, np.abs(y - means[inverse]))
    order = np.argsort(first, kind="stable")
    merged = int(x.size - uniq.size)
    warnings.warn(
        f"{where}: {merged} repeated x value(s) merged by averaging their y values "
        f"({int(np.sum(counts > 1))} x value(s) affected, largest deviation from the mean {float(spread.max()):g})",
        UserWarning,
        stacklevel=5,
    )
    return uniq[order], means[order]


def _xy(block: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    x = np.asarray(block.get("x", []), dtype=np.float64).ravel()
    y = np.asarray(block.get("y", []), dtype=np.float64).ravel()
    if x.size == 0 and y.size == 0:
        return None
    return x, y


def read_jcamp_file(path: Path) -> JcampSpectra:
    """Every XY block of one JCAMP-DX file (one for a plain file), on one shared axis."""
    d = _parse(path)
    children = d.get("children")
    blocks = list(children) if children else [d]
    titled = []
    no_data = []
    for k, block in enumerate(blocks, 1):
        title = str(block.get("title", "")).split("$$", 1)[0].strip() or (f"block {k}" if children else path.stem)
        xy = _xy(block)
        if xy is None:
            no_data.append(title)
            continue
        x, y = xy
        where = f"{path}" + (f", block {k} ({title!r})" if children else "")
        if x.size != y.size:
            raise DataFormatError(f"{where}: JCAMP-DX block has {x.size} x values but {y.size} y values (corrupt data lines?)")
        x, y = _merge_repeated_x(x, y, where)
        titled.append((title, x, y, _unit(block)))
    if not titled:
        raise DataFormatError(f"{path}: JCAMP-DX file has no XY data" + (f" (blocks: {', '.join(no_data)})" if no_data else ""))
    if no_data:
        warnings.warn(
            f"{path}: skipped {len(no_data)} compound-file block(s) without XY data: {', '.join(no_data)}",
            UserWarning,
            stacklevel=4,
        )
    _, x0, _, unit0 = titled[0]
    span = max(abs(x0[-1] - x0[0]), 1.0)
    for title, x, _, unit in titled[1:]:
        if x.size != x0.size or unit != unit0 or not np.allclose(x, x0, rtol=0, atol=1e-6 * span):
            shown = "; ".join(f"{t!r}: {xx.size} points on {xx.min():g}..{xx.max():g} {u}" for t, xx, _, u in titled)
            raise AxisError(
                f"{path}: the compound file's blocks do not share one axis ({shown}); "
                "split the file into one file per axis or resample the blocks first"
            )
    return JcampSpectra(x0, np.stack([y for _, _, y, _ in titled]), unit0, [t for t, _, _, _ in titled])
