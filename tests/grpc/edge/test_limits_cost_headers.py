"""Body limits (413 without reading the rest), cost reporting on and off, common headers."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from apirelay.common.v1 import usage_pb2
from tests.grpc.edge.conftest import Edge, auth, open_edge
from tests.grpc.edge.fakes import SECRET
from tests.grpc.edge.messages import MODEL, Batch, chunk, cost_text, end, error, relayed, sse, usage

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]}
LIMIT = 1024


async def raw_request(edge: Edge, head: bytes, body: bytes) -> bytes:
    """Send `head` and part of a body on a raw connection; the status line answered."""
    server = edge.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()


def head(path: str, *lines: str) -> bytes:
    text = "\r\n".join((f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
                       f"Authorization: Bearer {SECRET}", *lines))
    return text.encode() + b"\r\n\r\n"


async def test_an_announced_oversize_body_is_413_before_it_is_sent() -> None:
    async with open_edge(max_body_bytes=LIMIT) as edge:
        started = time.perf_counter()
        status = await raw_request(edge, head("/v1/chat/completions",
                                              "Content-Type: application/json",
                                              "Content-Length: 1000000000"), b'{"model"')
        assert status.startswith(b"HTTP/1.1 413")
        assert time.perf_counter() - started < 1
        assert edge.fakes.billing.reserves == []


async def test_a_chunked_body_growing_past_the_limit_is_cut_off() -> None:
    async with open_edge(max_body_bytes=LIMIT) as edge:
        piece = b"400\r\n" + b" " * 0x400 + b"\r\n"  # never terminated
        status = await raw_request(edge, head("/v1/embeddings", "Content-Type: application/json",
                                              "Transfer-Encoding: chunked"), piece * 2)
        assert status.startswith(b"HTTP/1.1 413")


async def test_uploads_have_their_own_larger_limit() -> None:
    async with open_edge(max_body_bytes=LIMIT, max_upload_bytes=16 * LIMIT) as edge:
        def form(size: int) -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("model", MODEL)
            data.add_field("file", b"\0" * size, filename="a.wav", content_type="audio/wav")
            return data

        edge.fakes.router.relay_response = relayed(b'{"text":"ok"}')
        path = "/v1/audio/transcriptions"
        ok = await edge.client.post(path, data=form(4 * LIMIT), headers=auth())
        assert ok.status == 200
        too_big = await edge.client.post(path, data=form(32 * LIMIT), headers=auth())
        assert too_big.status == 413
        error_ = (await too_big.json())["error"]
        assert error_["code"] == "request_too_large" and str(16 * LIMIT) in error_["message"]
        big_json = {**CHAT, "pad": "x" * 2 * LIMIT}
        assert (await edge.client.post("/v1/chat/completions", json=big_json,
                                       headers=auth())).status == 413


async def test_chat_cost_is_in_usage_and_the_header(edge: Edge) -> None:
    response = await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
    raw = await response.read()
    assert f'"cost":{cost_text(usage())}'.encode() in raw  # a number, 9 decimals
    assert response.headers["x-apirelay-cost-usd"] == cost_text(usage())
    assert orjson.loads(raw)["usage"]["total_tokens"] == 18


async def test_chat_stream_cost_goes_into_the_usage_chunk(edge: Edge) -> None:
    usage_chunk = orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [],
                                "usage": {"prompt_tokens": 11, "completion_tokens": 7,
                                          "total_tokens": 18}})
    edge.fakes.router.script = [chunk("Hi"), Batch([chunk("!", "stop"), usage_chunk], end())]
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    raw = await (await edge.client.post("/v1/chat/completions", json=body,
                                        headers=auth())).read()
    events = raw.split(b"\n\n")
    assert events[0] == b"data: " + chunk("Hi") and events[1] == b"data: " + chunk("!", "stop")
    assert f'"cost":{cost_text(usage())}'.encode() in events[2]
    assert events[3] == b"data: [DONE]"


async def test_report_cost_off_adds_nothing() -> None:
    async with open_edge(report_cost=False) as edge:
        response = await edge.client.post("/v1/chat/completions", json=CHAT, headers=auth())
        assert b'"cost"' not in await response.read()
        assert "x-apirelay-cost-usd" not in response.headers
        edge.fakes.router.script = [Batch([sse({"choices": [], "usage": {"total_tokens": 18}})],
                                          end())]
        body = {"model": MODEL, "prompt": "x", "stream": True}
        raw = await (await edge.client.post("/v1/completions", json=body, headers=auth())).read()
        assert b'"cost"' not in raw
        edge.fakes.router.script = [b"audio", end(usage_=usage(0, 0, character=4))]
        speech = {"model": MODEL, "input": "abcd", "voice": "alloy"}
        response = await edge.client.post("/v1/audio/speech", json=speech, headers=auth())
        assert "x-apirelay-cost-usd" not in response.headers


async def test_every_endpoint_answers_with_the_common_headers(edge: Edge) -> None:
    response = await edge.client.post(
        "/v1/embeddings", json={"model": MODEL, "input": "x"},
        headers={**auth(), "x-request-id": "emb-1"},
    )
    assert response.headers["x-request-id"] == "emb-1"
    assert int(response.headers["openai-processing-ms"]) >= 0
    assert response.headers["x-ratelimit-limit-requests"] == "60"
    assert response.headers["x-ratelimit-remaining-tokens"] == "90000"


async def test_an_upstream_429_carries_retry_after(edge: Edge) -> None:
    edge.fakes.router.script = [end(error(429, "rate_limit_error", "", "slow down"),
                                    usage_pb2.Usage())]
    body = {"model": MODEL, "prompt": "x", "stream": True}
    response = await edge.client.post("/v1/completions", json=body, headers=auth())
    assert response.status == 429
    assert response.headers["retry-after"] == "1"
