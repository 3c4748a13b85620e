"""Responses on chat-only channels through the real ModelRouter: the candidates per
operation, the bridged `response` object and stream events as the openai SDK reads them,
usage, failover before the first output and cut streams."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from openai.types.responses import ResponseStreamEvent

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.core import ModelRouter
from services.router.errors import UpstreamUnavailable
from services.router.outcomes import MIDSTREAM_ERROR, StreamHead, StreamOutcome, UsageSource
from services.router.providers.base import Provider, Usage
from services.router.relay_request import Operation, RelayRequest
from tests.unit.router.fakes import FakeProvider
from tests.unit.router.helpers import relay_request
from tests.unit.router.responses_bridge_fake import (
    ChatOnlyProvider,
    accumulate,
    chat_answer,
    chunk,
    event_of,
    response_of,
    text_chunks,
    tool_chunks,
)

REPORTED = Usage(11, 5, cached_prompt_tokens=4, reasoning_tokens=2)
LIFECYCLE = {"response.created", "response.in_progress", "response.completed"}
TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    "response.completed",
]


def _router(*providers: tuple[str, Provider]) -> ModelRouter:
    """Channels in priority order, each mapping `demo` to `<name>-model`."""
    channels = tuple(
        ChannelEntry(name=name, type="fake", models=("demo",), priority=len(providers) - i,
                     model_map={"demo": f"{name}-model"})
        for i, (name, _) in enumerate(providers))
    config = GatewayConfig(models=(ModelEntry("demo"),), channels=channels,
                           group_multipliers_bps={})
    return ModelRouter(config, dict(providers), rng=random.Random(1))


def _responses(stream: bool = False, **body: Any) -> RelayRequest:
    fields = {"input": "Say hi", **body}
    return relay_request(Operation.RESPONSES, {**fields, "stream": True} if stream else fields,
                         stream=stream)


async def _events(router: ModelRouter, request: RelayRequest
                  ) -> tuple[list[ResponseStreamEvent], StreamOutcome]:
    items = [item async for item in router.relay_stream(request)]
    end = items.pop()
    assert isinstance(end, StreamOutcome)
    assert items and items[0] == StreamHead("text/event-stream")
    frames = [item for item in items[1:] if isinstance(item, bytes)]
    return [event_of(f) for f in [*frames, *end.tail]], end


async def test_a_text_answer_is_a_response_object() -> None:
    chat = ChatOnlyProvider()
    fmt = {"type": "json_schema", "name": "greeting", "schema": {"type": "object"}}
    result = await _router(("chat", chat)).relay(_responses(
        instructions="Be kind.", max_output_tokens=100, text={"format": fmt}))
    response = response_of(result.body)
    assert (response.status, response.output_text, response.model) == \
        ("completed", "Hello world", "chat-model")
    assert (response.instructions, response.max_output_tokens) == ("Be kind.", 100)
    assert response.text is not None and response.text.format.type == "json_schema"
    assert response.usage is not None and response.usage.model_dump() == {
        "input_tokens": 11, "input_tokens_details": {"cached_tokens": 4,
                                                     "cache_write_tokens": 0,
                                                     "cache_write_tokens_details": None},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 16}
    assert (result.usage, result.usage_source, result.content_type) == \
        (REPORTED, UsageSource.UPSTREAM, "application/json")
    sent = chat.requests[0]
    assert sent.upstream_model == "chat-model" and sent.chat.payload["messages"] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hi"}]
    assert sent.chat.payload["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "greeting", "schema": {"type": "object"}}}
    assert sent.chat.max_tokens == 100


async def test_tool_calls_round_trip_over_two_turns() -> None:
    calls = [{"id": "call_a", "type": "function",
              "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]
    chat = ChatOnlyProvider(answer=chat_answer(None, "tool_calls", calls))
    router = _router(("chat", chat))
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    first = response_of((await router.relay(_responses(tools=tools))).body)
    [call] = first.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments, call.status) == \
        ("call_a", "weather", '{"city":"Paris"}', "completed")
    assert first.tools[0].type == "function" and first.tools[0].name == "weather"

    chat.answer = chat_answer("Sunny in Paris.")
    turn = [{"role": "user", "content": "Say hi"}, call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = response_of((await router.relay(_responses(input=turn, tools=tools))).body)
    assert second.output_text == "Sunny in Paris."
    assert chat.requests[1].chat.payload["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}]


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter"),
])
async def test_a_cut_answer_is_incomplete(finish: str, status: str, reason: str) -> None:
    chat = ChatOnlyProvider(answer=chat_answer("Hello", finish))
    response = response_of((await _router(("chat", chat)).relay(_responses())).body)
    assert response.status == status
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason


async def test_an_answer_without_usage_is_estimated() -> None:
    chat = ChatOnlyProvider(answer=chat_answer("Hello world", usage=None))
    result = await _router(("chat", chat)).relay(_responses())
    response = response_of(result.body)
    assert result.usage_source is UsageSource.ESTIMATED
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == \
        (result.usage.prompt_tokens, result.usage.completion_tokens)


async def test_a_streamed_text_answer_in_openais_event_order() -> None:
    chat = ChatOnlyProvider(chunks=text_chunks("Hi", " there"))
    events, end = await _events(_router(("chat", chat)), _responses(stream=True))
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(TEXT_EVENTS)))
    assert end.error is None and end.finish_reason == "stop"
    assert (end.usage, end.usage_source) == (REPORTED, UsageSource.UPSTREAM)
    assert len(end.tail) == 1 and b"event: response.completed\n" in end.tail[0]
    final = accumulate(events)
    assert (final.output_text, final.status) == ("Hi there", "completed")
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 4
    lifecycle = [e for e in events if e.type in LIFECYCLE]
    assert len(lifecycle) == 3 and {e.response.id for e in lifecycle} == {final.id}
    assert chat.requests[0].chat.include_usage and chat.closed == 1


async def test_streamed_parallel_tool_calls_keep_every_argument_piece() -> None:
    chat = ChatOnlyProvider(chunks=tool_chunks())
    events, end = await _events(_router(("chat", chat)), _responses(stream=True))
    assert [e.type for e in events][2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [(e.output_index, e.arguments) for e in done] == [(0, '{"city":"Paris"}'), (1, "{}")]
    final = accumulate(events)
    assert [(o.type, getattr(o, "call_id", ""), getattr(o, "arguments", "")) for o in
            final.output] == [("function_call", "call_a", '{"city":"Paris"}'),
                              ("function_call", "call_b", "{}")]
    assert end.finish_reason == "tool_calls"


async def test_a_stream_without_usage_is_estimated_in_its_completed_event() -> None:
    chunks = text_chunks("Hello", " world")[:-1]
    events, end = await _events(_router(("chat", ChatOnlyProvider(chunks=chunks))),
                                _responses(stream=True))
    assert end.usage_source is UsageSource.ESTIMATED and end.usage.completion_tokens >= 2
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == \
        (end.usage.prompt_tokens, end.usage.completion_tokens)


async def test_a_length_finish_ends_with_response_incomplete() -> None:
    chat = ChatOnlyProvider(chunks=text_chunks("Hi", finish="length"))
    events, end = await _events(_router(("chat", chat)), _responses(stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details is not None
    assert end.tail and end.usage == REPORTED


async def test_a_failure_before_the_first_delta_fails_over_unseen() -> None:
    broken = ChatOnlyProvider(cut_after=1)  # after the role chunk: created events were made
    healthy = ChatOnlyProvider(chunks=text_chunks("ok"))
    events, end = await _events(_router(("broken", broken), ("healthy", healthy)),
                                _responses(stream=True))
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert accumulate(events).output_text == "ok"
    assert (end.route.channel, end.route.attempts, broken.closed) == ("healthy", 2, 1)


async def test_a_cut_stream_ends_with_the_midstream_error() -> None:
    chat = ChatOnlyProvider(chunks=text_chunks("Hi", " there"), cut_after=2)
    events, end = await _events(_router(("chat", chat)), _responses(stream=True))
    assert [e.type for e in events] == TEXT_EVENTS[:5]
    assert (end.error, end.tail, end.usage_source) == (MIDSTREAM_ERROR, (), UsageSource.ESTIMATED)
    assert end.usage.completion_tokens >= 1


async def test_a_stream_that_ends_without_a_finish_is_an_upstream_failure() -> None:
    chunks = [chunk({"content": "Hi"})]
    events, end = await _events(_router(("chat", ChatOnlyProvider(chunks=chunks))),
                                _responses(stream=True))
    assert events[-1].type == "response.output_text.delta" and end.error == MIDSTREAM_ERROR


async def test_interleaved_tool_arguments_are_an_upstream_failure() -> None:
    calls = tool_chunks()
    chunks = [*calls[:2], calls[4], calls[2], *calls[5:]]  # call 0's arguments after call 1
    events, end = await _events(_router(("chat", ChatOnlyProvider(chunks=chunks))),
                                _responses(stream=True))
    assert end.error == MIDSTREAM_ERROR and events[-1].type != "response.completed"


async def test_relayed_operations_go_only_to_channels_that_serve_them() -> None:
    chat, native = ChatOnlyProvider(), FakeProvider()
    router = _router(("chat", chat), ("native", native))
    result = await router.relay(relay_request(Operation.EMBEDDINGS, {"input": "x"}))
    assert result.error is None and result.route.channel == "native"
    bridged = await router.relay(_responses())
    assert bridged.error is None and bridged.route.channel == "chat"
    stateful = await router.relay(_responses(previous_response_id="resp_1"))
    assert stateful.error is None and stateful.route.channel == "native"
    assert len(chat.requests) == 1 and len(native.requests) == 2


async def test_an_operation_no_channel_serves_is_the_clients_400() -> None:
    router = _router(("chat", ChatOnlyProvider()))
    result = await router.relay(relay_request(Operation.EMBEDDINGS, {"input": "x"}))
    assert result.error is not None
    assert (result.error.http_status, result.error.code, result.error.param) == \
        (400, "model_not_supported", "model")
    assert "/v1/embeddings" in result.error.message and "'demo'" in result.error.message
    items = [i async for i in router.relay_stream(
        relay_request(Operation.COMPLETIONS, {"prompt": "x", "stream": True}, stream=True))]
    [end] = items
    assert isinstance(end, StreamOutcome) and end.error is not None
    assert (end.error.http_status, end.error.param) == (400, "model")


async def test_a_feature_the_bridge_cannot_serve_is_the_clients_400() -> None:
    chat = ChatOnlyProvider()
    router = _router(("chat", chat))
    result = await router.relay(_responses(tools=[{"type": "web_search"}]))
    assert result.error is not None
    assert (result.error.http_status, result.error.type, result.error.param) == \
        (400, "invalid_request_error", "tools[0].type")
    unknown = await router.relay(relay_request(Operation.RESPONSES, {"input": "x"},
                                               model="nope"))
    assert unknown.error is not None and unknown.error.http_status == 404
    assert chat.requests == []


async def test_a_bridged_failure_fails_over_to_a_native_channel() -> None:
    chat = ChatOnlyProvider(error=UpstreamUnavailable(503, "down"))
    native = FakeProvider()
    result = await _router(("chat", chat), ("native", native)).relay(_responses())
    assert result.error is None and (result.route.channel, result.route.attempts) == \
        ("native", 2)
    assert orjson.loads(result.body) == {"data": []}  # the native answer, untouched
