"""The exact response cache on the edge's routes, against fake services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import orjson
import pytest

from apirelay.billing.v1 import billing_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2
from edge.config import CacheBilling, CacheMode
from edge.response_cache_store import MemoryResponseCache
from services.common.money import nanos_to_usd
from tests.grpc.edge.conftest import Edge, auth, open_edge
from tests.grpc.edge.fakes import principal
from tests.grpc.edge.messages import MODEL, charge, relayed, tariff, usage

CHAT = "/v1/chat/completions"
SECOND_SECRET = "sk-test-second"


class Clock:
    """The memory cache's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Every edge opened in the test gets a memory cache on this clock."""
    moved = Clock()
    monkeypatch.setattr("edge.app.open_response_cache",
                        lambda settings: MemoryResponseCache(100, moved))
    yield moved


@asynccontextmanager
async def edge_with(**overrides: Any) -> AsyncIterator[Edge]:
    """An edge with the settings `overrides` and a second key that may use MODEL."""
    async with open_edge(**overrides) as running:
        running.fakes.auth.keys[SECOND_SECRET] = principal("key_3")
        yield running


@pytest.fixture
async def keyed(clock: Clock) -> AsyncIterator[Edge]:
    """An edge caching per key, hits billed in full."""
    async with edge_with(response_cache=CacheMode.KEY) as running:
        yield running


def chat(text: str = "Say hi", **extra: Any) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}],
                         **extra})


async def post(edge: Edge, body: bytes, path: str = CHAT, secret: str | None = None,
               **headers: str) -> tuple[int, Any, Any]:
    sent = auth(secret) if secret else auth()
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    response = await edge.client.post(path, data=body, headers=sent)
    return response.status, response.headers, orjson.loads(await response.read())


async def test_a_second_identical_request_is_a_hit_without_an_upstream_call(
    keyed: Edge,
) -> None:
    status1, headers1, first = await post(keyed, chat(temperature=0.7))
    status2, headers2, second = await post(keyed, chat(temperature=0.7), x_request_id="r-2")
    assert status1 == status2 == 200
    assert headers1["x-apirelay-cache"] == "miss" and headers2["x-apirelay-cache"] == "hit"
    assert second == first
    assert headers2["x-request-id"] == "r-2"
    assert len(keyed.fakes.router.requests) == 1
    await post(keyed, chat(temperature=0.8))  # another body is another entry
    assert len(keyed.fakes.router.requests) == 2


async def test_full_billing_holds_and_settles_the_stored_usage_at_this_tariff(
    keyed: Edge,
) -> None:
    await post(keyed, chat())
    dearer = tariff()
    dearer.prompt_nanos_per_token, dearer.multiplier_bps = 1_000, 10_000
    keyed.fakes.billing.tariff = dearer
    _, headers, body = await post(keyed, chat())
    await keyed.settled()
    expected = nanos_to_usd(charge(usage(), dearer))
    assert headers["x-apirelay-cache"] == "hit"
    assert headers["x-apirelay-cost-usd"] == expected
    assert body["usage"]["cost"] == float(expected)
    billing = keyed.fakes.billing
    hold = billing.reserves[1]
    assert (hold.prompt_tokens, hold.max_completion_tokens) == (11, 7)
    assert [s.usage for s in billing.settles] == [usage(), usage()]
    assert billing.settles[1].channel == "cache"
    lease = keyed.fakes.ratelimit.acquires[1][1]
    assert lease.estimated_tokens == 18
    assert keyed.fakes.ratelimit.releases[1].actual_tokens == 18


async def test_a_full_hit_is_refused_without_balance(keyed: Edge) -> None:
    await post(keyed, chat())
    keyed.fakes.billing.decision = billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE
    status, headers, body = await post(keyed, chat())
    assert status == 429 and body["error"]["code"] == "insufficient_quota"
    assert "x-apirelay-cache" not in headers
    assert len(keyed.fakes.router.requests) == 1


async def test_free_billing_charges_nothing_and_counts_no_tokens(clock: Clock) -> None:
    async with edge_with(response_cache=CacheMode.KEY,
                                response_cache_billing=CacheBilling.FREE) as edge:
        await post(edge, chat())
        _, headers, body = await post(edge, chat())
        await edge.settled()
        assert headers["x-apirelay-cache"] == "hit"
        assert headers["x-apirelay-cost-usd"] == "0.000000000"
        assert body["usage"]["cost"] == 0
        assert "x-ratelimit-remaining-requests" in headers
        assert len(edge.fakes.billing.reserves) == len(edge.fakes.billing.settles) == 1
        assert not edge.fakes.billing.releases
        (_, first), (_, hit) = edge.fakes.ratelimit.acquires
        assert first.estimated_tokens > 0 and hit.estimated_tokens == 0
        released = {r.lease_id: r.actual_tokens for r in edge.fakes.ratelimit.releases}
        assert released == {first.request_id: 18, hit.request_id: 0}


async def test_a_free_hit_is_still_rate_limited(clock: Clock) -> None:
    async with edge_with(response_cache=CacheMode.KEY,
                                response_cache_billing=CacheBilling.FREE) as edge:
        await post(edge, chat())
        edge.fakes.ratelimit.deny_by = ratelimit_pb2.LIMIT_KIND_RPM
        status, headers, body = await post(edge, chat())
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert "retry-after" in headers


async def test_entries_expire_after_the_ttl(clock: Clock) -> None:
    async with edge_with(response_cache=CacheMode.KEY, response_cache_ttl_s=60.0) as edge:
        await post(edge, chat())
        clock.now += 59
        assert (await post(edge, chat()))[1]["x-apirelay-cache"] == "hit"
        clock.now += 2
        assert (await post(edge, chat()))[1]["x-apirelay-cache"] == "miss"
        assert len(edge.fakes.router.requests) == 2
        await post(edge, chat("short"), x_apirelay_cache_ttl="5")
        clock.now += 6
        assert (await post(edge, chat("short")))[1]["x-apirelay-cache"] == "miss"
        assert len(edge.fakes.router.requests) == 4


async def test_answers_are_kept_per_api_key(keyed: Edge) -> None:
    await post(keyed, chat())
    _, headers, _ = await post(keyed, chat(), secret=SECOND_SECRET)
    assert headers["x-apirelay-cache"] == "miss"
    assert len(keyed.fakes.router.requests) == 2
    assert (await post(keyed, chat(), secret=SECOND_SECRET))[1]["x-apirelay-cache"] == "hit"


async def test_header_mode_caches_only_what_asks(clock: Clock) -> None:
    async with edge_with(response_cache=CacheMode.HEADER) as edge:
        await post(edge, chat())
        _, headers, _ = await post(edge, chat())
        assert "x-apirelay-cache" not in headers
        await post(edge, chat(), x_apirelay_cache="on")
        _, headers, _ = await post(edge, chat(), x_apirelay_cache="on")
        assert headers["x-apirelay-cache"] == "hit"
        assert len(edge.fakes.router.requests) == 3


async def test_off_skips_the_cache_in_key_mode(keyed: Edge) -> None:
    await post(keyed, chat())
    _, headers, _ = await post(keyed, chat(), x_apirelay_cache="off")
    assert "x-apirelay-cache" not in headers
    assert len(keyed.fakes.router.requests) == 2


async def test_streams_and_failures_are_not_cached(keyed: Edge) -> None:
    for _ in range(2):
        response = await keyed.client.post(CHAT, data=chat(stream=True), headers=auth())
        await response.read()
    keyed.fakes.router.fail = grpc.StatusCode.UNAVAILABLE
    for _ in range(2):
        assert (await post(keyed, chat("fails")))[0] == 503
    assert len(keyed.fakes.router.requests) == 4


async def test_embeddings_are_cached(keyed: Edge) -> None:
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0,
                                          "embedding": [0.5]}],
              "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    keyed.fakes.router.relay_response = relayed(orjson.dumps(answer), usage(3, 0))
    body = orjson.dumps({"model": MODEL, "input": "hello"})
    await post(keyed, body, "/v1/embeddings")
    _, headers, hit = await post(keyed, body, "/v1/embeddings")
    assert headers["x-apirelay-cache"] == "hit" and hit["data"] == answer["data"]
    assert len(keyed.fakes.router.requests) == 1


async def test_a_malformed_cache_header_is_400(keyed: Edge) -> None:
    status, _, body = await post(keyed, chat(), x_apirelay_cache_ttl="soon")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_cache_header"
    assert not keyed.fakes.router.requests
