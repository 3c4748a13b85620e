"""Natural batching: many concurrent single-item calls sent as few batch calls.

A `Batcher` sends at once whenever fewer than `max_in_flight` batch calls are running,
so at low load every item goes out alone with no added latency; otherwise items queue
and leave together (up to `max_batch`) as soon as a running call returns, so batches
grow by themselves under load and shrink back when it passes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge.metrics import BATCH_ITEMS

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

DEFAULT_MAX_IN_FLIGHT = 2
DEFAULT_MAX_BATCH = 128

# Sends one batch; answers one outcome per item, in order: the item's result, or the
# exception its submitter gets. Raising fails every item of the batch.
SendBatch = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT | Exception]]]


@dataclass(frozen=True, slots=True)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    answer: asyncio.Future[ResultT]


class Batcher(Generic[ItemT, ResultT]):
    """Collects concurrent `submit` calls into batch calls of `send`.

    A submitter cancelled while it waits does not take its item back: the item still
    goes out (or is already out) with its batch and only its answer is dropped. Only
    idempotent batch RPCs may be batched this way (ours are, by request id or lease id),
    so a caller that undoes or retries such an item after a cancellation is safe.
    """

    def __init__(
        self,
        send: SendBatch[ItemT, ResultT],
        kind: str,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._send = send
        self._kind = kind
        self._max_in_flight = max(1, max_in_flight)
        self._max_batch = max(1, max_batch)
        self._queue: deque[_Pending[ItemT, ResultT]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Batch calls running now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """Items waiting for a batch call to return."""
        return len(self._queue)

    async def submit(self, item: ItemT) -> ResultT:
        """The outcome of `item`, sent in the next batch (at once when calls are free)."""
        answer: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, answer))
        self._flush()
        return await answer

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or in flight (at shutdown, and in tests)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _flush(self) -> None:
        while self._queue and len(self._running) < self._max_in_flight:
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            BATCH_ITEMS.labels(self._kind).observe(count)
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        # Normally a no-op (see `_call`); it covers a call task cancelled before it ran.
        if task in self._running:
            self._running.discard(task)
            self._flush()

    async def _call(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        try:
            outcomes = await self._send([pending.item for pending in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(
                    f"{self._kind}: {len(outcomes)} outcome(s) for {len(batch)} item(s)"
                )
        except asyncio.CancelledError:
            for pending in batch:
                pending.answer.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to each submitter, who handles it
            outcomes = [exc] * len(batch)  # the whole call failed: so did each item
        finally:
            # Free the slot before the submitters resume, so the next flush is now.
            self._running.discard(asyncio.current_task())
            self._flush()
        for pending, outcome in zip(batch, outcomes, strict=True):
            _answer(pending.answer, outcome)


def _answer(answer: asyncio.Future[ResultT], outcome: ResultT | Exception) -> None:
    if answer.done():  # its submitter was cancelled: nobody waits for the answer
        return
    if isinstance(outcome, Exception):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
