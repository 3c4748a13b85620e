"""Zero-config: channels made from the vendors' environment variables, presets applied."""

from __future__ import annotations

from services.common.gateway_config import ChannelEntry, GatewayConfig, parse_gateway_config
from services.router.catalog import router_config

FILE = {"models": [{"id": "demo", "price": {"prompt": 1, "completion": 1}}],
        "channels": [{"name": "demo-mock", "type": "mock", "models": ["demo"]}]}


def _channels(config: GatewayConfig) -> dict[str, ChannelEntry]:
    return {c.name: c for c in config.channels}


def test_no_key_no_channel() -> None:
    config = router_config(parse_gateway_config(FILE), {"OPENAI_BASE_URL": "http://x/v1"})
    assert [c.name for c in config.channels] == ["demo-mock"]


def test_each_key_makes_its_vendors_channel_with_priced_models() -> None:
    environ = {name: "k" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                                      "DEEPSEEK_API_KEY", "XAI_API_KEY", "MOONSHOT_API_KEY",
                                      "DASHSCOPE_API_KEY")}
    config = router_config(parse_gateway_config(FILE), environ)
    made = {c.name: c for c in config.channels if c.name.startswith("env-")}
    assert {name: c.type for name, c in made.items()} == {
        "env-openai": "openai", "env-anthropic": "anthropic", "env-google": "gemini",
        "env-deepseek": "openai", "env-xai": "openai", "env-moonshot": "openai",
        "env-qwen": "openai"}
    assert made["env-deepseek"].base_url == "https://api.deepseek.com/v1"
    assert made["env-deepseek"].token_limit_field == "max_tokens"
    assert made["env-qwen"].api_key_env == "DASHSCOPE_API_KEY"
    assert "gpt-4o-mini" in made["env-openai"].models
    assert "deepseek-reasoner" in made["env-deepseek"].models
    for channel in made.values():
        for model_id in channel.models:
            model = config.model(model_id)
            assert model is not None and model.price is not None and model.price.prices_tokens


def test_base_url_variables_are_honoured_loopback_included() -> None:
    environ = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1/",
               "ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9998",
               "GEMINI_API_KEY": "k"}
    made = _channels(router_config(parse_gateway_config(FILE), environ))
    assert made["env-openai"].base_url == "http://127.0.0.1:9999/v1"
    assert made["env-anthropic"].base_url == "http://127.0.0.1:9998"
    assert made["env-google"].base_url == ""


def test_aliases_of_zero_config_models_are_served_and_mapped() -> None:
    config = router_config(parse_gateway_config(FILE), {"ANTHROPIC_API_KEY": "k"})
    channel = next(c for c in config.channels if c.name == "env-anthropic")
    assert "claude-sonnet-4" in channel.models
    assert channel.model_map["claude-sonnet-4"] == "claude-sonnet-4-20250514"


def test_a_configured_vendor_channel_blocks_its_zero_config_one() -> None:
    raw = {**FILE, "channels": [
        *FILE["channels"],
        {"name": "mine", "type": "openai", "preset": "deepseek", "enabled": False,
         "models": ["deepseek-chat"]},
        {"name": "claude", "type": "anthropic", "models": ["claude-sonnet-4"]},
        {"name": "proxy", "type": "openai", "base_url": "http://p/v1",
         "api_key_env": "OPENAI_API_KEY", "models": ["gpt-4o"]},
    ]}
    environ = {"DEEPSEEK_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k",
               "XAI_API_KEY": "k"}
    config = router_config(parse_gateway_config(raw), environ)
    names = [c.name for c in config.channels]
    assert names == ["demo-mock", "mine", "claude", "proxy", "env-xai"]
    mine = next(c for c in config.channels if c.name == "mine")
    assert mine.base_url == "https://api.deepseek.com/v1"  # the file's channels get presets too


def test_auto_channels_false_turns_zero_config_off() -> None:
    config = router_config(parse_gateway_config({**FILE, "auto_channels": False}),
                           {"OPENAI_API_KEY": "k"})
    assert [c.name for c in config.channels] == ["demo-mock"]


def test_without_builtin_models_a_vendor_without_models_gets_no_channel() -> None:
    config = router_config(parse_gateway_config({**FILE, "builtin_models": False}),
                           {"OPENAI_API_KEY": "k"})
    assert [c.name for c in config.channels] == ["demo-mock"]
