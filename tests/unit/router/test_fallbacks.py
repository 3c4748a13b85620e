"""Fallback model chains: when every channel of a model failed retryably before the first
output, the request runs on the next model's channels; it stays the client's model."""

from __future__ import annotations

import random

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.budget import RetryPolicy
from services.router.core import ModelRouter
from services.router.errors import ProviderError, UpstreamRejected, UpstreamUnavailable
from services.router.outcomes import MIDSTREAM_ERROR, StreamOutcome
from services.router.providers.base import StreamPiece
from tests.unit.router.fakes import FakeProvider
from tests.unit.router.helpers import chat_request

DOWN = UpstreamUnavailable(503, "down")
ROLE = StreamPiece(b'{"role"}')
TEXT = StreamPiece(b'{"content":"hi"}', text="hi", is_output=True)
FINISH = StreamPiece(b'{"finish"}', finish_reason="stop", is_output=True)


def _router(a_error: ProviderError | None = DOWN, b_error: ProviderError | None = None,
            fallbacks: tuple[str, ...] = ("b", "c"),
            a_pieces: tuple[StreamPiece, ...] = ()) -> tuple[ModelRouter, dict[str, FakeProvider]]:
    """Model "a" (two channels) falls back to "b" (its channel maps it), then "c"."""
    providers = {
        "a1": FakeProvider(a_pieces, a_error), "a2": FakeProvider(a_pieces, a_error),
        "b1": FakeProvider((ROLE, TEXT, FINISH), b_error), "c1": FakeProvider((ROLE, TEXT, FINISH)),
    }
    config = GatewayConfig(
        models=(ModelEntry("a", fallbacks=fallbacks), ModelEntry("b"), ModelEntry("c")),
        channels=(ChannelEntry(name="a1", type="fake", models=("a",)),
                  ChannelEntry(name="a2", type="fake", models=("a",)),
                  ChannelEntry(name="b1", type="fake", models=("b",),
                               model_map={"b": "b-upstream-2025"}),
                  ChannelEntry(name="c1", type="fake", models=("c",))),
        group_multipliers_bps={})
    # No backoff: the tests are about which target serves, not when.
    retry = RetryPolicy(backoff_base_s=0.0, backoff_cap_s=0.0)
    return ModelRouter(config, providers, random.Random(3), retry=retry), providers


async def _stream(router: ModelRouter) -> tuple[list[bytes | StreamOutcome], StreamOutcome]:
    items = [i async for i in router.stream(chat_request(model="a", stream=True))]
    end = items.pop()
    assert isinstance(end, StreamOutcome)
    return items, end


async def test_every_channel_of_a_failing_unary_model_then_the_fallbacks_channel() -> None:
    router, providers = _router()
    result = await router.complete(chat_request(model="a"))
    assert result.error is None
    # The typed route names the model that was sent upstream; the client's model (what
    # billing prices) is the request's own, unchanged.
    assert (result.route.channel, result.route.upstream_model, result.route.attempts) == \
        ("b1", "b-upstream-2025", 3)
    assert len(providers["a1"].requests) == len(providers["a2"].requests) == 1
    (sent,) = providers["b1"].requests
    assert sent.upstream_model == "b-upstream-2025" and sent.chat.model == "a"
    assert providers["c1"].requests == []


async def test_a_stream_falls_back_before_its_first_output() -> None:
    # Model a's channels announce a role, then fail: nothing reached the client yet.
    router, providers = _router(a_pieces=(ROLE,))
    items, end = await _stream(router)
    assert end.error is None and items == [b'{"role"}', b'{"content":"hi"}', b'{"finish"}']
    assert (end.route.channel, end.route.upstream_model) == ("b1", "b-upstream-2025")
    assert providers["b1"].requests[0].chat.model == "a"


async def test_the_chain_goes_on_to_the_next_fallback() -> None:
    router, providers = _router(b_error=DOWN)
    result = await router.complete(chat_request(model="a"))
    assert result.error is None
    assert (result.route.channel, result.route.upstream_model, result.route.attempts) == \
        ("c1", "c", 4)
    assert len(providers["b1"].requests) == 1


async def test_no_fallback_after_the_client_was_refused_or_without_a_chain() -> None:
    router, providers = _router(a_error=UpstreamRejected(400, "bad", error_type="invalid_request_error"))
    result = await router.complete(chat_request(model="a"))
    assert result.error is not None and result.error.http_status == 400
    assert providers["b1"].requests == [] and providers["c1"].requests == []
    router, providers = _router(fallbacks=())
    result = await router.complete(chat_request(model="a"))
    assert result.error is not None and result.error.http_status == 502
    assert providers["b1"].requests == []


async def test_no_fallback_after_the_first_output() -> None:
    router, providers = _router(a_pieces=(ROLE, TEXT))
    items, end = await _stream(router)
    assert end.error is MIDSTREAM_ERROR and items
    assert end.route.channel in ("a1", "a2") and end.route.attempts == 1
    assert providers["b1"].requests == []
