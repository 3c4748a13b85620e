"""The limiter: resolves requests into checks, asks the store, falls back during outages.

The window algorithms are in `windows.py` (and `lua.py` for Redis), the input checks in
`rules.py`, the outage policy in `outage.py`. The batch forms (`acquire_many`,
`release_many`) apply the same checks and rules to each item in order but ask the store
once, so a batch costs one Redis round trip.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from services.ratelimit import metrics
from services.ratelimit.errors import InvalidArgument, StoreUnavailable, attempt
from services.ratelimit.limits import (
    Acquisition,
    Check,
    CheckRequest,
    CheckResult,
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitStatus,
    Release,
    ReleaseResult,
    ReleaseVerdict,
    Verdict,
)
from services.ratelimit.outage import FailMode, Outage, OutagePolicy, report_lost_state
from services.ratelimit.rules import (
    StandardWindows,
    check_acquisition,
    lease_acquisition,
    lease_release,
)
from services.ratelimit.store import LimiterStore, MillisClock, monotonic_ms

T = TypeVar("T")

DEFAULT_LEASE_TTL_MS = 600_000
# The most releases kept while the shared store is unreachable (the oldest drop first:
# their leases then expire at their TTL).
MAX_MISSED_RELEASES = 100_000


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """The lease TTL used when a request names none, and the standard windows."""

    default_ttl_ms: int = DEFAULT_LEASE_TTL_MS
    windows: StandardWindows = field(default_factory=StandardWindows)


@dataclass(frozen=True, slots=True)
class _Decided:
    """A verdict with the checks it was decided on (shared ones when local)."""

    checks: tuple[Check, ...]
    verdict: Verdict
    local: bool


class Limiter:
    """Acquires, releases and checks against a store, with a fallback while it is down."""

    def __init__(
        self,
        store: LimiterStore,
        config: LimiterConfig | None = None,
        fallback: LimiterStore | None = None,
        policy: OutagePolicy | None = None,
        clock: MillisClock = monotonic_ms,
    ) -> None:
        policy = policy or OutagePolicy()
        self._store = store
        self._config = config or LimiterConfig()
        self._fallback = fallback if policy.fail_mode is FailMode.OPEN else None
        self._replicas = policy.replicas
        self._outage = Outage(policy, clock)
        # The first successful call remembers the store's epoch; later ones compare.
        self._epoch_due = True
        # Releases the shared store missed while unreachable: applied after its next
        # successful call, so a lease taken there before the outage is not held to its TTL
        # (and, by the release's tombstone, one still on its way is refused).
        self._missed_releases: deque[Release] = deque(maxlen=MAX_MISSED_RELEASES)

    async def acquire(self, request: LeaseRequest) -> LeaseResult:
        """Consume every limit of the request (requests, tokens, slots), all or nothing."""
        decided = await self._decide(self._lease_acquisition(request))
        return _lease_result(request, decided)

    async def acquire_many(
        self, requests: Sequence[LeaseRequest | InvalidArgument]
    ) -> list[LeaseResult | InvalidArgument]:
        """`acquire` for each in order, in one store call; invalid ones get their error."""
        resolved = [self._resolve(item) for item in requests]
        valid = [item[1] for item in resolved if isinstance(item, tuple)]
        decided = iter(await self._decide_many(valid))
        return [
            item if isinstance(item, InvalidArgument) else _lease_result(item[0], next(decided))
            for item in resolved
        ]

    async def check(self, request: CheckRequest) -> CheckResult:
        """Consume `hits` from every rule, all or nothing, without a lease."""
        acquisition = check_acquisition(request, self._config.windows, uuid.uuid4().hex)
        decided = await self._decide(acquisition)
        _count(decided)
        verdict = decided.verdict
        return CheckResult(verdict.allowed, _statuses(decided), verdict.at_us, decided.local)

    async def release(self, release: LeaseRelease) -> ReleaseResult:
        """Free a lease's slots and reconcile its tokens; not released if not held."""
        (result,) = await self._release_all([lease_release(release)])
        return result

    async def release_many(
        self, releases: Sequence[LeaseRelease | InvalidArgument]
    ) -> list[ReleaseResult | InvalidArgument]:
        """`release` for each lease in order, in one store call; invalid ones get their error."""
        resolved = [
            item if isinstance(item, InvalidArgument) else attempt(lease_release, item)
            for item in releases
        ]
        done = iter(await self._release_all([r for r in resolved if isinstance(r, Release)]))
        return [next(done) if isinstance(item, Release) else item for item in resolved]

    def _lease_acquisition(self, request: LeaseRequest) -> Acquisition:
        config = self._config
        return lease_acquisition(request, config.windows, config.default_ttl_ms)

    def _resolve(
        self, item: LeaseRequest | InvalidArgument
    ) -> tuple[LeaseRequest, Acquisition] | InvalidArgument:
        if isinstance(item, InvalidArgument):
            return item
        try:
            return item, self._lease_acquisition(item)
        except InvalidArgument as exc:
            return exc

    async def _decide(self, acquisition: Acquisition) -> _Decided:
        verdict = await self._try_store(lambda: self._store.acquire(acquisition))
        if verdict is None:
            return await self._decide_locally(acquisition)
        return _Decided(acquisition.checks, verdict, local=False)

    async def _decide_many(self, acquisitions: list[Acquisition]) -> list[_Decided]:
        if not acquisitions:
            return []
        verdicts = await self._try_store(lambda: self._store.acquire_many(acquisitions))
        if verdicts is None:
            return [await self._decide_locally(a) for a in acquisitions]
        return [_Decided(a.checks, v, False) for a, v in zip(acquisitions, verdicts, strict=True)]

    async def _decide_locally(self, acquisition: Acquisition) -> _Decided:
        fallback = self._require_fallback()
        metrics.FALLBACK_DECISIONS.inc()
        local = acquisition.shared_by(self._replicas)
        return _Decided(local.checks, await fallback.acquire(local), local=True)

    async def _release_all(self, releases: list[Release]) -> list[ReleaseResult]:
        if not releases:
            return []
        # A lease taken during an outage lives in the fallback store.
        results: list[ReleaseVerdict | None] = [None] * len(releases)
        if self._fallback is not None:
            local = await self._fallback.release_many(releases)
            results = [v if v.released else None for v in local]
        todo = [i for i, v in enumerate(results) if v is None]
        shared = await self._try_store(
            lambda: self._store.release_many([releases[i] for i in todo])) if todo else []
        if shared is None:
            self._require_fallback()
            # Fail open: a shared lease cannot be freed now; it is, once the store answers.
            self._missed_releases.extend(releases[i] for i in todo)
            shared = [ReleaseVerdict(False)] * len(todo)
        for i, verdict in zip(todo, shared, strict=True):
            results[i] = verdict
        final = [ReleaseResult(v.released, v.at_us) for v in results if v is not None]
        for result in final:
            metrics.RELEASES.labels(released=str(result.released).lower()).inc()
        return final

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
        if self._outage.succeeded():
            self._epoch_due = True
        if self._epoch_due:
            await self._check_epoch()
        if self._missed_releases:
            await self._apply_missed_releases()
        return result

    async def _apply_missed_releases(self) -> None:
        missed = list(self._missed_releases)
        self._missed_releases.clear()
        try:
            await self._store.release_many(missed)
        except StoreUnavailable:
            self._missed_releases.extendleft(reversed(missed))  # kept for the next success
            self._outage.failed()
            return
        metrics.MISSED_RELEASES_APPLIED.inc(len(missed))

    async def _check_epoch(self) -> None:
        try:
            lost = await self._store.lost_state()
        except StoreUnavailable:
            return  # tried again after the next successful call
        self._epoch_due = False
        if lost:
            report_lost_state()


def _statuses(decided: _Decided) -> tuple[LimitStatus, ...]:
    over = not decided.verdict.allowed
    return tuple(
        LimitStatus(c.kind, c.limit, max(0, c.limit - u.used), u.reset_after_ms,
                    over and u.reset_after_ms > 0)
        for c, u in zip(decided.checks, decided.verdict.usages, strict=True)
    )


def _count(decided: _Decided) -> None:
    verdict = decided.verdict
    denied_by = None if verdict.denied is None else decided.checks[verdict.denied].kind
    metrics.DECISIONS.labels(
        result="allowed" if verdict.allowed else "denied",
        limit=denied_by.name.lower() if denied_by else "none",
    ).inc()


def _lease_result(request: LeaseRequest, decided: _Decided) -> LeaseResult:
    _count(decided)
    verdict = decided.verdict
    statuses = _statuses(decided)
    shorthand = len(request.limits.finite())
    return LeaseResult(
        allowed=verdict.allowed,
        denied_by=None if verdict.denied is None else decided.checks[verdict.denied].kind,
        statuses=statuses[:shorthand],
        lease_id=request.lease_id if verdict.allowed else "",
        replayed=verdict.replayed,
        rule_statuses=statuses[shorthand:],
        decided_at_us=verdict.at_us,
        local=decided.local,
    )
