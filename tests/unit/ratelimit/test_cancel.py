"""CancelGuard: a lease granted after its caller cancelled is released, not left to its TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import REGISTRY

from services.ratelimit.cancel import CancelGuard, granted_lease, granted_leases
from services.ratelimit.core import Limiter
from services.ratelimit.errors import InvalidArgument
from services.ratelimit.limits import Acquisition, LeaseRequest, Limits, Verdict
from services.ratelimit.store import MemoryLimiterStore
from tests.unit.ratelimit.fakes import FixedClock


class GatedStore(MemoryLimiterStore):
    """A memory store whose acquisitions wait for `gate` (a script on its way to Redis)."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(clock)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        self.entered.set()
        await self.gate.wait()
        return await super().acquire(acquisition)

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        return [await self.acquire(a) for a in acquisitions]


def lease(lease_id: str) -> LeaseRequest:
    return LeaseRequest("key_1", lease_id, Limits(concurrency=1), 0, 60_000)


def grants() -> float:
    return REGISTRY.get_sample_value("apirelay_ratelimit_cancelled_grants_total") or 0.0


async def test_a_grant_after_the_caller_cancelled_is_released() -> None:
    store = GatedStore(FixedClock())
    limiter = Limiter(store)
    guard, before = CancelGuard(limiter), grants()
    call = asyncio.ensure_future(guard.run(limiter.acquire(lease("a")), granted_lease(lease("a"))))
    await store.entered.wait()
    call.cancel()
    store.gate.set()
    await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()

    def held() -> int:
        return sum(slots.used for slots in store._state.slots.values())  # white-box

    async def released() -> None:
        # The release runs in a task of its own, with nothing to await from outside.
        while grants() == before or held():
            await asyncio.sleep(0)

    # The store call ran to its end and granted "a"; the guard released it again.
    await asyncio.wait_for(released(), 5)
    assert grants() == before + 1
    assert (await limiter.acquire(lease("b"))).allowed


async def test_without_a_cancel_nothing_is_released() -> None:
    store = GatedStore(FixedClock())
    store.gate.set()
    limiter = Limiter(store)
    result = await CancelGuard(limiter).run(limiter.acquire(lease("a")), granted_lease(lease("a")))
    assert result.allowed
    assert not (await limiter.acquire(lease("b"))).allowed


async def test_a_batch_releases_only_new_grants() -> None:
    store = GatedStore(FixedClock())
    store.gate.set()
    limiter = Limiter(store)
    first = await limiter.acquire(lease("a"))
    requests = [lease("a"), InvalidArgument("bad"), lease("c")]
    results = await limiter.acquire_many(requests)
    releases = granted_leases(requests)(results)
    # "a" was replayed (its holder knows it), "c" was denied: nothing new to release.
    assert first.allowed and releases == []
