"""Relayed requests follow the chat failover rules: order, failover before the first
output only, final errors, deadlines, metrics per channel and operation."""

from __future__ import annotations

import random
import uuid

from prometheus_client import REGISTRY

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.core import ModelRouter
from services.router.errors import (
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from services.router.outcomes import MIDSTREAM_ERROR, StreamHead, StreamOutcome, UsageSource
from services.router.providers.base import (
    RelayPiece,
    Usage,
)
from services.router.relay_request import Operation, RelayRequest
from tests.unit.router.fakes import ANSWER, FakeProvider
from tests.unit.router.helpers import relay_request

CREATED = RelayPiece(b"event: response.created\n", content_type="text/event-stream")
COMPLETED = RelayPiece(b"event: response.completed\n", usage=Usage(4, 2), is_last=True)


def _delta(text: str) -> RelayPiece:
    return RelayPiece(f"delta {text}\n".encode(), text=text, is_output=True)


def _router(*providers: tuple[str, FakeProvider]) -> ModelRouter:
    channels = tuple(
        ChannelEntry(name=name, type="fake", models=("demo",), priority=len(providers) - i,
                     model_map={"demo": f"{name}-model"})
        for i, (name, _) in enumerate(providers))
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=channels,
                           group_multipliers_bps={})
    return ModelRouter(config, dict(providers), rng=random.Random(1))


def _responses() -> RelayRequest:
    return relay_request(Operation.RESPONSES, {"input": "hi", "stream": True}, stream=True)


async def _stream(router: ModelRouter, request: RelayRequest) -> tuple[list[object], StreamOutcome]:
    items: list[object] = [i async for i in router.relay_stream(request)]
    end = items.pop()
    assert isinstance(end, StreamOutcome)
    return items, end


async def test_relay_fails_over_and_sends_the_mapped_model() -> None:
    first = FakeProvider(error=UpstreamUnavailable(503, "down"))
    second = FakeProvider()
    result = await _router(("first", first), ("second", second)).relay(
        relay_request(Operation.EMBEDDINGS, {"input": "x"}))
    assert result.error is None and result.body == ANSWER.body
    assert (result.usage, result.usage_source) == (Usage(3, 0), UsageSource.UPSTREAM)
    assert (result.route.channel, result.route.upstream_model, result.route.attempts) == \
        ("second", "second-model", 2)
    assert second.requests[0].upstream_model == "second-model"


async def test_relay_rejection_is_the_clients_error_without_failover() -> None:
    first = FakeProvider(error=UpstreamRejected(400, "bad size", param="size"))
    second = FakeProvider()
    result = await _router(("first", first), ("second", second)).relay(
        relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "x", "size": "1x1"}))
    assert result.error is not None and (result.error.http_status, result.error.param) == \
        (400, "size")
    assert second.requests == [] and result.body == b""


async def test_relay_of_an_unknown_model_and_with_no_time_left() -> None:
    router = _router(("only", FakeProvider()))
    unknown = await router.relay(relay_request(Operation.EMBEDDINGS, {"input": "x"},
                                               model="nope"))
    assert unknown.error is not None and unknown.error.code == "model_not_found"
    late = await router.relay(relay_request(Operation.EMBEDDINGS, {"input": "x"}), budget_s=0.0)
    assert late.error is not None and late.error.http_status == 504


async def test_relay_stream_fails_over_before_the_first_output_and_holds_the_usage_event() -> None:
    first = FakeProvider(pieces=[CREATED], error=UpstreamRateLimited(429, "slow"))
    second = FakeProvider(pieces=[CREATED, _delta("Hi"), COMPLETED])
    items, end = await _stream(_router(("first", first), ("second", second)), _responses())
    assert items == [StreamHead("text/event-stream"), CREATED.data, b"delta Hi\n"]
    assert end.tail == (COMPLETED.data,) and end.error is None
    assert (end.usage, end.usage_source) == (Usage(4, 2), UsageSource.UPSTREAM)
    assert (end.route.channel, end.route.attempts) == ("second", 2)
    assert first.closed == 1 and second.closed == 1


async def test_relay_stream_never_fails_over_after_the_first_output() -> None:
    first = FakeProvider(pieces=[CREATED, _delta("Hel"), _delta("lo")],
                              error=UpstreamUnavailable(502, "cut"))
    second = FakeProvider(pieces=[_delta("other"), COMPLETED])
    request = _responses()
    items, end = await _stream(_router(("first", first), ("second", second)), request)
    assert items[1:] == [CREATED.data, b"delta Hel\n", b"delta lo\n"]
    assert end.error == MIDSTREAM_ERROR and second.requests == []
    assert end.usage_source is UsageSource.ESTIMATED and end.tail == ()
    assert end.usage.prompt_tokens == request.estimated_input_tokens()


async def test_relay_stream_all_failed_is_one_outcome_without_pieces() -> None:
    router = _router(("a", FakeProvider(error=UpstreamRateLimited(429, "x"))),
                     ("b", FakeProvider(error=UpstreamRateLimited(429, "y"))))
    items, end = await _stream(router, _responses())
    assert items == []
    assert end.error is not None and end.error.code == "upstream_rate_limited"


async def test_closing_a_relay_stream_closes_the_upstream_at_once() -> None:
    provider = FakeProvider(pieces=[_delta("a"), _delta("b"), COMPLETED])
    stream = _router(("one", provider)).relay_stream(_responses())
    assert await anext(stream) == StreamHead("")
    assert await anext(stream) == b"delta a\n"
    await stream.aclose()
    assert provider.closed == 1


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_attempts_are_counted_per_channel_and_operation() -> None:
    first, second = f"r-first-{uuid.uuid4().hex[:8]}", f"r-second-{uuid.uuid4().hex[:8]}"
    router = _router((first, FakeProvider(error=UpstreamUnavailable(500, "x"),
                                               pieces=[CREATED])),
                     (second, FakeProvider(pieces=[_delta("a"), COMPLETED])))
    await router.relay(relay_request(Operation.EMBEDDINGS, {"input": "x"}))
    await _stream(router, _responses())
    requests = "apirelay_router_upstream_requests_total"
    for operation in ("embeddings", "responses"):
        assert _metric(requests, channel=first, operation=operation, outcome="unavailable") == 1
        assert _metric("apirelay_router_failovers_total", channel=first,
                       operation=operation) == 1
        assert _metric(requests, channel=second, operation=operation, outcome="ok") == 1
    latency = "apirelay_router_upstream_latency_seconds_count"
    assert _metric(latency, channel=second, operation="embeddings", mode="unary") == 1
    assert _metric(latency, channel=second, operation="responses", mode="stream") == 1
