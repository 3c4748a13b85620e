"""edge.sse: framing and the exact bytes of a stream."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge.errors import ApiError
from edge.sse import SSEWriter, frame


def test_frame_single_line() -> None:
    assert frame(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_frame_splits_every_line_break_kind() -> None:
    assert frame(b"a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


async def test_writer_bytes_and_headers() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        writer = SSEWriter({"x-request-id": "r1"})
        await writer.start(request)
        await writer.send(b'{"n":1}')
        await writer.ping()
        await writer.send_error(ApiError(502, "server_error", "boom"))
        await writer.done()
        return writer.response

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-request-id"] == "r1"
        assert await response.read() == (
            b'data: {"n":1}\n\n'
            b": ping\n\n"
            b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
            b"data: [DONE]\n\n"
        )


async def test_send_many_frames_every_chunk_in_one_write() -> None:
    writes: list[bytes] = []

    class Recorder:
        async def write(self, data: bytes) -> None:
            writes.append(data)

    writer = SSEWriter()
    writer.response = Recorder()  # type: ignore[assignment]
    await writer.send_many([b'{"n":1}', b"a\nb"])
    assert writes == [b'data: {"n":1}\n\ndata: a\ndata: b\n\n']
