"""A sharded Parquet archive of spectra, and a writer of synthetic ones at any size.

The archive layout that :mod:`scai.distributed` reads (and that anyone can write with pyarrow):

* one row per spectrum, in files ``part-00000.parquet``, ``part-00001.parquet``, ... of at most
  ``shard_size`` rows each;
* column ``spectrum``: ``fixed_size_list<float32>[n_points]`` (the intensities; a plain
  ``list<float>`` is read too, its rows checked for length one by one);
* optional column ``id`` (string or integer): the sample id, written back with each prediction;
* optional column ``label`` (string): the class, when known (ignored by prediction);
* schema metadata ``scai.axis`` (JSON list of the ``n_points`` axis values) and
  ``scai.axis_unit`` (``"cm-1"``, ``"nm"``, ...); without ``scai.axis`` the axis is the point
  index, as for ``.npy`` files.

Why one list column rather than one column per wavenumber: Parquet keeps statistics and
metadata per column, so a thousand float columns make footers large and readers slow, while a
fixed-size list is one contiguous float buffer per row group that pyarrow hands to NumPy
without a copy (``reshape(n, n_points)``).

:func:`write_archive` streams :func:`~scai.datasets.synthetic_liquor` in chunks, so memory stays
bounded by about one chunk and one row group whatever ``n_spectra`` is;
``python -m scai.distributed.write_archive OUT N`` calls it.
pyarrow is needed (``pip install 'scai[distributed]'``) and imported only here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scai.errors import ConfigError, DataFormatError

__all__ = [
    "AXIS_KEY",
    "AXIS_UNIT_KEY",
    "ID_COLUMN",
    "LABEL_COLUMN",
    "SPECTRUM_COLUMN",
    "archive_schema",
    "write_archive",
]

SPECTRUM_COLUMN = "spectrum"
ID_COLUMN = "id"
LABEL_COLUMN = "label"
#: Schema metadata keys (bytes, as Parquet stores them).
AXIS_KEY = b"scai.axis"
AXIS_UNIT_KEY = b"scai.axis_unit"
_SHARD_NAME = "part-{:05d}.parquet"


def import_pyarrow() -> Any:
    """``pyarrow`` and ``pyarrow.parquet``, or an error saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError:
        raise ConfigError("Parquet archives need pyarrow: pip install 'scai[distributed]' (or pyarrow>=14)") from None
    return pa


def archive_schema(axis: np.ndarray, axis_unit: str, *, with_ids: bool = True, with_labels: bool = True) -> Any:
    """The Arrow schema of an archive shard for spectra on ``axis`` (metadata carries the axis)."""
    pa = import_pyarrow()
    fields = []
    if with_ids:
        fields.append(pa.field(ID_COLUMN, pa.string()))
    if with_labels:
        fields.append(pa.field(LABEL_COLUMN, pa.string()))
    fields.append(pa.field(SPECTRUM_COLUMN, pa.list_(pa.float32(), len(axis))))
    meta = {AXIS_KEY: json.dumps([float(v) for v in axis]).encode(), AXIS_UNIT_KEY: str(axis_unit).encode()}
    return pa.schema(fields, metadata=meta)


def spectra_table(X: np.ndarray, schema: Any, ids: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Any:
    """An Arrow table of spectra ``X`` (n, n_points) in ``schema`` (one zero-copy list column)."""
    pa = import_pyarrow()
    X = np.ascontiguousarray(X, dtype=np.float32)
    values = pa.array(X.reshape(-1), type=pa.float32())
    columns: dict[str, Any] = {}
    if ID_COLUMN in schema.names:
        columns[ID_COLUMN] = pa.array(ids, type=pa.string())
    if LABEL_COLUMN in schema.names:
        columns[LABEL_COLUMN] = pa.array(labels, type=pa.string())
    columns[SPECTRUM_COLUMN] = pa.FixedSizeListArray.from_arrays(values, X.shape[1])
    return pa.table(columns, schema=schema)


def write_archive(
    out_dir: str | Path,
    n_spectra: int,
    shard_size: int = 100_000,
    *,
    n_classes: int = 5,
    n_points: int = 1024,
    seed: int = 0,
    chunk_size: int = 8192,
    row_group_size: int = 16384,
    compression: str = "zstd",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``n_spectra`` synthetic liquor spectra as a sharded Parquet archive.

    Parameters
    ----------
    out_dir : str or Path
        Folder of the shards ``part-00000.parquet``, ... (created).
    n_spectra, shard_size : int
        Total spectra and spectra per shard (the last shard holds the rest).
    n_classes, n_points, seed
        Passed to :func:`~scai.datasets.synthetic_liquor`; the same seed gives the same archive.
    chunk_size : int
        Spectra generated at a time; memory holds about one chunk plus one row group.
    row_group_size : int
        Parquet row group size (the unit a reader can fetch alone).
    compression : str
        Parquet codec (``"zstd"``, ``"snappy"``, ``"none"``).
    overwrite : bool
        Replace shards already in ``out_dir``; by default a folder holding ``part-*.parquet`` is refused.

    Returns
    -------
    list of Path
        The shards, in order. Ids are ``"s<global row>"`` (zero-padded), labels the brand names.

    Notes
    -----
    Each shard is written to a temporary name and renamed when complete, so an interrupted
    run never leaves a truncated shard under a final name.
    """
    from scai.datasets.synthetic import synthetic_liquor

    for name, value in (("n_spectra", n_spectra), ("shard_size", shard_size), ("chunk_size", chunk_size),
                        ("row_group_size", row_group_size)):
        if not isinstance(value, (int, np.integer)) or int(value) < 1:
            raise ConfigError(f"write_archive: {name}={value!r} must be a positive integer")
    pa = import_pyarrow()
    pq = pa.parquet
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("part-*.parquet"))
    if existing and not overwrite:
        raise DataFormatError(f"{out}: already holds {len(existing)} shard(s) (part-*.parquet); pass overwrite=True "
                              "or choose an empty folder")
    for p in existing:
        p.unlink()
    n_spectra, shard_size = int(n_spectra), int(shard_size)
    width = len(str(n_spectra - 1))
    chunks = synthetic_liquor(n_spectra, n_classes=n_classes, n_points=n_points, seed=seed, chunk_size=int(chunk_size))
    paths: list[Path] = []
    writer: Any = None
    tmp: Path | None = None
    in_shard = 0
    row = 0
    pending: list[Any] = []  # tables not yet written: less than one row group
    held = 0
    schema = None
    try:
        for chunk in chunks:  # type: ignore[union-attr]
            if schema is None:
                schema = archive_schema(chunk.axis, chunk.axis_unit)
            labels = np.asarray(chunk.class_names, dtype=object)[chunk.y]
            start = 0
            while start < chunk.n_samples:
                if writer is None:
                    final = out / _SHARD_NAME.format(len(paths))
                    tmp = final.with_name(f".{final.name}.tmp")
                    writer = pq.ParquetWriter(tmp, schema, compression=compression)
                    paths.append(final)
                take = min(chunk.n_samples - start, shard_size - in_shard)
                ids = [f"s{r:0{width}d}" for r in range(row, row + take)]
                pending.append(spectra_table(chunk.X[start:start + take], schema, ids, labels[start:start + take].tolist()))
                held += take
                start += take
                row += take
                in_shard += take
                while held >= row_group_size or (held and in_shard == shard_size):
                    # Row groups of exactly row_group_size rows (the shard's last one shorter),
                    # whatever the chunk size: one write_table call makes at least one group.
                    table = pa.concat_tables(pending)
                    writer.write_table(table.slice(0, row_group_size), row_group_size=int(row_group_size))
                    rest = table.slice(row_group_size)
                    pending, held = ([rest] if rest.num_rows else []), rest.num_rows
                if in_shard == shard_size:
                    writer.close()
                    os.replace(tmp, paths[-1])  # type: ignore[arg-type]
                    writer, tmp, in_shard = None, None, 0
        if writer is not None:
            if held:
                writer.write_table(pa.concat_tables(pending), row_group_size=int(row_group_size))
            writer.close()
            os.replace(tmp, paths[-1])  # type: ignore[arg-type]
            writer, tmp = None, None
    finally:
        if writer is not None:
            writer.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return paths


def main(argv: Sequence[str] | None = None, prog: str = "python -m scai.distributed.write_archive") -> int:
    """The command line: ``python -m scai.distributed.write_archive OUT N [--shard-size S] ...``."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Write a sharded Parquet archive of synthetic liquor Raman spectra.")
    p.add_argument("out_dir", help="folder for part-00000.parquet, ...")
    p.add_argument("n_spectra", type=int, help="number of spectra, e.g. 1000000")
    p.add_argument("--shard-size", type=int, default=100_000, help="spectra per shard (default 100000)")
    p.add_argument("--classes", type=int, default=5, help="number of brands (default 5)")
    p.add_argument("--points", type=int, default=1024, help="points per spectrum (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace shards already in OUT")
    args = p.parse_args(argv)
    try:
        paths = write_archive(args.out_dir, args.n_spectra, args.shard_size, n_classes=args.classes,
                              n_points=args.points, seed=args.seed, overwrite=args.overwrite)
    except (ConfigError, DataFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n_spectra} spectra in {len(paths)} shard(s) to {args.out_dir}", file=sys.stderr)
    return 0

