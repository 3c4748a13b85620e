"""Limiter rules: input checks, statuses, default TTL, and the outage policy."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from services.ratelimit.core import FailMode, Limiter, OutagePolicy
from services.ratelimit.errors import InvalidArgument, StoreUnavailable
from services.ratelimit.limits import (
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitKind,
    Limits,
    LimitStatus,
)
from services.ratelimit.store import MemoryLimiterStore
from tests.unit.ratelimit.fakes import FixedClock, FlakyStore

DEFAULT_TTL = 600_000


def request(lease_id: str, limits: Limits, tokens: int = 0, ttl_ms: int = 0) -> LeaseRequest:
    return LeaseRequest("key_1", lease_id, limits, tokens, ttl_ms)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.mark.parametrize(
    ("subject", "lease_id", "limits", "tokens", "ttl_ms"),
    [
        ("", "r", Limits(), 0, 0),
        ("s", "", Limits(), 0, 0),
        ("s" * 257, "r", Limits(), 0, 0),
        ("s", "r" * 257, Limits(), 0, 0),
        ("s", "r", Limits(rpm=-1), 0, 0),
        ("s", "r", Limits(tpm=-1), 0, 0),
        ("s", "r", Limits(concurrency=-1), 0, 0),
        ("s", "r", Limits(), -1, 0),
        ("s", "r", Limits(tpm=10**12 + 1), 0, 0),
        ("s", "r", Limits(), 10**12 + 1, 0),
        ("s", "r", Limits(), 0, -1),
        ("s", "r", Limits(), 0, 24 * 3600 * 1000 + 1),
    ],
)
async def test_malformed_acquisitions_are_invalid_arguments(
    clock: FixedClock, subject: str, lease_id: str, limits: Limits, tokens: int, ttl_ms: int
) -> None:
    limiter = Limiter(MemoryLimiterStore(clock=clock), DEFAULT_TTL)
    with pytest.raises(InvalidArgument):
        await limiter.acquire(LeaseRequest(subject, lease_id, limits, tokens, ttl_ms))


@pytest.mark.parametrize(("subject", "lease_id"), [("", "r"), ("s", "")])
async def test_malformed_releases_are_invalid_arguments(
    clock: FixedClock, subject: str, lease_id: str
) -> None:
    limiter = Limiter(MemoryLimiterStore(clock=clock), DEFAULT_TTL)
    with pytest.raises(InvalidArgument):
        await limiter.release(LeaseRelease(subject, lease_id))


async def test_statuses_cover_finite_limits_only(clock: FixedClock) -> None:
    limiter = Limiter(MemoryLimiterStore(clock=clock), DEFAULT_TTL)
    result = await limiter.acquire(request("r1", Limits(rpm=10, concurrency=3), tokens=50))
    assert result.allowed and result.lease_id == "r1" and result.denied_by is None
    assert result.statuses == (
        LimitStatus(LimitKind.RPM, 10, 9, 60_000),
        LimitStatus(LimitKind.CONCURRENCY, 3, 2, 0),
    )


async def test_a_denial_has_no_lease_id_and_zero_remaining(clock: FixedClock) -> None:
    limiter = Limiter(MemoryLimiterStore(clock=clock), DEFAULT_TTL)
    assert (await limiter.acquire(request("r1", Limits(rpm=1)))).allowed
    before = metric("apirelay_ratelimit_decisions_total", result="denied", limit="rpm")
    denied = await limiter.acquire(request("r2", Limits(rpm=1)))
    assert not denied.allowed and denied.lease_id == "" and denied.denied_by is LimitKind.RPM
    assert denied.statuses == (LimitStatus(LimitKind.RPM, 1, 0, 60_000),)
    after = metric("apirelay_ratelimit_decisions_total", result="denied", limit="rpm")
    assert after == before + 1


async def test_zero_ttl_means_the_default_ttl(clock: FixedClock) -> None:
    limiter = Limiter(MemoryLimiterStore(clock=clock), default_ttl_ms=5_000)
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    clock.advance(4_999)
    assert not (await limiter.acquire(request("r2", Limits(concurrency=1)))).allowed
    clock.advance(1)
    assert (await limiter.acquire(request("r3", Limits(concurrency=1)))).allowed


async def test_fail_open_decides_locally_with_the_replica_share(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(clock)
    fallback = MemoryLimiterStore(clock=clock)
    policy = OutagePolicy(FailMode.OPEN, replicas=4, probe_interval_ms=1_000)
    limiter = Limiter(store, DEFAULT_TTL, fallback, policy, clock)
    store.down = True
    with caplog.at_level(logging.WARNING, logger="services.ratelimit.core"):
        results = [await limiter.acquire(request(f"r{i}", Limits(rpm=10))) for i in range(5)]
        assert metric("apirelay_ratelimit_fallback_active") == 1
        store.down = False
        clock.advance(1_000)
        assert (await limiter.acquire(request("after", Limits(rpm=10)))).allowed
    assert [r.allowed for r in results] == [True, True, False, False, False]
    assert results[0].statuses[0].limit == 2  # 10 // 4 replicas
    assert metric("apirelay_ratelimit_fallback_active") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unreachable" in messages[0] and "reachable again" in messages[1]


async def test_during_an_outage_the_store_is_probed_once_per_interval(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(FailMode.OPEN, probe_interval_ms=1_000)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), policy, clock)
    store.down = True
    for i in range(10):
        await limiter.acquire(request(f"r{i}", Limits()))
    assert store.calls == 1
    clock.advance(1_000)
    await limiter.acquire(request("probe", Limits()))
    assert store.calls == 2


async def test_a_finite_limit_never_becomes_unlimited_in_the_fallback(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(FailMode.OPEN, replicas=8)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), policy, clock)
    store.down = True
    assert (await limiter.acquire(request("r1", Limits(concurrency=3)))).allowed
    assert not (await limiter.acquire(request("r2", Limits(concurrency=3)))).allowed


async def test_a_lease_taken_during_an_outage_is_released_from_the_fallback(
    clock: FixedClock,
) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), OutagePolicy(), clock)
    store.down = True
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    store.down = False
    assert await limiter.release(LeaseRelease("key_1", "r1"))
    assert not await limiter.release(LeaseRelease("key_1", "r1"))


async def test_release_during_an_outage_fails_open_with_false(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), OutagePolicy(), clock)
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    store.down = True
    assert not await limiter.release(LeaseRelease("key_1", "r1"))


async def test_fail_closed_refuses_while_the_store_is_down(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    fallback = MemoryLimiterStore(clock=clock)
    limiter = Limiter(store, DEFAULT_TTL, fallback, OutagePolicy(FailMode.CLOSED), clock)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await limiter.acquire(request("r1", Limits()))
    with pytest.raises(StoreUnavailable):
        await limiter.release(LeaseRelease("key_1", "r1"))
    store.down = False
    clock.advance(1_000)
    assert (await limiter.acquire(request("r2", Limits()))).allowed


def test_limits_shared_by_replicas() -> None:
    assert Limits(10, 1000, 3).shared_by(3) == Limits(3, 333, 1)
    assert Limits(0, 1, 0).shared_by(4) == Limits(0, 1, 0)
    assert Limits(10, 20, 30).shared_by(1) == Limits(10, 20, 30)


async def test_a_batch_asks_the_store_once_and_keeps_the_order(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), OutagePolicy(), clock)
    results = await limiter.acquire_many([
        request("r1", Limits(rpm=2)), request("", Limits(rpm=2)),
        request("r2", Limits(rpm=2), tokens=-1), request("r3", Limits(rpm=2)),
        request("r4", Limits(rpm=2)),
    ])
    assert store.calls == 1
    assert [type(r).__name__ for r in results] == [
        "LeaseResult", "InvalidArgument", "InvalidArgument", "LeaseResult", "LeaseResult"]
    assert [r.allowed for r in results if isinstance(r, LeaseResult)] == [True, True, False]
    assert isinstance(results[1], InvalidArgument)
    assert str(results[1]) == "request_id is required"


async def test_a_release_batch_frees_fallback_leases_and_store_leases(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(probe_interval_ms=0)
    limiter = Limiter(store, DEFAULT_TTL, MemoryLimiterStore(clock=clock), policy, clock)
    assert (await limiter.acquire(request("in-store", Limits(concurrency=5)))).allowed
    store.down = True
    assert (await limiter.acquire(request("in-fallback", Limits(concurrency=5)))).allowed
    store.down = False
    releases = [LeaseRelease("key_1", lease) for lease in ("in-fallback", "in-store", "x")]
    results = await limiter.release_many([*releases, LeaseRelease("", "y")])
    assert results[:3] == [True, True, False]
    assert isinstance(results[3], InvalidArgument) and str(results[3]) == "subject is required"


async def test_a_failing_closed_batch_is_refused_whole(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, DEFAULT_TTL, None, OutagePolicy(FailMode.CLOSED), clock)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await limiter.acquire_many([request("r1", Limits())])
    with pytest.raises(StoreUnavailable):
        await limiter.release_many([LeaseRelease("key_1", "r1")])
