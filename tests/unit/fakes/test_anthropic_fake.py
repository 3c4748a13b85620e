"""The fake Anthropic upstream speaks the real wire format: the `anthropic` SDK accepts it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx2
import pytest

from tests.fakes.anthropic_fake import AnthropicFake, Reply, Text, Thinking, ToolUse, running

TOOL = ToolUse("toolu_01", "get_weather", {"city": "Paris", "unit": "c"})


@pytest.fixture
async def fake() -> AsyncIterator[AnthropicFake]:
    async with running() as served:
        yield served


def _client(fake: AnthropicFake, key: str = "") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key or fake.api_key, base_url=fake.url, max_retries=0)


async def test_create_returns_a_message_the_sdk_parses(fake: AnthropicFake) -> None:
    fake.script(Reply(blocks=(Thinking("Let me think."), Text("Hi"), TOOL),
                      stop_reason="tool_use", cache_read=5, cache_creation=3,
                      thinking_tokens=4))
    message = await _client(fake).messages.create(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    tool = message.content[2]
    assert isinstance(tool, anthropic.types.ToolUseBlock)
    assert (tool.id, tool.name, tool.input) == ("toolu_01", "get_weather", TOOL.input)
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens) == (12, 5, 3)
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 4
    recorded = fake.requests[0]
    # This SDK sends the key as a bearer token and a newer version than the router's.
    assert recorded.headers["authorization"] == f"Bearer {fake.api_key}"
    assert recorded.headers["anthropic-version"]
    assert recorded.body["max_tokens"] == 100


async def test_stream_is_accumulated_by_the_sdk(fake: AnthropicFake) -> None:
    fake.script(Reply(blocks=(Thinking("Hmm, weather."), Text("Checking the weather."), TOOL),
                      stop_reason="tool_use", output_tokens=30))
    async with _client(fake).messages.stream(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert "".join(texts) == "Checking the weather."
    thinking, text, tool = message.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("Hmm, weather.", "sig-fake")
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "Checking the weather."
    # The SDK rebuilt the input from the input_json_delta pieces.
    assert isinstance(tool, anthropic.types.ToolUseBlock) and tool.input == TOOL.input
    assert (message.stop_reason, message.usage.output_tokens) == ("tool_use", 30)
    assert message.usage.input_tokens == 12


async def test_raw_stream_events_come_in_the_documented_order(fake: AnthropicFake) -> None:
    stream = await _client(fake).messages.create(
        model="claude-x", max_tokens=10, stream=True,
        messages=[{"role": "user", "content": "hi"}])
    kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1:4] == ["content_block_start", "content_block_delta", "content_block_delta"]
    assert "content_block_stop" in kinds


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [(400, "invalid_request_error", anthropic.BadRequestError),
     (429, "rate_limit_error", anthropic.RateLimitError),
     (500, "api_error", anthropic.InternalServerError),
     (529, "overloaded_error", anthropic.InternalServerError)],
)
async def test_scripted_errors_are_the_sdk_errors(
    fake: AnthropicFake, status: int, kind: str, error: type[anthropic.APIStatusError],
) -> None:
    fake.script(Reply(status=status, error_type=kind, error_message="scripted"))
    with pytest.raises(error) as caught:
        await _client(fake).messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": kind, "message": "scripted"}


async def test_a_wrong_key_is_an_authentication_error(fake: AnthropicFake) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        await _client(fake, key="sk-ant-wrong").messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


async def test_an_error_event_mid_stream_raises_in_the_sdk(fake: AnthropicFake) -> None:
    fake.script(Reply(error_event_after=4, error_message="Overloaded"))
    stream = await _client(fake).messages.create(
        model="claude-x", max_tokens=10, stream=True,
        messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for _ in stream:
            pass
    assert "overloaded_error" in str(caught.value)


async def test_a_cut_stream_fails_in_the_sdk(fake: AnthropicFake) -> None:
    fake.script(Reply(cut_after=3))
    stream = await _client(fake).messages.create(
        model="claude-x", max_tokens=10, stream=True,
        messages=[{"role": "user", "content": "hi"}])
    seen = []
    with pytest.raises(httpx2.RemoteProtocolError):
        async for event in stream:
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start"]
