"""Channels carry their key pool apart from their configuration."""

from __future__ import annotations

from services.common.gateway_config import ChannelEntry
from services.router.channels import NO_KEY_ID, UpstreamKey, channels_from_config, keys_from_env


def test_keys_come_from_the_named_variables_and_never_print() -> None:
    entry = ChannelEntry(name="c", type="openai", models=("m",), api_key_env="A")
    keys = keys_from_env(entry, {"A": "sk-secret-a"})
    assert keys == (UpstreamKey("env:A", "sk-secret-a"),)
    assert "sk-secret" not in repr(keys)


def test_an_unset_variable_leaves_one_keyless_entry() -> None:
    entry = ChannelEntry(name="c", type="mock", models=("m",), api_key_env="UNSET")
    (channel,) = channels_from_config((entry,), {})
    assert channel.name == "c"
    assert channel.keys == (UpstreamKey(NO_KEY_ID),)
