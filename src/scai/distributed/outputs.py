"""Output shards of a distributed prediction, written exactly once and resumable.

The driver is the only writer. Result batches stream back from the workers; the
:class:`Collector` files each row under its piece, drops a row it already holds (a batch that
Ray re-ran after a worker died), and when a piece holds every one of its rows it writes the
piece's shard to a temporary name and renames it into place. The rename is the commit: a shard
under its final name is complete, and a rerun skips it. A run that dies (driver or workers)
loses only the pieces still open, which the rerun predicts again, so every input row ends up
in exactly one shard once the run completes.

``OUT/_run.json`` holds what the shards depend on (model weights, policy, budget, batch size,
the pieces); a rerun with other settings into the same folder is refused rather than mixed.
``OUT/_manifest.json`` is written last and lists every shard with its row count and MACs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scai.datasets.archive import import_pyarrow
from scai.distributed.shards import END, PIECE, Piece, Plan
from scai.distributed.worker import PID, PRIVATE, RSS, output_columns, result_types
from scai.errors import ConfigError, DataValueError

__all__ = ["MANIFEST_FILE", "RUN_FILE", "Collector", "pending_pieces", "prepare_out_dir", "write_manifest"]

RUN_FILE = "_run.json"
MANIFEST_FILE = "_manifest.json"


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepare_out_dir(out_dir: Path, plan: Plan, settings: dict[str, Any]) -> list[Piece]:
    """Create or resume ``out_dir``; return the pieces still to predict.

    Raises
    ------
    ConfigError
        When ``out_dir`` holds shards of a run with other settings or other inputs.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {"settings": settings, "pieces": plan.describe()}
    run_file = out_dir / RUN_FILE
    if run_file.is_file():
        try:
            before = json.loads(run_file.read_text())
        except ValueError:
            raise ConfigError(f"{run_file}: not readable JSON; remove {out_dir} or choose another output folder") from None
        if before != run:
            diff = sorted(k for k in set(before.get("settings", {})) | set(settings)
                          if before.get("settings", {}).get(k) != settings.get(k))
            what = f"settings {', '.join(diff)}" if diff else "inputs (files or their row ranges)"
            raise ConfigError(f"{out_dir}: holds predictions of another run (different {what}); resume with the same "
                              "settings and inputs, or choose another output folder")
    else:
        leftovers = sorted(p.name for p in out_dir.glob("*.parquet"))
        if leftovers:
            raise ConfigError(f"{out_dir}: holds Parquet files but no {RUN_FILE} ({leftovers[0]}, ...); "
                              "choose an empty or new output folder")
        _atomic_bytes(run_file, json.dumps(run, indent=1).encode())
    for tmp in out_dir.glob(".*.tmp"):  # a run killed while writing a shard
        with contextlib.suppress(OSError):
            tmp.unlink()
    return pending_pieces(out_dir, plan)


def pending_pieces(out_dir: Path, plan: Plan) -> list[Piece]:
    """The pieces of ``plan`` whose shard is not in ``out_dir`` yet (written shards are complete:
    each is written to a temporary name and renamed)."""
    return [p for p in plan.pieces if not (out_dir / plan.output_name(p)).is_file()]


@dataclass
class _Open:
    """Rows received so far for one piece."""

    tables: list[Any] = field(default_factory=list)
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    end: int | None = None  # last row, once the row flagged _end has arrived


class Collector:
    """Assemble result batches into complete pieces and write each piece's shard once
    (``with_sets``: the shards have a ``prediction_set`` column)."""

    def __init__(self, plan: Plan, pieces: list[Piece], out_dir: Path, with_sets: bool = False) -> None:
        self.pa = import_pyarrow()
        self.with_sets = with_sets
        self.plan = plan
        self.out_dir = out_dir
        self.todo = {p.index: p for p in pieces}
        self.open: dict[int, _Open] = {}
        self.rows_received = 0
        self.duplicates = 0
        self.pieces_written = 0
        self.worker_rss_kib: dict[int, int] = {}
        self.worker_private_kib: dict[int, int] = {}

    def _write(self, piece: Piece, state: _Open) -> None:
        pa = self.pa
        table = pa.concat_tables(state.tables) if state.tables else None
        if table is None:
            table = pa.table({c: pa.array([], type=t) for c, t in result_types(pa, self.with_sets).items()})
        table = table.sort_by("row").select(list(output_columns(self.with_sets)))
        final = self.out_dir / self.plan.output_name(piece)
        tmp = final.with_name(f".{final.name}.tmp")
        pa.parquet.write_table(table, tmp)
        os.replace(tmp, final)
        self.pieces_written += 1

    def write_empty(self, piece: Piece) -> None:
        """A piece of no rows (an empty file) is complete at once."""
        self._write(piece, _Open())
        self.todo.pop(piece.index, None)

    def add(self, table: Any) -> int:
        """File a result batch; write the pieces it completes. Returns the rows it added."""
        pa = self.pa
        if table.num_rows == 0:
            return 0
        stats = np.c_[table.column(PID).to_numpy(), table.column(RSS).to_numpy(), table.column(PRIVATE).to_numpy()]
        for pid, rss, private in np.unique(stats, axis=0):
            self.worker_rss_kib[int(pid)] = max(self.worker_rss_kib.get(int(pid), 0), int(rss))
            self.worker_private_kib[int(pid)] = max(self.worker_private_kib.get(int(pid), 0), int(private))
        pieces = table.column(PIECE).to_numpy()
        added = 0
        for k in np.unique(pieces):
            k = int(k)
            part = table.filter(pa.array(pieces == k)) if len(np.unique(pieces)) > 1 else table
            piece = self.todo.get(k)
            if piece is None:  # already written: every row of it is a repeat
                self.duplicates += part.num_rows
                continue
            state = self.open.setdefault(k, _Open())
            rel = part.column("row").to_numpy() - piece.start
            need = int(rel.max()) + 1
            if state.seen.size < need:
                state.seen = np.concatenate([state.seen, np.zeros(max(need, 2 * state.seen.size) - state.seen.size, bool)])
            fresh = ~state.seen[rel]
            _, first = np.unique(rel, return_index=True)  # repeats inside one batch, too
            once = np.zeros(rel.size, dtype=bool)
            once[first] = True
            keep = fresh & once
            self.duplicates += int(rel.size - keep.sum())
            if not keep.all():
                part = part.filter(pa.array(keep))
                rel = rel[keep]
            state.seen[rel] = True
            ends = part.column(END).to_numpy(zero_copy_only=False)
            if ends.any():
                state.end = int(rel[ends][0])
            if part.num_rows:
                state.tables.append(part)
            added += part.num_rows
            n = piece.n_rows if piece.n_rows is not None else (None if state.end is None else state.end + 1)
            if n is not None and int(state.seen[:n].sum()) == n and state.seen.size >= n:
                if int(state.seen.sum()) != n:
                    raise DataValueError(f"{self.plan.sources[piece.source].path}: rows beyond the piece's last row "
                                         f"{piece.start + n - 1} were returned; the file changed while it was read?")
                self._write(piece, state)
                del self.open[k]
                del self.todo[k]
        self.rows_received += added
        return added

    def check_complete(self) -> None:
        """Every planned piece must have been written; name what is missing otherwise."""
        if not self.todo:
            return
        lines = []
        for k, piece in sorted(self.todo.items())[:5]:
            state = self.open.get(k)
            got = int(state.seen.sum()) if state is not None else 0
            lines.append(f"{self.plan.sources[piece.source].path} rows {piece.start}..{piece.stop if piece.stop is not None else 'end'}"
                         f" ({got} received)")
        raise DataValueError(f"{len(self.todo)} piece(s) did not receive all their rows: {'; '.join(lines)}; "
                             "rerun the same command to resume")


def write_manifest(out_dir: Path, plan: Plan, extra: dict[str, Any]) -> dict[str, Any]:
    """Read every shard's footer and MACs back; check the row ranges; write ``_manifest.json``.

    Raises
    ------
    DataValueError
        When a shard's rows are not exactly its piece's rows (lost or doubled rows).
    """
    pa = import_pyarrow()
    shards = []
    total_rows = 0
    total_macs = 0.0
    for piece in plan.pieces:
        path = out_dir / plan.output_name(piece)
        table = pa.parquet.read_table(path, columns=["row", "macs"])
        rows = table.column("row").to_numpy()
        n = piece.n_rows if piece.n_rows is not None else rows.size
        if rows.size != n or not np.array_equal(rows, np.arange(piece.start, piece.start + n)):
            raise DataValueError(f"{path}: holds {rows.size} rows, not exactly rows {piece.start}..{piece.start + n - 1} "
                                 f"of {plan.sources[piece.source].path}")
        macs = float(np.sum(table.column("macs").to_numpy(), dtype=np.float64))
        shards.append({"output": path.name, "source": plan.sources[piece.source].path, "start": piece.start,
                       "rows": int(n), "macs_sum": macs})
        total_rows += int(n)
        total_macs += macs
    manifest = {"complete": True, "rows": total_rows, "mean_macs": total_macs / max(total_rows, 1),
                "shards": shards, **extra}
    _atomic_bytes(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
    return manifest
