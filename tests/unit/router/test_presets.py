"""Presets of OpenAI-compatible vendors: defaults filled, explicit options kept, quirks applied."""

from __future__ import annotations

import orjson
import pytest

from services.common.gateway_config import ChannelEntry
from services.router.errors import ChannelConfigError
from services.router.presets import PRESETS, apply_preset
from services.router.providers.openai import OpenAIProvider
from services.router.relay_request import Operation
from tests.unit.router.helpers import chat_request, upstream
from tests.unit.router.scripted import KEY, ScriptedUpstream, streamed

ANSWER = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
STREAM = (b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
          b"data: [DONE]\n\n")


def _channel(preset: str, **options: object) -> ChannelEntry:
    return ChannelEntry(name="c", type="openai", models=(), preset=preset, **options)  # type: ignore[arg-type]


def _provider(up: ScriptedUpstream, preset: str, **options: object) -> OpenAIProvider:
    channel = apply_preset(_channel(preset, base_url=up.base_url, **options))
    assert up.session is not None
    return OpenAIProvider(channel, up.session, KEY)


def test_every_preset_has_an_http_base_url_and_known_quirks() -> None:
    expected = {"openai", "deepseek", "xai", "moonshot", "qwen", "groq", "siliconflow",
                "openrouter", "vllm", "ollama", "llamacpp"}
    assert set(PRESETS) == expected
    for preset in PRESETS.values():
        assert preset.base_url.startswith(("http://", "https://"))
        assert preset.auth in ("bearer", "none")
        assert preset.token_limit_field in ("", "max_tokens")


def test_preset_fills_defaults() -> None:
    channel = apply_preset(_channel("deepseek"))
    assert channel.base_url == "https://api.deepseek.com/v1"
    assert channel.api_key_env == "DEEPSEEK_API_KEY"
    assert (channel.auth, channel.stream_usage, channel.token_limit_field, channel.responses_api) \
        == ("bearer", True, "max_tokens", False)
    assert apply_preset(_channel("ollama")).auth == "none"
    assert apply_preset(_channel("openai")).responses_api is True


def test_explicit_options_win_over_the_preset() -> None:
    channel = apply_preset(_channel("deepseek", base_url="http://proxy/v1", api_key_env="MINE",
                                    auth="api-key", stream_usage=False,
                                    token_limit_field="max_completion_tokens",
                                    responses_api=True))
    assert (channel.base_url, channel.api_key_env, channel.auth) == \
        ("http://proxy/v1", "MINE", "api-key")
    assert (channel.stream_usage, channel.token_limit_field, channel.responses_api) == \
        (False, "max_completion_tokens", True)


def test_channel_without_preset_is_unchanged() -> None:
    channel = ChannelEntry(name="c", type="openai", models=(), base_url="http://x/v1")
    assert apply_preset(channel) is channel


@pytest.mark.parametrize(("channel", "message"), [
    (ChannelEntry(name="c", type="openai", models=(), preset="nope"), "unknown preset 'nope'"),
    (ChannelEntry(name="c", type="anthropic", models=(), preset="deepseek"), "type 'openai'"),
])
def test_bad_presets_are_refused(channel: ChannelEntry, message: str) -> None:
    with pytest.raises(ChannelConfigError, match=message):
        apply_preset(channel)


async def test_deepseek_gets_max_tokens_for_max_completion_tokens(up: ScriptedUpstream) -> None:
    up.answer(200, ANSWER)
    chat = chat_request(max_completion_tokens=50)
    await _provider(up, "deepseek").complete(upstream(chat))
    sent = orjson.loads(up.seen[-1].body)
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    assert up.seen[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_openai_preset_sends_the_clients_bytes(up: ScriptedUpstream) -> None:
    up.answer(200, ANSWER)
    chat = chat_request(max_completion_tokens=50)
    await _provider(up, "openai").complete(upstream(chat))
    assert up.seen[-1].body == chat.body


async def test_llamacpp_never_gets_stream_options_nor_a_key(up: ScriptedUpstream) -> None:
    up.handler = streamed(STREAM)
    chat = chat_request(stream=True, include_usage=True, max_completion_tokens=9)
    pieces = [p async for p in _provider(up, "llamacpp").stream(upstream(chat))]
    sent = orjson.loads(up.seen[-1].body)
    assert sent["stream"] is True and "stream_options" not in sent
    assert sent["max_tokens"] == 9 and "max_completion_tokens" not in sent
    assert "authorization" not in up.seen[-1].headers
    assert [p.text for p in pieces] == ["ok"]


async def test_stream_usage_is_asked_where_the_preset_allows(up: ScriptedUpstream) -> None:
    up.handler = streamed(STREAM)
    chat = chat_request(stream=True)
    _ = [p async for p in _provider(up, "groq").stream(upstream(chat))]
    assert orjson.loads(up.seen[-1].body)["stream_options"] == {"include_usage": True}


async def test_responses_served_only_by_presets_that_have_the_api(up: ScriptedUpstream) -> None:
    assert _provider(up, "openai").relays(Operation.RESPONSES)
    assert not _provider(up, "deepseek").relays(Operation.RESPONSES)
    assert _provider(up, "deepseek").relays(Operation.EMBEDDINGS)
    assert _provider(up, "deepseek", responses_api=True).relays(Operation.RESPONSES)
