"""The router's channels: the file's, with presets applied, plus zero-config ones.

Zero-config: for each vendor whose usual key variable is set (OPENAI_API_KEY ...) and
that no channel of the file already covers, a channel `env-<vendor>` is added serving
every model of the catalog its vendor owns (built-in models carry shipped prices, so
billing prices them without seeing the environment). The SDKs' base-URL variables
(OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GEMINI_BASE_URL) point it at a proxy or a local
test server, taken as the SDKs take them; the operator set them, so they are trusted as
they are, loopback addresses included. `auto_channels: false` in the file turns this off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from services.common.gateway_config import ChannelEntry, GatewayConfig, with_channels
from services.router.presets import apply_preset

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EnvVendor:
    """A vendor configured by its key variable: channel type, preset, models' owner."""

    key_env: str
    owner: str
    type: str = "openai"
    preset: str = ""
    base_url_env: str = ""

    @property
    def channel_name(self) -> str:
        """The name of the channel made for it."""
        return f"env-{self.owner}"

    def covers(self, channel: ChannelEntry) -> bool:
        """Whether the operator's `channel` is this vendor's (then none is made)."""
        if channel.api_key_env == self.key_env:
            return True
        if self.preset:
            return channel.preset == self.preset
        return channel.type == self.type


ENV_VENDORS = (
    EnvVendor("OPENAI_API_KEY", "openai", preset="openai", base_url_env="OPENAI_BASE_URL"),
    EnvVendor("ANTHROPIC_API_KEY", "anthropic", type="anthropic",
              base_url_env="ANTHROPIC_BASE_URL"),
    EnvVendor("GEMINI_API_KEY", "google", type="gemini", base_url_env="GEMINI_BASE_URL"),
    EnvVendor("DEEPSEEK_API_KEY", "deepseek", preset="deepseek"),
    EnvVendor("XAI_API_KEY", "xai", preset="xai"),
    EnvVendor("MOONSHOT_API_KEY", "moonshot", preset="moonshot"),
    EnvVendor("DASHSCOPE_API_KEY", "qwen", preset="qwen"),
)


def router_config(config: GatewayConfig, environ: Mapping[str, str]) -> GatewayConfig:
    """The channels the router serves: presets applied, zero-config channels added."""
    config = replace(config, channels=tuple(apply_preset(c) for c in config.channels))
    if not config.auto_channels:
        return config
    return with_channels(config, env_channels(config, environ), "zero-config")


def env_channels(config: GatewayConfig, environ: Mapping[str, str]) -> tuple[ChannelEntry, ...]:
    """The channels the vendors' environment variables call for (presets applied)."""
    made = []
    for vendor in ENV_VENDORS:
        if not environ.get(vendor.key_env):
            continue
        if any(vendor.covers(c) for c in config.channels):
            logger.info("zero-config: %s is set but a configured channel covers it; skipped",
                        vendor.key_env)
            continue
        models = tuple(m.id for m in config.models if m.owned_by == vendor.owner and not m.alias_of)
        if not models:
            continue
        channel = ChannelEntry(
            name=vendor.channel_name, type=vendor.type, models=models,
            base_url=environ.get(vendor.base_url_env, "").rstrip("/") if vendor.base_url_env else "",
            api_key_env=vendor.key_env, preset=vendor.preset,
        )
        made.append(apply_preset(channel))
        logger.info("zero-config: channel %s made from %s with %d models",
                    channel.name, vendor.key_env, len(models))
    return tuple(made)
