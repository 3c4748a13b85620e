"""The OpenAI-compatible provider against a real local aiohttp upstream that tests script."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from aiohttp import web

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
from tests.unit.router.scripted import KEY, ScriptedUpstream, streamed


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


async def test_completion_sends_key_request_id_and_returns_bytes_untouched(
    up: ScriptedUpstream,
) -> None:
    answer_body = b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":' \
        b'{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],' \
        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"extra":1}'
    up.answer(200, answer_body)
    chat = chat_request(request_id="req_abc", temperature=0.5)
    answer = await up.provider().complete(upstream(chat))
    assert answer.body == answer_body
    assert answer.text == "Hi" and answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens == 4
    sent = up.seen[0]
    assert sent.url == up.base_url + "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-request-id"] == "req_abc"
    assert sent.headers["content-type"] == "application/json"
    assert "cookie" not in sent.headers
    assert sent.body == chat.body  # nothing to change: the client's bytes go as they are


async def test_completion_sends_the_mapped_model(up: ScriptedUpstream) -> None:
    up.answer(200, orjson.dumps({"choices": [], "usage": None}))
    chat = chat_request(temperature=0.5)
    answer = await up.provider().complete(upstream(chat, "up-model"))
    sent = orjson.loads(up.seen[0].body)
    assert sent["model"] == "up-model" and sent["temperature"] == 0.5
    assert chat.payload["model"] == "demo"
    assert answer.usage is None


async def test_stream_forces_usage_upstream_and_drops_the_unasked_usage_chunk(
    up: ScriptedUpstream,
) -> None:
    up.handler = streamed(_sse(*CHUNKS))
    pieces = await _collect(up.provider())
    sent = orjson.loads(up.seen[0].body)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert [p.chunk for p in pieces if p.chunk] == CHUNKS[:-1]
    assert "".join(p.text for p in pieces) == "Hi you"
    assert [p.is_output for p in pieces[:4]] == [False, True, True, True]
    assert [p.finish_reason for p in pieces if p.finish_reason] == ["stop"]
    usage = pieces[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 2)
    assert (usage.cached_prompt_tokens, usage.reasoning_tokens) == (4, 1)


async def test_stream_forwards_the_usage_chunk_when_the_client_asked(up: ScriptedUpstream) -> None:
    up.handler = streamed(_sse(*CHUNKS))
    pieces = await _collect(up.provider(), include_usage=True)
    assert [p.chunk for p in pieces] == CHUNKS
    # Only the usage chunk goes out with the end of the stream.
    assert [p.is_last for p in pieces] == [False] * 4 + [True]


async def test_stream_split_anywhere_with_crlf_lines_gives_the_same_chunks(
    up: ScriptedUpstream,
) -> None:
    body = _sse(*CHUNKS).replace(b"\n", b"\r\n")
    up.handler = streamed(*(body[i:i + 7] for i in range(0, len(body), 7)))
    pieces = await _collect(up.provider(), include_usage=True)
    assert [p.chunk for p in pieces] == CHUNKS


async def test_stream_accepts_chunks_without_blank_lines_between_them(
    up: ScriptedUpstream,
) -> None:
    up.handler = streamed(b"".join(b"data: " + c + b"\n" for c in CHUNKS) + b"data: [DONE]\n\n")
    pieces = await _collect(up.provider())
    assert "".join(p.text for p in pieces) == "Hi you"


async def test_stream_without_done_but_with_finish_reason_is_whole(up: ScriptedUpstream) -> None:
    up.handler = streamed(_sse(*CHUNKS, done=False))
    pieces = await _collect(up.provider())
    assert len(pieces) == len(CHUNKS)


async def test_stream_that_ends_early_is_an_error(up: ScriptedUpstream) -> None:
    up.handler = streamed(_sse(*CHUNKS[:2], done=False))
    with pytest.raises(UpstreamUnavailable):
        await _collect(up.provider())


async def test_in_band_error_event_is_an_error_after_the_chunks_before_it(
    up: ScriptedUpstream,
) -> None:
    up.handler = streamed(_sse(CHUNKS[0], CHUNKS[1],
                                orjson.dumps({"error": {"message": f"boom {KEY}"}})))
    got: list[StreamPiece] = []
    with pytest.raises(UpstreamUnavailable) as caught:
        async for piece in up.provider().stream(upstream(chat_request(stream=True))):
            got.append(piece)
    assert len(got) == 2
    assert KEY not in caught.value.message


async def test_connection_dropped_mid_stream_is_an_error(up: ScriptedUpstream) -> None:
    up.handler = streamed(_sse(CHUNKS[0], CHUNKS[1], done=False), drop=True)
    with pytest.raises(UpstreamUnavailable):
        await _collect(up.provider())


def _error_body(message: str, code: str | None = "bad", param: str | None = "messages") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "code": code, "param": param}})


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_client_errors_pass_the_upstream_error_through(
    up: ScriptedUpstream, status: int
) -> None:
    up.answer(status, _error_body(
        f"This model's maximum context length is 8192 tokens (key {KEY}, {up.base_url})"))
    provider = up.provider()
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(UpstreamRejected) as caught:
            await call
        error = caught.value
        assert not error.retryable and error.status == status
        assert error.message.startswith("This model's maximum context length is 8192 tokens")
        assert KEY not in error.message and up.base_url not in error.message
        assert (error.error_type, error.code, error.param) == ("invalid_request_error", "bad",
                                                               "messages")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, UpstreamUnavailable), (503, UpstreamUnavailable), (401, UpstreamUnavailable),
     (403, UpstreamUnavailable), (429, UpstreamRateLimited), (504, UpstreamTimeout),
     (302, UpstreamUnavailable)],
)
async def test_server_and_auth_errors_are_retryable_and_generic(
    up: ScriptedUpstream, status: int, kind: type[ProviderError]
) -> None:
    up.answer(status, _error_body(f"Incorrect API key provided: {KEY} at {up.base_url}"),
              {"location": up.base_url + "/chat/completions"})
    provider = up.provider()
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(kind) as caught:
            await call
        error = caught.value
        assert error.retryable and error.status == status
        assert KEY not in error.message and "127.0.0.1" not in error.message
        assert "Incorrect" not in error.message
    assert len(up.seen) == 2  # a redirect is an answer, not followed


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_unreachable_upstream_is_retryable(up: ScriptedUpstream) -> None:
    base_url = _closed_port_url()
    provider = up.provider(base_url)
    for call in (provider.complete(upstream(chat_request())), _collect(provider)):
        with pytest.raises(UpstreamUnavailable) as caught:
            await call
        assert caught.value.retryable and not isinstance(caught.value, UpstreamTimeout)
        assert "127.0.0.1" not in caught.value.message


async def test_upstream_silent_past_the_timeout_is_a_retryable_timeout(
    up: ScriptedUpstream,
) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response()

    up.handler = silent
    provider = up.provider()
    calls = (provider.complete(upstream(chat_request(), timeout_s=0.1)),
             _drain(provider, timeout_s=0.1))
    for call in calls:
        with pytest.raises(UpstreamTimeout) as caught:
            await call
        assert caught.value.retryable
        assert "127.0.0.1" not in caught.value.message


async def test_stream_silent_between_chunks_is_a_timeout(up: ScriptedUpstream) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_sse(CHUNKS[0], done=False))
        await asyncio.sleep(2)
        return response

    up.handler = stalls
    with pytest.raises(UpstreamTimeout):
        await _drain(up.provider(), timeout_s=0.2)


async def _drain(provider: OpenAIProvider, timeout_s: float) -> None:
    async for _ in provider.stream(upstream(chat_request(stream=True), timeout_s=timeout_s)):
        pass


async def test_invalid_success_body_is_retryable(up: ScriptedUpstream) -> None:
    up.answer(200, b"<html>oops</html>")
    with pytest.raises(UpstreamUnavailable):
        await up.provider().complete(upstream(chat_request()))
