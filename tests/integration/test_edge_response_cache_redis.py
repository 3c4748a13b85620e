"""RedisResponseCache on a real Redis: round trip, expiry, and edge replicas sharing answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import redis.asyncio as redis

from edge.config import CacheMode
from edge.domain import Usage, UsageSource
from edge.response_cache_store import CachedAnswer, RedisResponseCache
from tests.grpc.edge.conftest import auth, open_edge
from tests.grpc.edge.messages import MODEL

pytestmark = pytest.mark.integration

ANSWER = CachedAnswer(b'{"id": "chatcmpl-1", "bin": "\xff"}', "application/json",
                      Usage(11, 7, 18, cached_prompt_tokens=2, units={"character": 5}),
                      UsageSource.UPSTREAM)
StoreFactory = Callable[[], RedisResponseCache]


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[tuple[StoreFactory, str]]:
    """Stores (each with its own client, like edge replicas) sharing one test prefix."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:cache:"
    stores: list[RedisResponseCache] = []

    def make() -> RedisResponseCache:
        store = RedisResponseCache.from_url(redis_url, prefix)
        stores.append(store)
        return store

    yield make, prefix
    for store in stores:
        await store.close()


async def test_an_answer_round_trips_between_replicas(
    make_store: tuple[StoreFactory, str],
) -> None:
    make, _ = make_store
    writer, reader = make(), make()
    assert await reader.get("key_1:a") is None
    await writer.put("key_1:a", ANSWER, 60.0)
    assert await reader.get("key_1:a") == ANSWER
    assert await reader.get("key_2:a") is None


async def test_redis_expires_an_answer_after_its_ttl(
    make_store: tuple[StoreFactory, str], redis_url: str
) -> None:
    make, prefix = make_store
    store = make()
    await store.put("key_1:long", ANSWER, 30.0)
    await store.put("key_1:short", ANSWER, 0.05)
    client = redis.Redis.from_url(redis_url)
    try:
        assert 29_000 < await client.pttl(prefix + "key_1:long") <= 30_000
        # Expiry is Redis's own clock: wait it out, bounded, rather than guess a sleep.
        for _ in range(100):
            if not await client.exists(prefix + "key_1:short"):
                break
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()
    assert await store.get("key_1:short") is None
    assert await store.get("key_1:long") == ANSWER


async def test_two_edges_on_one_redis_share_hits(redis_url: str) -> None:
    # A unique body: entries under the default prefix outlive this test run.
    body = orjson.dumps({"model": MODEL, "messages": [
        {"role": "user", "content": f"hello {uuid.uuid4().hex}"}]})
    async with open_edge(response_cache=CacheMode.KEY, redis_url=redis_url) as first:
        response = await first.client.post("/v1/chat/completions", data=body, headers=auth())
        assert response.headers["x-apirelay-cache"] == "miss"
        stored = await response.read()
    async with open_edge(response_cache=CacheMode.KEY, redis_url=redis_url) as second:
        response = await second.client.post("/v1/chat/completions", data=body, headers=auth())
        assert response.headers["x-apirelay-cache"] == "hit"
        assert await response.read() == stored
        assert not second.fakes.router.requests
