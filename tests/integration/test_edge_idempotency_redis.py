"""RedisIdempotencyStore on a real Redis: the state machine, expiry, and replicas racing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from edge.idempotency import (
    Claimed,
    InFlight,
    Mismatch,
    RedisIdempotencyStore,
    Replay,
    StoredResponse,
)

pytestmark = pytest.mark.integration

OK = StoredResponse(200, b'{"id": "chatcmpl-1", "bin": "\xff"}', "application/json")
StoreFactory = Callable[..., RedisIdempotencyStore]


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[StoreFactory]:
    """Stores (each with its own client, like edge replicas) sharing one test prefix."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:idem:"
    stores: list[RedisIdempotencyStore] = []

    def make(ttl_s: float = 60.0, pending_ttl_s: float = 30.0) -> RedisIdempotencyStore:
        store = RedisIdempotencyStore.from_url(redis_url, ttl_s, pending_ttl_s, prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def test_claim_in_flight_mismatch_replay(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.claim("key_1", "k", "fp") == Claimed()
    assert await store.claim("key_1", "k", "fp") == InFlight()
    assert await store.claim("key_1", "k", "other") == Mismatch()
    await store.complete("key_1", "k", "fp", OK)
    assert await make_store().claim("key_1", "k", "fp") == Replay(OK)
    assert await store.claim("key_1", "k", "other") == Mismatch()
    assert await store.claim("key_2", "k", "other") == Claimed()


async def test_abandon_lets_a_retry_claim_again_but_keeps_finished_records(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.claim("key_1", "k", "fp")
    await store.abandon("key_1", "k")
    assert await store.claim("key_1", "k", "fp") == Claimed()
    await store.complete("key_1", "k", "fp", OK)
    await store.abandon("key_1", "k")
    await store.complete("key_1", "k", "fp", StoredResponse(500, b"", "text/plain"))
    assert await store.claim("key_1", "k", "fp") == Replay(OK)


async def test_a_dead_requests_claim_lapses_and_completion_restarts_the_ttl(
    make_store: StoreFactory, redis_url: str
) -> None:
    store = make_store(ttl_s=0.5, pending_ttl_s=0.2)
    await store.claim("key_1", "dead", "fp")  # never completed nor abandoned
    await store.claim("key_1", "k", "fp")
    await asyncio.sleep(0.15)
    await store.complete("key_1", "k", "fp", OK)  # 0.5 s from now, not from the claim
    await asyncio.sleep(0.1)
    assert await store.claim("key_1", "dead", "fp") == Claimed()  # past its pending 0.2 s
    assert await store.claim("key_1", "k", "fp") == Replay(OK)
    await asyncio.sleep(0.5)
    assert await store.claim("key_1", "k", "other") == Claimed()


async def test_replicas_racing_for_one_key_claim_it_once(make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(8)]
    results = await asyncio.gather(*(store.claim("key_1", "race", "fp") for store in stores))
    assert results.count(Claimed()) == 1
    assert results.count(InFlight()) == 7
