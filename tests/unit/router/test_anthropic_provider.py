"""The anthropic channel type: building it, its URL, what it relays, transport failures."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from services.common.gateway_config import ChannelEntry
from services.router.errors import ChannelConfigError, UpstreamUnavailable
from services.router.providers import build_provider
from services.router.providers.anthropic import AnthropicProvider, messages_url
from services.router.relay_request import Operation
from tests.unit.router.helpers import chat_request, upstream


@pytest.mark.parametrize(("base_url", "url"), [
    ("", "https://api.anthropic.com/v1/messages"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000/v1/messages"),
    ("http://127.0.0.1:9000/v1/", "http://127.0.0.1:9000/v1/messages"),
    ("https://proxy.example/anthropic", "https://proxy.example/anthropic/v1/messages"),
])
def test_messages_url(base_url: str, url: str) -> None:
    assert messages_url(base_url) == url


async def test_build_provider_makes_an_anthropic_provider_that_relays_nothing() -> None:
    async with aiohttp.ClientSession() as session:
        channel = ChannelEntry(name="claude", type="anthropic", models=("m",))
        provider = build_provider(channel, session, {})
        assert isinstance(provider, AnthropicProvider)
        assert not any(provider.relays(operation) for operation in Operation)
        with pytest.raises(ChannelConfigError):
            build_provider(ChannelEntry(name="bad", type="anthropic", models=("m",),
                                        base_url="ftp://x"), session, {})


async def test_an_unreachable_upstream_is_retryable_and_says_nothing_of_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        channel = ChannelEntry(name="c", type="anthropic", models=("m",), base_url=base_url)
        provider = AnthropicProvider(channel, session, "sk-ant-k")
        with pytest.raises(UpstreamUnavailable) as caught:
            await provider.complete(upstream(chat_request()))
        assert caught.value.retryable and base_url not in caught.value.message
        with pytest.raises(UpstreamUnavailable):
            async for _ in provider.stream(upstream(chat_request(stream=True))):
                pass
