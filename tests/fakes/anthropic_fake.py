"""A fake Anthropic Messages API (`POST /v1/messages`), scriptable, recording requests.

It speaks the real wire format (proved by driving it with the `anthropic` SDK in
tests/unit/fakes/test_anthropic_fake.py): the `message` object, named SSE events
(message_start, content_block_start/delta/stop, ping, message_delta, message_stop,
error) and the error envelope `{"type": "error", "error": {"type", "message"}}`. Like
the real API it refuses a request without `anthropic-version`, without `max_tokens`, or
with a wrong key (`x-api-key`, or a bearer token as recent SDKs send it). Each request takes the next scripted `Reply` (the default
one when none is left): blocks, stop reason, usage (with cache and thinking tokens, or
none), an HTTP error, latency, an `error` event or a disconnect after N events.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.serve import serving

DEFAULT_TEXT = "Hello from the fake Claude."
# Any dated version (the SDK installed here sends a newer one than our 2023-06-01).
_VERSION = re.compile(r"20\d\d-\d\d-\d\d")
_WORDS = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True)
class Text:
    """A text block."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """A tool_use block."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Thinking:
    """A thinking block with its signature."""

    thinking: str
    signature: str = "sig-fake"


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request."""

    blocks: tuple[Text | ToolUse | Thinking, ...] = (Text(DEFAULT_TEXT),)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 12
    output_tokens: int = 7
    cache_read: int = 0
    cache_creation: int = 0
    thinking_tokens: int | None = None
    omit_usage: bool = False
    status: int = 200
    error_type: str = ""
    error_message: str = "scripted error"
    latency_s: float = 0.0
    error_event_after: int | None = None  # events sent before an `error` event
    error_event_type: str = "overloaded_error"
    cut_after: int | None = None  # events sent before the connection drops


@dataclass
class Recorded:
    """One request as the fake received it."""

    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class AnthropicFake:
    """The fake's state: its key, the scripted replies, what it received."""

    api_key: str = "sk-ant-fake"
    url: str = ""
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    _count: int = 0

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self.replies.extend(replies)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/messages`."""
        body = await request.json()
        self.requests.append(Recorded({k.lower(): v for k, v in request.headers.items()}, body))
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        refused = self._refusal(request, body, reply)
        if refused is not None:
            return refused
        self._count += 1
        message_id = f"msg_fake_{self._count:04d}"
        if not body.get("stream"):
            return web.json_response(message_json(reply, message_id, body["model"]))
        return await self._stream(request, reply, stream_events(reply, message_id, body["model"]))

    def _refusal(self, request: web.Request, body: Any, reply: Reply) -> web.Response | None:
        # The API takes the key as x-api-key or, as recent SDKs send it, a bearer token.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return error_response(401, "authentication_error", "invalid x-api-key")
        if not _VERSION.fullmatch(request.headers.get("anthropic-version", "")):
            return error_response(400, "invalid_request_error",
                                  "anthropic-version: header is required")
        if not isinstance(body, dict) or not isinstance(body.get("max_tokens"), int):
            return error_response(400, "invalid_request_error", "max_tokens: Field required")
        if not isinstance(body.get("messages"), list):
            return error_response(400, "invalid_request_error", "messages: Field required")
        if reply.status != 200:
            return error_response(reply.status, reply.error_type or "api_error",
                                  reply.error_message)
        return None

    async def _stream(self, request: web.Request, reply: Reply,
                      events: list[tuple[str, dict[str, Any]]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream",
                                               "request-id": "req_fake"})
        await response.prepare(request)
        for number, (name, data) in enumerate(events):
            if number == reply.error_event_after:
                error = {"type": "error", "error": {"type": reply.error_event_type,
                                                    "message": reply.error_message}}
                await response.write(sse("error", error))
                return response
            if number == reply.cut_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(sse(name, data))
        return response


def sse(name: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_response(status: int, kind: str, message: str) -> web.Response:
    """Anthropic's error envelope."""
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_fake"}
    return web.json_response(body, status=status, headers={"request-id": "req_fake"})


def _usage(reply: Reply, *, start: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_creation,
        "cache_read_input_tokens": reply.cache_read,
        "output_tokens": 1 if start else reply.output_tokens,
    }
    if reply.thinking_tokens is not None and not start:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    return usage


def _block_json(block: Text | ToolUse | Thinking) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUse):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}


def message_json(reply: Reply, message_id: str, model: str) -> dict[str, Any]:
    """The whole `message` of a non-streamed reply."""
    message: dict[str, Any] = {
        "id": message_id, "type": "message", "role": "assistant", "model": model,
        "content": [_block_json(b) for b in reply.blocks],
        "stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence,
    }
    if not reply.omit_usage:
        message["usage"] = _usage(reply, start=False)
    return message


def _block_events(index: int, block: Text | ToolUse | Thinking) -> list[tuple[str, dict[str, Any]]]:
    def delta(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": payload}

    if isinstance(block, Text):
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [delta({"type": "text_delta", "text": w}) for w in _WORDS.findall(block.text)]
    elif isinstance(block, ToolUse):
        start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        arguments = orjson.dumps(block.input).decode()
        pieces = [""] + [arguments[i:i + 7] for i in range(0, len(arguments), 7)]
        deltas = [delta({"type": "input_json_delta", "partial_json": p}) for p in pieces]
    else:
        start = {"type": "thinking", "thinking": ""}
        deltas = [delta({"type": "thinking_delta", "thinking": w})
                  for w in _WORDS.findall(block.thinking)]
        deltas.append(delta({"type": "signature_delta", "signature": block.signature}))
    return [("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": start}),
            *deltas,
            ("content_block_stop", {"type": "content_block_stop", "index": index})]


def stream_events(reply: Reply, message_id: str, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of a streamed reply, in order."""
    head = {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None}
    if not reply.omit_usage:
        head["usage"] = _usage(reply, start=True)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": head}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(reply.blocks):
        events.extend(_block_events(index, block))
    final: dict[str, Any] = {"type": "message_delta",
                             "delta": {"stop_reason": reply.stop_reason,
                                       "stop_sequence": reply.stop_sequence}}
    if not reply.omit_usage:
        final["usage"] = {k: v for k, v in _usage(reply, start=False).items()
                          if k in ("output_tokens", "output_tokens_details")}
    events += [("message_delta", final), ("message_stop", {"type": "message_stop"})]
    return events


@asynccontextmanager
async def running(fake: AnthropicFake | None = None) -> AsyncIterator[AnthropicFake]:
    """Serve `fake` (a new one by default) on 127.0.0.1, port 0, while in the block."""
    fake = fake or AnthropicFake()
    app = web.Application()
    app.router.add_post("/v1/messages", fake.messages)
    async with serving(app) as fake.url:
        yield fake
