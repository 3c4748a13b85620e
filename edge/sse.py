"""A small server-sent events writer for OpenAI-style streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web

from edge.errors import ApiError

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_LINE_BREAKS = (b"\r\n", b"\r", b"\n")


def frame(data: bytes) -> bytes:
    """One `data:` event; multi-line data becomes several `data:` lines."""
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data + b"\n\n"
    for sep in _LINE_BREAKS:
        data = data.replace(sep, b"\n")
    return b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"


class SSEWriter:
    """Writes events to one `text/event-stream` response."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.response = web.StreamResponse(status=200, headers=headers)
        self.response.headers["Content-Type"] = "text/event-stream"
        self.response.headers["Cache-Control"] = "no-cache"
        self.response.headers["Connection"] = "keep-alive"
        self.response.headers["X-Accel-Buffering"] = "no"

    async def start(self, request: web.Request) -> web.StreamResponse:
        """Send the headers."""
        await self.response.prepare(request)
        return self.response

    async def send(self, data: bytes) -> None:
        """Send one event carrying `data` (already JSON)."""
        await self.response.write(frame(data))

    async def send_many(self, items: Sequence[bytes]) -> None:
        """Send one event per entry of `items` (already JSON) in a single write."""
        await self.response.write(b"".join(frame(data) for data in items))

    async def send_error(self, error: ApiError) -> None:
        """Send an in-band `{"error": {...}}` event."""
        await self.response.write(frame(orjson.dumps({"error": error.payload()})))

    async def ping(self) -> None:
        """Send a comment that keeps proxies and clients from timing the stream out."""
        await self.response.write(PING)

    async def done(self) -> None:
        """Send the `[DONE]` sentinel and end the response."""
        await self.response.write(DONE)
        await self.response.write_eof()
