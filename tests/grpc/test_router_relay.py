"""Relay and StreamRelay through a real grpc.aio server, with the mock and a real local
OpenAI-compatible upstream that records what it received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import orjson
import pytest

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start
from tests.grpc.router_relay_upstream import (
    CHAT,
    COMPLETION,
    UPSTREAM_KEY,
    FakeUpstream,
    router_config,
)
from tests.unit.router.helpers import MULTIPART, multipart, wav
from tests.unit.router.scripted import scripted_upstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with scripted_upstream() as script:
        fake = FakeUpstream(script)
        script.handler = fake.handle
        yield fake


@pytest.fixture
async def stub(
    tmp_path: Path, upstream: FakeUpstream
) -> AsyncIterator[router_pb2_grpc.RouterServiceAsyncStub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(router_config(upstream.script.base_url))
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(path))
    started = await start(settings, environ={"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


def _relay(operation: router_pb2.Operation.ValueType, model: str, body: bytes,
           content_type: str = "application/json") -> router_pb2.RelayRequest:
    return router_pb2.RelayRequest(request_id="req_relay", operation=operation, model=model,
                                   body=body, content_type=content_type)


def _stream(operation: router_pb2.Operation.ValueType, model: str,
            **body: object) -> router_pb2.StreamRelayRequest:
    return router_pb2.StreamRelayRequest(
        request_id="req_stream", operation=operation, model=model,
        body=orjson.dumps({"model": model, **body}), content_type="application/json")


def _units(usage: usage_pb2.Usage) -> dict[str, int]:
    return {u.unit: u.quantity for u in usage.units}


async def test_relay_embeddings_to_an_upstream_with_the_mapped_model(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    body = b'{"model":"remote","input":"hi","encoding_format":"float"}'
    response = await stub.Relay(_relay(router_pb2.OPERATION_EMBEDDINGS, "remote", body))
    assert not response.HasField("error")
    assert orjson.loads(response.body)["model"] == "remote-upstream"
    assert response.content_type.startswith("application/json")
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (6, 0)
    assert response.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    received = upstream.received[0]
    assert received.url.endswith("/v1/embeddings")
    assert orjson.loads(received.body) == {"model": "remote-upstream", "input": "hi",
                                           "encoding_format": "float"}
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.headers["x-request-id"] == "req_relay"


async def test_relay_multipart_is_forwarded_byte_for_byte(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    body = multipart({"model": "remote-whisper", "response_format": "text"},
                     {"file": ("hello.wav", wav(2.2))})
    response = await stub.Relay(_relay(router_pb2.OPERATION_AUDIO_TRANSCRIPTIONS,
                                       "remote-whisper", body, MULTIPART))
    assert (response.body, response.content_type) == (b"transcribed\n", "text/plain")
    assert _units(response.usage) == {"audio_second": 3}
    assert response.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    received = upstream.received[0]
    assert received.url.endswith("/v1/audio/transcriptions") and received.body == body
    assert received.headers["content-type"] == MULTIPART


async def test_relay_image_edit_rewrites_only_the_model_field_when_mapped(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    body = multipart({"model": "remote", "prompt": "a hat", "size": "512x512"},
                     {"image": ("cat.png", b"\x89PNG\r\n-binary-")})
    response = await stub.Relay(_relay(router_pb2.OPERATION_IMAGE_EDITS, "remote", body,
                                       MULTIPART))
    assert upstream.received[0].body == body.replace(b"\r\n\r\nremote\r\n",
                                                     b"\r\n\r\nremote-upstream\r\n")
    assert _units(response.usage) == {"image/512x512/standard": 2}


async def test_relay_images_from_the_mock_are_counted_per_image(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    body = orjson.dumps({"model": "demo-image", "prompt": "cat", "n": 3, "quality": "hd"})
    response = await stub.Relay(_relay(router_pb2.OPERATION_IMAGE_GENERATIONS, "demo-image",
                                       body))
    assert len(orjson.loads(response.body)["data"]) == 3
    assert _units(response.usage) == {"image/1024x1024/hd": 3}
    assert response.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("operation", "body", "text"),
    [(router_pb2.OPERATION_COMPLETIONS, {"prompt": "Hi"}, "choices"),
     (router_pb2.OPERATION_RESPONSES, {"input": "Hi"}, "output")],
)
async def test_relay_text_fails_over_from_a_dead_upstream(
    stub: router_pb2_grpc.RouterServiceAsyncStub, operation: router_pb2.Operation.ValueType,
    body: dict[str, object], text: str,
) -> None:
    response = await stub.Relay(_relay(operation, "demo", orjson.dumps({"model": "demo", **body})))
    assert not response.HasField("error") and text in orjson.loads(response.body)
    assert (response.route.channel, response.route.attempts) == ("mock", 2)
    assert response.usage.completion_tokens == 4


async def _items(call: object) -> list[router_pb2.StreamRelayResponse]:
    return [item async for item in call]  # type: ignore[attr-defined]


def _pieces(items: Sequence[router_pb2.StreamRelayResponse]) -> list[bytes]:
    return [piece for item in items for piece in item.pieces]


async def test_stream_completions_holds_the_usage_chunk_for_the_last_item(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    items = await _items(stub.StreamRelay(_stream(
        router_pb2.OPERATION_COMPLETIONS, "remote", prompt="Hi", stream=True,
        stream_options={"include_usage": True})))
    assert [i.HasField("end") for i in items] == [False] * (len(items) - 1) + [True]
    assert items[0].content_type == "text/event-stream"
    assert items[-1].pieces[-1] == b"data: " + COMPLETION[-1] + b"\n\n"
    assert _pieces(items) == [b"data: " + c + b"\n\n" for c in COMPLETION]
    end = items[-1].end
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (5, 2)
    assert end.finish_reason == "stop" and end.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert orjson.loads(upstream.received[0].body)["stream_options"] == {"include_usage": True}


async def test_stream_completions_cut_after_output_does_not_fail_over(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    items = await _items(stub.StreamRelay(_stream(
        router_pb2.OPERATION_COMPLETIONS, "remote", prompt="drop", stream=True)))
    end = items[-1].end
    assert end.error.http_status == 502 and end.route.attempts == 1
    assert end.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED and end.usage.completion_tokens == 2
    assert len(_pieces(items)) == 2 and len(upstream.received) == 1


async def test_stream_responses_from_the_mock_ends_with_completed_in_the_last_item(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    items = await _items(stub.StreamRelay(_stream(
        router_pb2.OPERATION_RESPONSES, "demo", input="Hi", stream=True)))
    assert items[-1].pieces[-1].startswith(b"event: response.completed\ndata: ")
    assert items[0].content_type == "text/event-stream"
    pieces = _pieces(items)
    assert pieces[0].startswith(b"event: response.created\n")
    assert not any(b"[DONE]" in p for p in pieces)
    end = items[-1].end
    assert (end.route.channel, end.route.attempts) == ("mock", 2)
    assert end.usage.completion_tokens == 4


async def test_stream_speech_sends_audio_with_its_content_type_and_counts_characters(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
) -> None:
    items = await _items(stub.StreamRelay(_stream(
        router_pb2.OPERATION_AUDIO_SPEECH, "demo-tts", input="Hello world", voice="alloy",
        response_format="wav")))
    assert items[0].content_type == "audio/wav"
    assert b"".join(_pieces(items)).startswith(b"RIFF")
    end = items[-1].end
    assert _units(end.usage) == {"character": 11} and not end.HasField("error")
    assert end.route.attempts == 2


async def test_cancelling_a_relayed_stream_closes_the_upstream(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    call = stub.StreamRelay(_stream(router_pb2.OPERATION_RESPONSES, "remote", input="Hi",
                                    stream=True))
    first = await call.read()
    assert isinstance(first, router_pb2.StreamRelayResponse) and first.pieces
    await asyncio.wait_for(upstream.streaming.wait(), 2)
    assert not upstream.disconnected.is_set()
    call.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 2)


async def test_chat_stream_usage_chunk_rides_in_the_last_item(
    stub: router_pb2_grpc.RouterServiceAsyncStub, upstream: FakeUpstream
) -> None:
    body = orjson.dumps({"model": "remote", "messages": [{"role": "user", "content": "Hi"}],
                         "stream": True, "stream_options": {"include_usage": True}})
    call = stub.StreamChatCompletion(router_pb2.StreamChatCompletionRequest(
        model="remote", body=body))
    items = [item async for item in call]
    assert len(items) >= 2  # the [DONE] comes late, so the content went out first
    assert list(items[-1].chunks) == [CHAT[-1]] and items[-1].HasField("end")
    assert items[-1].end.usage.total_tokens == 7


@pytest.mark.parametrize(
    ("operation", "body", "streamed"),
    [(router_pb2.OPERATION_UNSPECIFIED, b'{"model":"demo"}', False),
     (router_pb2.OPERATION_EMBEDDINGS, b'{"model":"demo","input":"x"}', True),
     (router_pb2.OPERATION_COMPLETIONS, b'{"model":"demo","prompt":"x","stream":true}', False),
     (router_pb2.OPERATION_IMAGE_EDITS, b'{"model":"demo"}', False)],
)
async def test_malformed_relays_are_invalid_argument(
    stub: router_pb2_grpc.RouterServiceAsyncStub, operation: router_pb2.Operation.ValueType,
    body: bytes, streamed: bool,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if streamed:
            await stub.StreamRelay(router_pb2.StreamRelayRequest(
                operation=operation, model="demo", body=body)).read()
        else:
            await stub.Relay(_relay(operation, "demo", body))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
