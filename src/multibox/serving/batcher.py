"""Dynamic batching: concurrent requests are gathered into one forward pass.

A request puts (item, future) on an asyncio queue and awaits its future. One gathering task takes the
first waiting item, then more until ``max_batch`` items or ``max_wait_ms`` have passed, and hands the
batch to ``run`` in a single worker thread: the event loop keeps accepting and decoding requests while
the network runs, and forward passes never overlap (each already uses every torch thread). Each
request's future gets its own result; when a batch fails, its items are run one by one so that one bad
item only fails its own request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pending:
    """One request waiting for its batch: its item, its future, when it arrived (time.perf_counter)."""

    item: Any
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Gathers items for ``run(items) -> results`` (one result per item, in order).

    max_batch: most items in one call; max_wait_ms: how long the first item of a batch waits for others
    (0 with max_batch 1: one at a time).
    """

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int = 8, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch {max_batch} must be >= 1 and max_wait_ms {max_wait_ms} >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="multibox-forward")
        self.task: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # every batch run so far (the tests and /v1/health read it)

    def start(self) -> None:
        """Start gathering (call from the running event loop)."""
        self.task = asyncio.get_running_loop().create_task(self.gather_forever())

    async def stop(self) -> None:
        """Stop gathering, fail what still waits, let the worker thread finish its batch."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        while not self.queue.empty():
            pending = self.queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))
        self.executor.shutdown(wait=True)

    async def submit(self, item: Any) -> tuple[Any, float, int]:
        """(result, seconds spent waiting for the batch to start, batch size) of one item."""
        pending = Pending(item, asyncio.get_running_loop().create_future())
        await self.queue.put(pending)
        return await pending.future

    async def next_batch(self) -> list[Pending]:
        """The first waiting item and whatever joins it within max_wait, at most max_batch."""
        batch = [await self.queue.get()]
        deadline = batch[0].arrived + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def gather_forever(self) -> None:
        """Batch after batch until cancelled; each request's future gets its result or its error."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self.next_batch() if not p.future.done()]  # a gone client's is cancelled
            if not batch:
                continue
            started = time.perf_counter()
            self.batch_sizes.append(len(batch))
            outcomes = await loop.run_in_executor(self.executor, self.run_each_its_own, [p.item for p in batch])
            for pending, (ok, value) in zip(batch, outcomes):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result((value, started - pending.arrived, len(batch)))
                else:
                    pending.future.set_exception(value)

    def run_each_its_own(self, items: list[Any]) -> list[tuple[bool, Any]]:
        """(ok, result or exception) per item: the whole batch at once, or one by one if that fails."""
        try:
            return [(True, r) for r in self.run(items)]
        except Exception as exc:  # noqa: BLE001 - the request's own error, handed to its future
            if len(items) == 1:
                return [(False, exc)]
            return [self.run_each_its_own([item])[0] for item in items]
