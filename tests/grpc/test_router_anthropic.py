"""RouterService with an `anthropic` channel pointing at the fake Anthropic upstream.

The anthropic cells of the issue-4 conformance matrix, streamed and not: every answer
is parsed with the openai SDK's ChatCompletion / ChatCompletionChunk types, and what
the fake received proves the Messages API request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start
from tests.fakes.anthropic_fake import DEFAULT_TEXT, AnthropicFake, Reply, Text, Thinking, ToolUse
from tests.fakes.anthropic_fake import running as running_fake

BACKUP = "Answered by the backup channel."
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
PARIS = ToolUse("toolu_p", "get_weather", {"city": "Paris"})
OSLO = ToolUse("toolu_o", "get_weather", {"city": "Oslo", "unit": "celsius"})


@dataclass
class Answer:
    """One answer, streamed or not, read the way an OpenAI client reads it."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    finish_reason: str = ""
    usage: usage_pb2.Usage | None = None
    error: router_pb2.CompletionError | None = None
    channel: str = ""
    argument_chunks: int = 0


@pytest.fixture
async def fake() -> AsyncIterator[AnthropicFake]:
    async with running_fake() as served:
        yield served


@pytest.fixture
async def stub(tmp_path: Path, fake: AnthropicFake) -> AsyncIterator[
        router_pb2_grpc.RouterServiceAsyncStub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(f"""
models:
  - {{id: claude}}
  - {{id: claude-ha}}
channels:
  - name: anthropic
    type: anthropic
    base_url: {fake.url}
    api_key_env: ANTHROPIC_TEST_KEY
    priority: 10
    model_map: {{claude: claude-up-1, claude-ha: claude-up-1}}
    models: [claude, claude-ha]
  - name: backup
    type: mock
    models: [claude-ha]
    mock: {{reply: "{BACKUP}"}}
""")
    started = await start(Settings(listen_addr="127.0.0.1:0", config_path=str(path)),
                          environ={"ANTHROPIC_TEST_KEY": fake.api_key})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


async def _ask(stub: router_pb2_grpc.RouterServiceAsyncStub, stream: bool,
               messages: list[dict[str, Any]] | None = None, model: str = "claude",
               **extra: Any) -> Answer:
    payload = {"model": model, "messages": messages or [{"role": "user", "content": "Hi"}],
               **extra}
    if not stream:
        body = orjson.dumps(payload)
        response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
            request_id="req_a4", model=model, body=body))
        if response.HasField("error"):
            return Answer(error=response.error, channel=response.route.channel)
        choice = ChatCompletion.model_validate_json(response.body).choices[0]
        assert choice.finish_reason == response.finish_reason
        calls = [(c.id, c.function.name, c.function.arguments)
                 for c in choice.message.tool_calls or [] if c.type == "function"]
        return Answer(choice.message.content or "",
                      str(orjson.loads(response.body)["choices"][0]["message"]
                          .get("reasoning_content") or ""),
                      calls, choice.finish_reason, response.usage, None, response.route.channel)
    payload["stream"] = True
    payload["stream_options"] = {"include_usage": True}
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        request_id="req_a4", model=model, body=orjson.dumps(payload)))
    items = [item async for item in call]
    return _assemble(items)


def _assemble(items: list[router_pb2.StreamChatCompletionResponse]) -> Answer:
    chunks = [ChatCompletionChunk.model_validate_json(c) for i in items for c in i.chunks]
    end = items[-1].end
    answer = Answer(finish_reason=end.finish_reason, usage=end.usage, channel=end.route.channel,
                    error=end.error if end.HasField("error") else None)
    if not chunks:
        return answer
    assert chunks[0].choices[0].delta.role == "assistant"
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        if not chunk.choices:
            assert chunk.usage is not None and chunk is chunks[-1]
            continue
        delta = chunk.choices[0].delta
        answer.content += delta.content or ""
        answer.reasoning += str((delta.model_extra or {}).get("reasoning_content") or "")
        for tool in delta.tool_calls or []:
            entry = calls.setdefault(tool.index, ["", "", ""])
            if tool.id:
                entry[0] = tool.id
            if tool.function and tool.function.name:
                entry[1] = tool.function.name
            if tool.function and tool.function.arguments:
                entry[2] += tool.function.arguments
                answer.argument_chunks += 1
        if chunk.choices[0].finish_reason:
            assert chunk.choices[0].finish_reason == end.finish_reason
    answer.tool_calls = [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))]
    return answer


MODES = pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])


@MODES
async def test_text(stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake,
                    stream: bool) -> None:
    answer = await _ask(stub, stream)
    assert (answer.content, answer.finish_reason, answer.channel) == (
        DEFAULT_TEXT, "stop", "anthropic")
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (12, 7)
    sent = fake.requests[0]
    assert sent.headers["x-api-key"] == fake.api_key
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-request-id"] == "req_a4"
    assert (sent.body["model"], sent.body.get("stream", False)) == ("claude-up-1", stream)


@MODES
async def test_multi_turn_with_system(stub: router_pb2_grpc.RouterServiceAsyncStub,
                                      fake: AnthropicFake, stream: bool) -> None:
    await _ask(stub, stream, [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"},
                              {"role": "user", "content": "How are you?"}])
    sent = fake.requests[0].body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


@MODES
async def test_image_input(stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake,
                           stream: bool) -> None:
    answer = await _ask(stub, stream, [{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert answer.content == DEFAULT_TEXT
    sources = [b["source"] for b in fake.requests[0].body["messages"][0]["content"][1:]]
    assert sources == [{"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
                       {"type": "url", "url": "https://example.com/a.png"}]


@MODES
async def test_single_tool_call(stub: router_pb2_grpc.RouterServiceAsyncStub,
                                fake: AnthropicFake, stream: bool) -> None:
    fake.script(Reply(blocks=(PARIS,), stop_reason="tool_use"))
    answer = await _ask(stub, stream, tools=[WEATHER], tool_choice="required")
    assert answer.tool_calls == [("toolu_p", "get_weather", '{"city":"Paris"}')]
    assert (answer.content, answer.finish_reason) == ("", "tool_calls")
    assert fake.requests[0].body["tool_choice"] == {"type": "any"}


@MODES
async def test_parallel_tool_calls_with_streamed_arguments(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake, stream: bool,
) -> None:
    fake.script(Reply(blocks=(Text("Checking."), PARIS, OSLO), stop_reason="tool_use"))
    answer = await _ask(stub, stream, tools=[WEATHER])
    assert answer.content == "Checking."
    assert [(i, n, orjson.loads(a)) for i, n, a in answer.tool_calls] == [
        ("toolu_p", "get_weather", PARIS.input), ("toolu_o", "get_weather", OSLO.input)]
    if stream:
        assert answer.argument_chunks > 4  # the arguments came in many deltas


@MODES
async def test_tool_results_turn(stub: router_pb2_grpc.RouterServiceAsyncStub,
                                 fake: AnthropicFake, stream: bool) -> None:
    calls = [{"id": t.id, "type": "function", "function": {
        "name": t.name, "arguments": orjson.dumps(t.input).decode()}} for t in (PARIS, OSLO)]
    fake.script(Reply(blocks=(Text("Paris is warmer."),)))
    answer = await _ask(stub, stream, [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_p", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_o", "content": "3C"}], tools=[WEATHER])
    assert answer.content == "Paris is warmer."
    turns = fake.requests[0].body["messages"]
    assert [b["type"] for b in turns[1]["content"]] == ["tool_use", "tool_use"]
    assert turns[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_p", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_o", "content": "3C"}]}


@MODES
async def test_json_mode(stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake,
                         stream: bool) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fake.script(Reply(blocks=(Text('{"n": 3}'),)))
    answer = await _ask(stub, stream, response_format={
        "type": "json_schema", "json_schema": {"name": "count", "schema": schema}})
    assert orjson.loads(answer.content) == {"n": 3}
    assert fake.requests[0].body["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}}


@MODES
async def test_stop_sequence(stub: router_pb2_grpc.RouterServiceAsyncStub,
                             fake: AnthropicFake, stream: bool) -> None:
    fake.script(Reply(blocks=(Text("One two"),), stop_reason="stop_sequence",
                      stop_sequence="three"))
    answer = await _ask(stub, stream, stop=["three"])
    assert (answer.content, answer.finish_reason) == ("One two", "stop")
    assert fake.requests[0].body["stop_sequences"] == ["three"]


@MODES
async def test_length_finish(stub: router_pb2_grpc.RouterServiceAsyncStub,
                             fake: AnthropicFake, stream: bool) -> None:
    fake.script(Reply(blocks=(Text("One two"),), stop_reason="max_tokens", output_tokens=2))
    answer = await _ask(stub, stream, max_tokens=2)
    assert answer.finish_reason == "length"
    assert fake.requests[0].body["max_tokens"] == 2


@MODES
async def test_usage_with_cache_and_reasoning_tokens(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake, stream: bool,
) -> None:
    fake.script(Reply(blocks=(Thinking("Think first."), Text("Done.")), cache_read=100,
                      cache_creation=20, output_tokens=30, thinking_tokens=12))
    answer = await _ask(stub, stream, reasoning_effort="low")
    assert (answer.reasoning, answer.content) == ("Think first.", "Done.")
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.cached_prompt_tokens,
            answer.usage.completion_tokens, answer.usage.total_tokens) == (132, 100, 30, 162)
    assert answer.usage.reasoning_tokens == 12
    assert answer.usage.cache_write_prompt_tokens == 20
    assert fake.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@MODES
@pytest.mark.parametrize(("status", "kind", "http_status", "code"), [
    (400, "invalid_request_error", 400, ""),
    (401, "authentication_error", 502, "upstream_error"),
    (429, "rate_limit_error", 429, "upstream_rate_limited"),
    (500, "api_error", 502, "upstream_error"),
    (529, "overloaded_error", 502, "upstream_error"),
])
async def test_upstream_errors(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake, stream: bool,
    status: int, kind: str, http_status: int, code: str,
) -> None:
    fake.script(Reply(status=status, error_type=kind,
                      error_message=f"bad field at {fake.url} with {fake.api_key}"))
    answer = await _ask(stub, stream)
    assert answer.error is not None
    assert (answer.error.http_status, answer.error.code) == (http_status, code)
    assert fake.url not in answer.error.message and fake.api_key not in answer.error.message
    if status == 400:
        assert answer.error.message.startswith("bad field at [redacted]")


@MODES
@pytest.mark.parametrize("failure", [Reply(status=529, error_type="overloaded_error"),
                                     Reply(status=401, error_type="authentication_error"),
                                     Reply(error_event_after=2)])
async def test_retryable_failures_before_content_fail_over(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake, stream: bool,
    failure: Reply,
) -> None:
    if failure.error_event_after is not None and not stream:
        failure = Reply(status=500)
    fake.script(failure)
    answer = await _ask(stub, stream, model="claude-ha")
    assert (answer.content, answer.channel, answer.error) == (BACKUP, "backup", None)


async def test_an_error_event_after_content_ends_the_stream_in_band(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake,
) -> None:
    fake.script(Reply(blocks=(Text("One two three four"),), error_event_after=5))
    answer = await _ask(stub, True, model="claude-ha")
    assert answer.content == "One two "
    assert answer.error is not None and answer.error.http_status == 502
    assert answer.channel == "anthropic"


async def test_a_cut_stream_after_content_ends_with_an_in_band_error(
    stub: router_pb2_grpc.RouterServiceAsyncStub, fake: AnthropicFake,
) -> None:
    fake.script(Reply(blocks=(Text("One two three four"),), cut_after=5))
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="claude", body=orjson.dumps({"model": "claude", "stream": True,
                                           "messages": [{"role": "user", "content": "Hi"}]})))
    end = [item async for item in call][-1].end
    assert end.error.http_status == 502
    # No final counts came: the delivered chunks ("One ", "two ") are estimated.
    assert end.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert end.usage.completion_tokens == 2


@MODES
async def test_missing_usage_is_estimated(stub: router_pb2_grpc.RouterServiceAsyncStub,
                                          fake: AnthropicFake, stream: bool) -> None:
    fake.script(Reply(omit_usage=True))
    payload: dict[str, Any] = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
            model="claude", body=orjson.dumps({**payload, "stream": True})))
        end = [item async for item in call][-1].end
        assert not end.HasField("error") and end.finish_reason == "stop"
        usage, source = end.usage, end.usage_source
    else:
        response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
            model="claude", body=orjson.dumps(payload)))
        assert ChatCompletion.model_validate_json(response.body).usage is None
        usage, source = response.usage, response.usage_source
    assert source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
