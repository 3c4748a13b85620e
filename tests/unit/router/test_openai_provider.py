"""The OpenAI-compatible provider against httpx.MockTransport upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest

from services.common.gateway_config import ChannelEntry
from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers.base import StreamPiece
from services.router.providers.openai import OpenAIProvider
from tests.unit.router.helpers import chat_request, upstream

BASE_URL = "https://upstream.example.test/v1"
KEY = "sk-upstream-secret-0123456789"
Handler = Callable[[httpx.Request], httpx.Response]


def _provider(handler: Handler) -> OpenAIProvider:
    channel = ChannelEntry(name="up", type="openai", models=("demo",), base_url=BASE_URL)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAIProvider(channel, client, KEY)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    })


USAGE_CHUNK = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
    "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 1}},
})
CHUNKS = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hi"}),
          _chunk({"content": " you"}), _chunk({}, "stop"), USAGE_CHUNK]


def _sse(*chunks: bytes, done: bool = True) -> bytes:
    events = [b": OPENROUTER PROCESSING\n\n"] + [b"data: " + c + b"\n\n" for c in chunks]
    return b"".join(events) + (b"data: [DONE]\n\n" if done else b"")


async def _collect(provider: OpenAIProvider, include_usage: bool = False) -> list[StreamPiece]:
    chat = chat_request(stream=True, include_usage=include_usage)
    return [p async for p in provider.stream(upstream(chat, "up-model"))]


async def test_completion_sends_key_request_id_and_returns_bytes_untouched() -> None:
    answer_body = b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":' \
        b'{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],' \
        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"extra":1}'
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=answer_body)

    chat = chat_request(request_id="req_abc", temperature=0.5)
    answer = await _provider(handler).complete(upstream(chat))
    assert answer.body == answer_body
    assert answer.text == "Hi" and answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens == 4
    sent = seen[0]
    assert str(sent.url) == BASE_URL + "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-request-id"] == "req_abc"
    assert sent.content == chat.body  # nothing to change: the client's bytes go as they are


async def test_completion_sends_the_mapped_model() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"choices": [], "usage": None})

    chat = chat_request(temperature=0.5)
    answer = await _provider(handler).complete(upstream(chat, "up-model"))
    sent = orjson.loads(seen[0])
    assert sent["model"] == "up-model" and sent["temperature"] == 0.5
    assert chat.payload["model"] == "demo"
    assert answer.usage is None


async def test_stream_forces_usage_upstream_and_drops_the_unasked_usage_chunk() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, content=_sse(*CHUNKS))

    pieces = await _collect(_provider(handler))
    sent = orjson.loads(seen[0])
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert [p.chunk for p in pieces if p.chunk] == CHUNKS[:-1]
    assert "".join(p.text for p in pieces) == "Hi you"
    assert [p.is_output for p in pieces[:4]] == [False, True, True, True]
    assert [p.finish_reason for p in pieces if p.finish_reason] == ["stop"]
    usage = pieces[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 2)
    assert (usage.cached_prompt_tokens, usage.reasoning_tokens) == (4, 1)


async def test_stream_forwards_the_usage_chunk_when_the_client_asked() -> None:
    provider = _provider(lambda request: httpx.Response(200, content=_sse(*CHUNKS)))
    pieces = await _collect(provider, include_usage=True)
    assert [p.chunk for p in pieces] == CHUNKS


async def test_stream_accepts_chunks_without_blank_lines_between_them() -> None:
    body = b"".join(b"data: " + c + b"\n" for c in CHUNKS) + b"data: [DONE]\n\n"
    pieces = await _collect(_provider(lambda request: httpx.Response(200, content=body)))
    assert "".join(p.text for p in pieces) == "Hi you"


async def test_stream_without_done_but_with_finish_reason_is_whole() -> None:
    body = _sse(*CHUNKS, done=False)
    pieces = await _collect(_provider(lambda request: httpx.Response(200, content=body)))
    assert len(pieces) == len(CHUNKS)


async def test_stream_that_ends_early_is_an_error() -> None:
    body = _sse(*CHUNKS[:2], done=False)
    with pytest.raises(UpstreamUnavailable):
        await _collect(_provider(lambda request: httpx.Response(200, content=body)))


async def test_in_band_error_event_is_an_error_after_the_chunks_before_it() -> None:
    body = _sse(CHUNKS[0], CHUNKS[1], orjson.dumps({"error": {"message": f"boom {KEY}"}}))
    provider = _provider(lambda request: httpx.Response(200, content=body))
    got: list[StreamPiece] = []
    with pytest.raises(UpstreamUnavailable) as caught:
        async for piece in provider.stream(upstream(chat_request(stream=True))):
            got.append(piece)
    assert len(got) == 2
    assert KEY not in caught.value.message


async def test_connection_dropped_mid_stream_is_an_error() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield _sse(CHUNKS[0], CHUNKS[1], done=False)
        raise httpx.ReadError("connection reset")

    provider = _provider(lambda request: httpx.Response(200, content=body()))
    with pytest.raises(UpstreamUnavailable):
        await _collect(provider)


def _error_body(message: str, code: str | None = "bad", param: str | None = "messages") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "code": code, "param": param}})


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_client_errors_pass_the_upstream_error_through(status: int) -> None:
    body = _error_body(f"This model's maximum context length is 8192 tokens (key {KEY})")
    provider = _provider(lambda request: httpx.Response(status, content=body))
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(UpstreamRejected) as caught:
            await call
        error = caught.value
        assert not error.retryable and error.status == status
        assert error.message.startswith("This model's maximum context length is 8192 tokens")
        assert KEY not in error.message
        assert (error.error_type, error.code, error.param) == ("invalid_request_error", "bad",
                                                               "messages")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, UpstreamUnavailable), (503, UpstreamUnavailable), (401, UpstreamUnavailable),
     (403, UpstreamUnavailable), (429, UpstreamRateLimited), (504, UpstreamTimeout)],
)
async def test_server_and_auth_errors_are_retryable_and_generic(
    status: int, kind: type[ProviderError]
) -> None:
    body = _error_body(f"Incorrect API key provided: {KEY} at {BASE_URL}")
    provider = _provider(lambda request: httpx.Response(status, content=body))
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(kind) as caught:
            await call
        error = caught.value
        assert error.retryable and error.status == status
        assert KEY not in error.message and "example.test" not in error.message
        assert "Incorrect" not in error.message


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(httpx.ConnectError(f"cannot connect to {BASE_URL}"), UpstreamUnavailable),
     (httpx.ReadTimeout("timed out"), UpstreamTimeout)],
)
async def test_transport_failures_are_retryable(exc: Exception, kind: type[ProviderError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    provider = _provider(handler)
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(kind) as caught:
            await call
        assert caught.value.retryable
        assert "example.test" not in caught.value.message


async def test_invalid_success_body_is_retryable() -> None:
    provider = _provider(lambda request: httpx.Response(200, content=b"<html>oops</html>"))
    with pytest.raises(UpstreamUnavailable):
        await provider.complete(upstream(chat_request()))
