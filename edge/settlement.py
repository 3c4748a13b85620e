"""The end of every admitted request: settle or release the hold, release the lease.

It runs in background tasks the Settler tracks, so the client never waits for it and
shutdown can await whatever is still pending. Settle, release and lease release are
idempotent by request id, so they are retried on UNAVAILABLE / DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from edge.delivered import TextReader, delta_texts
from edge.domain import NO_UNITS, Usage, UsageSource
from edge.errors import UpstreamError
from edge.metrics import SETTLEMENT_FAILURES
from services.common.tokens import estimate_tokens

logger = logging.getLogger(__name__)

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class UnitsBilled(enum.Enum):
    """When a request billed by units has consumed them, if its usage never came."""

    ON_DELIVERY = "delivery"  # speech: once audio reached the client; images: once answered
    ON_CALL = "call"  # transcription: once the router had the audio (and did not refuse it)


@dataclass(frozen=True, slots=True)
class Metering:
    """How a request is billed when the router never reported its usage.

    Token endpoints bill the prompt estimate plus the text read from what was delivered
    (`texts` reads one delivered chunk); unit endpoints bill `units` (the estimate's)
    once `units_billed` says they were consumed.
    """

    texts: TextReader = delta_texts
    units: Mapping[str, int] = field(default_factory=lambda: NO_UNITS)
    units_billed: UnitsBilled = UnitsBilled.ON_DELIVERY


CHAT_METERING = Metering()


@dataclass(slots=True)
class Outcome:
    """What one admitted request consumed, filled in as it runs."""

    request_id: str
    subject: str
    lease_id: str
    prompt_estimate: int
    metering: Metering = CHAT_METERING
    usage: Usage | None = None
    usage_source: UsageSource = UsageSource.UPSTREAM
    channel: str = ""
    delivered: list[str] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    client_gone: bool = False
    completed: bool = False
    called: bool = False
    failed: bool = False

    def record_chunk(self, chunk: bytes) -> None:
        """Keep a delivered chunk; its text is read only if usage never comes (rarely)."""
        self.chunks.append(chunk)

    def record_usage(
        self, usage: Usage | None, source: UsageSource, channel: str, *, failed: bool = False
    ) -> None:
        """Keep the router's typed usage, the channel that served, and whether it failed."""
        self.usage = usage
        self.usage_source = source
        self.channel = channel
        self.failed = failed

    def final_usage(self) -> tuple[Usage, UsageSource] | None:
        """The usage to settle, or None when nothing was consumed (release instead).

        Without a reported usage, a token request that completed, delivered text or lost
        its client is billed as the prompt estimate plus the estimate of the delivered
        text; a unit request is billed its units once they count as consumed.
        """
        if self.usage is not None:
            return self.usage, self.usage_source
        if self.metering.units:
            if not self._units_consumed():
                return None
            return Usage(0, 0, 0, units=self.metering.units), UsageSource.ESTIMATED
        read = self.metering.texts
        texts = self.delivered + [text for chunk in self.chunks for text in read(chunk)]
        if not (self.client_gone or self.completed or texts):
            return None
        completion = estimate_tokens("".join(texts))
        prompt = self.prompt_estimate
        return Usage(prompt, completion, prompt + completion), UsageSource.ESTIMATED

    def _units_consumed(self) -> bool:
        if self.completed:
            return True
        if self.metering.units_billed is UnitsBilled.ON_CALL:
            return self.called and not self.failed
        return bool(self.chunks)


class Holds(Protocol):
    """What the Settler needs of BillingService (edge.clients.BillingClient)."""

    async def settle(
        self, request_id: str, usage: Usage, source: UsageSource, channel: str
    ) -> int:
        """Charge the hold for `usage`."""

    async def release(self, request_id: str) -> bool:
        """Drop the hold."""


class Leases(Protocol):
    """What the Settler needs of RateLimitService (edge.clients.RateLimitClient)."""

    async def release(
        self, request_id: str, lease_id: str, subject: str, actual_tokens: int
    ) -> bool:
        """Free the lease and reconcile its tokens."""


class Settler:
    """Runs and tracks the end-of-request calls."""

    def __init__(
        self,
        billing: Holds,
        ratelimit: Leases,
        *,
        attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        self._billing = billing
        self._ratelimit = ratelimit
        self._attempts = max(1, attempts)
        self._backoff = backoff_s
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Calls still running."""
        return len(self._tasks)

    def finish(self, outcome: Outcome) -> None:
        """Settle (or release) the hold and release the lease, in the background."""
        self._spawn(self._finish(outcome))

    def undo(
        self, request_id: str, subject: str, *, hold: bool, lease_id: str,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        """Drop what an admission that failed half-way left behind (once `after` is done).

        `lease_id` is the lease that may be held ("" for none).
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

    async def _finish(self, outcome: Outcome) -> None:
        rid = outcome.request_id
        final = outcome.final_usage()
        if final is None:
            hold = self._retry("release_credit", lambda: self._billing.release(rid))
            actual = 0
        else:
            usage, source = final
            hold = self._retry(
                "settle_credit",
                lambda: self._billing.settle(rid, usage, source, outcome.channel),
            )
            actual = usage.total_tokens
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
            await self._retry("release_credit", lambda: self._billing.release(request_id))
        if lease_id:
            await self._retry(
                "release_lease",
                lambda: self._ratelimit.release(request_id, lease_id, subject, 0),
            )

    async def _retry(self, operation: str, call: Callable[[], Awaitable[object]]) -> None:
        for attempt in range(self._attempts):
            try:
                await call()
                return
            except UpstreamError as exc:
                if exc.code not in _RETRYABLE or attempt == self._attempts - 1:
                    SETTLEMENT_FAILURES.labels(operation).inc()
                    logger.error("%s gave up after %d attempt(s): %s %s", operation,
                                 attempt + 1, exc.code.name, exc.details)
                    return
            except Exception:  # a background task must log its failure, never vanish
                SETTLEMENT_FAILURES.labels(operation).inc()
                logger.exception("%s failed", operation)
                return
            await asyncio.sleep(self._backoff * 2**attempt)
