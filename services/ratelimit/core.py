"""The limiter's rules: input checks, limit statuses, and what happens when Redis is down.

The window algorithms themselves are in `windows.py` (and `lua.py` for Redis). When the
shared store is unreachable the limiter either fails open, deciding with a local store
at each limit's share of one replica (`limit // replicas`, at least 1), or fails closed
(StoreUnavailable). Each outage is logged once when it starts and once when it ends;
during it the shared store is probed at most once per probe interval.

The batch forms (`acquire_many`, `release_many`) apply the same checks and rules to each
item in order but ask the store once, so a batch costs one Redis round trip.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from services.ratelimit import metrics
from services.ratelimit.errors import InvalidArgument, StoreUnavailable
from services.ratelimit.limits import (
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitKind,
    Limits,
    LimitStatus,
    Verdict,
)
from services.ratelimit.store import LimiterStore, MillisClock, monotonic_ms

logger = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

MAX_ID_LENGTH = 256
MAX_LEASE_TTL_MS = 24 * 3600 * 1000
# Far above any real limit, and keeps window sums exact in Lua's doubles.
MAX_QUANTITY = 10**12
DEFAULT_PROBE_INTERVAL_MS = 1_000


class FailMode(enum.Enum):
    """What to do while the shared store is unreachable."""

    OPEN = "open"
    CLOSED = "closed"


class _Outage:
    """One outage of the shared store at a time: its start, end and probing."""

    def __init__(self, fail_mode: FailMode, probe_interval_ms: int, clock: MillisClock):
        self._fail_mode = fail_mode
        self._probe_interval_ms = probe_interval_ms
        self._clock = clock
        self._started_at: int | None = None
        self._next_probe = 0

    def should_try_store(self) -> bool:
        return self._started_at is None or self._clock() >= self._next_probe

    def failed(self) -> None:
        metrics.STORE_ERRORS.inc()
        now = self._clock()
        self._next_probe = now + self._probe_interval_ms
        if self._started_at is None:
            self._started_at = now
            metrics.FALLBACK_ACTIVE.set(1)
            action = "deciding locally with limit // replicas" if (
                self._fail_mode is FailMode.OPEN) else "refusing requests (fail closed)"
            logger.warning("rate limit store unreachable; %s", action)

    def succeeded(self) -> None:
        if self._started_at is None:
            return
        lasted_s = (self._clock() - self._started_at) / 1000
        self._started_at = None
        metrics.FALLBACK_ACTIVE.set(0)
        logger.warning("rate limit store reachable again after %.1f s", lasted_s)


@dataclass(frozen=True, slots=True)
class OutagePolicy:
    """Fail open (with a local `fallback` store) or closed, and how often to probe."""

    fail_mode: FailMode = FailMode.OPEN
    replicas: int = 1
    probe_interval_ms: int = DEFAULT_PROBE_INTERVAL_MS


class Limiter:
    """Acquires and releases leases against a store, with a fallback while it is down."""

    def __init__(
        self,
        store: LimiterStore,
        default_ttl_ms: int,
        fallback: LimiterStore | None = None,
        policy: OutagePolicy = OutagePolicy(),
        clock: MillisClock = monotonic_ms,
    ) -> None:
        self._store = store
        self._default_ttl_ms = default_ttl_ms
        self._fallback = fallback if policy.fail_mode is FailMode.OPEN else None
        self._replicas = policy.replicas
        self._outage = _Outage(policy.fail_mode, policy.probe_interval_ms, clock)

    async def acquire(self, request: LeaseRequest) -> LeaseResult:
        """Consume one request, the estimated tokens and a slot, all or nothing."""
        request = self._checked(request)
        limits, verdict = await self._decide(request)
        return _result(request, limits, verdict)

    async def acquire_many(
        self, requests: Sequence[LeaseRequest]
    ) -> list[LeaseResult | InvalidArgument]:
        """`acquire` for each request in order, in one store call; invalid ones get their error."""
        checked = [_attempt(self._checked, request) for request in requests]
        valid = [item for item in checked if isinstance(item, LeaseRequest)]
        decided = iter(await self._decide_many(valid))
        return [
            _result(item, *next(decided)) if isinstance(item, LeaseRequest) else item
            for item in checked
        ]

    async def release(self, release: LeaseRelease) -> bool:
        """Free a lease's slot and reconcile its tokens; False if it is not held."""
        _check_release(release)
        # A lease taken during an outage lives in the fallback store.
        released = self._fallback is not None and await self._fallback.release(release)
        if not released:
            released = await self._release_in_store(release)
        metrics.RELEASES.labels(released=str(released).lower()).inc()
        return released

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool | InvalidArgument]:
        """`release` for each lease in order, in one store call; invalid ones get their error."""
        checked = [_attempt(_check_release, release) for release in releases]
        valid = [item for item in checked if isinstance(item, LeaseRelease)]
        local = [self._fallback is not None and await self._fallback.release(r) for r in valid]
        in_store = iter(
            await self._release_many_in_store([r for r, done in zip(valid, local) if not done])
        )
        # Leases the fallback did not hold are asked of the store, keeping request order.
        released = iter([done or next(in_store) for done in local])
        results = [next(released) if isinstance(item, LeaseRelease) else item for item in checked]
        for result in results:
            if isinstance(result, bool):
                metrics.RELEASES.labels(released=str(result).lower()).inc()
        return results

    def _checked(self, request: LeaseRequest) -> LeaseRequest:
        _check_acquire(request)
        if request.ttl_ms == 0:
            return replace(request, ttl_ms=self._default_ttl_ms)
        return request

    async def _decide(self, request: LeaseRequest) -> tuple[Limits, Verdict]:
        verdict = await self._try_store(lambda: self._store.acquire(request))
        if verdict is None:
            return await self._decide_locally(request)
        return request.limits, verdict

    async def _decide_many(self, requests: list[LeaseRequest]) -> list[tuple[Limits, Verdict]]:
        if not requests:
            return []
        verdicts = await self._try_store(lambda: self._store.acquire_many(requests))
        if verdicts is None:
            return [await self._decide_locally(request) for request in requests]
        return [(r.limits, v) for r, v in zip(requests, verdicts, strict=True)]

    async def _decide_locally(self, request: LeaseRequest) -> tuple[Limits, Verdict]:
        fallback = self._require_fallback()
        metrics.FALLBACK_DECISIONS.inc()
        local = replace(request, limits=request.limits.shared_by(self._replicas))
        return local.limits, await fallback.acquire(local)

    async def _release_in_store(self, release: LeaseRelease) -> bool:
        released = await self._try_store(lambda: self._store.release(release))
        if released is None:
            self._require_fallback()
            # Fail open: the shared lease cannot be freed now; it expires at its TTL.
            return False
        return released

    async def _release_many_in_store(self, releases: list[LeaseRelease]) -> list[bool]:
        if not releases:
            return []
        released = await self._try_store(lambda: self._store.release_many(releases))
        if released is None:
            self._require_fallback()
            return [False] * len(releases)
        return released

    def _require_fallback(self) -> LimiterStore:
        if self._fallback is None:
            raise StoreUnavailable("rate limit store unavailable")
        return self._fallback

    async def _try_store(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """The shared store's answer, or None while it is unreachable (counted as an outage)."""
        if not self._outage.should_try_store():
            return None
        try:
            result = await call()
        except StoreUnavailable:
            self._outage.failed()
            return None
        self._outage.succeeded()
        return result


def statuses(limits: Limits, verdict: Verdict) -> tuple[LimitStatus, ...]:
    """The status of every finite limit after a verdict."""
    result = []
    for kind in LimitKind:
        limit = limits.of(kind)
        if limit:
            usage = verdict.usage(kind)
            result.append(
                LimitStatus(kind, limit, max(0, limit - usage.used), usage.reset_after_ms)
            )
    return tuple(result)


def _check_id(name: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_LENGTH} characters")


def _check_release(release: LeaseRelease) -> LeaseRelease:
    _check_id("subject", release.subject)
    _check_id("lease_id", release.lease_id)
    return release


def _attempt(check: Callable[[T], U], item: T) -> U | InvalidArgument:
    try:
        return check(item)
    except InvalidArgument as exc:
        return exc


def _result(request: LeaseRequest, limits: Limits, verdict: Verdict) -> LeaseResult:
    denied_by = verdict.denied_by
    metrics.DECISIONS.labels(
        result="allowed" if verdict.allowed else "denied",
        limit=denied_by.name.lower() if denied_by else "none",
    ).inc()
    return LeaseResult(
        allowed=verdict.allowed,
        denied_by=denied_by,
        statuses=statuses(limits, verdict),
        lease_id=request.lease_id if verdict.allowed else "",
        replayed=verdict.replayed,
    )


def _check_acquire(request: LeaseRequest) -> None:
    _check_id("subject", request.subject)
    _check_id("request_id", request.lease_id)
    limits = request.limits
    for name, value in (("limits.rpm", limits.rpm), ("limits.tpm", limits.tpm),
                        ("limits.concurrency", limits.concurrency),
                        ("estimated_tokens", request.tokens)):
        if not 0 <= value <= MAX_QUANTITY:
            raise InvalidArgument(f"{name} must be between 0 and {MAX_QUANTITY}")
    if not 0 <= request.ttl_ms <= MAX_LEASE_TTL_MS:
        raise InvalidArgument(f"lease_ttl must be between 0 and {MAX_LEASE_TTL_MS // 1000} s")
