"""Server-sent events as OpenAI streams them: framing, the trailers, reading an event."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiohttp import web

from edge.errors import ApiError

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
CONTENT_TYPE = "text/event-stream"
_LINE_BREAKS = (b"\r\n", b"\r", b"\n")
_DATA = b"data:"


def frame(data: bytes) -> bytes:
    """One `data:` event; multi-line data becomes several `data:` lines."""
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data + b"\n\n"
    for sep in _LINE_BREAKS:
        data = data.replace(sep, b"\n")
    return b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"


def frame_all(items: Sequence[bytes]) -> bytes:
    """One `data:` event per entry of `items` (already JSON), as one write."""
    return b"".join(frame(data) for data in items)


def error_event(error: ApiError) -> bytes:
    """The in-band `data: {"error": {...}}` event of chat and legacy completion streams."""
    return frame(orjson.dumps({"error": error.payload()}))


def event_data(event: bytes) -> bytes | None:
    """The data of one whole SSE event (its `data:` lines joined), or None without any."""
    lines = [
        line[len(_DATA):].removeprefix(b" ")
        for line in event.splitlines()
        if line.startswith(_DATA)
    ]
    return b"\n".join(lines) if lines else None


def with_data(event: bytes, data: bytes) -> bytes:
    """`event` with its data replaced by `data` (one line), its other fields kept."""
    kept = [line for line in event.splitlines() if line and not line.startswith(_DATA)]
    return b"".join(line + b"\n" for line in kept) + b"data: " + data + b"\n\n"


def prepare_headers(response: web.StreamResponse) -> None:
    """Mark `response` as an uncached, unbuffered event stream."""
    response.headers["Content-Type"] = CONTENT_TYPE
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Connection"] = "keep-alive"
    response.headers["X-Accel-Buffering"] = "no"
