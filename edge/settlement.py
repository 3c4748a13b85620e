"""The end of every admitted request: settle or release the hold, release the lease.

It runs in background tasks the Settler tracks, so the client never waits for it and
shutdown can await whatever is still pending. Settle, release and lease release are
idempotent by request id, so they are retried on UNAVAILABLE / DEADLINE_EXCEEDED. A
settle or release billing still does not take after a short retry goes to the durable
spool (edge.spool_drain.Outbox), which applies it once billing is back; one billing
refuses for good is kept as a dead letter. Lease releases are not spooled (the
limiter's leases expire by themselves).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from apirelay.billing.v1 import billing_pb2
from edge import translate
from edge.domain import Usage
from edge.errors import UpstreamError
from edge.metrics import SETTLEMENT_FAILURES, USAGE_REJECTED
from edge.outcome import Outcome
from edge.request_report import RequestReport
from edge.spool import Holds, SpooledCall, encode_release, encode_settle
from edge.spool_drain import RETRYABLE, Outbox
from edge.usage_guard import Rejection

logger = logging.getLogger(__name__)


class Leases(Protocol):
    """What the Settler needs of RateLimitService (edge.clients.RateLimitClient)."""

    async def release(
        self, request_id: str, lease_id: str, subject: str, actual_tokens: int
    ) -> bool:
        """Free the lease and reconcile its tokens."""


class Settler:
    """Runs and tracks the end-of-request calls; billing's go durable when it is down."""

    def __init__(
        self,
        billing: Holds,
        ratelimit: Leases,
        outbox: Outbox,
        *,
        attempts: int = 2,
        backoff_s: float = 0.1,
    ) -> None:
        self._billing = billing
        self._ratelimit = ratelimit
        self._outbox = outbox
        self._attempts = max(1, attempts)
        self._backoff = backoff_s
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Calls still running."""
        return len(self._tasks)

    @property
    def outbox(self) -> Outbox:
        """Where billing calls go while billing is unreachable."""
        return self._outbox

    def finish(self, outcome: Outcome) -> None:
        """Settle (or release) the hold and release the lease, in the background."""
        self._spawn(self._finish(outcome, outcome.report(time.perf_counter())))

    def undo(
        self, request_id: str, subject: str, *, hold: bool, lease_id: str,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        """Drop what an admission that failed half-way left behind (once `after` is done).

        `lease_id` is the lease that may be held ("" for none). The hold is released
        without an outcome: the request never ran.
        """
        self._spawn(self._undo(request_id, subject, hold, lease_id, after))

    async def drain(self) -> None:
        """Wait until every pending call has ended (at shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, outcome: Outcome, report: RequestReport) -> None:
        rid = outcome.request_id
        charge = outcome.charge()
        if charge is None:
            hold = self._release(translate.release_request(rid, report, outcome.channel))
            actual = 0
        else:
            if charge.rejected is not None:
                _rejected(rid, charge.rejected, outcome.usage)
            hold = self._settle(translate.settle_request(
                rid, charge.usage, charge.source, outcome.channel, report))
            actual = charge.usage.total_tokens
        if not outcome.lease_id:  # no lease was taken (a key without limits)
            await hold
            return
        lease = self._retry(
            "release_lease",
            lambda: self._ratelimit.release(rid, outcome.lease_id, outcome.subject, actual),
        )
        await asyncio.gather(hold, lease)

    async def _undo(
        self, request_id: str, subject: str, hold: bool, lease_id: str,
        after: asyncio.Future[Any] | None,
    ) -> None:
        if after is not None:
            await asyncio.wait({after})
        if hold:
            await self._release(translate.release_request(request_id, None, ""))
        if lease_id:
            await self._retry(
                "release_lease",
                lambda: self._ratelimit.release(request_id, lease_id, subject, 0),
            )

    async def _settle(self, request: billing_pb2.SettleCreditRequest) -> None:
        await self._deliver(lambda: self._billing.settle(request),
                            lambda: encode_settle(request))

    async def _release(self, request: billing_pb2.ReleaseCreditRequest) -> None:
        await self._deliver(lambda: self._billing.release(request),
                            lambda: encode_release(request))

    async def _deliver(
        self, send: Callable[[], Awaitable[object]], encode: Callable[[], SpooledCall]
    ) -> None:
        """Send directly with a short retry; if billing stays unreachable, spool the call."""
        for attempt in range(self._attempts):
            try:
                await send()
                return
            except UpstreamError as exc:
                if exc.code not in RETRYABLE:
                    await self._keep(encode(), f"{exc.code.name}: {exc.details}")
                    return
            except Exception:  # effect unknown: the idempotent spool path settles it
                logger.exception("billing call failed unexpectedly; spooling it")
                break
            if attempt < self._attempts - 1:
                await asyncio.sleep(self._backoff * 2**attempt)
        await self._keep(encode(), None)

    async def _keep(self, call: SpooledCall, refused: str | None) -> None:
        """Spool `call`, or bury it when billing `refused` it for good."""
        try:
            if refused is None:
                await self._outbox.put(call)
            else:
                await self._outbox.bury(call, refused)
        except Exception:  # the last resort failed too: say so loudly, with the request id
            SETTLEMENT_FAILURES.labels(f"{call.kind.value}_credit").inc()
            logger.exception("%s of request %s could not be spooled; it is lost",
                             call.kind.value, call.request_id)

    async def _retry(self, operation: str, call: Callable[[], Awaitable[object]]) -> None:
        for attempt in range(self._attempts):
            try:
                await call()
                return
            except UpstreamError as exc:
                if exc.code not in RETRYABLE or attempt == self._attempts - 1:
                    SETTLEMENT_FAILURES.labels(operation).inc()
                    logger.error("%s gave up after %d attempt(s): %s %s", operation,
                                 attempt + 1, exc.code.name, exc.details)
                    return
            except Exception:  # a background task must log its failure, never vanish
                SETTLEMENT_FAILURES.labels(operation).inc()
                logger.exception("%s failed", operation)
                return
            await asyncio.sleep(self._backoff * 2**attempt)


def _rejected(request_id: str, reason: Rejection, reported: Usage | None) -> None:
    USAGE_REJECTED.labels(reason.value).inc()
    logger.warning("request %s: reported usage not trusted (%s): %s; billed counted tokens",
                   request_id, reason.value, reported)
