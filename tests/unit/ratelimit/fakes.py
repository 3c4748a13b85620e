"""Test doubles for the rate-limit service: a settable clock and a store that can fail."""

from __future__ import annotations

from collections.abc import Sequence

from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import LeaseRelease, LeaseRequest, Verdict
from services.ratelimit.store import MemoryLimiterStore


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
    """A memory store that raises StoreUnavailable while `down` is set; counts calls."""

    def __init__(self, clock: FixedClock, window_ms: int = 60_000) -> None:
        self.inner = MemoryLimiterStore(window_ms, clock)
        self.down = False
        self.calls = 0

    async def acquire(self, request: LeaseRequest) -> Verdict:
        """Acquire in the inner store unless down."""
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down")
        return await self.inner.acquire(request)

    async def release(self, release: LeaseRelease) -> bool:
        """Release in the inner store unless down."""
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down")
        return await self.inner.release(release)

    async def acquire_many(self, requests: Sequence[LeaseRequest]) -> list[Verdict]:
        """Acquire each in the inner store unless down (one call, like one pipeline)."""
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down")
        return await self.inner.acquire_many(requests)

    async def release_many(self, releases: Sequence[LeaseRelease]) -> list[bool]:
        """Release each in the inner store unless down (one call, like one pipeline)."""
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down")
        return await self.inner.release_many(releases)

    async def close(self) -> None:
        """Nothing to close."""
