"""Upstream providers, one per channel type, behind the `Provider` protocol.

A provider holds one upstream key, so a channel with a pool of keys runs one provider
per key (`KeyedProvider`, named by the key's non-secret id).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from services.common.gateway_config import ChannelEntry
from services.router.channels import Channel, channels_from_config
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


@dataclass(frozen=True, slots=True)
class KeyedProvider:
    """A channel's provider for one of its upstream keys (`key_id` is not secret)."""

    key_id: str
    provider: Provider


def build_provider(
    channel: ChannelEntry,
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    api_key: str | None = None,
) -> Provider:
    """The provider of one channel with `api_key` (default: the key its `api_key_env`
    names); raise ChannelConfigError if it cannot be built."""
    if api_key is None:
        api_key = channel.api_key(environ)
    if channel.type == "mock":
        return MockProvider(channel.mock)
    if channel.type == "openai":
        if not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"channel {channel.name!r} needs an http(s) base_url")
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
        return AnthropicProvider(channel, session, api_key, connect_timeout_s)
    if channel.type == "gemini":
        # An empty base_url means Google's own API (the provider's default).
        if channel.base_url and not channel.base_url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"channel {channel.name!r} needs an http(s) base_url")
        return GeminiProvider(channel, session, api_key, connect_timeout_s)
    if channel.type == "azure":
        return AzureProvider(channel, session, api_key, connect_timeout_s)
    raise ChannelConfigError(
        f"channel {channel.name!r} has unknown type {channel.type!r} "
        f"(known: {', '.join(CHANNEL_TYPES)})"
    )


def build_key_providers(
    channel: Channel,
    session: aiohttp.ClientSession,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> tuple[KeyedProvider, ...]:
    """One provider per key of `channel`'s pool (for channels from the config or a store)."""
    return tuple(
        KeyedProvider(key.id, build_provider(channel.entry, session, {}, connect_timeout_s,
                                             key.secret))
        for key in channel.keys
    )


def build_providers(
    channels: Iterable[ChannelEntry],
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> dict[str, tuple[KeyedProvider, ...]]:
    """Every channel's providers, one per key (disabled channels too, so typos fail at
    startup)."""
    return {
        channel.name: build_key_providers(channel, session, connect_timeout_s)
        for channel in channels_from_config(tuple(channels), environ)
    }
