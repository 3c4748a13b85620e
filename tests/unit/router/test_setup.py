"""Settings from the environment and building providers from channels."""

from __future__ import annotations

import logging

import pytest

from services.common.gateway_config import ChannelEntry
from services.router.config import DEFAULT_LISTEN_ADDR, Settings
from services.router.errors import ChannelConfigError
from services.router.providers import build_providers
from services.router.providers.mock import MockProvider
from services.router.providers.openai import OpenAIProvider
from services.router.server import upstream_session


def test_settings_from_env() -> None:
    assert Settings.from_env({}).listen_addr == DEFAULT_LISTEN_ADDR
    settings = Settings.from_env({
        "ROUTER_LISTEN_ADDR": "0.0.0.0:1", "ROUTER_METRICS_ADDR": ":9103",
        "ROUTER_SHUTDOWN_GRACE_S": "5", "APIRELAY_CONFIG": "/etc/apirelay.yaml",
        "ROUTER_MAX_UPSTREAM_CONNECTIONS": "7",
    })
    assert (settings.listen_addr, settings.metrics_addr, settings.shutdown_grace_s) == \
        ("0.0.0.0:1", ":9103", 5.0)
    assert (settings.config_path, settings.max_upstream_connections) == ("/etc/apirelay.yaml", 7)


async def test_providers_are_built_per_channel_type(caplog: pytest.LogCaptureFixture) -> None:
    channels = [
        ChannelEntry(name="m", type="mock", models=()),
        ChannelEntry(name="o", type="openai", models=(), base_url="http://x/v1",
                     api_key_env="NOT_SET_ANYWHERE"),
    ]
    async with upstream_session(Settings()) as client:
        with caplog.at_level(logging.WARNING):
            providers = build_providers(channels, client, {})
    assert [(k.key_id, type(k.provider)) for k in providers["m"]] == [("none", MockProvider)]
    assert [(k.key_id, type(k.provider)) for k in providers["o"]] == [("none", OpenAIProvider)]
    assert "NOT_SET_ANYWHERE" in caplog.text


@pytest.mark.parametrize(
    ("channel", "fragment"),
    [
        (ChannelEntry(name="c1", type="carrier-pigeon", models=()), "'carrier-pigeon'"),
        (ChannelEntry(name="c2", type="openai", models=(), base_url=""), "base_url"),
    ],
)
async def test_bad_channels_fail_at_startup(channel: ChannelEntry, fragment: str) -> None:
    async with upstream_session(Settings()) as client:
        with pytest.raises(ChannelConfigError) as caught:
            build_providers([channel], client, {})
    assert fragment in str(caught.value) and channel.name in str(caught.value)
