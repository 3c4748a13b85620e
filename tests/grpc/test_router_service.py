"""RouterService through a real grpc.aio server, with the mock and a real local upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start

UPSTREAM_KEY = "sk-fake-upstream-key"
REPLY = "One two three four."


@dataclass
class FakeUpstream:
    """A slow OpenAI-compatible upstream that notices when its client goes away."""

    url: str = ""
    headers: list[Mapping[str, str]] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    streaming: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(request.headers.copy())  # case-insensitive
        body = await request.json()
        self.bodies.append(body)
        if not body.get("stream"):
            return web.json_response(_completion(body["model"]))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n')
            for _ in range(500):  # up to 10 s of content, far more than any test waits
                await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n')
                self.streaming.set()
                await asyncio.sleep(0.02)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return response


def _completion(model: str) -> dict[str, object]:
    return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "up"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


def _config(upstream_url: str) -> str:
    return f"""
models:
  - {{id: demo, max_output_tokens: 1024}}
  - {{id: backup-only, owned_by: acme}}
  - {{id: slow}}
  - {{id: paced}}
  - {{id: retired}}
channels:
  - name: dead
    type: openai
    base_url: http://127.0.0.1:9/v1
    priority: 10
    models: [backup-only]
  - name: mock
    type: mock
    models: [demo, backup-only]
    mock: {{reply: "{REPLY}"}}
  - name: paced-mock
    type: mock
    models: [paced]
    mock: {{reply: "{REPLY}", tokens_per_second: 50}}
  - name: fake-upstream
    type: openai
    base_url: {upstream_url}
    api_key_env: FAKE_UPSTREAM_KEY
    model_map: {{slow: slow-upstream}}
    models: [slow]
  - name: disabled-mock
    type: mock
    enabled: false
    models: [retired]
"""


@pytest.fixture
async def stub(
    tmp_path: Path, upstream: FakeUpstream
) -> AsyncIterator[router_pb2_grpc.RouterServiceAsyncStub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(_config(upstream.url))
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(path))
    started = await start(settings, environ={"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


def _body(model: str, text: str = "Hello?", **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


async def test_list_models_only_served_models_sorted(stub: router_pb2_grpc.RouterServiceAsyncStub) -> None:
    response = await stub.ListModels(router_pb2.ListModelsRequest())
    assert [m.id for m in response.models] == ["backup-only", "demo", "paced", "slow"]
    assert response.models[1].max_output_tokens == 1024
    assert response.models[0].owned_by == "acme"


async def test_unary_completion(stub: router_pb2_grpc.RouterServiceAsyncStub) -> None:
    response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        request_id="req_unary", model="demo", body=_body("demo")))
    assert not response.HasField("error")
    completion = ChatCompletion.model_validate_json(response.body)
    assert completion.choices[0].message.content == REPLY
    assert response.usage.completion_tokens == 4
    assert response.usage.total_tokens == response.usage.prompt_tokens + 4
    assert response.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert response.finish_reason == "stop"
    assert (response.route.channel, response.route.upstream_model, response.route.attempts) == \
        ("mock", "demo", 1)


async def test_unary_fails_over_from_a_dead_upstream(stub: router_pb2_grpc.RouterServiceAsyncStub) -> None:
    response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        model="backup-only", body=_body("backup-only")))
    assert not response.HasField("error")
    assert (response.route.channel, response.route.attempts) == ("mock", 2)


async def test_unary_to_an_openai_upstream_sends_key_request_id_and_mapped_model(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        request_id="req_up", model="slow", body=_body("slow")))
    assert orjson.loads(response.body)["model"] == "slow-upstream"
    assert response.usage.total_tokens == 6
    assert upstream.headers[0]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert upstream.headers[0]["x-request-id"] == "req_up"
    assert upstream.bodies[0]["model"] == "slow-upstream"


def _content(chunks: Sequence[bytes]) -> list[str]:
    parsed = [ChatCompletionChunk.model_validate_json(c) for c in chunks]
    return [c.choices[0].delta.content or "" for c in parsed if c.choices]


async def test_stream_at_full_speed_is_one_item_with_every_chunk_and_the_end(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="demo", body=_body("demo", stream=True, stream_options={"include_usage": True})))
    item, = [item async for item in call]
    assert "".join(_content(item.chunks)) == REPLY
    assert len(item.chunks) == 7  # role, 4 content, finish, usage
    last = ChatCompletionChunk.model_validate_json(item.chunks[-1])
    assert last.usage is not None and last.choices == []
    assert (item.end.finish_reason, item.end.usage.completion_tokens) == ("stop", 4)
    assert item.end.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert not item.end.HasField("error")
    assert await call.code() == grpc.StatusCode.OK


async def test_paced_stream_sends_each_chunk_when_it_is_ready(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="paced", body=_body("paced", stream=True)))
    items = [item async for item in call]
    # The role chunk is held back for the first content; the finish follows the last.
    assert [_content(i.chunks) for i in items] == [
        ["", "One"], [" two"], [" three"], [" four.", ""],
    ]
    assert [i.HasField("end") for i in items] == [False, False, False, True]
    assert items[-1].end.finish_reason == "stop"


async def test_stream_cut_after_chunks_ends_with_in_band_error(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="demo", body=_body("demo", "[[mock:cut:2]]", stream=True)))
    items = [item async for item in call]
    assert [i.HasField("end") for i in items] == [False] * (len(items) - 1) + [True]
    end = items[-1].end
    assert end.error.http_status == 502
    assert end.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    assert end.usage.completion_tokens == 2
    assert sum(len(i.chunks) for i in items) == 3  # role + 2 content


async def test_unknown_model_is_response_data(stub: router_pb2_grpc.RouterServiceAsyncStub) -> None:
    response = await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(
        model="retired", body=_body("retired")))
    assert (response.error.http_status, response.error.code) == (404, "model_not_found")
    assert response.body == b""
    items = [i async for i in stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="nope", body=_body("nope", stream=True)))]
    assert len(items) == 1 and items[0].end.error.code == "model_not_found"
    assert list(items[0].chunks) == []


@pytest.mark.parametrize(
    ("model", "body"),
    [("demo", b"{not json"), ("demo", b'"a string"'), ("demo", _body("other")), ("", _body("demo"))],
)
async def test_malformed_request_is_invalid_argument(
    stub: router_pb2_grpc.RouterServiceAsyncStub, model: str, body: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChatCompletion(router_pb2.CreateChatCompletionRequest(model=model, body=body))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(model=model, body=body))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancelling_the_call_closes_the_upstream_stream(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="slow", body=_body("slow", stream=True)))
    first = await call.read()
    assert isinstance(first, router_pb2.StreamChatCompletionResponse)
    assert first.chunks and not first.HasField("end")
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}
    await asyncio.wait_for(upstream.streaming.wait(), 2)
    assert not upstream.disconnected.is_set()
    call.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 2)
