"""Read spectra files into :class:`~scai.data.Spectra`, whatever format they come in.

One entry point, :func:`read`, dispatches on the file suffix (or ``format=``); :func:`iter_chunks`
streams files larger than memory. Every reader goes through the same checks (``_checks``), so
NaN/inf, ragged rows, duplicate axis values and unknown labels fail alike everywhere, with the
file, row, line and column in the message. Nothing is dropped silently.
"""

from __future__ import annotations

import importlib
import itertools
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from scai.data import _excel, _jcamp, _text, _vendor
from scai.data._checks import (
    Columns,
    check_nan_policy,
    fix_nonfinite,
    labels_from_array,
    labels_to_indices,
    sort_axis,
    warn_interpolated,
)
from scai.data.spectra import Spectra
from scai.errors import AxisError, DataFormatError, DataValueError

__all__ = ["read", "iter_chunks", "FORMATS", "FILE_ID_FORMATS", "format_of"]

FORMATS = ("csv", "ucr", "xlsx", "npz", "npy", "hdf5", "jcamp", "ts", "spc", "wdf", "omnic", "opus", "perkinelmer")
#: Formats read as tables of cells, which take the column options (label, id, group, ignore, ...).
TABLE_FORMATS = ("csv", "ucr", "xlsx")
#: Formats whose rows carry ids from the file itself (titles, sample names, map pixel coordinates).
FILE_ID_FORMATS = ("jcamp", "spc", "wdf", "omnic", "opus")
_SUFFIX_FORMAT = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".dat": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".npz": "npz", ".npy": "npy",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5",
    ".jdx": "jcamp", ".dx": "jcamp", ".jcamp": "jcamp",
    ".ts": "ts",
    ".spc": "spc", ".wdf": "wdf", ".spa": "omnic", ".spg": "omnic", ".sp": "perkinelmer",
}
#: Bruker OPUS names its files ``name.0``, ``name.1``, ... (the suffix counts saves of one sample).
_OPUS_SUFFIX = re.compile(r"^\.\d+$")
_JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")
_HDF5_BLOCK_ROWS = 65536


def format_of(path: str | Path, format: str | None = None) -> str:
    """The format :func:`read` uses for ``path``: ``format`` checked, else the suffix (a folder is JCAMP-DX).

    With :data:`FILE_ID_FORMATS` it tells, before reading, whether rows will come with ids.
    """
    return _format_of(Path(path), format)


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise DataFormatError(f"format={fmt!r} is not one of {FORMATS}")
        return fmt
    if path.is_dir():
        return "jcamp"
    suffix = path.suffix.lower()
    if _OPUS_SUFFIX.match(suffix):
        return "opus"
    if suffix == ".xls":
        raise DataFormatError(f"{path}: old Excel .xls files are not read; save the sheet as .xlsx or CSV")
    if suffix not in _SUFFIX_FORMAT:
        raise DataFormatError(
            f"{path}: unknown file type {suffix!r}; expected one of {sorted(_SUFFIX_FORMAT)}, a Bruker OPUS "
            f"number suffix (.0, .1, ...) or pass format= ({FORMATS})"
        )
    return _SUFFIX_FORMAT[suffix]


_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(f"{path}: no such file or directory")
    if path.is_file():
        if path.stat().st_size == 0:
            raise DataFormatError(f"{path}: empty file")
        _check_not_lfs_pointer(path)


def _check_not_lfs_pointer(path: Path) -> None:
    """A git-lfs pointer (a clone without ``git lfs pull``) is a small text file, not the data."""
    with open(path, "rb") as f:
        head = f.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        raise DataFormatError(
            f"{path}: is a git-lfs pointer file, not the data itself; fetch the data with `git lfs pull` "
            "in the repository (install git-lfs first if needed)"
        )


def _check_table_options(path: Path, fmt: str, options: dict[str, Any]) -> None:
    """Column options mean nothing to array formats: refuse them rather than ignore them."""
    given = sorted(k for k, v in options.items() if v not in (None, (), []))
    if fmt not in TABLE_FORMATS and given:
        raise DataFormatError(
            f"{path}: {', '.join(given)} apply only to tables ({', '.join(TABLE_FORMATS)}); a {fmt} file has no columns to pick"
        )


def read(
    path: str | Path,
    label_column: str | int | None = None,
    *,
    format: str | None = None,  # noqa: A002 - mirrors the CLI flag
    nan_policy: str = "raise",
    group_column: str | int | None = None,
    ignore_columns: Sequence[str | int] = (),
    header: bool | None = None,
    delimiter: str | None = None,
    axis_unit: str | None = None,
    id_column: str | int | None = None,
    decimal: str | None = None,
) -> Spectra:
    """Read a spectra file (or a JCAMP-DX class folder) into a :class:`Spectra`.

    Parameters
    ----------
    path : str or Path
        ``.csv/.tsv/.txt`` (wide table or UCR), ``.xlsx`` (first sheet; needs openpyxl),
        ``.npz``, ``.npy``, ``.h5/.hdf5``, ``.jdx/.dx`` or a folder of ``<class>/<file>.jdx``,
        ``.ts`` (needs aeon or sktime); instrument files through the ``io`` extra's readers:
        ``.spc`` (Galactic SPC), ``.wdf`` (Renishaw, maps as one row per pixel), ``.spa/.spg``
        (Thermo OMNIC), ``.0``, ``.1``, ... (Bruker OPUS); ``.sp`` (PerkinElmer) is refused with
        how to convert it.
    label_column : str or int, optional
        Text files: label column by name (case-insensitive) or 0-based index. By default a column
        named label/class/y/target; a table whose columns are all numeric is unlabelled.
    format : {"csv", "ucr", "xlsx", "npz", "npy", "hdf5", "jcamp", "ts", "spc", "wdf", "omnic", "opus", "perkinelmer"}, optional
        Override the suffix; ``"ucr"`` reads a headerless table with the label first.
    nan_policy : {"raise", "interpolate"}
        NaN/inf cells are refused, or filled linearly along the axis with a warning.
    group_column : str or int, optional
        Text files: column of replicate/subject ids, kept together by grouped splits.
    ignore_columns : sequence of str or int
        Text files: metadata columns to skip (everything else must be numeric).
    header : bool, optional
        Text files: force the presence/absence of a header row (auto-detected otherwise).
    delimiter : str, optional
        Text files: force the delimiter (sniffed otherwise; ``" "`` means whitespace runs).
    axis_unit : str, optional
        Unit of the axis ("cm-1", "nm", ...); "unknown" for physical axes of unspecified unit.
    id_column : str or int, optional
        Tables: column of sample ids, kept in :attr:`Spectra.ids` (``scai predict`` writes them).
    decimal : {".", ","}, optional
        Tables: the decimal mark; sniffed otherwise (``4160,925`` in a ``;``- or tab-separated
        file means a decimal comma).

    Returns
    -------
    Spectra
        With an increasing axis (a non-increasing one is sorted, with a warning).
    """
    check_nan_policy(nan_policy)
    _check_decimal(decimal)
    path = Path(path)
    fmt = _format_of(path, format)
    _check_exists(path)
    _check_table_options(path, fmt, {"id_column": id_column, "ignore_columns": ignore_columns, "decimal": decimal,
                                     "group_column": group_column})
    if fmt in TABLE_FORMATS:
        chunks = list(
            _iter_text(path, None, fmt=fmt, label_column=label_column, nan_policy=nan_policy,
                       group_column=group_column, id_column=id_column, ignore_columns=ignore_columns,
                       header=header, delimiter=delimiter, decimal=decimal, axis_unit=axis_unit, class_names=None)
        )
        return chunks[0]
    if fmt == "npz":
        return _read_npz(path, nan_policy, axis_unit)
    if fmt == "npy":
        return _read_npy(path, nan_policy, axis_unit)
    if fmt == "hdf5":
        return _read_hdf5(path, nan_policy, axis_unit)
    if fmt == "jcamp":
        return _read_jcamp(path, nan_policy)
    if fmt in _vendor.VENDOR_FORMATS:
        return _read_vendor(path, fmt, nan_policy, axis_unit)
    return _read_ts(path, nan_policy)


def iter_chunks(
    path: str | Path,
    chunk_size: int = 10000,
    label_column: str | int | None = None,
    *,
    format: str | None = None,  # noqa: A002
    class_names: Sequence[str] | None = None,
    nan_policy: str = "raise",
    group_column: str | int | None = None,
    ignore_columns: Sequence[str | int] = (),
    header: bool | None = None,
    delimiter: str | None = None,
    axis_unit: str | None = None,
    id_column: str | int | None = None,
    decimal: str | None = None,
) -> Iterator[Spectra]:
    """Stream a file as :class:`Spectra` chunks of at most ``chunk_size`` rows.

    CSV/TSV are parsed block by block, ``.npy`` is memory-mapped and HDF5 sliced, so files
    larger than memory can be predicted on. Pass ``class_names`` (e.g. a model's) to map labels
    consistently across chunks; without it each chunk names the classes it contains (compare
    chunks through :attr:`Spectra.labels`). Other formats are read whole and then sliced.
    """
    check_nan_policy(nan_policy)
    _check_decimal(decimal)
    if int(chunk_size) < 1:
        raise DataValueError(f"chunk_size={chunk_size} must be a positive integer")
    chunk_size = int(chunk_size)
    path = Path(path)
    fmt = _format_of(path, format)
    _check_exists(path)
    _check_table_options(path, fmt, {"id_column": id_column, "ignore_columns": ignore_columns, "decimal": decimal,
                                     "group_column": group_column})
    if fmt in TABLE_FORMATS:
        yield from _iter_text(path, chunk_size, fmt=fmt, label_column=label_column, nan_policy=nan_policy,
                              group_column=group_column, id_column=id_column, ignore_columns=ignore_columns,
                              header=header, delimiter=delimiter, decimal=decimal, axis_unit=axis_unit,
                              class_names=class_names)
        return
    if fmt == "npy":
        yield from _iter_npy(path, chunk_size, nan_policy, axis_unit)
        return
    if fmt == "hdf5":
        yield from _iter_hdf5(path, chunk_size, nan_policy, axis_unit, class_names)
        return
    full = read(path, format=fmt, nan_policy=nan_policy, axis_unit=axis_unit)
    for start in range(0, full.n_samples, chunk_size):
        part = full.subset(np.arange(start, min(start + chunk_size, full.n_samples)))
        yield _remap(part, class_names)


def _remap(s: Spectra, class_names: Sequence[str] | None) -> Spectra:
    """Re-express labels in the caller's ``class_names`` (unknown names are an error)."""
    if class_names is None or s.y is None:
        return s
    y, names = labels_to_indices(s.labels, s.source, class_names)  # type: ignore[arg-type]
    return Spectra(s.X, s.axis, y, names, s.groups, s.axis_unit, s.source, ids=s.ids)


def _check_decimal(decimal: str | None) -> None:
    if decimal not in (None, ".", ","):
        raise DataFormatError(f"decimal={decimal!r} is not allowed; use '.' or ',' (or None to sniff it)")


# --- text -------------------------------------------------------------------------------------


@contextmanager
def _table_rows(
    path: Path, fmt: str, delimiter: str | None, decimal: str | None
) -> Iterator[tuple[Iterator[tuple[int, list[str]]], str, str]]:
    """``(rows, delimiter, decimal)`` of a text table or an Excel sheet; rows are ``(line, cells)``."""
    if fmt == "xlsx":
        with _excel.sheet_rows(path) as rows:
            head = list(itertools.islice(rows, _text.PEEK_ROWS + 1))
            yield itertools.chain(head, rows), "", decimal or _text.sniff_decimal([r for _, r in head], ";")
        return
    with _text.open_text(path) as f:
        first_line = next((line for line in f if line.strip()), "")
    if not first_line.strip():
        raise DataFormatError(f"{path}: empty file (no rows)")
    delim = delimiter or _text.sniff_delimiter(first_line)
    with _text.open_text(path) as f:
        rows = _text.iter_rows(f, delim)
        head = list(itertools.islice(rows, _text.PEEK_ROWS + 1))
        yield itertools.chain(head, rows), delim, decimal or _text.sniff_decimal([r for _, r in head], delim)


def _iter_text(
    path: Path,
    chunk_size: int | None,
    *,
    fmt: str,
    label_column: str | int | None,
    nan_policy: str,
    group_column: str | int | None,
    id_column: str | int | None,
    ignore_columns: Sequence[str | int],
    header: bool | None,
    delimiter: str | None,
    decimal: str | None,
    axis_unit: str | None,
    class_names: Sequence[str] | None,
) -> Iterator[Spectra]:
    """Parse a table (text or Excel); one Spectra when ``chunk_size`` is None, else chunks."""
    source = str(path)
    try:
        with _table_rows(path, fmt, delimiter, decimal) as (rows, delim, dec):
            head = list(itertools.islice(rows, _text.PEEK_ROWS + 1))
            if not head:
                raise DataFormatError(f"{source}: empty file (no rows)")
            rows = itertools.chain(head, rows)
            line0, first = next(rows)
            layout = _text.detect_layout(
                source, first, path.suffix.lower(), fmt="ucr" if fmt == "ucr" else None, label_column=label_column,
                group_column=group_column, ignore_columns=ignore_columns, header=header, delimiter=delim,
                axis_unit=axis_unit, id_column=id_column, decimal=dec, next_rows=[r for _, r in head[1:]],
            )
            cols = layout.cols
            order = sort_axis(layout.axis, source, cols)
            axis = layout.axis if order is None else layout.axis[order]
            if order is not None:
                cols = cols.permuted(order)
            pending: list[tuple[int, list[str]]] = [] if layout.has_header else [(line0, first)]
            done = 0
            filled = 0
            blocks: list[tuple[np.ndarray, list[str] | None, list[str] | None, list[str] | None]] = []
            step = chunk_size or 8192
            exhausted = False
            while not exhausted:
                for item in rows:
                    pending.append(item)
                    if len(pending) >= step:
                        break
                else:
                    exhausted = True
                if not pending:
                    break
                X, labels, groups, ids = _text.parse_block(layout, pending, done, exhausted)
                if order is not None:
                    X = X[:, order]
                lines = [ln for ln, _ in pending]
                filled += fix_nonfinite(X, axis, nan_policy, source, cols, done, lines)
                done += len(pending)
                if chunk_size is None:
                    blocks.append((X.astype(np.float32), labels, groups, ids))
                    pending = []
                    continue
                y = names = None
                if labels is not None:
                    y, names = labels_to_indices(labels, source, class_names, done - len(pending), lines)
                pending = []
                yield Spectra(X.astype(np.float32), axis, y, names or (), None if groups is None else np.array(groups),
                              layout.axis_unit, source, ids=None if ids is None else np.array(ids))
            if chunk_size is not None:
                warn_interpolated(source, filled)
                if done == 0:
                    raise DataFormatError(f"{source}: no data rows after the header")
                return
    except UnicodeDecodeError as e:
        raise _text.decode_error(path, e) from None
    if done == 0:
        raise DataFormatError(f"{source}: no data rows after the header")
    warn_interpolated(source, filled)
    X = np.concatenate([b[0] for b in blocks]) if len(blocks) > 1 else blocks[0][0]
    y = None
    names: tuple[str, ...] = ()
    if layout.label_idx is not None:
        labels_all = [lab for b in blocks for lab in b[1]]  # type: ignore[union-attr]
        y, names = labels_to_indices(labels_all, source, class_names)
    groups_all = None if layout.group_idx is None else np.array([g for b in blocks for g in b[2]])  # type: ignore[union-attr]
    ids_all = None if layout.id_idx is None else np.array([i for b in blocks for i in b[3]])  # type: ignore[union-attr]
    yield Spectra(X, axis, y, names, groups_all, layout.axis_unit, source, ids=ids_all)


# --- NumPy ------------------------------------------------------------------------------------


def _axis_and_unit(axis: np.ndarray | None, w: int, unit: str | None, source: str) -> tuple[np.ndarray, str]:
    if axis is None:
        return np.arange(w, dtype=np.float64), unit or "index"
    axis = np.asarray(axis, dtype=np.float64).ravel()
    if axis.shape != (w,):
        raise AxisError(f"{source}: axis has {axis.size} values but X has {w} columns")
    if unit is None:
        unit = "index" if np.array_equal(axis, np.arange(w)) else "unknown"
    return axis, unit


def _finish_arrays(
    X: np.ndarray, axis: np.ndarray, source: str, nan_policy: str, row_offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sort the axis, check finiteness: the binary-format twin of the text path."""
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise DataFormatError(f"{source}: X must be 2-D (n_samples, n_points), got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise DataFormatError(f"{source}: X has dtype {X.dtype}; expected numbers")
    cols = Columns()
    order = sort_axis(axis, source, cols)
    if order is not None:
        X = X[:, order]
        axis = axis[order]
    X = np.array(X, dtype=np.float64 if X.dtype == np.float64 else np.float32)
    warn_interpolated(source, fix_nonfinite(X, axis, nan_policy, source, cols, row_offset))
    return X, axis


def _read_npz(path: Path, nan_policy: str, axis_unit: str | None) -> Spectra:
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            keys = list(d.files)
            if "X" not in keys:
                raise DataFormatError(f"{source}: no array 'X' in the .npz (keys: {', '.join(keys) or 'none'})")
            arrays = {k: d[k] for k in ("X", "y", "axis", "class_names", "groups", "train_idx", "test_idx") if k in keys}
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataFormatError(f"{source}: not a readable .npz file (truncated or corrupt: {e})") from None
    except ValueError as e:  # object arrays refused by allow_pickle=False
        raise DataFormatError(f"{source}: {e}; .npz files must hold plain numeric/string arrays") from None
    X = arrays["X"]
    if X.ndim != 2:
        raise DataFormatError(f"{source}: X must be 2-D (n_samples, n_points), got shape {X.shape}")
    axis, unit = _axis_and_unit(arrays.get("axis"), X.shape[1], axis_unit, source)
    X, axis = _finish_arrays(X, axis, source, nan_policy)
    y, names = labels_from_array(arrays.get("y"), arrays.get("class_names"), source)
    return Spectra(X, axis, y, names, arrays.get("groups"), unit, source,
                   arrays.get("train_idx"), arrays.get("test_idx"))


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as e:
        raise DataFormatError(f"{path}: not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path}: not a readable .npy file (truncated or corrupt: {e})") from None


def _read_npy(path: Path, nan_policy: str, axis_unit: str | None) -> Spectra:
    X = _load_npy(path, mmap=False)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise DataFormatError(f"{path}: .npy must hold a 2-D array (n_samples, n_points), got shape {X.shape}")
    axis, unit = _axis_and_unit(None, X.shape[1], axis_unit, str(path))
    X, axis = _finish_arrays(X, axis, str(path), nan_policy)
    return Spectra(X, axis, axis_unit=unit, source=str(path))


def _iter_npy(path: Path, chunk_size: int, nan_policy: str, axis_unit: str | None) -> Iterator[Spectra]:
    X = _load_npy(path, mmap=True)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise DataFormatError(f"{path}: .npy must hold a 2-D array (n_samples, n_points), got shape {X.shape}")
    axis, unit = _axis_and_unit(None, X.shape[1], axis_unit, str(path))
    for start in range(0, X.shape[0], chunk_size):
        block, _ = _finish_arrays(np.asarray(X[start:start + chunk_size]), axis, str(path), nan_policy, start)
        yield Spectra(block, axis, axis_unit=unit, source=str(path))


# --- HDF5 -------------------------------------------------------------------------------------


def _import(module: str, what: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataFormatError(f"reading {what} needs the '{module}' package: pip install {install}") from None


def _h5_strings(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def _open_hdf5(path: Path) -> Any:
    h5py = _import("h5py", "HDF5 files", "h5py (or scai[io])")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(f"{path}: not a readable HDF5 file ({e})") from None
    if "X" not in f:
        keys = ", ".join(sorted(f.keys())) or "none"
        f.close()
        raise DataFormatError(f"{path}: no dataset 'X' in the HDF5 file (datasets: {keys})")
    if len(f["X"].shape) != 2:
        shape = f["X"].shape
        f.close()
        raise DataFormatError(f"{path}: dataset 'X' must be 2-D (n_samples, n_points), got shape {shape}")
    return f


def _hdf5_meta(f: Any, path: Path, axis_unit: str | None) -> tuple[np.ndarray, str, np.ndarray | None, Any]:
    w = f["X"].shape[1]
    unit = axis_unit or (f.attrs.get("axis_unit") if "axis_unit" in f.attrs else None)
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8")
    axis, unit = _axis_and_unit(f["axis"][()] if "axis" in f else None, w, unit, str(path))
    order = sort_axis(axis, str(path), Columns())
    names = _h5_strings(f["class_names"][()]) if "class_names" in f else None
    return axis, unit, order, names


def _read_hdf5(path: Path, nan_policy: str, axis_unit: str | None) -> Spectra:
    source = str(path)
    with _open_hdf5(path) as f:
        axis, unit, order, names = _hdf5_meta(f, path, axis_unit)
        dset = f["X"]
        n, w = dset.shape
        X = np.empty((n, w), dtype=np.float32)
        filled = 0
        ax = axis if order is None else axis[order]
        for start in range(0, n, _HDF5_BLOCK_ROWS):
            block = np.asarray(dset[start:start + _HDF5_BLOCK_ROWS], dtype=np.float64)
            if order is not None:
                block = block[:, order]
            filled += fix_nonfinite(block, ax, nan_policy, source, Columns(), start)
            X[start:start + block.shape[0]] = block
        warn_interpolated(source, filled)
        raw_y = f["y"][()] if "y" in f else None
        extra = {k: f[k][()] for k in ("groups", "train_idx", "test_idx") if k in f}
    if "groups" in extra and extra["groups"].dtype.kind in "SO":
        extra["groups"] = np.array(_h5_strings(extra["groups"]))
    y, cls = labels_from_array(raw_y, names, source)
    return Spectra(X, ax, y, cls, extra.get("groups"), unit, source, extra.get("train_idx"), extra.get("test_idx"))


def _iter_hdf5(
    path: Path, chunk_size: int, nan_policy: str, axis_unit: str | None, class_names: Sequence[str] | None
) -> Iterator[Spectra]:
    source = str(path)
    with _open_hdf5(path) as f:
        axis, unit, order, names = _hdf5_meta(f, path, axis_unit)
        ax = axis if order is None else axis[order]
        dset = f["X"]
        n = dset.shape[0]
        # Labels are small next to X: map them once so every chunk shares one class order.
        y_all, all_names = labels_from_array(f["y"][()] if "y" in f else None, names, source)
        filled = 0
        for start in range(0, n, chunk_size):
            block = np.asarray(dset[start:start + chunk_size], dtype=np.float64)
            if order is not None:
                block = block[:, order]
            filled += fix_nonfinite(block, ax, nan_policy, source, Columns(), start)
            y, cls = (None, ())
            if y_all is not None:
                y, cls = y_all[start:start + chunk_size], all_names
            yield _remap(Spectra(block, ax, y, cls, axis_unit=unit, source=source), class_names)
        warn_interpolated(source, filled)


# --- JCAMP-DX ---------------------------------------------------------------------------------


def _jcamp_files(folder: Path) -> list[Path]:
    """The JCAMP-DX files of ``folder``; hidden ones (``.DS_Store``, ``._x.jdx``) are never spectra."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _JCAMP_SUFFIXES and not p.name.startswith(".")
    )


def _warn_skipped(root: Path, folders: Sequence[Path], used: Sequence[Path]) -> None:
    """Name every file in the JCAMP folders that is not read (nothing is dropped silently)."""
    keep = set(used)
    skipped = sorted(p for d in folders for p in d.iterdir() if p.is_file() and p not in keep)
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:8]) + (f", ... ({len(skipped)} files)" if len(skipped) > 8 else "")
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that are hidden or not JCAMP-DX ({'/'.join(_JCAMP_SUFFIXES)}): {shown}",
            UserWarning,
            stacklevel=4,
        )


def _read_jcamp(path: Path, nan_policy: str) -> Spectra:
    """One file (every block of a compound file, titles as ids) or a folder of files (paths as ids)."""
    source = str(path)
    if path.is_file():
        js = _jcamp.read_jcamp_file(path)
        X, axis = _finish_arrays(js.Y, js.x, source, nan_policy)
        return Spectra(X, axis, axis_unit=js.unit, source=source, ids=np.array(js.titles))
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and _jcamp_files(p))
    loose = _jcamp_files(path)
    if class_dirs and loose:
        raise DataFormatError(
            f"{source}: {loose[0].name} lies outside the class folders ({', '.join(p.name for p in class_dirs)}); "
            "put every file in a <class>/ folder"
        )
    files = [(p, d.name) for d in class_dirs for p in _jcamp_files(d)] or [(p, None) for p in loose]
    if not files:
        raise DataFormatError(f"{source}: no JCAMP-DX files ({'/'.join(_JCAMP_SUFFIXES)}) in the folder or its class folders")
    _warn_skipped(path, [path, *class_dirs], [p for p, _ in files])
    ref = _jcamp.read_jcamp_file(files[0][0])
    rows: list[np.ndarray] = []
    labels: list[str | None] = []
    ids: list[str] = []
    for p, cls in files:
        js = ref if p == files[0][0] else _jcamp.read_jcamp_file(p)
        span = max(abs(ref.x[-1] - ref.x[0]), 1.0)
        if js.x.size != ref.x.size or not np.allclose(js.x, ref.x, rtol=0, atol=1e-6 * span):
            raise AxisError(
                f"{source}: {p.relative_to(path)} has {js.x.size} points on {js.x.min():g}..{js.x.max():g}, but "
                f"{files[0][0].relative_to(path)} has {ref.x.size} on {ref.x.min():g}..{ref.x.max():g}; "
                "spectra in one folder must share one axis (resample them first)"
            )
        rel = str(p.relative_to(path))
        rows.extend(js.Y)
        labels.extend([cls] * js.Y.shape[0])
        ids.extend([rel] if js.Y.shape[0] == 1 else [f"{rel}: {t}" for t in js.titles])
    X, axis = _finish_arrays(np.stack(rows), ref.x, source, nan_policy)
    if files[0][1] is None:
        return Spectra(X, axis, axis_unit=ref.unit, source=source, ids=np.array(ids))
    yi, names = labels_to_indices([str(c) for c in labels], source)
    return Spectra(X, axis, yi, names, axis_unit=ref.unit, source=source, ids=np.array(ids))


# --- instrument vendors' formats ----------------------------------------------------------------


def _read_vendor(path: Path, fmt: str, nan_policy: str, axis_unit: str | None) -> Spectra:
    """SPC, WDF, OMNIC, OPUS through their reader packages (``_vendor``); the same checks as every format."""
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder; {fmt} files are read one at a time")
    v = _vendor.read_vendor(path, fmt)
    X, axis = _finish_arrays(v.X, v.axis, str(path), nan_policy)
    return Spectra(X, axis, axis_unit=axis_unit or v.unit, source=str(path), ids=np.array(v.ids))


# --- sktime/aeon .ts --------------------------------------------------------------------------


def _read_ts(path: Path, nan_policy: str) -> Spectra:
    source = str(path)
    try:
        from aeon.datasets import load_from_ts_file  # type: ignore[import-not-found]

        X, y = load_from_ts_file(str(path))
    except ImportError:
        try:
            from sktime.datasets import load_from_tsfile  # type: ignore[import-not-found]
        except ImportError:
            raise DataFormatError(
                f"{source}: reading .ts files needs aeon (pip install aeon) or sktime (pip install sktime); "
                "or export the data as .tsv/.csv"
            ) from None
        X, y = load_from_tsfile(str(path), return_data_type="numpy3d")
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != 1:
        raise DataFormatError(f"{source}: only univariate equal-length .ts files are supported, got shape {X.shape}")
    X = X[:, 0, :]
    axis = np.arange(X.shape[1], dtype=np.float64)
    X, axis = _finish_arrays(X, axis, source, nan_policy)
    yi, names = labels_to_indices([str(v) for v in y], source) if y is not None else (None, ())
    return Spectra(X, axis, yi, names, axis_unit="index", source=source)

