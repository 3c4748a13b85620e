"""Upstream providers, one per channel type, behind the `Provider` protocol."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import aiohttp

from services.common.gateway_config import ChannelEntry
from services.router.errors import ChannelConfigError
from services.router.providers.anthropic import AnthropicProvider
from services.router.providers.azure import AzureProvider
from services.router.providers.base import Provider
from services.router.providers.gemini import GeminiProvider
from services.router.providers.http import DEFAULT_CONNECT_TIMEOUT_S
from services.router.providers.mock import MockProvider
from services.router.providers.openai import OpenAIProvider

logger = logging.getLogger(__name__)

CHANNEL_TYPES = ("mock", "openai", "anthropic", "gemini", "azure")


def build_provider(
    channel: ChannelEntry,
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Provider:
    """The provider of one channel; raise ChannelConfigError if it cannot be built."""
    if channel.type == "mock":
        return MockProvider(channel.mock)
    if channel.type == "openai":
        if not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"channel {channel.name!r} needs an http(s) base_url")
        api_key = channel.api_key(environ)
        if channel.enabled and channel.api_key_env and not api_key:
            logger.warning(
                "channel %s: environment variable %s is empty; calling without a key",
                channel.name, channel.api_key_env,
            )
        return OpenAIProvider(channel, session, api_key, connect_timeout_s)
    if channel.type == "anthropic":
        # An empty base_url means Anthropic's own API (the provider's default).
        if channel.base_url and not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"channel {channel.name!r} needs an http(s) base_url")
        return AnthropicProvider(channel, session, channel.api_key(environ), connect_timeout_s)
    if channel.type == "gemini":
        # An empty base_url means Google's own API (the provider's default).
        if channel.base_url and not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"channel {channel.name!r} needs an http(s) base_url")
        return GeminiProvider(channel, session, channel.api_key(environ), connect_timeout_s)
    if channel.type == "azure":
        return AzureProvider(channel, session, channel.api_key(environ), connect_timeout_s)
    raise ChannelConfigError(
        f"channel {channel.name!r} has unknown type {channel.type!r} "
        f"(known: {', '.join(CHANNEL_TYPES)})"
    )


def build_providers(
    channels: Iterable[ChannelEntry],
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> dict[str, Provider]:
    """The provider of every channel (disabled ones too, so typos fail at startup)."""
    return {
        channel.name: build_provider(channel, session, environ, connect_timeout_s)
        for channel in channels
    }
