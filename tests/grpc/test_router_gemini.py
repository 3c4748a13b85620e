"""RouterService with a gemini channel in front of the fake Gemini API, through a real
grpc.aio server; every answer is checked with the openai SDK's types. Covers the
conformance cells for gemini (stream and non-stream) and the thought-signature round
trip of multi-turn tool use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start
from tests.fakes.gemini_fake import (
    FAKE_KEY,
    GeminiFake,
    call_part,
    gemini_fake,
    response,
    text_response,
    usage_metadata,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    Stub: TypeAlias = router_pb2_grpc.RouterServiceAsyncStub

SIGNATURE = "CiQBcsjafA+8x/Zq9w=="


def _config(base_url: str) -> str:
    """`gem` is served by gemini first, the mock second; `gem-only` by gemini alone."""
    return f"""
models:
  - {{id: gem}}
  - {{id: gem-only}}
  - {{id: gem-embed}}
channels:
  - name: gemini
    type: gemini
    base_url: {base_url}
    api_key_env: GEMINI_API_KEY
    priority: 10
    model_map: {{gem: gemini-2.5-flash, gem-only: gemini-2.5-pro,
                 gem-embed: text-embedding-004}}
    models: [gem, gem-only, gem-embed]
  - name: mock
    type: mock
    models: [gem]
    mock: {{reply: "from the mock"}}
"""


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


@pytest.fixture
async def stub(tmp_path: Path, fake: GeminiFake) -> AsyncIterator[Stub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(_config(fake.base_url))
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(path))
    started = await start(settings, environ={"GEMINI_API_KEY": FAKE_KEY})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


def _body(model: str, messages: Sequence[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": list(messages), **extra})


async def _complete(stub: Stub, model: str, messages: Sequence[dict[str, Any]],
                    **extra: Any) -> router_pb2.CreateChatCompletionResponse:
    return await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        request_id="req_gem", model=model, body=_body(model, messages, **extra)))


async def _stream(stub: Stub, model: str, messages: Sequence[dict[str, Any]],
                  **extra: Any) -> tuple[list[ChatCompletionChunk], router_pb2.StreamEnd]:
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        request_id="req_gem", model=model, body=_body(model, messages, stream=True, **extra)))
    items = [item async for item in call]
    chunks = [ChatCompletionChunk.model_validate_json(c) for i in items for c in i.chunks]
    return chunks, items[-1].end


USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


async def test_text_with_system_cache_and_reasoning_usage(stub: Stub, fake: GeminiFake) -> None:
    fake.answer = response([{"text": "hm", "thought": True}, {"text": "Hello."}],
                           usage=usage_metadata(50, 4, cached=30, thoughts=6))
    result = await _complete(stub, "gem", USER)
    parsed = ChatCompletion.model_validate_json(result.body)
    assert parsed.choices[0].message.content == "Hello."
    assert parsed.choices[0].message.model_extra == {"reasoning_content": "hm"}
    assert (result.usage.prompt_tokens, result.usage.completion_tokens,
            result.usage.cached_prompt_tokens, result.usage.reasoning_tokens) == (50, 10, 30, 6)
    assert result.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert (result.route.channel, result.route.upstream_model) == ("gemini", "gemini-2.5-flash")
    assert fake.received[0].body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


async def test_stream_text_with_usage(stub: Stub, fake: GeminiFake) -> None:
    fake.events = [text_response("Hel", None),
                   text_response("lo.", usage=usage_metadata(5, 2, cached=1, thoughts=3))]
    chunks, end = await _stream(stub, "gem", USER, stream_options={"include_usage": True})
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert (end.finish_reason, end.usage.prompt_tokens, end.usage.reasoning_tokens) == (
        "stop", 5, 3)
    assert not end.HasField("error")


@pytest.mark.parametrize("stream", [False, True])
async def test_length_and_stop_sequence(stub: Stub, fake: GeminiFake, stream: bool) -> None:
    fake.answer = text_response("cut", "MAX_TOKENS", usage=usage_metadata())
    fake.events = [fake.answer]
    extra = {"max_tokens": 1, "stop": ["END"]}
    if stream:
        _, end = await _stream(stub, "gem", USER, **extra)
        reason = end.finish_reason
    else:
        reason = (await _complete(stub, "gem", USER, **extra)).finish_reason
    assert reason == "length"
    assert fake.received[0].body["generationConfig"] == {"maxOutputTokens": 1,
                                                         "stopSequences": ["END"]}


@pytest.mark.parametrize("stream", [False, True])
async def test_json_mode_and_image_input(stub: Stub, fake: GeminiFake, stream: bool) -> None:
    fake.answer = text_response('{"a": 1}', usage=usage_metadata())
    fake.events = [fake.answer]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Describe as JSON"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    extra = {"response_format": {"type": "json_object"}}
    if stream:
        chunks, _ = await _stream(stub, "gem", messages, **extra)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = ChatCompletion.model_validate_json(
            (await _complete(stub, "gem", messages, **extra)).body).choices[0].message.content \
            or ""
    assert orjson.loads(text) == {"a": 1}
    sent = fake.received[0].body
    assert sent["generationConfig"] == {"responseMimeType": "application/json"}
    assert sent["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}


TOOLS = [{"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object",
                                      "properties": {"city": {"type": "string"}}}}}]
CALLS = [call_part("weather", {"city": "Paris"}, SIGNATURE), call_part("weather", {"city": "Rome"})]


@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_and_the_signature_round_trip(
    stub: Stub, fake: GeminiFake, stream: bool,
) -> None:
    fake.answer = response(CALLS, usage=usage_metadata())
    fake.events = [response(CALLS[:1], None), response(CALLS[1:], usage=usage_metadata())]
    asked = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    if stream:
        chunks, end = await _stream(stub, "gem-only", asked, tools=TOOLS)
        deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
        assert [d.index for d in deltas] == [0, 1] and end.finish_reason == "tool_calls"
        calls: list[dict[str, Any]] = [
            {"id": d.id, "type": "function", "function": d.function.model_dump()}
            for d in deltas if d.function is not None]
    else:
        parsed = ChatCompletion.model_validate_json(
            (await _complete(stub, "gem-only", asked, tools=TOOLS)).body)
        assert parsed.choices[0].finish_reason == "tool_calls"
        # As a client keeps them: id, type and function only (extra_content dropped).
        calls = [{key: value for key, value in c.model_dump().items() if key != "extra_content"}
                 for c in parsed.choices[0].message.tool_calls or ()]
    assert [c["function"]["arguments"] for c in calls] == ['{"city":"Paris"}',
                                                           '{"city":"Rome"}']
    fake.answer = text_response("Sunny and rainy.", usage=usage_metadata())
    fake.events = [fake.answer]
    history: list[dict[str, Any]] = [*asked, {"role": "assistant", "content": None, "tool_calls": calls},
               {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
               {"role": "tool", "tool_call_id": calls[1]["id"], "content": "rainy"}]
    second = await _complete(stub, "gem-only", history, tools=TOOLS)
    assert ChatCompletion.model_validate_json(second.body).choices[0].message.content == \
        "Sunny and rainy."
    sent = fake.received[1].body["contents"]
    assert sent[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}},
         "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]}
    assert [p["functionResponse"]["name"] for p in sent[2]["parts"]] == ["weather", "weather"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_request_is_the_clients_error_without_failover(
    stub: Stub, fake: GeminiFake, stream: bool,
) -> None:
    fake.fail(400, "Invalid value at 'contents'")
    if stream:
        _, end = await _stream(stub, "gem", USER)
        error = end.error
    else:
        error = (await _complete(stub, "gem", USER)).error
    assert (error.http_status, error.type, error.message) == (
        400, "invalid_request_error", "Invalid value at 'contents'")
    assert len(fake.received) == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "reason"), [(400, "API_KEY_INVALID"), (401, ""), (403, ""),
                                                (429, ""), (500, ""), (503, ""), (529, "")])
async def test_upstream_failures_fail_over_to_the_next_channel(
    stub: Stub, fake: GeminiFake, status: int, reason: str, stream: bool,
) -> None:
    fake.fail(status, "upstream trouble", reason=reason)
    if stream:
        chunks, end = await _stream(stub, "gem", USER)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        route = end.route
    else:
        result = await _complete(stub, "gem", USER)
        text = ChatCompletion.model_validate_json(result.body).choices[0].message.content or ""
        route = result.route
    assert text == "from the mock"
    assert (route.channel, route.attempts) == ("mock", 2)


async def test_a_blocked_prompt_is_a_400_content_filter(stub: Stub, fake: GeminiFake) -> None:
    fake.answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage_metadata()}
    error = (await _complete(stub, "gem", USER)).error
    assert (error.http_status, error.code) == (400, "content_filter")


async def test_embeddings_are_relayed_with_estimated_usage(stub: Stub, fake: GeminiFake) -> None:
    body = orjson.dumps({"model": "gem-embed", "input": ["a", "bb"], "dimensions": 2})
    result = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_emb", operation=router_pb2.OPERATION_EMBEDDINGS, model="gem-embed",
        body=body, content_type="application/json"))
    assert not result.HasField("error")
    parsed = CreateEmbeddingResponse.model_validate_json(result.body)
    assert [d.embedding for d in parsed.data] == [[0.01, 0.02], [0.02, 0.03]]
    assert result.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens == 0
    assert (fake.received[0].model, fake.received[0].method) == ("text-embedding-004",
                                                                 "batchEmbedContents")
