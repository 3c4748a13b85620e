"""Test doubles for the rate-limit service: a settable clock and a store that can fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import (
    Acquisition,
    LeaseRelease,
    LeaseRequest,
    LimitKind,
    Release,
    ReleaseVerdict,
    Usage,
    Verdict,
)
from services.ratelimit.rules import StandardWindows, lease_acquisition, lease_release
from services.ratelimit.store import LimiterStore, MemoryLimiterStore


class FixedClock:
    """A millisecond clock that moves only when told to."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move the clock forward."""
        self.now_ms += ms


class FlakyStore:
    """A memory store that raises StoreUnavailable while `down` is set; counts calls.

    `lost` makes the next `lost_state` report lost counters (a restarted Redis).
    """

    def __init__(self, clock: FixedClock) -> None:
        self.inner = MemoryLimiterStore(clock)
        self.down = False
        self.lost = False
        self.calls = 0
        self.epoch_checks = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down")

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        """Acquire in the inner store unless down."""
        self._call()
        return await self.inner.acquire(acquisition)

    async def release(self, release: Release) -> ReleaseVerdict:
        """Release in the inner store unless down."""
        self._call()
        return await self.inner.release(release)

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        """Acquire each in the inner store unless down (one call, like one pipeline)."""
        self._call()
        return await self.inner.acquire_many(acquisitions)

    async def release_many(self, releases: Sequence[Release]) -> list[ReleaseVerdict]:
        """Release each in the inner store unless down (one call, like one pipeline)."""
        self._call()
        return await self.inner.release_many(releases)

    async def lost_state(self) -> bool:
        """Report `lost` once (not counted as a call)."""
        if self.down:
            raise StoreUnavailable("down")
        self.epoch_checks += 1
        lost, self.lost = self.lost, False
        return lost

    async def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class View:
    """A verdict with the shorthand limits' usages by kind, then the rules' usages."""

    verdict: Verdict
    kinds: tuple[LimitKind, ...]

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def replayed(self) -> bool:
        return self.verdict.replayed

    @property
    def denied_by(self) -> LimitKind | str | None:
        denied = self.verdict.denied
        if denied is None:
            return None
        return self.kinds[denied] if denied < len(self.kinds) else f"rule{denied - len(self.kinds)}"

    def __getattr__(self, name: str) -> Usage:
        kind = LimitKind[name.upper()]
        return self.verdict.usages[self.kinds.index(kind)]

    def rule(self, index: int) -> Usage:
        return self.verdict.usages[len(self.kinds) + index]


class LeaseStore:
    """A store driven by lease requests (resolved with `window_ms`), answering Views."""

    def __init__(self, store: LimiterStore, window_ms: int = 60_000, ttl_ms: int = 600_000):
        self.store = store
        self._windows = StandardWindows(window_ms, 86_400_000)
        self._ttl_ms = ttl_ms

    def resolve(self, request: LeaseRequest) -> Acquisition:
        """The store's view of a lease request."""
        return lease_acquisition(request, self._windows, self._ttl_ms)

    async def acquire(self, request: LeaseRequest) -> View:
        """Acquire in the store."""
        return View(await self.store.acquire(self.resolve(request)), request.limits.finite())

    async def release(self, release: LeaseRelease) -> bool:
        """Release in the store."""
        return (await self.store.release(lease_release(release))).released

    async def acquire_many(self, requests: Sequence[LeaseRequest]) -> list[View]:
        """Acquire each in one store call."""
        verdicts = await self.store.acquire_many([self.resolve(r) for r in requests])
        return [View(v, r.limits.finite()) for r, v in zip(requests, verdicts, strict=True)]

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool]:
        """Release each in one store call."""
        verdicts = await self.store.release_many([lease_release(r) for r in releases])
        return [v.released for v in verdicts]
