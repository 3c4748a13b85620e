"""services.router.queue: bounded, priority then arrival order, deadlines."""

from __future__ import annotations

import asyncio
import time

from services.router.queue import CapacityQueue


async def _turns(queue: CapacityQueue, names: dict[str, int], order: list[str]) -> None:
    """Every name waits once for its turn, then leaves served; `order` records turns."""
    tickets = {n: queue.join(p, time.monotonic() + 5) for n, p in names.items()}

    async def one(name: str) -> None:
        ticket = tickets[name]
        assert ticket is not None
        assert await queue.wait(ticket, 5.0)
        order.append(name)
        queue.leave(ticket, served=True)

    tasks = [asyncio.create_task(one(n)) for n in names]
    await asyncio.sleep(0)  # every waiter is waiting
    queue.notify()
    await asyncio.gather(*tasks)


async def test_turns_go_by_priority_then_arrival() -> None:
    order: list[str] = []
    await _turns(CapacityQueue(10), {"low1": 0, "vip": 10, "low2": 0, "mid": 5}, order)
    assert order == ["vip", "mid", "low1", "low2"]


async def test_a_full_queue_refuses_to_take_more() -> None:
    queue = CapacityQueue(2)
    assert queue.join(0, time.monotonic() + 1) is not None
    assert queue.join(0, time.monotonic() + 1) is not None
    assert queue.join(10, time.monotonic() + 1) is None
    assert len(queue) == 2


async def test_a_wait_ends_at_the_ticket_deadline() -> None:
    queue = CapacityQueue(2)
    ticket = queue.join(0, time.monotonic() + 0.05)
    assert ticket is not None
    started = time.monotonic()
    assert not await queue.wait(ticket, 10.0)
    assert 0.04 <= time.monotonic() - started < 0.5
    queue.leave(ticket, served=False)
    assert len(queue) == 0


async def test_a_retry_that_fails_passes_the_turn_on() -> None:
    queue = CapacityQueue(5)
    first = queue.join(5, time.monotonic() + 5)
    second = queue.join(0, time.monotonic() + 5)
    assert first is not None and second is not None
    waiting = asyncio.create_task(queue.wait(second, 5.0))
    first_turn = asyncio.create_task(queue.wait(first, 5.0))
    await asyncio.sleep(0)
    queue.notify()
    assert await first_turn  # the higher priority goes first...
    assert not waiting.done()
    again = asyncio.create_task(queue.wait(first, 5.0))  # ...finds no room, waits again
    assert await waiting  # and the turn passed to the next one
    assert not again.done()
    queue.leave(second, served=True)
    assert await again  # its own timer (no release seen here) gives it another turn
    queue.leave(first, served=False)
    assert len(queue) == 0


async def test_a_cap_reset_starts_a_round_without_any_release() -> None:
    queue = CapacityQueue(5)
    ticket = queue.join(0, time.monotonic() + 5)
    assert ticket is not None
    started = time.monotonic()
    assert await queue.wait(ticket, 0.05)  # nobody notifies: its own timer does
    assert time.monotonic() - started < 0.5
