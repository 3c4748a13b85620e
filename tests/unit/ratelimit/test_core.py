"""Limiter rules: statuses, default TTL, CheckLimits, and the outage policy."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from services.ratelimit.core import Limiter, LimiterConfig
from services.ratelimit.errors import InvalidArgument, StoreUnavailable
from services.ratelimit.limits import (
    CheckRequest,
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitKind,
    Limits,
    LimitStatus,
    Rule,
)
from services.ratelimit.outage import FailMode, OutagePolicy
from services.ratelimit.store import MemoryLimiterStore
from tests.unit.ratelimit.fakes import FixedClock, FlakyStore

ACCOUNT = Descriptor.of(("account", "acc_1"))
UPSTREAM = Descriptor.of(("upstream_key", "up_1"))


def request(lease_id: str, limits: Limits, tokens: int = 0, ttl_ms: int = 0,
            rules: tuple[Rule, ...] = ()) -> LeaseRequest:
    return LeaseRequest("key_1", lease_id, limits, tokens, ttl_ms, rules=rules)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def memory_limiter(clock: FixedClock, **config: int) -> Limiter:
    return Limiter(MemoryLimiterStore(clock), LimiterConfig(**config), clock=clock)


async def test_statuses_cover_finite_limits_and_rules_in_order(clock: FixedClock) -> None:
    limiter = memory_limiter(clock)
    rules = (Rule(ACCOUNT, LimitKind.RPD, 1000), Rule(ACCOUNT, LimitKind.CONCURRENCY, 9))
    result = await limiter.acquire(request("r1", Limits(rpm=10, concurrency=3), 50, rules=rules))
    assert result.allowed and result.lease_id == "r1" and result.denied_by is None
    assert result.statuses == (
        LimitStatus(LimitKind.RPM, 10, 9, 60_000),
        LimitStatus(LimitKind.CONCURRENCY, 3, 2, 0),
    )
    assert result.rule_statuses == (
        LimitStatus(LimitKind.RPD, 1000, 999, 86_400_000),
        LimitStatus(LimitKind.CONCURRENCY, 9, 8, 0),
    )
    assert result.decided_at_us is None and not result.local


async def test_a_denial_has_no_lease_id_and_marks_the_limits_over(clock: FixedClock) -> None:
    limiter = memory_limiter(clock)
    assert (await limiter.acquire(request("r1", Limits(rpm=1, tpm=100), 10))).allowed
    before = metric("apirelay_ratelimit_decisions_total", result="denied", limit="rpm")
    denied = await limiter.acquire(request("r2", Limits(rpm=1, tpm=100), 10))
    assert not denied.allowed and denied.lease_id == "" and denied.denied_by is LimitKind.RPM
    assert denied.statuses == (
        LimitStatus(LimitKind.RPM, 1, 0, 60_000, over_limit=True),
        LimitStatus(LimitKind.TPM, 100, 90, 0, over_limit=False),
    )
    after = metric("apirelay_ratelimit_decisions_total", result="denied", limit="rpm")
    assert after == before + 1


async def test_a_rule_denying_names_its_kind(clock: FixedClock) -> None:
    limiter = memory_limiter(clock)
    rules = (Rule(ACCOUNT, LimitKind.RPD, 1),)
    assert (await limiter.acquire(request("r1", Limits(rpm=5), rules=rules))).allowed
    denied = await limiter.acquire(request("r2", Limits(rpm=5), rules=rules))
    assert denied.denied_by is LimitKind.RPD
    assert [s.over_limit for s in (*denied.statuses, *denied.rule_statuses)] == [False, True]


async def test_zero_ttl_means_the_default_ttl(clock: FixedClock) -> None:
    limiter = memory_limiter(clock, default_ttl_ms=5_000)
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    clock.advance(4_999)
    assert not (await limiter.acquire(request("r2", Limits(concurrency=1)))).allowed
    clock.advance(1)
    assert (await limiter.acquire(request("r3", Limits(concurrency=1)))).allowed


async def test_check_consumes_hits_from_every_rule_or_none(clock: FixedClock) -> None:
    limiter = memory_limiter(clock)
    rules = (Rule(UPSTREAM, LimitKind.RPM, 10), Rule(UPSTREAM, LimitKind.TPM, 100, 5_000))
    too_many = await limiter.check(CheckRequest(rules, hits=11))
    assert not too_many.allowed and [s.over_limit for s in too_many.statuses] == [True, False]
    first = await limiter.check(CheckRequest(rules, hits=10))
    assert first.allowed and [s.remaining for s in first.statuses] == [0, 90]
    assert first.statuses[1].reset_after_ms == 5_000
    denied = await limiter.check(CheckRequest(rules[1:], hits=91))
    assert not denied.allowed and denied.statuses[0].over_limit
    assert denied.statuses[0].reset_after_ms == 5_000
    clock.advance(5_000)
    assert (await limiter.check(CheckRequest(rules[1:], hits=100))).allowed
    assert not (await limiter.check(CheckRequest(rules[:1]))).allowed  # RPM still full


async def test_check_refuses_concurrency_and_needs_a_rule(clock: FixedClock) -> None:
    limiter = memory_limiter(clock)
    with pytest.raises(InvalidArgument, match="lease"):
        await limiter.check(CheckRequest((Rule(UPSTREAM, LimitKind.CONCURRENCY, 1),)))
    with pytest.raises(InvalidArgument):
        await limiter.check(CheckRequest(()))


async def test_fail_open_decides_locally_with_the_replica_share(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(FailMode.OPEN, replicas=4, probe_interval_ms=1_000)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), policy, clock)
    assert (await limiter.acquire(request("first", Limits(rpm=100)))).allowed  # epoch seen
    store.down = True
    with caplog.at_level(logging.WARNING, logger="services.ratelimit.outage"):
        results = [await limiter.acquire(request(f"r{i}", Limits(rpm=10))) for i in range(5)]
        assert metric("apirelay_ratelimit_fallback_active") == 1
        store.down = False
        clock.advance(1_000)
        after = await limiter.acquire(request("after", Limits(rpm=10)))
    assert [r.allowed for r in results] == [True, True, False, False, False]
    assert all(r.local for r in results) and not after.local and after.allowed
    assert results[0].statuses[0].limit == 2  # 10 // 4 replicas
    assert metric("apirelay_ratelimit_fallback_active") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unreachable" in messages[0] and "reachable again" in messages[1]


async def test_a_store_that_came_back_empty_is_counted_and_logged(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), OutagePolicy(), clock)
    await limiter.acquire(request("r0", Limits()))
    await limiter.acquire(request("r1", Limits()))
    assert store.epoch_checks == 1  # once at the first success, not on every call
    before = metric("apirelay_ratelimit_store_resets_total")
    store.down = True
    await limiter.acquire(request("r2", Limits()))
    store.down, store.lost = False, True
    clock.advance(1_000)
    with caplog.at_level(logging.WARNING, logger="services.ratelimit.outage"):
        await limiter.acquire(request("r3", Limits()))
    assert store.epoch_checks == 2
    assert metric("apirelay_ratelimit_store_resets_total") == before + 1
    assert any("lost its counters" in r.getMessage() for r in caplog.records)


async def test_during_an_outage_the_store_is_probed_once_per_interval(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(FailMode.OPEN, probe_interval_ms=1_000)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), policy, clock)
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
    limiter = Limiter(store, None, MemoryLimiterStore(clock), policy, clock)
    store.down = True
    rules = (Rule(ACCOUNT, LimitKind.RPM, 3),)
    assert (await limiter.acquire(request("r1", Limits(concurrency=3), rules=rules))).allowed
    assert not (await limiter.acquire(request("r2", Limits(concurrency=3)))).allowed
    assert not (await limiter.acquire(request("r3", Limits(), rules=rules))).allowed


async def test_a_lease_taken_during_an_outage_is_released_from_the_fallback(
    clock: FixedClock,
) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), OutagePolicy(), clock)
    store.down = True
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    store.down = False
    assert (await limiter.release(LeaseRelease("key_1", "r1"))).released
    assert not (await limiter.release(LeaseRelease("key_1", "r1"))).released


async def test_release_during_an_outage_fails_open_with_false(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), OutagePolicy(), clock)
    assert (await limiter.acquire(request("r1", Limits(concurrency=1)))).allowed
    store.down = True
    assert not (await limiter.release(LeaseRelease("key_1", "r1"))).released


async def test_fail_closed_refuses_while_the_store_is_down(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    fallback = MemoryLimiterStore(clock)
    limiter = Limiter(store, None, fallback, OutagePolicy(FailMode.CLOSED), clock)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await limiter.acquire(request("r1", Limits()))
    with pytest.raises(StoreUnavailable):
        await limiter.release(LeaseRelease("key_1", "r1"))
    with pytest.raises(StoreUnavailable):
        await limiter.check(CheckRequest((Rule(UPSTREAM, LimitKind.RPM, 1),)))
    store.down = False
    clock.advance(1_000)
    assert (await limiter.acquire(request("r2", Limits()))).allowed


async def test_a_batch_asks_the_store_once_and_keeps_the_order(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), OutagePolicy(), clock)
    results = await limiter.acquire_many([
        request("r1", Limits(rpm=2)), request("", Limits(rpm=2)),
        request("r2", Limits(rpm=2), tokens=-1), request("r3", Limits(rpm=2)),
        InvalidArgument("converted badly"), request("r4", Limits(rpm=2)),
    ])
    assert store.calls == 1
    assert [type(r).__name__ for r in results] == [
        "LeaseResult", "InvalidArgument", "InvalidArgument", "LeaseResult", "InvalidArgument",
        "LeaseResult"]
    assert [r.allowed for r in results if isinstance(r, LeaseResult)] == [True, True, False]
    assert str(results[1]) == "request_id is required"
    assert str(results[4]) == "converted badly"


async def test_a_release_batch_frees_fallback_leases_and_store_leases(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    policy = OutagePolicy(probe_interval_ms=0)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), policy, clock)
    assert (await limiter.acquire(request("in-store", Limits(concurrency=5)))).allowed
    store.down = True
    assert (await limiter.acquire(request("in-fallback", Limits(concurrency=5)))).allowed
    store.down = False
    releases = [LeaseRelease("key_1", lease) for lease in ("in-fallback", "in-store", "x")]
    results = await limiter.release_many([*releases, LeaseRelease("", "y")])
    assert [getattr(r, "released", None) for r in results[:3]] == [True, True, False]
    assert isinstance(results[3], InvalidArgument) and str(results[3]) == "subject is required"


async def test_a_failing_closed_batch_is_refused_whole(clock: FixedClock) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, None, OutagePolicy(FailMode.CLOSED), clock)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await limiter.acquire_many([request("r1", Limits())])
    with pytest.raises(StoreUnavailable):
        await limiter.release_many([LeaseRelease("key_1", "r1")])


async def test_a_release_the_store_missed_is_applied_after_its_next_answer(
    clock: FixedClock,
) -> None:
    store = FlakyStore(clock)
    limiter = Limiter(store, None, MemoryLimiterStore(clock), OutagePolicy(), clock)
    held = await limiter.acquire(request("held", Limits(concurrency=1)))
    assert held.allowed and not held.local
    store.down = True  # the release of the shared lease cannot reach the store now
    assert not (await limiter.release(LeaseRelease("key_1", "held"))).released
    store.down = False
    clock.advance(1_000)
    # The first call after the outage is decided before the missed release is applied
    # (the store's answer is what says it is back); from then on the slot is free.
    assert not (await limiter.acquire(request("next", Limits(concurrency=1)))).allowed
    assert (await limiter.acquire(request("again", Limits(concurrency=1)))).allowed
