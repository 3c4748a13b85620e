"""services.router.coalesce: batches of whatever is ready, never waiting for more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from services.router.coalesce import ready_batches


async def _collect(source: AsyncGenerator[int, None]) -> list[list[int]]:
    return [batch async for batch in ready_batches(source)]


async def test_items_yielded_back_to_back_form_one_batch() -> None:
    async def source() -> AsyncGenerator[int, None]:
        for n in range(5):
            yield n

    assert await _collect(source()) == [[0, 1, 2, 3, 4]]


async def test_an_item_the_source_waited_for_starts_a_new_batch() -> None:
    async def source() -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        await asyncio.sleep(0.01)
        yield 3
        await asyncio.sleep(0.01)
        yield 4
        yield 5

    assert await _collect(source()) == [[1, 2], [3], [4, 5]]


async def test_a_failure_is_raised_after_the_items_before_it() -> None:
    async def source() -> AsyncGenerator[int, None]:
        yield 1
        raise ValueError("boom")

    batches = []
    with pytest.raises(ValueError, match="boom"):
        async for batch in ready_batches(source()):
            batches.append(batch)
    assert batches == [[1]]


async def test_cancelling_the_consumer_closes_the_source_at_once() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            yield 1
            await asyncio.Event().wait()
            yield 2
        finally:
            closed.set()

    async def consume(first: asyncio.Event) -> None:
        async for _ in ready_batches(source()):
            first.set()

    first = asyncio.Event()
    task = asyncio.create_task(consume(first))
    await asyncio.wait_for(first.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()
