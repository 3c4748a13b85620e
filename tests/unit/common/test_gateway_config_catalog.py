"""The catalog of apirelay.yaml: built-in models, aliases, capability flags, channel options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common.gateway_config import ConfigError, load_gateway_config, parse_gateway_config
from services.common.gateway_models import builtin_models

ROOT = Path(__file__).resolve().parents[3]
PRICE = {"prompt": 1, "completion": 2}


def test_builtin_catalog_prices_every_model_in_integer_nanos() -> None:
    models = builtin_models()
    owners = {m.owned_by for m in models}
    assert owners == {"openai", "anthropic", "google", "deepseek", "xai", "moonshot", "qwen"}
    for model in models:
        assert model.price is not None and model.price.prices_tokens, model.id
        assert isinstance(model.price.prompt, int) and model.context_window > 0
    mini = next(m for m in models if m.id == "gpt-4o-mini")
    assert (mini.price.prompt, mini.price.completion, mini.price.cached_prompt) == (150, 600, 75)  # type: ignore[union-attr]
    assert (mini.tools, mini.vision, mini.json, mini.context_window) == (True, True, True, 128000)


def test_shipped_config_has_the_builtin_catalog_and_its_aliases() -> None:
    config = load_gateway_config(ROOT / "apirelay.yaml")
    alias = config.model("claude-sonnet-4")
    assert alias is not None and alias.alias_of == "claude-sonnet-4-20250514"
    model = config.model("claude-sonnet-4-20250514")
    assert model is not None and model.price == alias.price and not model.alias_of
    assert model.canonical == alias.canonical == "claude-sonnet-4-20250514"
    assert config.auto_channels


def test_capabilities_and_context_window_parse() -> None:
    config = parse_gateway_config({"builtin_models": False, "models": [
        {"id": "m", "context_window": 32000, "capabilities": ["tools", "json"]},
        {"id": "plain"}]})
    m, plain = config.model("m"), config.model("plain")
    assert m is not None and plain is not None
    assert (m.context_window, m.tools, m.vision, m.json) == (32000, True, False, True)
    assert (plain.context_window, plain.tools, plain.vision, plain.json) == (0, False, False, False)


def test_file_entry_replaces_the_builtin_one_and_takes_its_alias() -> None:
    config = parse_gateway_config({"models": [
        {"id": "gpt-4o-mini", "price": PRICE},
        {"id": "my-sonnet", "aliases": ["claude-sonnet-4"], "price": PRICE}]})
    mini = config.model("gpt-4o-mini")
    assert mini is not None and mini.price is not None and mini.price.prompt == 1
    assert [m.id for m in config.models].count("gpt-4o-mini") == 1
    alias = config.model("claude-sonnet-4")
    assert alias is not None and alias.alias_of == "my-sonnet"
    dated = config.model("claude-sonnet-4-20250514")
    assert dated is not None and dated.aliases == ()


def test_builtin_models_false_leaves_the_catalog_out() -> None:
    config = parse_gateway_config({"builtin_models": False, "models": [{"id": "x"}]})
    assert [m.id for m in config.models] == ["x"]


def test_a_channel_serving_one_name_serves_all_under_its_mapping() -> None:
    config = parse_gateway_config({"builtin_models": False, "models": [
        {"id": "big-2025", "aliases": ["big", "big-latest"], "price": PRICE}],
        "channels": [
            {"name": "a", "type": "mock", "models": ["big"]},
            {"name": "b", "type": "openai", "base_url": "http://x/v1", "models": ["big-2025"],
             "model_map": {"big-2025": "vendor-big"}}]})
    a, b = config.channels
    assert set(a.models) == {"big", "big-2025", "big-latest"}
    assert a.model_map["big"] == "big-2025" and a.model_map["big-latest"] == "big-2025"
    assert b.model_map == {"big-2025": "vendor-big", "big": "vendor-big",
                           "big-latest": "vendor-big"}


def test_channel_options_parse() -> None:
    config = parse_gateway_config({"builtin_models": False, "models": [{"id": "m"}],
                                   "channels": [{
        "name": "az", "type": "azure", "base_url": "https://r.openai.azure.com/",
        "api_version": "2025-04-01-preview", "deployments": {"m": "dep"}, "models": ["m"],
        "preset": "", "auth": "api-key", "stream_usage": False,
        "token_limit_field": "max_tokens", "responses_api": False}]})
    channel = config.channels[0]
    assert channel.base_url == "https://r.openai.azure.com"
    assert (channel.api_version, dict(channel.model_map)) == ("2025-04-01-preview", {"m": "dep"})
    assert (channel.auth, channel.stream_usage, channel.token_limit_field,
            channel.responses_api) == ("api-key", False, "max_tokens", False)


def _channel(**options: Any) -> dict[str, Any]:
    return {"builtin_models": False, "models": [{"id": "m"}],
            "channels": [{"name": "c", "type": "openai", "models": ["m"], **options}]}


@pytest.mark.parametrize(("raw", "where"), [
    ({"models": [{"id": "m", "capabilities": ["telepathy"]}]},
     r"models\[0\]\.capabilities: unknown capability 'telepathy'"),
    ({"models": [{"id": "m", "capabilities": "tools"}]}, r"models\[0\]\.capabilities"),
    ({"models": [{"id": "m", "aliases": "x"}]}, r"models\[0\]\.aliases"),
    ({"models": [{"id": "m", "context_window": -1}]}, r"models\[0\]\.context_window"),
    ({"models": [{"id": "m"}, {"id": "n", "aliases": ["m"]}]}, "'m' is defined twice"),
    ({"models": [{"id": "m"}, {"id": "m"}]}, "'m' is defined twice"),
    ({"builtin_models": "yes"}, "builtin_models: expected true or false"),
    ({"auto_channels": 1}, "auto_channels: expected true or false"),
    (_channel(auth="basic"), r"channels\[0\]\.auth: expected one of bearer"),
    (_channel(token_limit_field="max"), r"channels\[0\]\.token_limit_field"),
    (_channel(stream_usage="no"), r"channels\[0\]\.stream_usage"),
    (_channel(model_map={"m": "a"}, deployments={"m": "b"}), "map 'm' differently"),
    (_channel(deployments=["m"]), r"channels\[0\]\.deployments"),
    ({**_channel(), "channels": [{"name": "c", "type": "mock", "models": []}] * 2},
     "'c' is used twice"),
])
def test_catalog_mistakes_name_their_place(raw: object, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        parse_gateway_config(raw)
