"""Leases granted to callers that went away before hearing of them are released at once.

When a caller cancels an acquire (or its deadline passes) while the script is on its way
to Redis, the script may still admit the lease after the caller has already sent its own
"release whatever I may hold" (the edge does), which then finds nothing: the slot would
stay held until its TTL. So the store call is shielded from the cancellation, and if it
grants a lease nobody will learn of, that lease is released here. Shielding also keeps the
Redis connection whole: a command cut off mid-reply would have to be dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from services.ratelimit import metrics
from services.ratelimit.core import Limiter
from services.ratelimit.errors import RateLimitError
from services.ratelimit.limits import LeaseRelease, LeaseRequest, LeaseResult

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CancelGuard:
    """Runs acquisitions to the end even if their caller cancels, releasing what they grant."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._pending: set[asyncio.Future[object]] = set()

    async def run(self, work: Awaitable[T], granted: Callable[[T], list[LeaseRelease]]) -> T:
        """`await work`; if the caller cancels first, release what it grants once it is done."""
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._undo(done, granted))
            raise

    def _undo(self, task: asyncio.Future[T], granted: Callable[[T], list[LeaseRelease]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        releases = granted(task.result())
        if not releases:
            return
        metrics.CANCELLED_GRANTS.inc(len(releases))
        future: asyncio.Future[object] = asyncio.ensure_future(
            self._limiter.release_many(releases))
        self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[object]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and isinstance(future.exception(), RateLimitError):
            logger.warning("could not release a lease of a cancelled call; it expires at its TTL")


def granted_lease(request: LeaseRequest) -> Callable[[LeaseResult], list[LeaseRelease]]:
    """What a single acquisition granted (a replay granted nothing new)."""
    return lambda result: granted_leases([request])([result])


def granted_leases(
    requests: Sequence[LeaseRequest | RateLimitError],
) -> Callable[[Sequence[LeaseResult | RateLimitError]], list[LeaseRelease]]:
    """What a batch of acquisitions granted, item by item."""

    def releases(results: Sequence[LeaseResult | RateLimitError]) -> list[LeaseRelease]:
        return [
            LeaseRelease(request.subject, request.lease_id, -1, request.domain)
            for request, result in zip(requests, results, strict=True)
            if isinstance(request, LeaseRequest) and isinstance(result, LeaseResult)
            and result.allowed and not result.replayed
        ]

    return releases
