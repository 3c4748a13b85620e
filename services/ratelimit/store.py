"""Where the limiter's windows live: one `LimiterStore` protocol, in memory or in Redis.

Both run the algorithms described in `windows.py`; the Redis store (`redis_store.py`)
runs them as one Lua script per call (`lua.py`), so replicas sharing a Redis admit
exactly as one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from services.ratelimit.limits import Acquisition, Release, ReleaseVerdict, Verdict
from services.ratelimit.windows import MemoryState

_SWEEP_EVERY = 1024

MillisClock = Callable[[], int]


def monotonic_ms() -> int:
    """Milliseconds of the monotonic clock (the memory store's default clock)."""
    return time.monotonic_ns() // 1_000_000


class LimiterStore(Protocol):
    """Atomically decides and records acquisitions and releases of leases."""

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        """Admit into every check or none; raises StoreUnavailable."""
        ...

    async def release(self, release: Release) -> ReleaseVerdict:
        """End a held lease; not released if unknown, released or expired; raises StoreUnavailable."""
        ...

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        """`acquire` for each in order, in one round trip; raises StoreUnavailable."""
        ...

    async def release_many(self, releases: Sequence[Release]) -> list[ReleaseVerdict]:
        """`release` for each in order, in one round trip; raises StoreUnavailable."""
        ...

    async def lost_state(self) -> bool:
        """True if the store lost its counters since the last call (a restarted Redis)."""
        ...

    async def close(self) -> None:
        """Release the store's connections."""
        ...


class MemoryLimiterStore:
    """Windows in this process: exact for one replica; nothing awaits while deciding."""

    def __init__(self, clock: MillisClock = monotonic_ms) -> None:
        self._clock = clock
        self._state = MemoryState()
        self._calls = 0

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        """Admit into every check or none."""
        now = self._clock()
        self._maybe_sweep(now)
        return self._state.acquire(now, acquisition)

    async def release(self, release: Release) -> ReleaseVerdict:
        """End a held lease and reconcile its tokens."""
        return ReleaseVerdict(self._state.release(self._clock(), release))

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        """`acquire` for each in order."""
        return [await self.acquire(acquisition) for acquisition in acquisitions]

    async def release_many(self, releases: Sequence[Release]) -> list[ReleaseVerdict]:
        """`release` for each in order."""
        return [await self.release(release) for release in releases]

    async def lost_state(self) -> bool:
        """Never: the state lives as long as the process."""
        return False

    async def close(self) -> None:
        """Nothing to close."""

    def size(self) -> int:
        """Windows, slot sets and lease records remembered (for tests of forgetting)."""
        state = self._state
        return len(state.windows) + len(state.slots) + len(state.records)

    def _maybe_sweep(self, now: int) -> None:
        # Forget idle windows now and then, so memory follows the active descriptors.
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._state.sweep(now)
