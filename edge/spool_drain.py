"""The outbox: puts settlements billing could not take into the spool and drains it.

The drain loop runs on start (leftovers of a previous run, or of a dead replica), when
a write wakes it, and every `poll_s`. A pass takes a batch, sends its settles in one
SettleCredits call and its releases one by one, acks what billing confirmed, moves
what billing refused for good (NOT_FOUND, INVALID_ARGUMENT, an unreadable entry) to
the dead letters, and leaves the rest. While billing is unreachable the loop backs
off (doubling up to `max_backoff_s`) and writes do not wake it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError

from apirelay.billing.v1 import billing_pb2
from edge.errors import UpstreamError
from edge.metrics import DEAD_LETTERS, DRAINED, SETTLEMENT_FAILURES, SPOOL_DEPTH, SPOOLED
from edge.spool import CallKind, Holds, Spool, SpooledCall, SpoolEntry

logger = logging.getLogger(__name__)

# Billing may take the call later: retried and kept (edge.settlement uses it too).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """How the drain loop paces itself."""

    batch: int = 128
    poll_s: float = 5.0
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0


@dataclass(slots=True)
class _Pass:
    """What one batch came to."""

    acked: list[SpoolEntry] = field(default_factory=list)
    dead: list[tuple[SpoolEntry, str]] = field(default_factory=list)
    blocked: bool = False  # billing unreachable for at least one entry


class Outbox:
    """The durable path of settlement: write, wake, drain, ack after commit."""

    def __init__(self, spool: Spool, billing: Holds, policy: DrainPolicy = DrainPolicy()) -> None:
        self._spool = spool
        self._billing = billing
        self._policy = policy
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def spool(self) -> Spool:
        """The backend."""
        return self._spool

    async def put(self, call: SpooledCall) -> None:
        """Store `call` durably and wake the drain loop."""
        await self._spool.put(call)
        SPOOLED.labels(call.kind.value).inc()
        logger.warning("billing unreachable: %s of request %s spooled", call.kind.value,
                       call.request_id)
        self._wake.set()

    async def bury(self, call: SpooledCall, reason: str) -> None:
        """Keep a call billing refused for good (never retried, never dropped)."""
        await self._spool.bury(call, reason)
        _dead_lettered(call, reason)

    def start(self) -> None:
        """Run the drain loop in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self, grace_s: float) -> None:
        """Stop the loop, drain what billing takes within `grace_s` (the rest stays), close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.wait_for(self._drain_all(), grace_s)
        except TimeoutError:
            logger.warning("shutdown: %d settlement(s) left in the spool for the next start",
                           await self._spool.depth())
        finally:
            await self._refresh_depth()
            await self._spool.close()

    async def drain(self) -> bool:
        """Apply entries until the spool is empty (True) or billing stops taking them."""
        async with self._draining:  # one pass at a time: no entry sent twice by us
            return await self._drain()

    async def _drain(self) -> bool:
        while True:
            entries = await self._spool.take(self._policy.batch)
            if not entries:
                return True
            result = await self._apply(entries)
            await self._spool.ack(result.acked)
            for entry, reason in result.dead:
                await self._spool.dead_letter(entry, reason)
                _dead_lettered(entry.call, reason)
            for entry in result.acked:
                DRAINED.labels(entry.call.kind.value).inc()
            if result.blocked:
                return False

    async def _drain_all(self) -> None:
        backoff = self._policy.backoff_s
        while not await self._safe_drain():
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._policy.max_backoff_s)

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if await self._safe_drain():
                backoff = 0.0
                await self._refresh_depth()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._policy.poll_s)
            else:
                await self._refresh_depth()
                backoff = min(max(backoff * 2, self._policy.backoff_s),
                              self._policy.max_backoff_s)
                await asyncio.sleep(backoff)
            self._wake.clear()

    async def _safe_drain(self) -> bool:
        try:
            return await self.drain()
        except asyncio.CancelledError:
            raise
        except Exception:  # the spool's backend failed: keep the loop alive, retry later
            logger.exception("settlement spool drain failed")
            return False

    async def _refresh_depth(self) -> None:
        with contextlib.suppress(Exception):  # a gauge is not worth failing for
            SPOOL_DEPTH.set(await self._spool.depth())

    async def _apply(self, entries: Sequence[SpoolEntry]) -> _Pass:
        result = _Pass()
        settles: list[tuple[SpoolEntry, billing_pb2.SettleCreditRequest]] = []
        releases: list[tuple[SpoolEntry, billing_pb2.ReleaseCreditRequest]] = []
        for entry in entries:
            try:
                if entry.call.kind is CallKind.UNREADABLE:
                    result.dead.append((entry, "unknown kind"))
                elif entry.call.kind is CallKind.SETTLE:
                    settles.append((entry, billing_pb2.SettleCreditRequest.FromString(
                        entry.call.payload)))
                else:
                    releases.append((entry, billing_pb2.ReleaseCreditRequest.FromString(
                        entry.call.payload)))
            except DecodeError:
                result.dead.append((entry, "unreadable entry"))
        settled, released = await asyncio.gather(
            self._settle_all([request for _, request in settles]),
            self._release_all([request for _, request in releases]),
        )
        pairs = list(zip([entry for entry, _ in settles], settled, strict=True))
        pairs += zip([entry for entry, _ in releases], released, strict=True)
        for entry, outcome in pairs:
            _sort(result, entry, outcome)
        return result

    async def _settle_all(
        self, requests: list[billing_pb2.SettleCreditRequest]
    ) -> Sequence[object | Exception]:
        if not requests:
            return []
        try:
            return await self._billing.settle_many(requests)
        except Exception as exc:  # noqa: BLE001 - the whole call failed: so did each item
            return [exc] * len(requests)

    async def _release_all(
        self, requests: list[billing_pb2.ReleaseCreditRequest]
    ) -> list[object | Exception]:
        return list(await asyncio.gather(*(self._release(r) for r in requests)))

    async def _release(self, request: billing_pb2.ReleaseCreditRequest) -> object | Exception:
        try:
            return await self._billing.release(request)
        except Exception as exc:  # noqa: BLE001 - sorted by _sort like a batch item's
            return exc


def _sort(result: _Pass, entry: SpoolEntry, outcome: object) -> None:
    if not isinstance(outcome, Exception):
        result.acked.append(entry)
    elif isinstance(outcome, UpstreamError) and outcome.code not in RETRYABLE:
        result.dead.append((entry, f"{outcome.code.name}: {outcome.details}"))
    else:
        if not isinstance(outcome, UpstreamError):
            logger.error("applying spooled %s of request %s failed: %r", entry.call.kind.value,
                         entry.call.request_id, outcome)
        result.blocked = True


def _dead_lettered(call: SpooledCall, reason: str) -> None:
    DEAD_LETTERS.labels(call.kind.value).inc()
    SETTLEMENT_FAILURES.labels(f"{call.kind.value}_credit").inc()
    logger.error("billing refused %s of request %s for good (%s); kept as a dead letter",
                 call.kind.value, call.request_id, reason)
