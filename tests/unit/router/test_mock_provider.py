"""The mock provider emits exactly the OpenAI shapes, deterministically."""

from __future__ import annotations

import time

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.common.gateway_config import MockSettings
from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from services.router.providers.base import StreamPiece
from services.router.providers.mock import MockProvider
from tests.unit.router.helpers import chat_request, upstream

REPLY = "Hello there, this is a mock."
PIECES = ["Hello", " there,", " this", " is", " a", " mock."]


def _provider(**settings: float) -> MockProvider:
    return MockProvider(MockSettings(reply=REPLY, **settings), clock=lambda: 1_700_000_123.9)


async def _stream(provider: MockProvider, **kwargs: object) -> list[StreamPiece]:
    chat = chat_request(stream=True, **kwargs)  # type: ignore[arg-type]
    return [piece async for piece in provider.stream(upstream(chat, "up-model"))]


async def test_completion_parses_as_openai_chat_completion() -> None:
    chat = chat_request("Say hello to the world.")
    answer = await _provider().complete(upstream(chat, "up-model"))
    completion = ChatCompletion.model_validate_json(answer.body)
    raw = orjson.loads(answer.body)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.created == 1_700_000_123
    assert completion.model == "up-model"
    assert completion.choices[0].message.content == REPLY == answer.text
    assert completion.choices[0].message.role == "assistant"
    assert raw["choices"][0]["message"]["refusal"] is None
    assert raw["choices"][0]["logprobs"] is None
    assert completion.choices[0].finish_reason == "stop" == answer.finish_reason
    assert completion.system_fingerprint
    assert completion.usage is not None and answer.usage is not None
    assert completion.usage.prompt_tokens == chat.estimated_prompt_tokens() == answer.usage.prompt_tokens
    assert completion.usage.completion_tokens == len(PIECES) == answer.usage.completion_tokens
    assert completion.usage.total_tokens == answer.usage.total_tokens


async def test_max_tokens_cuts_the_reply_with_finish_reason_length() -> None:
    answer = await _provider().complete(upstream(chat_request(max_completion_tokens=2)))
    assert answer.text == "Hello there,"
    assert answer.finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 2


async def test_stream_chunks_parse_and_carry_the_reply() -> None:
    pieces = await _stream(_provider())
    chunks = [ChatCompletionChunk.model_validate_json(p.chunk) for p in pieces if p.chunk]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert not pieces[0].is_output
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == PIECES
    final = orjson.loads(pieces[-2].chunk or b"")
    assert final["choices"][0]["delta"] == {}
    assert final["choices"][0]["finish_reason"] == "stop"
    assert len({c.id for c in chunks}) == 1
    # The usage is reported to the router but not forwarded: the client did not ask.
    assert pieces[-1].chunk is None
    assert pieces[-1].usage is not None and pieces[-1].usage.completion_tokens == len(PIECES)
    assert all("usage" not in orjson.loads(p.chunk) for p in pieces if p.chunk)


async def test_stream_with_include_usage_ends_with_a_usage_chunk() -> None:
    pieces = await _stream(_provider(), include_usage=True)
    last = ChatCompletionChunk.model_validate_json(pieces[-1].chunk or b"")
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == len(PIECES)
    assert pieces[-1].is_last and not any(p.is_last for p in pieces[:-1])
    assert all(orjson.loads(p.chunk)["usage"] is None for p in pieces[:-1] if p.chunk)


async def test_stream_honours_max_tokens() -> None:
    pieces = await _stream(_provider(), max_tokens=3)
    assert "".join(p.text for p in pieces) == "Hello there, this"
    assert [p.finish_reason for p in pieces if p.finish_reason] == ["length"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(503, UpstreamUnavailable), (500, UpstreamUnavailable), (429, UpstreamRateLimited),
     (400, UpstreamRejected)],
)
async def test_magic_error_fails_before_the_first_chunk(status: int, kind: type) -> None:
    provider = _provider()
    text = f"please [[mock:error:{status}]] now"
    with pytest.raises(kind) as caught:
        await provider.complete(upstream(chat_request(text)))
    assert isinstance(caught.value, ProviderError) and caught.value.status == status
    stream = provider.stream(upstream(chat_request(text, stream=True)))
    with pytest.raises(kind):
        await anext(stream)


async def test_magic_cut_fails_after_n_content_chunks() -> None:
    provider = _provider()
    delivered: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for piece in provider.stream(upstream(chat_request("[[mock:cut:2]]", stream=True))):
            delivered.append(piece.text)
    assert "".join(delivered) == "Hello there,"
    answer = await provider.complete(upstream(chat_request("[[mock:cut:2]]")))
    assert answer.text == REPLY


async def test_delay_and_pace_are_applied() -> None:
    provider = _provider(first_token_delay_ms=30, tokens_per_second=200)
    started = time.monotonic()
    pieces = await _stream(provider)
    # 30 ms before the first chunk, then 5 gaps of 5 ms between the 6 pieces.
    assert time.monotonic() - started >= 0.05
    assert len(pieces) == len(PIECES) + 3
