"""Routing rules: candidate order, failover before the first chunk only, final errors."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.common.tokens import estimate_tokens
from services.router.core import CHAT, ModelRouter
from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.failover import order_channels
from services.router.outcomes import MIDSTREAM_ERROR, StreamOutcome, UsageSource
from services.router.providers.base import StreamPiece, Usage
from tests.unit.router.fakes import USAGE, FakeProvider
from tests.unit.router.helpers import chat_request

ROLE = StreamPiece(b'{"role"}')


def _text(text: str) -> StreamPiece:
    return StreamPiece(f'{{"content":"{text}"}}'.encode(), text=text, is_output=True)


FINISH = StreamPiece(b'{"finish"}', finish_reason="stop", is_output=True)


class SequenceRandom(random.Random):
    """random() returns the given values in turn."""

    def __init__(self, values: Sequence[float]) -> None:
        super().__init__()
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


def _channel(name: str, priority: int = 0, weight: int = 1, **kwargs: object) -> ChannelEntry:
    return ChannelEntry(name=name, type="fake", models=("demo",), priority=priority,
                        weight=weight, **kwargs)  # type: ignore[arg-type]


def _router(*channels: tuple[ChannelEntry, FakeProvider]) -> ModelRouter:
    config = GatewayConfig(
        models=(ModelEntry("demo"), ModelEntry("zeta"), ModelEntry("alpha"), ModelEntry("idle")),
        channels=(*(c for c, _ in channels),
                  ChannelEntry(name="alpha-ch", type="fake", models=("alpha", "zeta")),
                  ChannelEntry(name="off", type="fake", models=("idle",), enabled=False)),
        group_multipliers_bps={},
    )
    providers = {c.name: p for c, p in channels}
    providers.update({"alpha-ch": FakeProvider(), "off": FakeProvider()})
    return ModelRouter(config, providers, rng=random.Random(1))


async def _stream(router: ModelRouter, **kwargs: object) -> tuple[list[bytes], StreamOutcome]:
    items = [i async for i in router.stream(chat_request(stream=True), **kwargs)]  # type: ignore[arg-type]
    end = items.pop()
    assert isinstance(end, StreamOutcome)
    assert all(isinstance(i, bytes) for i in items)
    return items, end  # type: ignore[return-value]


def test_order_is_by_priority_then_weighted_random() -> None:
    low, a, b = _channel("low", 0, 100), _channel("a", 5, 1), _channel("b", 5, 3)
    # Weights 1 and 3: a draw below 1/4 picks "a" first, above picks "b" first.
    assert [c.name for c in order_channels([low, a, b], SequenceRandom([0.2, 0.0, 0.0]))] == \
        ["a", "b", "low"]
    assert [c.name for c in order_channels([low, a, b], SequenceRandom([0.3, 0.0, 0.0]))] == \
        ["b", "a", "low"]


def test_weights_shape_the_share_of_first_picks() -> None:
    rng = random.Random(42)
    a, b = _channel("a", weight=1), _channel("b", weight=9)
    firsts = [order_channels([a, b], rng)[0].name for _ in range(2000)]
    assert 0.85 < firsts.count("b") / len(firsts) < 0.95


def test_list_models_only_served_ones_sorted() -> None:
    router = _router((_channel("one"), FakeProvider()))
    assert [m.id for m in router.list_models()] == ["alpha", "demo", "zeta"]


async def test_unknown_model_is_a_404_model_not_found() -> None:
    router = _router((_channel("one"), FakeProvider()))
    result = await router.complete(chat_request(model="nope"))
    assert result.error is not None
    assert (result.error.http_status, result.error.type, result.error.code) == \
        (404, "invalid_request_error", "model_not_found")
    items = [i async for i in router.stream(chat_request(model="idle", stream=True))]
    assert len(items) == 1 and isinstance(items[0], StreamOutcome)
    assert items[0].error is not None and items[0].error.code == "model_not_found"


async def test_complete_fails_over_on_retryable_error() -> None:
    first, second = FakeProvider(error=UpstreamUnavailable(503, "down")), FakeProvider()
    router = _router((_channel("first", 2), first), (_channel("second", 1, model_map={"demo": "up"}), second))
    result = await router.complete(chat_request())
    assert result.error is None and result.body == b'{"ok":1}'
    assert (result.usage, result.usage_source, result.finish_reason) == (USAGE, UsageSource.UPSTREAM, "stop")
    assert (result.route.channel, result.route.upstream_model, result.route.attempts) == ("second", "up", 2)
    assert first.requests[0].upstream_model == "demo"


async def test_complete_does_not_fail_over_on_a_rejection() -> None:
    rejection = UpstreamRejected(400, "context too long", error_type="invalid_request_error",
                                 code="context_length_exceeded", param="messages")
    first, second = FakeProvider(error=rejection), FakeProvider()
    result = await _router((_channel("first", 2), first), (_channel("second", 1), second)).complete(
        chat_request())
    assert result.error is not None
    assert (result.error.http_status, result.error.code, result.error.message, result.error.param) \
        == (400, "context_length_exceeded", "context too long", "messages")
    assert second.requests == []
    assert result.route.attempts == 1


@pytest.mark.parametrize(
    ("errors", "status", "code"),
    [
        ([UpstreamRateLimited(429, "x"), UpstreamRateLimited(429, "y")], 429, "upstream_rate_limited"),
        ([UpstreamTimeout(0, "x"), UpstreamTimeout(504, "y")], 504, "upstream_timeout"),
        ([UpstreamRateLimited(429, "x"), UpstreamUnavailable(500, "secret detail")], 502,
         "upstream_error"),
    ],
)
async def test_all_channels_failed(errors: list[ProviderError], status: int, code: str) -> None:
    def router() -> ModelRouter:
        # A fresh router for each call: the first call's failures cool or eject channels.
        return _router(*((_channel(f"c{i}", i), FakeProvider(error=e))
                         for i, e in enumerate(errors)))

    for result in (await router().complete(chat_request()), (await _stream(router()))[1]):
        assert result.error is not None
        assert (result.error.http_status, result.error.code) == (status, code)
        assert "secret" not in result.error.message and "x" != result.error.message
        assert result.route.attempts == 2
        assert result.usage == Usage(0, 0)


async def test_no_time_left_is_a_timeout_without_attempts() -> None:
    provider = FakeProvider()
    router = _router((_channel("one"), provider))
    result = await router.complete(chat_request(), budget_s=0.0)
    assert result.error is not None and result.error.http_status == 504
    assert provider.requests == []


async def test_attempt_timeout_is_the_smaller_of_channel_timeout_and_budget() -> None:
    provider = FakeProvider()
    await _router((_channel("one", timeout_s=30.0), provider)).complete(chat_request(), budget_s=2.0)
    assert 0 < provider.requests[0].timeout_s <= 2.0


async def test_stream_fails_over_before_the_first_output_chunk() -> None:
    # The role chunk was produced but held back, so moving on is still invisible to the client.
    first = FakeProvider(pieces=[ROLE], error=UpstreamUnavailable(502, "down"))
    second = FakeProvider(pieces=[ROLE, _text("Hi"), FINISH, StreamPiece(None, usage=USAGE)])
    chunks, end = await _stream(_router((_channel("first", 1), first), (_channel("second"), second)))
    assert chunks == [ROLE.chunk, b'{"content":"Hi"}', FINISH.chunk]
    assert end.error is None and end.finish_reason == "stop"
    assert (end.usage, end.usage_source) == (USAGE, UsageSource.UPSTREAM)
    assert (end.route.channel, end.route.attempts) == ("second", 2)
    assert first.closed == 1 and second.closed == 1


async def test_stream_never_fails_over_after_the_first_output_chunk() -> None:
    first = FakeProvider(pieces=[ROLE, _text("Hello"), _text(" wor")],
                         error=UpstreamUnavailable(502, "cut"))
    second = FakeProvider(pieces=[_text("other"), FINISH])
    router = _router((_channel("first", 1), first), (_channel("second"), second))
    chat = chat_request(stream=True)
    items = [i async for i in router.stream(chat)]
    end = items.pop()
    assert items == [ROLE.chunk, b'{"content":"Hello"}', b'{"content":" wor"}']
    assert isinstance(end, StreamOutcome) and end.error == MIDSTREAM_ERROR
    assert second.requests == []
    assert end.usage_source is UsageSource.ESTIMATED
    assert end.usage.prompt_tokens == chat.estimated_prompt_tokens()
    assert end.usage.completion_tokens == max(estimate_tokens("Hello wor"), 2)
    assert (end.route.channel, end.route.attempts) == ("first", 1)


async def test_stream_rejection_before_output_is_the_clients_error() -> None:
    first = FakeProvider(error=UpstreamRejected(422, "bad param", error_type="invalid_request_error"))
    second = FakeProvider(pieces=[FINISH])
    chunks, end = await _stream(_router((_channel("first", 1), first), (_channel("second"), second)))
    assert chunks == []
    assert end.error is not None and (end.error.http_status, end.error.message) == (422, "bad param")
    assert second.requests == []


async def test_stream_without_upstream_usage_is_estimated() -> None:
    provider = FakeProvider(pieces=[_text("a"), _text("b"), FINISH])
    _, end = await _stream(_router((_channel("one"), provider)))
    assert end.usage_source is UsageSource.ESTIMATED and end.error is None
    assert end.usage.completion_tokens == 2


async def test_closing_the_stream_closes_the_upstream_at_once() -> None:
    provider = FakeProvider(pieces=[ROLE, _text("a"), _text("b"), FINISH])
    stream = _router((_channel("one"), provider)).stream(chat_request(stream=True))
    assert await anext(stream) == ROLE.chunk
    await stream.aclose()
    assert provider.closed == 1


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_attempts_are_counted_per_channel_and_outcome() -> None:
    first = _channel(f"m-first-{uuid.uuid4().hex[:8]}", 2)
    second = _channel(f"m-second-{uuid.uuid4().hex[:8]}", 1)
    def router() -> ModelRouter:
        # A fresh router per call: the first 429 cools the first channel's key down.
        return _router((first, FakeProvider(error=UpstreamRateLimited(429, "slow down"))),
                       (second, FakeProvider(pieces=[ROLE, _text("a"), FINISH])))

    await router().complete(chat_request())
    await _stream(router())
    requests = "apirelay_router_upstream_requests_total"
    assert _metric(requests, channel=first.name, operation=CHAT, outcome="rate_limited") == 2
    assert _metric("apirelay_router_failovers_total", channel=first.name, operation=CHAT) == 2
    assert _metric(requests, channel=second.name, operation=CHAT, outcome="ok") == 2
    latency = "apirelay_router_upstream_latency_seconds_count"
    assert _metric(latency, channel=second.name, operation=CHAT, mode="unary") == 1
    assert _metric(latency, channel=second.name, operation=CHAT, mode="stream") == 1
