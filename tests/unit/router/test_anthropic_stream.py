"""Anthropic stream events as chat.completion.chunks (events built by the fake upstream)."""

from __future__ import annotations

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from services.router.errors import UpstreamRateLimited, UpstreamUnavailable
from services.router.providers.anthropic_stream import StreamTranslator
from services.router.providers.base import StreamPiece, Usage
from tests.fakes.anthropic_fake import Reply, Text, Thinking, ToolUse, stream_events


def _pieces(reply: Reply, *, forward_usage: bool = True) -> list[StreamPiece]:
    translator = StreamTranslator(1700, forward_usage=forward_usage)
    pieces: list[StreamPiece] = []
    for name, data in stream_events(reply, "msg_9", "claude-up"):
        pieces += translator.read(name.encode(), orjson.dumps(data))
    assert translator.finished and translator.stopped
    return pieces


def _chunks(pieces: list[StreamPiece]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate_json(p.chunk) for p in pieces if p.chunk]


def test_text_stream_role_first_then_content_finish_and_usage() -> None:
    pieces = _pieces(Reply(blocks=(Text("Hi there you"),), output_tokens=3))
    chunks = _chunks(pieces)
    assert chunks[0].choices[0].delta.role == "assistant" and not pieces[0].is_output
    assert [c.choices[0].delta.content for c in chunks[1:-2]] == ["Hi ", "there ", "you"]
    assert all(p.is_output for p in pieces[1:-1])
    assert chunks[-2].choices[0].finish_reason == "stop" and pieces[-2].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert pieces[-1].is_last and pieces[-1].usage == Usage(12, 3)
    assert {c.id for c in chunks} == {"msg_9"} and {c.model for c in chunks} == {"claude-up"}
    assert "".join(p.text for p in pieces) == "Hi there you"


def test_usage_chunk_is_counted_but_not_forwarded_unless_asked() -> None:
    last = _pieces(Reply(cache_read=50, cache_creation=8), forward_usage=False)[-1]
    assert last.chunk is None and last.is_last
    # The cache counts come in message_start, the output count in message_delta.
    assert last.usage == Usage(70, 7, cached_prompt_tokens=50, cache_write_prompt_tokens=8)


def test_parallel_tool_calls_get_openai_indexes_in_order_and_argument_deltas() -> None:
    calls = (ToolUse("toolu_a", "get_weather", {"city": "Paris"}),
             ToolUse("toolu_b", "get_time", {"zone": "Europe/Oslo"}))
    chunks = _chunks(_pieces(Reply(blocks=(Text("Let me check."), *calls),
                                   stop_reason="tool_use")))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices
              and c.choices[0].delta.tool_calls]
    firsts = [d[0] for d in deltas if d[0].id]
    assert [(f.index, f.id, f.function.name if f.function else "") for f in firsts] == [
        (0, "toolu_a", "get_weather"), (1, "toolu_b", "get_time")]
    for index, call in enumerate(calls):
        arguments = "".join(d[0].function.arguments or "" for d in deltas
                            if d[0].index == index and d[0].function)
        assert orjson.loads(arguments) == call.input
    assert len([d for d in deltas if not d[0].id]) > 2  # arguments arrive in pieces
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


def test_thinking_streams_as_reasoning_content_then_the_signed_block() -> None:
    pieces = _pieces(Reply(blocks=(Thinking("Plan it.", "sig-7"), Text("Done"))))
    raw = [orjson.loads(p.chunk) for p in pieces if p.chunk]
    deltas = [c["choices"][0]["delta"] for c in raw if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Plan it."
    blocks = [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d]
    assert blocks == [[{"type": "thinking", "thinking": "Plan it.", "signature": "sig-7"}]]
    assert pieces[1].is_output  # reasoning is delivered output: no failover after it


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "length"),
                                              ("stop_sequence", "stop"),
                                              ("refusal", "content_filter")])
def test_stop_reasons(stop: str, finish: str) -> None:
    assert _pieces(Reply(stop_reason=stop))[-2].finish_reason == finish


def test_ping_is_dropped_and_an_error_event_raises_its_kind() -> None:
    translator = StreamTranslator(1, forward_usage=False)
    assert translator.read(b"ping", b'{"type": "ping"}') == []
    with pytest.raises(UpstreamRateLimited):
        translator.read(b"error", b'{"type":"error","error":{"type":"rate_limit_error"}}')
    with pytest.raises(UpstreamUnavailable) as caught:
        translator.read(b"error", b'{"type":"error","error":{"type":"overloaded_error"}}')
    assert caught.value.status == 529 and caught.value.retryable
    with pytest.raises(UpstreamUnavailable):
        translator.read(b"content_block_delta", b"{broken")
