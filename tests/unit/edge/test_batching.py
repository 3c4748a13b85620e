"""edge.batching.Batcher: natural batching over a fake send function."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from edge.batching import Batcher


class Boom(Exception):
    """A failure the fake send function hands out."""


class FakeSend:
    """Records each batch; answers item * 10, a Boom for negative items, and fails the
    whole call when the batch holds `fail_with`. Calls wait for `gate`."""

    def __init__(self, *, open_gate: bool = True, fail_with: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.fail_with = fail_with
        self.short = False

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_with is not None and self.fail_with in items:
            raise Boom("whole call")
        outcomes: list[int | Exception] = [Boom(f"item {i}") if i < 0 else i * 10 for i in items]
        return outcomes[:-1] if self.short else outcomes


async def started() -> None:
    """Let submitted items reach the batcher and running calls start."""
    for _ in range(3):
        await asyncio.sleep(0)


def submit_all(batcher: Batcher[int, int], items: Sequence[int]) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(batcher.submit(item)) for item in items]


async def test_low_load_sends_each_item_at_once_alone() -> None:
    send = FakeSend()
    batcher = Batcher(send, "unit_low")
    assert await batcher.submit(1) == 10
    assert await batcher.submit(2) == 20
    assert send.batches == [[1], [2]]
    assert batcher.in_flight == 0 and batcher.queued == 0


async def test_items_queued_while_calls_are_busy_go_out_together_in_order() -> None:
    send = FakeSend(open_gate=False)
    batcher = Batcher(send, "unit_queue", max_in_flight=2)
    tasks = submit_all(batcher, [1, 2, 3, 4, 5])
    await started()
    assert send.batches == [[1], [2]]  # two calls in flight, the rest waits
    assert (batcher.in_flight, batcher.queued) == (2, 3)
    send.gate.set()
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40, 50]
    assert send.batches == [[1], [2], [3, 4, 5]]
    sizes = ("apirelay_edge_batch_items_count", "apirelay_edge_batch_items_sum")
    counted = [REGISTRY.get_sample_value(name, {"kind": "unit_queue"}) for name in sizes]
    assert counted == [3, 5]  # three calls carrying five items


async def test_max_batch_caps_each_call() -> None:
    send = FakeSend(open_gate=False)
    batcher = Batcher(send, "unit_cap", max_in_flight=1, max_batch=2)
    tasks = submit_all(batcher, [1, 2, 3, 4, 5, 6])
    await started()
    send.gate.set()
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40, 50, 60]
    assert send.batches == [[1], [2, 3], [4, 5], [6]]


async def test_an_item_failure_reaches_only_its_submitter() -> None:
    send = FakeSend(open_gate=False)
    batcher = Batcher(send, "unit_item", max_in_flight=1)
    tasks = submit_all(batcher, [1, 2, -3, 4])
    await started()
    send.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert send.batches == [[1], [2, -3, 4]]
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], Boom) and str(results[2]) == "item -3"


async def test_a_whole_call_failure_fails_every_item_of_that_batch_only() -> None:
    send = FakeSend(open_gate=False, fail_with=3)
    batcher = Batcher(send, "unit_call", max_in_flight=1, max_batch=2)
    tasks = submit_all(batcher, [1, 2, 3, 4])
    await started()
    send.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert send.batches == [[1], [2, 3], [4]]
    assert results[0] == 10 and results[3] == 40
    assert all(isinstance(r, Boom) and str(r) == "whole call" for r in results[1:3])


async def test_a_miscounted_answer_fails_the_batch() -> None:
    send = FakeSend()
    send.short = True
    batcher = Batcher(send, "unit_short")
    with pytest.raises(RuntimeError, match="0 outcome"):
        await batcher.submit(1)


@pytest.mark.parametrize("cancelled", [1, 3])  # an item in flight, an item still queued
async def test_a_cancelled_submitter_does_not_break_the_batch(cancelled: int) -> None:
    send = FakeSend(open_gate=False)
    batcher = Batcher(send, "unit_cancel", max_in_flight=1)
    tasks = submit_all(batcher, [1, 2, 3, 4])
    await started()
    tasks[cancelled - 1].cancel()
    await started()
    send.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert send.batches == [[1], [2, 3, 4]]  # the cancelled item still went out
    for item, result in zip([1, 2, 3, 4], results, strict=True):
        if item == cancelled:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == item * 10
    await batcher.wait_idle()
    assert (batcher.in_flight, batcher.queued) == (0, 0)
