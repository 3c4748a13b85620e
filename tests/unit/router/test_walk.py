"""A channel's key pool through the walk: a blamed key is disabled, a 429 cools its key for
what the upstream said, and a key short of quota loses weight before it refuses."""

from __future__ import annotations

import random
from collections import Counter

from aiohttp import web

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.balancer import Balancer, Target
from services.router.budget import RetryPolicy
from services.router.core import ModelRouter
from services.router.errors import ProviderError, UpstreamRateLimited, UpstreamUnavailable
from services.router.health import Headroom, HealthBook, HealthPolicy
from services.router.providers import KeyedProvider
from services.router.providers.http import headroom_of
from services.router.providers.openai import OpenAIProvider
from tests.unit.router.fakes import FakeProvider
from tests.unit.router.helpers import chat_request
from tests.unit.router.scripted import ScriptedUpstream

CHANNEL = ChannelEntry(name="pool", type="fake", models=("demo",))


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FirstDraw(random.Random):
    """Every draw is 0: the balancer's weighted pick is always the first target (key 1)."""

    def random(self) -> float:
        return 0.0


def _pool(key1: FakeProvider, key2: FakeProvider, clock: Clock) -> ModelRouter:
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=(CHANNEL,),
                           group_multipliers_bps={})
    keyed = [KeyedProvider("k1", key1), KeyedProvider("k2", key2)]
    return ModelRouter(config, {"pool": keyed}, FirstDraw(), clock,
                       retry=RetryPolicy(backoff_base_s=0.0, backoff_cap_s=0.0))


async def test_a_key_answering_401_is_disabled_and_the_next_key_serves() -> None:
    key1, key2, clock = FakeProvider(error=UpstreamUnavailable(401, "bad key")), FakeProvider(), Clock()
    router = _pool(key1, key2, clock)
    for _ in range(5):
        result = await router.complete(chat_request())
        assert result.error is None and result.route.channel == "pool"
    assert router.health.disabled("pool", "k1")
    # The first draw always names key 1: only the disabling keeps it from every request.
    assert len(key1.requests) == 1 and len(key2.requests) == 5
    clock.now += 3600
    await router.complete(chat_request())
    assert len(key1.requests) == 1  # disabled until re-enabled, not for a while
    assert router.health.enable_channel("pool") == ["k1"]
    key1.error = None
    await router.complete(chat_request())
    assert len(key1.requests) == 2


async def test_a_429_cools_its_key_for_the_retry_after_then_it_serves_again() -> None:
    limited: ProviderError = UpstreamRateLimited(429, "slow down", retry_after_s=2.0)
    key1, key2, clock = FakeProvider(error=limited), FakeProvider(), Clock()
    router = _pool(key1, key2, clock)
    result = await router.complete(chat_request())
    assert result.error is None and result.route.attempts == 2
    assert (len(key1.requests), len(key2.requests)) == (1, 1)
    key1.error = None
    clock.now += 1.9
    await router.complete(chat_request())
    assert (len(key1.requests), len(key2.requests)) == (1, 2)  # still cooling
    clock.now += 0.2
    await router.complete(chat_request())
    assert (len(key1.requests), len(key2.requests)) == (2, 2)  # 2 s passed: key 1 again
    assert not router.health.disabled("pool", "k1")


def test_headroom_is_the_lowest_remaining_fraction_with_its_reset() -> None:
    headers = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "5",
               "x-ratelimit-reset-requests": "6s", "x-ratelimit-limit-tokens": "1000",
               "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "1m0s"}
    assert headroom_of(headers) == Headroom(0.05, 6.0)
    assert headroom_of({"x-ratelimit-limit-tokens": "1000",
                        "x-ratelimit-remaining-tokens": "80"}) == Headroom(0.08, None)
    assert headroom_of({"x-ratelimit-remaining-requests": "5"}) is None  # no limit: unknown
    assert headroom_of({}) is None


def test_a_key_under_10_percent_loses_weight_until_its_reset() -> None:
    clock = Clock()
    book = HealthBook(HealthPolicy(), clock)
    book.note_headroom("c", "k", Headroom(0.5, 30.0))
    assert book.weight_factor("c", "k") == 1.0  # plenty left: full weight
    book.note_headroom("c", "k", Headroom(0.08, 10.0))
    assert book.weight_factor("c", "k") == 0.08
    book.note_headroom("c", "k", Headroom(0.01, 10.0))
    assert book.weight_factor("c", "k") == 0.05  # the floor
    assert book.weight_factor("c", "other") == 1.0
    clock.now += 10.0
    assert book.weight_factor("c", "k") == 1.0  # the limit reset
    low = Headroom(0.02, 5.0)
    book.note_headroom("c", "k", low)
    book.note_headroom("c", "k", Headroom(0.9, None))
    assert book.weight_factor("c", "k") == 1.0  # a newer answer with room restores it
    book.note_headroom("c", "k", low)
    clock.now += 1.0
    book.note_headroom("c", "k", low)  # the same answer read again does not count twice
    assert book.weight_factor("c", "k") == 0.05
    clock.now += 4.0
    assert book.weight_factor("c", "k") == 1.0
    book.note_headroom("c", "k", Headroom(0.0, None))
    clock.now += HealthPolicy().default_cooldown_s
    assert book.weight_factor("c", "k") == 1.0  # no reset said: the default


def test_a_light_key_gets_its_share_times_its_factor() -> None:
    book = HealthBook(HealthPolicy(), Clock())
    balancer = Balancer(book, random.Random(5))
    keys = tuple(Target(CHANNEL, k, FakeProvider(), 0.5) for k in ("k1", "k2"))
    book.note_headroom("pool", "k1", Headroom(0.05, 60.0))
    picks = Counter(balancer.pick(book.weighted(keys), "demo", ()).key_id  # type: ignore[union-attr]
                    for _ in range(4000))
    # Weights 0.025 and 0.5: key 1 draws about 5 % (P2C ties on zero in flight).
    assert 0.02 < picks["k1"] / 4000 < 0.09
    assert book.weighted(keys)[1] is keys[1] and book.weighted(keys)[0].weight == 0.025


async def test_an_openai_answer_short_of_quota_lowers_its_keys_weight(up: ScriptedUpstream) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        short = request.headers["authorization"] == "Bearer sk-one"
        return web.json_response(
            {"id": "c", "object": "chat.completion", "created": 1, "model": "demo",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                          "finish_reason": "stop"}]},
            headers={"x-ratelimit-limit-requests": "1000",
                     "x-ratelimit-remaining-requests": "20" if short else "900",
                     "x-ratelimit-reset-requests": "30s"})
    up.handler = handler
    assert up.session is not None
    channel = ChannelEntry(name="pool", type="openai", models=("demo",), base_url=up.base_url)
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=(channel,),
                           group_multipliers_bps={})
    keyed = [KeyedProvider(k, OpenAIProvider(channel, up.session, f"sk-{n}"))
             for k, n in (("k1", "one"), ("k2", "two"))]
    router = ModelRouter(config, {"pool": keyed}, random.Random(2))
    for _ in range(6):
        assert (await router.complete(chat_request())).error is None
    assert {s.headers["authorization"] for s in up.seen} == {"Bearer sk-one", "Bearer sk-two"}
    assert router.health.weight_factor("pool", "k1") == 0.05  # 20 of 1000: the floor
    assert router.health.weight_factor("pool", "k2") == 1.0
