"""RedisLimiterStore on a real Redis: exactness, replicas racing, TTLs, outage policy."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from services.ratelimit.core import Limiter
from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import (
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitKind,
    Limits,
    Rule,
)
from services.ratelimit.outage import FailMode, OutagePolicy
from services.ratelimit.redis_store import RedisLimiterStore
from services.ratelimit.store import MemoryLimiterStore
from tests.backends import free_port
from tests.unit.ratelimit.fakes import LeaseStore, View

pytestmark = pytest.mark.integration

TTL = 600_000
StoreFactory = Callable[..., LeaseStore]


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:rl:"


@pytest.fixture
async def make_store(redis_url: str, prefix: str) -> AsyncIterator[StoreFactory]:
    """Stores (each with its own client, like replicas) sharing one test prefix."""
    stores: list[RedisLimiterStore] = []

    def make(window_ms: int = 60_000) -> LeaseStore:
        store = RedisLimiterStore.from_url(redis_url, prefix, timeout_s=2.0)
        stores.append(store)
        return LeaseStore(store, window_ms)

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
def subject() -> str:
    return "key_" + uuid.uuid4().hex[:10]


def lease(subject: str, limits: Limits, tokens: int = 0, lease_id: str = "",
          ttl_ms: int = TTL) -> LeaseRequest:
    return LeaseRequest(subject, lease_id or uuid.uuid4().hex, limits, tokens, ttl_ms)


async def race(calls: Sequence[Awaitable[View]]) -> list[View]:
    return list(await asyncio.gather(*calls))


async def test_rpm_admits_exactly_n(make_store: StoreFactory, subject: str) -> None:
    store = make_store()
    verdicts = [await store.acquire(lease(subject, Limits(rpm=20))) for _ in range(25)]
    assert [v.allowed for v in verdicts] == [True] * 20 + [False] * 5
    assert [v.rpm.used for v in verdicts[:20]] == list(range(1, 21))
    denied = verdicts[20]
    assert denied.denied_by is LimitKind.RPM and denied.rpm.used == 20
    assert 59_000 < denied.rpm.reset_after_ms <= 60_000


async def test_room_frees_when_the_reported_reset_has_passed(
    make_store: StoreFactory, subject: str
) -> None:
    store = make_store(window_ms=400)
    for _ in range(3):
        assert (await store.acquire(lease(subject, Limits(rpm=3)))).allowed
    denied = await store.acquire(lease(subject, Limits(rpm=3)))
    assert not denied.allowed and 0 < denied.rpm.reset_after_ms <= 400
    await asyncio.sleep(denied.rpm.reset_after_ms / 1000 + 0.02)
    verdicts = [await store.acquire(lease(subject, Limits(rpm=3))) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]


async def test_replicas_racing_admit_exactly_n_requests(
    make_store: StoreFactory, subject: str
) -> None:
    replicas = [make_store() for _ in range(4)]
    calls = [replicas[i % 4].acquire(lease(subject, Limits(rpm=50))) for i in range(200)]
    verdicts = await race(calls)
    assert sum(v.allowed for v in verdicts) == 50
    assert {v.denied_by for v in verdicts if not v.allowed} == {LimitKind.RPM}


async def test_replicas_racing_admit_exactly_the_tokens_that_fit(
    make_store: StoreFactory, subject: str
) -> None:
    replicas = [make_store() for _ in range(4)]
    limits = Limits(tpm=1_000)
    verdicts = await race([replicas[i % 4].acquire(lease(subject, limits, 30)) for i in range(100)])
    assert sum(v.allowed for v in verdicts) == 33  # 33 * 30 = 990; one more would be 1020


async def test_replicas_racing_hold_exactly_c_slots(make_store: StoreFactory, subject: str) -> None:
    replicas = [make_store() for _ in range(4)]
    requests = [lease(subject, Limits(concurrency=7)) for _ in range(100)]
    verdicts = await race([replicas[i % 4].acquire(r) for i, r in enumerate(requests)])
    held = [r for r, v in zip(requests, verdicts, strict=True) if v.allowed]
    assert len(held) == 7
    released = await asyncio.gather(
        *(replicas[i % 4].release(LeaseRelease(subject, r.lease_id)) for i, r in enumerate(held))
    )
    assert all(released)
    again = await race([replicas[i % 4].acquire(lease(subject, Limits(concurrency=7)))
                        for i in range(20)])
    assert sum(v.allowed for v in again) == 7


async def test_the_same_request_id_from_every_replica_consumes_once(
    make_store: StoreFactory, subject: str
) -> None:
    replicas = [make_store() for _ in range(4)]
    one = lease(subject, Limits(rpm=10, tpm=100, concurrency=2), tokens=40)
    verdicts = await race([replicas[i % 4].acquire(one) for i in range(20)])
    assert all(v.allowed for v in verdicts)
    assert sum(not v.replayed for v in verdicts) == 1
    assert {(v.rpm.used, v.tpm.used, v.concurrency.used) for v in verdicts} == {(1, 40, 1)}


async def test_an_unreleased_lease_expires_at_its_ttl(
    make_store: StoreFactory, subject: str
) -> None:
    store = make_store()
    first = lease(subject, Limits(concurrency=1), ttl_ms=300)
    assert (await store.acquire(first)).allowed
    denied = await store.acquire(lease(subject, Limits(concurrency=1)))
    assert denied.denied_by is LimitKind.CONCURRENCY
    assert 0 < denied.concurrency.reset_after_ms <= 300
    await asyncio.sleep(0.35)
    assert (await store.acquire(lease(subject, Limits(concurrency=1)))).allowed
    assert not await store.release(LeaseRelease(subject, first.lease_id))


async def test_release_reconciles_tokens_once(make_store: StoreFactory, subject: str) -> None:
    store = make_store()
    first = lease(subject, Limits(tpm=100), tokens=80)
    assert (await store.acquire(first)).allowed
    assert not (await store.acquire(lease(subject, Limits(tpm=100), tokens=30))).allowed
    assert await store.release(LeaseRelease(subject, first.lease_id, actual_tokens=10))
    assert not await store.release(LeaseRelease(subject, first.lease_id, actual_tokens=0))
    verdict = await store.acquire(lease(subject, Limits(tpm=100), tokens=90))
    assert verdict.allowed and verdict.tpm.used == 100


async def test_every_key_expires_and_a_release_leaves_no_lease_behind(
    make_store: StoreFactory, subject: str, redis_url: str, prefix: str
) -> None:
    store = make_store()
    account = Rule(Descriptor.of(("account", subject)), LimitKind.CONCURRENCY, 5)
    held = lease(subject, Limits(rpm=5, tpm=50, rpd=9), tokens=3, ttl_ms=5_000)
    held = LeaseRequest(held.subject, held.lease_id, held.limits, 3, 5_000, rules=(account,))
    assert (await store.acquire(held)).allowed
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}*")])
        # RPM, TPM, RPD windows (ZSET + HASH each), the account's slots, the lease record.
        assert len(keys) == 8
        assert len([key for key in keys if key.startswith(prefix + "l:")]) == 1
        ttls = {key: await client.pttl(key) for key in keys}
        day_windows = [k for k in keys if k.startswith(prefix + "d:")]
        assert all(0 < ttl <= 86_400_000 for ttl in ttls.values())
        assert all(ttl <= 60_000 for key, ttl in ttls.items() if key not in day_windows)
        assert await store.release(LeaseRelease(subject, held.lease_id, actual_tokens=1))
        left = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}*")])
        # The lease record and the (now empty) slot set are gone; the windows stay.
        assert left == [k for k in keys if k.startswith((prefix + "r:", prefix + "t:",
                                                         prefix + "d:"))]
    finally:
        await client.aclose()


async def test_a_flushed_script_cache_is_refilled(
    make_store: StoreFactory, subject: str, redis_url: str
) -> None:
    store = make_store()
    assert (await store.acquire(lease(subject, Limits(rpm=2)))).allowed
    client = redis.Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert (await store.acquire(lease(subject, Limits(rpm=2)))).allowed
    assert not (await store.acquire(lease(subject, Limits(rpm=2)))).allowed


async def test_redis_and_memory_stores_decide_alike(make_store: StoreFactory, subject: str) -> None:
    rng = random.Random(20240607)
    stores = [make_store(), LeaseStore(MemoryLimiterStore())]
    limits = Limits(rpm=60, tpm=2_000, concurrency=5)
    rules = (Rule(Descriptor.of(("account", subject)), LimitKind.TPM, 3_000),)
    held: list[str] = []
    for step in range(400):
        if held and rng.random() < 0.4:
            release = LeaseRelease(subject, held.pop(rng.randrange(len(held))),
                                   rng.choice([-1, 0, rng.randrange(200)]))
            results = [await s.release(release) for s in stores]
            assert results[0] == results[1], step
            continue
        lease_id = rng.choice(held) if held and rng.random() < 0.1 else f"r{step}"
        request = LeaseRequest(subject, lease_id, limits, rng.randrange(150), TTL, rules=rules)
        redis_v, memory_v = [(await s.acquire(request)).verdict for s in stores]
        assert (redis_v.allowed, redis_v.denied, redis_v.replayed) == (
            memory_v.allowed, memory_v.denied, memory_v.replayed), step
        assert [u.used for u in redis_v.usages] == [u.used for u in memory_v.usages], step
        if memory_v.allowed and not memory_v.replayed:
            held.append(lease_id)


async def test_replicas_racing_on_key_and_account_rules_consume_all_or_nothing(
    make_store: StoreFactory, subject: str
) -> None:
    replicas = [make_store() for _ in range(4)]
    account = (Rule(Descriptor.of(("account", subject)), LimitKind.RPM, 70),)
    keys = [f"{subject}-k{i}" for i in range(3)]
    requests = [LeaseRequest(keys[i % 3], f"r{i}", Limits(rpm=30), 0, TTL, rules=account)
                for i in range(300)]
    views = await race([replicas[i % 4].acquire(r) for i, r in enumerate(requests)])
    admitted = [r.subject for r, v in zip(requests, views, strict=True) if v.allowed]
    assert len(admitted) == 70
    assert all(admitted.count(key) <= 30 for key in keys)
    # No denied request left a unit behind: each key's window holds its admissions only.
    for key in keys:
        probe = await replicas[0].acquire(LeaseRequest(key, "probe", Limits(rpm=1000), 0, TTL))
        assert probe.rpm.used == admitted.count(key) + 1


async def test_a_store_notices_that_redis_lost_its_data(
    make_store: StoreFactory, redis_url: str, prefix: str
) -> None:
    store = make_store().store
    other = make_store().store
    assert not await store.lost_state()
    assert not await store.lost_state()
    assert not await other.lost_state()
    client = redis.Redis.from_url(redis_url)
    try:
        await client.delete(prefix + "epoch")  # what a restart without persistence does
    finally:
        await client.aclose()
    assert await store.lost_state()
    assert await other.lost_state()  # saw the epoch the first store wrote
    assert not await store.lost_state()


def _gauge() -> float:
    return REGISTRY.get_sample_value("apirelay_ratelimit_fallback_active") or 0.0


async def test_unreachable_redis_fails_open_with_the_replica_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = RedisLimiterStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    policy = OutagePolicy(FailMode.OPEN, replicas=2, probe_interval_ms=0)
    limiter = Limiter(dead, None, MemoryLimiterStore(), policy)
    try:
        with pytest.raises(StoreUnavailable):
            await LeaseStore(dead).acquire(lease("s", Limits()))
        with caplog.at_level(logging.WARNING, logger="services.ratelimit.outage"):
            results = [await limiter.acquire(lease("s", Limits(rpm=10))) for _ in range(8)]
        assert [r.allowed for r in results] == [True] * 5 + [False] * 3
        assert _gauge() == 1
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    finally:
        await dead.close()


async def test_unreachable_redis_fails_closed_when_configured() -> None:
    dead = RedisLimiterStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    limiter = Limiter(dead, None, MemoryLimiterStore(), OutagePolicy(FailMode.CLOSED))
    try:
        with pytest.raises(StoreUnavailable):
            await limiter.acquire(lease("s", Limits(rpm=10)))
    finally:
        await dead.close()


async def test_a_pipelined_batch_decides_as_single_calls_do(
    make_store: StoreFactory, subject: str
) -> None:
    store, other = make_store(), subject + "-single"
    limits = Limits(rpm=6, tpm=250, concurrency=3)

    def requests(subject: str) -> list[LeaseRequest]:
        ids = ["a", "b", "a", "c", "d", "e", "f"]
        return [lease(subject, limits, 40 + 10 * i, lease_id) for i, lease_id in enumerate(ids)]

    def decided(v: View) -> tuple[object, ...]:
        # Reset times follow Redis' clock, so they differ by the milliseconds between calls.
        return v.allowed, v.denied_by, v.replayed, v.rpm.used, v.tpm.used, v.concurrency.used

    batch = await store.acquire_many(requests(subject))
    singles = [await store.acquire(request) for request in requests(other)]
    assert [decided(v) for v in batch] == [decided(v) for v in singles]
    assert [v.allowed for v in batch] == [True, True, True, True, False, False, False]
    assert batch[2].replayed and {v.denied_by for v in batch[4:]} == {
        LimitKind.TPM, LimitKind.CONCURRENCY}

    def releases(subject: str) -> list[LeaseRelease]:
        return [LeaseRelease(subject, lease_id, 10) for lease_id in ("a", "a", "zz", "c")]

    assert await store.release_many(releases(subject)) == [
        await store.release(r) for r in releases(other)] == [True, False, False, True]


async def test_a_batch_is_one_pipeline_round_trip(
    redis_url: str, subject: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url)
    store = LeaseStore(RedisLimiterStore(client, f"test:{uuid.uuid4().hex[:8]}:rl:"))
    pipelines: list[object] = []
    original = client.pipeline

    def pipeline(*args: object, **kwargs: object) -> object:
        pipelines.append(args)
        return original(*args, **kwargs)

    async def no_single_commands(*args: object, **kwargs: object) -> object:
        raise AssertionError("a batch item was sent on its own")

    try:
        assert (await store.acquire(lease(subject, Limits(rpm=5)))).allowed  # scripts cached
        monkeypatch.setattr(client, "pipeline", pipeline)
        monkeypatch.setattr(client, "execute_command", no_single_commands)
        verdicts = await store.acquire_many([lease(subject, Limits(rpm=5)) for _ in range(6)])
        assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 2
        assert await store.release_many([LeaseRelease(subject, "x"), LeaseRelease(subject, "y")]) \
            == [False, False]
        assert len(pipelines) == 2
    finally:
        await client.aclose()


async def test_racing_batches_from_replicas_admit_exactly_the_limit(
    make_store: StoreFactory, subject: str
) -> None:
    replicas = [make_store() for _ in range(4)]
    batches = [[lease(subject, Limits(rpm=50, concurrency=30)) for _ in range(10)]
               for _ in range(20)]
    results = await asyncio.gather(
        *(replicas[i % 4].acquire_many(batch) for i, batch in enumerate(batches)))
    verdicts = [v for batch in results for v in batch]
    assert sum(v.allowed for v in verdicts) == 30
    held = [r for batch, replies in zip(batches, results, strict=True)
            for r, v in zip(batch, replies, strict=True) if v.allowed]
    released = await asyncio.gather(*(
        replicas[i % 4].release_many([LeaseRelease(subject, r.lease_id) for r in held[i::4]])
        for i in range(4)))
    assert all(ok for batch in released for ok in batch)
    again = await asyncio.gather(*(
        replicas[i % 4].acquire_many([lease(subject, Limits(rpm=50, concurrency=30))
                                      for _ in range(10)]) for i in range(4)))
    assert sum(v.allowed for batch in again for v in batch) == 20  # the rest of the 50 rpm


async def test_a_batch_refills_a_flushed_script_cache(
    make_store: StoreFactory, subject: str, redis_url: str
) -> None:
    store = make_store()
    assert (await store.acquire(lease(subject, Limits(rpm=3)))).allowed
    client = redis.Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    verdicts = await store.acquire_many([lease(subject, Limits(rpm=3)) for _ in range(3)])
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert [v.rpm.used for v in verdicts] == [2, 3, 3]


async def test_a_batch_fails_open_as_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisLimiterStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    limiter = Limiter(dead, None, MemoryLimiterStore(), OutagePolicy(FailMode.OPEN, replicas=2))
    try:
        with pytest.raises(StoreUnavailable):
            await LeaseStore(dead).acquire_many([lease("s", Limits())])
        with caplog.at_level(logging.WARNING, logger="services.ratelimit.outage"):
            results = await limiter.acquire_many([lease("s", Limits(rpm=10)) for _ in range(8)])
        allowed = [isinstance(r, LeaseResult) and r.allowed for r in results]
        assert allowed == [True] * 5 + [False] * 3
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    finally:
        await dead.close()
