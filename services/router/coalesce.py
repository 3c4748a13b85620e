"""Grouping a stream's items into batches of whatever is ready, without ever waiting.

A reader task pulls the source and queues its items; the consumer takes the first
item it waits for plus every item already queued. Items the source yields back to
back (one network read, a mock at full speed) thus end up in one batch, while an item
the source had to wait for is never held back to wait for more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Generic, TypeVar

T = TypeVar("T")


class _Finished:
    """Queued by the reader when the source is exhausted or failed."""


_FINISHED = _Finished()


class _Reader(Generic[T]):
    """Reads `source` into a queue in its own task."""

    def __init__(self, source: AsyncGenerator[T, None]) -> None:
        self.queue: asyncio.Queue[T | _Finished] = asyncio.Queue()
        self._source = source
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async with aclosing(self._source) as items:
                async for item in items:
                    self.queue.put_nowait(item)
        finally:
            self.queue.put_nowait(_FINISHED)


async def ready_batches(source: AsyncGenerator[T, None]) -> AsyncIterator[list[T]]:
    """Yield `source`'s items in order, as batches of the items ready at once.

    Closing (or cancelling) the consumer cancels the reader, which closes `source` at
    once; an exception of `source` is raised here after the items before it.
    """
    reader = _Reader(source)
    try:
        finished = False
        while not finished:
            batch: list[T] = []
            item = await reader.queue.get()
            while True:
                if isinstance(item, _Finished):
                    finished = True
                    break
                batch.append(item)
                if reader.queue.empty():
                    break
                item = reader.queue.get_nowait()
            if batch:
                yield batch
        await reader.task
    finally:
        if not reader.task.done():
            reader.task.cancel()
            await asyncio.gather(reader.task, return_exceptions=True)
