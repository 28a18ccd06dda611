"""The Ray Data datasource of a planned run: one read task per piece (imports Ray).

Ray's own ``read_parquet`` and ``read_numpy`` name a row only by its file and a hash, not its
position, and ``read_numpy`` loads a whole file into one block; a prediction must name its
source row and a resumed run must know which rows a shard holds. So scai plugs its readers
(:func:`scai.distributed.shards.read_piece`: pyarrow row groups, memory-mapped ``.npy``,
:func:`scai.data.iter_chunks`) into Ray's reading layer as a :class:`ray.data.Datasource`. Ray
then schedules, streams and backpressures the reads as it does its own, on any node.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from scai.distributed.shards import Piece, Plan, estimated_bytes, read_piece

__all__ = ["SpectraDatasource"]


def _read(plan: Plan, piece: Piece, block_rows: int) -> Iterator[Any]:
    yield from read_piece(plan, piece, block_rows)


class SpectraDatasource(Datasource):
    """Read the ``pieces`` of ``plan`` as blocks of at most ``block_rows`` rows."""

    def __init__(self, plan: Plan, pieces: Sequence[Piece], block_rows: int = 4096) -> None:
        super().__init__()
        self.plan = plan
        self.pieces = list(pieces)
        self.block_rows = int(block_rows)

    def get_name(self) -> str:
        return "ScaiSpectra"

    def estimate_inmemory_data_size(self) -> int | None:
        return estimated_bytes(self.plan, self.pieces)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        # One task per piece whatever ``parallelism`` asks: pieces are the unit of resumption.
        tasks = []
        for piece in self.pieces:
            meta = BlockMetadata(num_rows=piece.n_rows, size_bytes=estimated_bytes(self.plan, [piece]),
                                 exec_stats=None, input_files=(self.plan.sources[piece.source].path,))
            tasks.append(ReadTask(functools.partial(_read, self.plan, piece, self.block_rows), meta))
        return tasks
