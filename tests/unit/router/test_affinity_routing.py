"""Prompt-cache affinity in the router: requests stick where P2C would spread them, and
fall back when the remembered target is out."""

from __future__ import annotations

import random

from prometheus_client import REGISTRY

from services.common.affinity_config import AffinityConfig
from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.core import ModelRouter
from services.router.errors import UpstreamUnavailable
from services.router.outcomes import StreamOutcome
from services.router.providers.base import StreamPiece
from tests.unit.router.fakes import FakeProvider
from tests.unit.router.helpers import chat_request

NAMES = ("c0", "c1", "c2")
PROMPT = "Here is a long shared document to answer questions about. " * 10


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _router(ttl_s: float = 300.0) -> tuple[ModelRouter, dict[str, FakeProvider], Clock]:
    providers = {name: FakeProvider() for name in NAMES}
    config = GatewayConfig(
        models=(ModelEntry("demo"),),
        channels=tuple(ChannelEntry(name=n, type="fake", models=("demo",)) for n in NAMES),
        group_multipliers_bps={}, affinity=AffinityConfig(ttl_s=ttl_s))
    clock = Clock()
    return ModelRouter(config, providers, rng=random.Random(7), clock=clock), providers, clock


async def _serve(router: ModelRouter, account: str, n: int = 1, text: str = PROMPT) -> list[str]:
    channels = []
    for _ in range(n):
        result = await router.complete(chat_request(text), account=account)
        assert result.error is None
        channels.append(result.route.channel)
    return channels


def _lookups(outcome: str) -> float:
    return REGISTRY.get_sample_value("apirelay_router_affinity_lookups_total",
                                     {"outcome": outcome}) or 0.0


async def test_one_accounts_prompt_sticks_where_p2c_spreads() -> None:
    router, _, _ = _router()
    hits_before = _lookups("hit")
    sticky = await _serve(router, "acct_a", 30)
    spread = await _serve(router, "", 30)  # no account: no affinity, plain P2C
    assert len(set(sticky)) == 1
    assert len(set(spread)) == 3
    assert (router.affinity.stats.hit, router.affinity.stats.miss) == (29, 1)
    assert _lookups("hit") - hits_before == 29


async def test_an_ejected_target_falls_back_and_the_new_one_is_remembered() -> None:
    router, _, _ = _router()
    [first] = await _serve(router, "acct_a")
    for _ in range(router.health.policy.eject_after):
        router.health.failed(first, "none", "demo", UpstreamUnavailable(503, "down"))
    assert not router.health.available(first, "none", "demo")
    after = await _serve(router, "acct_a", 10)
    assert first not in after and len(set(after)) == 1
    stats = router.affinity.stats
    assert (stats.hit, stats.miss, stats.unavailable) == (9, 1, 1)


async def test_a_failing_sticky_target_fails_over_and_the_server_is_remembered() -> None:
    router, providers, _ = _router()
    [first] = await _serve(router, "acct_a")
    providers[first].error = UpstreamUnavailable(503, "down")
    result = await router.complete(chat_request(PROMPT), account="acct_a")
    assert result.route.attempts == 2 and result.route.channel != first
    assert await _serve(router, "acct_a", 5) == [result.route.channel] * 5
    assert len(providers[first].requests) == 2  # its first answer and the one failure


async def test_accounts_never_share_an_entry() -> None:
    router, _, _ = _router()
    a = await _serve(router, "acct_a", 5)
    b = await _serve(router, "acct_b", 5)
    assert len(set(a)) == 1 and len(set(b)) == 1
    stats = router.affinity.stats
    assert (stats.hit, stats.miss) == (8, 2)  # each account's first request missed
    assert len(router.affinity) == 2


async def test_the_entry_expires_after_the_ttl() -> None:
    router, _, clock = _router(ttl_s=60)
    await _serve(router, "acct_a", 2)
    clock.now += 59
    await _serve(router, "acct_a")
    clock.now += 61
    await _serve(router, "acct_a")
    assert (router.affinity.stats.hit, router.affinity.stats.miss) == (2, 2)


async def test_streams_stick_too() -> None:
    router, providers, _ = _router()
    for provider in providers.values():
        provider.pieces = (StreamPiece(b'{"content":"x"}', text="x", is_output=True),)
    served = set()
    for _ in range(10):
        items = [i async for i in router.stream(chat_request(PROMPT, stream=True),
                                                account="acct_a")]
        end = items[-1]
        assert isinstance(end, StreamOutcome) and end.error is None
        served.add(end.route.channel)
    assert len(served) == 1 and router.affinity.stats.hit == 9
