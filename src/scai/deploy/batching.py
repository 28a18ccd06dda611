"""Micro-batching: gather concurrent requests for a few milliseconds, run one forward, scatter.

A convolutional network answers 64 spectra in little more time than one, so a server that runs
each request on its own wastes most of its compute under load. :class:`MicroBatcher` puts every
request on an :class:`asyncio.Queue`; one collector task takes the first waiting request, keeps
collecting until ``max_wait_s`` has passed or ``max_rows`` spectra are gathered, runs the batch in
a single worker thread (the event loop stays free to accept and parse requests; one thread means
the model is never run concurrently) and resolves each request's future with its own result.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from scai.errors import ConfigError, QueueFullError

__all__ = ["MicroBatcher", "BatcherStats", "QueueFullError"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatcherStats:
    """Counters for ``/v1/health`` and the benchmark."""

    batches: int = 0
    items: int = 0
    rows: int = 0
    largest_batch_rows: int = 0


class MicroBatcher(Generic[T, R]):
    """Collect items from concurrent coroutines and process them in batches in a worker thread.

    Parameters
    ----------
    process : callable
        ``process(items) -> results``, called in the worker thread with a list of items; returns
        one result per item, in order. A result that is an exception is raised in that item's
        caller only; an exception raised by ``process`` itself fails the whole batch.
    max_rows : int
        Stop collecting once the items hold this many rows (spectra).
    max_wait_s : float
        How long to wait for more items after the first one arrived.
    max_queue : int
        Items allowed to wait; beyond it :meth:`submit` raises :class:`QueueFullError`.
    rows : callable, optional
        Rows of one item (default 1).
    """

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_rows: int = 256,
        max_wait_s: float = 0.005,
        max_queue: int = 1024,
        rows: Callable[[T], int] | None = None,
    ) -> None:
        if max_rows < 1 or max_wait_s < 0 or max_queue < 1:
            raise ConfigError(
                f"MicroBatcher: max_rows={max_rows}, max_wait_s={max_wait_s}, max_queue={max_queue} are not allowed; "
                "use max_rows >= 1, max_wait_s >= 0 and max_queue >= 1"
            )
        self._process = process
        self.max_rows = int(max_rows)
        self.max_wait_s = float(max_wait_s)
        self._rows = rows or (lambda _item: 1)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue(maxsize=int(max_queue))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scai-model")
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    async def start(self) -> None:
        """Start the collector task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="scai-micro-batcher")

    async def stop(self) -> None:
        """Stop collecting, fail waiting requests, and shut the worker thread down."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: T, timeout: float | None = None) -> R:
        """Queue ``item`` and wait for its result (``asyncio.TimeoutError`` after ``timeout`` s)."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut))
        except asyncio.QueueFull:
            raise QueueFullError(f"{self._queue.maxsize} requests are already waiting; retry later") from None
        return await asyncio.wait_for(fut, timeout)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = self._rows(batch[0][0])
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_rows:
                remaining = deadline - loop.time()
                try:
                    nxt = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                batch.append(nxt)
                rows += self._rows(nxt[0])
            live = [(item, fut) for item, fut in batch if not fut.done()]  # timed-out callers are gone
            if not live:
                continue
            try:
                outs: Sequence[Any] = await loop.run_in_executor(self._executor, self._process, [i for i, _ in live])
                if len(outs) != len(live):
                    raise RuntimeError(f"batch process returned {len(outs)} results for {len(live)} items")
            except Exception as exc:  # noqa: BLE001 - every caller gets the failure
                outs = [exc] * len(live)
            self.stats.batches += 1
            self.stats.items += len(live)
            live_rows = sum(self._rows(i) for i, _ in live)
            self.stats.rows += live_rows
            self.stats.largest_batch_rows = max(self.stats.largest_batch_rows, live_rows)
            for (_, fut), out in zip(live, outs):
                if fut.done():
                    continue
                if isinstance(out, BaseException):
                    fut.set_exception(out)
                else:
                    fut.set_result(out)
