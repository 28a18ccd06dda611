"""Input shards of a distributed prediction: which files, which rows, read as Arrow blocks.

A run is planned once, on the driver, from cheap metadata (Parquet footers, ``.npy`` headers,
the first rows of other files), into :class:`Piece` s: row ranges of one file that are read,
predicted and written as one output shard. Pieces are the unit of resumption: a finished piece
is never read again.

* Parquet (the archive layout of :mod:`scai.datasets.archive`): pieces of whole row groups, read
  with pyarrow, the ``spectrum`` list column handed on without a copy.
* ``.npy``: pieces of rows of the memory-mapped array.
* Everything else scai reads (HDF5, CSV and the other table formats): one piece per file,
  streamed in chunks by :func:`scai.data.iter_chunks`, so the CSV conventions (decimal commas,
  id and ignored columns, sniffed delimiters) and the HDF5 layout are exactly those of
  ``scai predict``.

Every block read carries the row's position in its file (``_row``), so each prediction names
its source row, and NaN, inf or a spectrum of the wrong length is refused with the file and row.
Nothing here imports Ray: the Ray datasource and the in-process engine share these readers.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scai.datasets.archive import AXIS_KEY, ID_COLUMN, SPECTRUM_COLUMN, import_pyarrow
from scai.errors import AxisError, DataFormatError, DataValueError

__all__ = ["BLOCK_COLUMNS", "END", "PIECE", "ROW", "SOURCE", "Piece", "Plan", "Source", "plan_inputs", "read_piece"]

PARQUET_SUFFIXES = (".parquet", ".pq")
#: Columns every block carries besides ``spectrum`` and ``id``.
SOURCE, ROW, PIECE, END = "_source", "_row", "_piece", "_end"
BLOCK_COLUMNS = (SOURCE, ROW, PIECE, END, ID_COLUMN, SPECTRUM_COLUMN)


@dataclass(frozen=True)
class Source:
    """One input file.

    Attributes
    ----------
    index : int
        Position in the plan (what blocks carry in ``_source``).
    path : str
        Absolute path (on a cluster, every node must see it at this path).
    kind : str
        ``"parquet"``, ``"npy"`` or ``"chunks"`` (read by :func:`scai.data.iter_chunks`).
    n_rows : int or None
        Rows in the file; ``None`` when only reading it tells (CSV and other tables).
    width : int
        Points per spectrum.
    axis : tuple of float, optional
        The spectral axis; ``None`` means the point index (the model then needs the same width).
    key : str
        Stem of its output shards: file stem plus 8 hex digits of the path's SHA-256, so two
        ``part-00000.parquet`` in different folders never share output names.
    """

    index: int
    path: str
    kind: str
    n_rows: int | None
    width: int
    axis: tuple[float, ...] | None
    key: str


@dataclass(frozen=True)
class Piece:
    """Rows ``start:stop`` of one source, predicted and written as one output shard.

    ``stop`` is ``None`` when the row count is only known once the file is read (one piece
    covers the whole file then). ``row_groups`` are the Parquet row groups holding the rows.
    """

    index: int
    source: int
    start: int
    stop: int | None
    row_groups: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int | None:
        return None if self.stop is None else self.stop - self.start


@dataclass(frozen=True)
class Plan:
    """Every source and piece of a run."""

    sources: tuple[Source, ...]
    pieces: tuple[Piece, ...]
    read_options: dict[str, Any] = field(default_factory=dict)

    def output_name(self, piece: Piece) -> str:
        """File name of a piece's output shard."""
        return f"{self.sources[piece.source].key}.{piece.start:012d}.parquet"

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready list of the pieces, with each file's size and modification time (the run
        signature includes it, so a file rewritten between a run and its resumption is noticed)."""
        stats = {src.index: os.stat(src.path) for src in self.sources}
        return [{"source": self.sources[p.source].path, "bytes": stats[p.source].st_size,
                 "mtime_ns": stats[p.source].st_mtime_ns, "start": p.start, "stop": p.stop,
                 "output": self.output_name(p)} for p in self.pieces]


# --------------------------------------------------------------------------- planning


def expand_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files named by paths and glob patterns (``archive/*.parquet``), sorted, each once."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise DataFormatError("no inputs given; pass file paths or glob patterns such as 'archive/*.parquet'")
    found: list[Path] = []
    for item in items:
        text = str(item)
        p = Path(text)
        if p.is_file():
            found.append(p)
            continue
        if p.is_dir():
            raise DataFormatError(f"{text}: is a folder; name its files, e.g. '{p / '*.parquet'}'")
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
        if not matches:
            raise DataFormatError(f"{text}: no such file, and no file matches it as a pattern")
        found.extend(matches)
    seen: dict[str, Path] = {}
    for f in found:
        seen.setdefault(str(f.resolve()), f)
    return [Path(k) for k in sorted(seen)]


def _key(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"{path.stem}-{digest}"


def _parquet_axis(meta: dict[bytes, bytes] | None, width: int | None, source: str) -> tuple[tuple[float, ...] | None, int | None]:
    if not meta or AXIS_KEY not in meta:
        return None, width
    try:
        axis = json.loads(meta[AXIS_KEY])
        values = np.asarray(axis, dtype=np.float64)
    except (ValueError, TypeError):
        raise AxisError(f"{source}: schema metadata {AXIS_KEY.decode()} is not a JSON list of numbers") from None
    if values.ndim != 1 or values.size < 1:
        raise AxisError(f"{source}: schema metadata {AXIS_KEY.decode()} must be a non-empty list of numbers")
    if width is not None and values.size != width:
        raise AxisError(f"{source}: schema metadata {AXIS_KEY.decode()} has {values.size} values but "
                        f"column '{SPECTRUM_COLUMN}' holds {width} points per spectrum")
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise AxisError(f"{source}: schema metadata {AXIS_KEY.decode()} must be finite and strictly increasing")
    return tuple(float(v) for v in values), int(values.size)


def _plan_parquet(path: Path, index: int, piece_rows: int, first_piece: int) -> tuple[Source, list[Piece]]:
    pa = import_pyarrow()
    source = str(path)
    try:
        pf = pa.parquet.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataFormatError(f"{source}: not a readable Parquet file ({exc})") from None
    schema = pf.schema_arrow
    if SPECTRUM_COLUMN not in schema.names:
        raise DataFormatError(f"{source}: no column '{SPECTRUM_COLUMN}' (columns: {', '.join(schema.names) or 'none'}); "
                              f"scai archives hold each spectrum as one list column '{SPECTRUM_COLUMN}' (docs/distributed.md)")
    t = schema.field(SPECTRUM_COLUMN).type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise DataFormatError(f"{source}: column '{SPECTRUM_COLUMN}' has type {t}; expected a list of numbers "
                              "(fixed_size_list<float32>[n_points])")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise DataFormatError(f"{source}: column '{SPECTRUM_COLUMN}' holds {t.value_type}; expected numbers")
    if ID_COLUMN in schema.names:
        it = schema.field(ID_COLUMN).type
        if not (pa.types.is_string(it) or pa.types.is_large_string(it) or pa.types.is_integer(it)):
            raise DataFormatError(f"{source}: column '{ID_COLUMN}' has type {it}; expected strings or integers")
    width = t.list_size if pa.types.is_fixed_size_list(t) else None
    axis, width = _parquet_axis(schema.metadata, width, source)
    n_rows = int(pf.metadata.num_rows)
    if width is None:  # variable-length lists and no axis: the first row sets the width
        if n_rows == 0:
            width = 0
        else:
            first = pf.read_row_group(0, columns=[SPECTRUM_COLUMN]).column(0)
            width = len(first[0].as_py() or [])
    src = Source(index, str(path), "parquet", n_rows, int(width), axis, _key(path))
    pieces: list[Piece] = []
    groups: list[int] = []
    start = row = 0
    for g in range(pf.metadata.num_row_groups):
        groups.append(g)
        row += pf.metadata.row_group(g).num_rows
        if row - start >= piece_rows or g == pf.metadata.num_row_groups - 1:
            pieces.append(Piece(first_piece + len(pieces), index, start, row, tuple(groups)))
            start, groups = row, []
    return src, pieces


def _plan_npy(path: Path, index: int, piece_rows: int, first_piece: int) -> tuple[Source, list[Piece]]:
    X = _load_npy(path)
    n, w = X.shape
    src = Source(index, str(path), "npy", int(n), int(w), None, _key(path))
    pieces = [Piece(first_piece + k, index, s, min(s + piece_rows, n)) for k, s in enumerate(range(0, n, piece_rows))]
    return src, pieces


def _load_npy(path: Path) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy array ({exc})") from None
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise DataFormatError(f"{path}: .npy must hold a 2-D array (n_samples, n_points), got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise DataFormatError(f"{path}: .npy holds dtype {X.dtype}; expected numbers")
    return X


def _plan_chunks(path: Path, index: int, first_piece: int, read_options: dict[str, Any]) -> tuple[Source, list[Piece]]:
    from scai.data import iter_chunks

    first = next(iter(iter_chunks(path, chunk_size=1, **read_options)))
    axis = None if first.axis_unit == "index" else tuple(float(v) for v in first.axis)
    src = Source(index, str(path), "chunks", None, int(first.X.shape[1]), axis, _key(path))
    return src, [Piece(first_piece, index, 0, None)]


def plan_inputs(
    inputs: str | Path | Sequence[str | Path], *, piece_rows: int = 65536, read_options: dict[str, Any] | None = None
) -> Plan:
    """Plan a run over ``inputs`` (paths or glob patterns): sources and their pieces.

    Parameters
    ----------
    piece_rows : int
        Rows per piece (Parquet pieces are whole row groups, so at least one group).
    read_options : dict, optional
        Keywords of :func:`scai.data.iter_chunks` for the files it reads (``label_column``,
        ``id_column``, ``ignore_columns``, ``delimiter``, ...); refused for Parquet and ``.npy``.
    """
    if not isinstance(piece_rows, (int, np.integer)) or piece_rows < 1:
        raise DataValueError(f"piece_rows={piece_rows!r} must be a positive integer")
    options = {k: v for k, v in (read_options or {}).items() if v not in (None, (), [])}
    sources: list[Source] = []
    pieces: list[Piece] = []
    for path in expand_inputs(inputs):
        suffix = path.suffix.lower()
        if suffix in PARQUET_SUFFIXES or suffix == ".npy":
            if options:
                raise DataFormatError(f"{path}: {', '.join(sorted(options))} apply to tables read by scai.data "
                                      f"(CSV, xlsx, ...); a {suffix} file has no such columns")
            plan = _plan_parquet if suffix in PARQUET_SUFFIXES else _plan_npy
            src, ps = plan(path, len(sources), int(piece_rows), len(pieces))
        else:
            src, ps = _plan_chunks(path, len(sources), len(pieces), options)
        sources.append(src)
        pieces.extend(ps)
    widths = {s.width for s in sources if s.axis is None}
    if len(widths) > 1:
        raise AxisError("inputs without an axis hold spectra of different lengths: "
                        + ", ".join(f"{s.path} ({s.width})" for s in sources if s.axis is None))
    return Plan(tuple(sources), tuple(pieces), options)


# --------------------------------------------------------------------------- reading


def _check_finite(X: np.ndarray, source: str, rows: np.ndarray) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataValueError(f"{source}: row {int(rows[i])}: spectrum holds {X[i, j]} at point {int(j)}; "
                             "expected finite numbers")


def _block(pa: Any, piece: Piece, rows: np.ndarray, X: np.ndarray, ids: Any, last: bool) -> Any:
    n, w = X.shape
    end = np.zeros(n, dtype=bool)
    if last and n:
        end[-1] = True
    values = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1), type=pa.float32())
    id_array = pa.nulls(n, pa.string()) if ids is None else ids
    return pa.table({
        SOURCE: pa.array(np.full(n, piece.source, dtype=np.int32)),
        ROW: pa.array(rows.astype(np.int64)),
        PIECE: pa.array(np.full(n, piece.index, dtype=np.int32)),
        END: pa.array(end),
        ID_COLUMN: id_array,
        SPECTRUM_COLUMN: pa.FixedSizeListArray.from_arrays(values, w),
    })


def _parquet_tables(pa: Any, pf: Any, piece: Piece, columns: list[str], block_rows: int) -> Iterator[Any]:
    """The piece's row groups re-cut into tables of exactly ``block_rows`` rows (the last one shorter),
    so that blocks, and the batches made of them, start at the same rows whatever the row groups."""
    pending: list[Any] = []
    held = 0
    for g in piece.row_groups:
        pending.append(pf.read_row_group(g, columns=columns))
        held += pending[-1].num_rows
        while held >= block_rows:
            table = pa.concat_tables(pending)
            yield table.slice(0, block_rows)
            rest = table.slice(block_rows)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def _parquet_blocks(pa: Any, src: Source, piece: Piece, block_rows: int) -> Iterator[Any]:
    pf = pa.parquet.ParquetFile(src.path)
    columns = [SPECTRUM_COLUMN] + ([ID_COLUMN] if ID_COLUMN in pf.schema_arrow.names else [])
    row = piece.start
    stop = int(piece.stop if piece.stop is not None else src.n_rows or 0)
    for part in _parquet_tables(pa, pf, piece, columns, block_rows):
        n = part.num_rows
        rows = np.arange(row, row + n)
        col = part.column(SPECTRUM_COLUMN).combine_chunks()
        if col.null_count:
            i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataValueError(f"{src.path}: row {int(rows[i])}: '{SPECTRUM_COLUMN}' is null; expected {src.width} numbers")
        if not pa.types.is_fixed_size_list(col.type):
            lengths = col.value_lengths().to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero(lengths != src.width)
            if wrong.size:
                i = int(wrong[0])
                raise DataValueError(f"{src.path}: row {int(rows[i])}: spectrum has {int(lengths[i])} points; "
                                     f"expected {src.width} (as the rest of the file)")
        flat = col.flatten()
        if flat.null_count:
            i = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]) // src.width
            raise DataValueError(f"{src.path}: row {int(rows[i])}: spectrum holds a null value; expected {src.width} numbers")
        X = flat.to_numpy(zero_copy_only=False).reshape(n, src.width)
        _check_finite(X, src.path, rows)
        ids = part.column(ID_COLUMN).combine_chunks().cast(pa.string()) if ID_COLUMN in columns else None
        row += n
        yield _block(pa, piece, rows, X, ids, row == stop)


def _npy_blocks(pa: Any, src: Source, piece: Piece, block_rows: int) -> Iterator[Any]:
    X_all = _load_npy(Path(src.path))
    stop = int(piece.stop if piece.stop is not None else X_all.shape[0])
    for start in range(piece.start, stop, block_rows):
        end = min(start + block_rows, stop)
        X = np.asarray(X_all[start:end], dtype=np.float32)
        rows = np.arange(start, end)
        _check_finite(X, src.path, rows)
        yield _block(pa, piece, rows, X, None, end == stop)


def _chunk_blocks(pa: Any, src: Source, piece: Piece, block_rows: int, options: dict[str, Any]) -> Iterator[Any]:
    from scai.data import iter_chunks

    row = 0
    pending: Any = None
    for chunk in iter_chunks(src.path, chunk_size=block_rows, **options):
        if chunk.X.shape[1] != src.width or (src.axis is not None and not np.allclose(chunk.axis, src.axis)):
            raise AxisError(f"{src.path}: rows from {row} have {chunk.X.shape[1]} points on a different axis than the first rows")
        rows = np.arange(row, row + chunk.n_samples)
        _check_finite(chunk.X, src.path, rows)
        ids = None if chunk.ids is None else pa.array([str(v) for v in chunk.ids], type=pa.string())
        if pending is not None:  # one block behind, so the last block of the file is known
            yield _block(pa, piece, *pending, False)
        pending = (rows, chunk.X, ids)
        row += chunk.n_samples
    if pending is not None:
        yield _block(pa, piece, *pending, True)


def read_piece(plan: Plan, piece: Piece, block_rows: int = 4096) -> Iterator[Any]:
    """Arrow tables of at most ``block_rows`` rows covering ``piece``, in row order.

    Columns: ``_source`` (int32), ``_row`` (int64, the row's position in its file), ``_piece``
    (int32), ``_end`` (bool, true on the piece's last row), ``id`` (string, null without ids)
    and ``spectrum`` (``fixed_size_list<float32>``).

    Raises
    ------
    DataValueError
        For NaN/inf, null or wrong-length spectra, naming the file and the row.
    """
    pa = import_pyarrow()
    src = plan.sources[piece.source]
    block_rows = max(int(block_rows), 1)
    if src.kind == "parquet":
        yield from _parquet_blocks(pa, src, piece, block_rows)
    elif src.kind == "npy":
        yield from _npy_blocks(pa, src, piece, block_rows)
    else:
        yield from _chunk_blocks(pa, src, piece, block_rows, plan.read_options)


def estimated_bytes(plan: Plan, pieces: Sequence[Piece]) -> int:
    """Rough in-memory size of ``pieces`` (float32 spectra), for Ray's planning."""
    total = 0
    for p in pieces:
        src = plan.sources[p.source]
        n = p.n_rows if p.n_rows is not None else 10_000
        total += int(n) * max(src.width, 1) * 4
    return int(total)
