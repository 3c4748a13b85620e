"""Gemini stream events translated to OpenAI chat.completion.chunks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from services.router.providers.base import StreamPiece, Usage
from services.router.providers.gemini_ids import signature_of
from services.router.providers.gemini_response import completion_of
from services.router.providers.gemini_stream import GeminiStream, finishes
from services.router.providers.sse import EventReader
from tests.fakes.gemini_fake import call_part, response, text_response, usage_metadata

SIGNATURE = "CiQBcsjafA+8x/Zq9w=="


def _run(events: list[dict[str, Any]], *, forward_usage: bool = True,
         end: bool = True) -> list[StreamPiece]:
    """Feed the events as Gemini frames them (CRLF CRLF), split at odd places."""
    stream = GeminiStream("gemini-up", 1700000000, forward_usage=forward_usage)
    reader = EventReader(stream.read, finishes)
    wire = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    pieces: list[StreamPiece] = []
    for start in range(0, len(wire), 7):
        for batch in reader.feed(wire[start:start + 7]):
            pieces.extend(batch)
    if end:
        for batch in reader.feed(b""):
            pieces.extend(batch)
    return pieces


def _chunks(pieces: list[StreamPiece]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate_json(p.chunk) for p in pieces if p.chunk]


def test_text_stream_role_first_then_content_then_usage() -> None:
    pieces = _run([text_response("Hel", None, usage=usage_metadata(5, 1)),
                   text_response("lo.", usage=usage_metadata(5, 2, cached=3, thoughts=4))])
    chunks = _chunks(pieces)
    assert chunks[0].choices[0].delta.role == "assistant" and not pieces[0].is_output
    assert [c.choices[0].delta.content for c in chunks[1:3]] == ["Hel", "lo."]
    assert [p.text for p in pieces[1:3]] == ["Hel", "lo."]
    assert chunks[2].choices[0].finish_reason == "stop" and pieces[2].finish_reason == "stop"
    assert all(p.is_output for p in pieces[1:3])
    last = pieces[-1]
    assert last.is_last and last.usage == Usage(5, 6, cached_prompt_tokens=3, reasoning_tokens=4)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 11
    assert {c.id for c in chunks} == {"chatcmpl-fake-response-1"}
    assert len(pieces) == 4


def test_usage_chunk_is_counted_but_not_forwarded_unless_asked() -> None:
    pieces = _run([text_response("Hi", usage=usage_metadata(5, 1))], forward_usage=False)
    assert pieces[-1].is_last and pieces[-1].chunk is None
    assert pieces[-1].usage == Usage(5, 1)


def test_missing_usage_sends_no_usage_chunk() -> None:
    pieces = _run([text_response("Hi")])
    assert not any(p.is_last for p in pieces) and pieces[-1].finish_reason == "stop"


def test_streamed_tool_calls_have_indexes_ids_and_signatures() -> None:
    pieces = _run([
        response([{"text": "thinking", "thought": True}], None),
        response([call_part("weather", {"city": "Paris"}, SIGNATURE)], None),
        response([call_part("weather", {"city": "Rome"})], "STOP", usage=usage_metadata()),
    ])
    chunks = _chunks(pieces)
    assert chunks[1].choices[0].delta.model_extra == {"reasoning_content": "thinking"}
    first = chunks[2].choices[0].delta.tool_calls
    second = chunks[3].choices[0].delta.tool_calls
    assert first is not None and second is not None
    assert (first[0].index, second[0].index) == (0, 1)
    assert first[0].function is not None and first[0].function.name == "weather"
    assert first[0].function.arguments == '{"city":"Paris"}'
    assert signature_of(first[0].model_dump()) == SIGNATURE
    assert signature_of({"id": first[0].id}) == SIGNATURE
    assert chunks[3].choices[0].finish_reason == "tool_calls"
    assert pieces[3].finish_reason == "tool_calls" and pieces[2].is_output


def test_stream_ids_match_the_non_streamed_ones() -> None:
    parts = [call_part("a", {"x": 1}, SIGNATURE), call_part("b", {})]
    whole = orjson.loads(completion_of(orjson.dumps(response(parts)), "g", 1).body)
    streamed = _chunks(_run([response(parts[:1], None), response(parts[1:])]))
    ids = [c.choices[0].delta.tool_calls[0].id for c in streamed[1:]
           if c.choices and c.choices[0].delta.tool_calls]
    assert ids == [call["id"] for call in whole["choices"][0]["message"]["tool_calls"]]


def test_length_and_safety_finishes() -> None:
    assert _run([text_response("x", "MAX_TOKENS")])[-1].finish_reason == "length"
    assert _run([text_response("x", "SAFETY")])[-1].finish_reason == "content_filter"


def test_a_stream_cut_before_a_finish_is_an_error() -> None:
    with pytest.raises(UpstreamUnavailable, match="ended early"):
        _run([text_response("x", None)])


def test_blocked_prompt_in_a_stream_is_rejected() -> None:
    with pytest.raises(UpstreamRejected) as caught:
        _run([{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}])
    assert caught.value.code == "content_filter"


@pytest.mark.parametrize(("error", "kind"), [
    ({"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}, UpstreamRateLimited),
    ({"code": 500, "status": "INTERNAL", "message": "boom"}, UpstreamUnavailable),
])
def test_in_band_errors(error: dict[str, Any], kind: type[ProviderError]) -> None:
    with pytest.raises(kind) as caught:
        _run([text_response("x", None), {"error": error}])
    assert "boom" not in caught.value.message
