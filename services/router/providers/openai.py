"""The OpenAI-compatible provider: OpenAI, DeepSeek, vLLM, Ollama, any `/chat/completions`.

Bodies pass through as bytes; the router only reads usage and finish reasons. Streams
always ask the upstream for usage (`stream_options.include_usage`) so that billing gets
real counts; the usage-only chunk is forwarded only when the client asked for it. The
other endpoints are relayed by `openai_relay`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import orjson

from services.common.gateway_config import ChannelEntry
from services.router.errors import UpstreamUnavailable
from services.router.health import Headroom
from services.router.providers import openai_relay
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
    completion_from_body,
    piece_from_chunk,
)
from services.router.providers.http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    UpstreamHTTP,
    transport_errors,
)
from services.router.providers.sse import EventReader
from services.router.relay_request import Operation

CHAT_PATH = "/chat/completions"
_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")
UNREACHABLE = "the upstream is unreachable"
CONNECTION_FAILED = "the upstream connection failed"


@dataclass(frozen=True, slots=True)
class Quirks:
    """What a compatible upstream does differently (set by the channel or its preset)."""

    stream_usage: bool = True
    token_limit_field: str = ""
    responses_api: bool = True

    @property
    def other_limit_field(self) -> str:
        """The token limit field to rename to `token_limit_field` ("" when none is)."""
        if not self.token_limit_field:
            return ""
        return next(f for f in _LIMIT_FIELDS if f != self.token_limit_field)


class OpenAIProvider:
    """Calls one OpenAI-compatible base URL with one key, over a shared HTTP session."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self._http = UpstreamHTTP(channel, session, api_key, connect_timeout_s, query)
        self._quirks = Quirks(channel.stream_usage is not False, channel.token_limit_field,
                              channel.responses_api is not False)

    @property
    def headroom(self) -> Headroom | None:
        """The key's quota left, from its newest answer's `x-ratelimit-*` headers."""
        return self._http.headroom

    async def complete(self, request: UpstreamRequest) -> Completion:
        """POST the request and return the upstream's chat.completion bytes untouched."""
        with transport_errors(UNREACHABLE):
            response = await self._send(request, stream=False)
            body = await self._http.read(response)
        return completion_from_body(body)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """POST with `stream: true` and yield the chunks; closing this closes the upstream."""
        with transport_errors(CONNECTION_FAILED):
            response = await self._send(request, stream=True)
        try:
            with transport_errors(CONNECTION_FAILED):
                await self._http.check(response)
                reader = EventReader(partial(_piece, forward_usage=request.chat.include_usage),
                                     _finishes)
                while not reader.done:
                    for piece in reader.feed(await response.content.readany()):
                        yield piece
        finally:
            # Back to the pool only when the answer was read to its end; a stream left
            # early (cancelled, [DONE] before the final bytes, an error) is closed now.
            response.release()

    def relays(self, operation: Operation) -> bool:
        """Every OpenAI endpoint is served natively, /responses if the upstream has it."""
        return operation is not Operation.RESPONSES or self._quirks.responses_api

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Relay a non-streaming request of another endpoint (see `openai_relay`)."""
        return await openai_relay.relay(self._http, attempt)

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Relay a streaming request of another endpoint (see `openai_relay`)."""
        return openai_relay.relay_stream(self._http, attempt)

    async def _send(self, request: UpstreamRequest, *, stream: bool) -> aiohttp.ClientResponse:
        """POST the attempt; the caller reads and releases the response."""
        return await self._http.post(CHAT_PATH, _upstream_body(request, self._quirks, stream=stream),
                                     request.chat.request_id, request.timeout_s)


def _finishes(piece: StreamPiece) -> bool:
    return bool(piece.finish_reason)


def _piece(event: bytes, payload: bytes, *, forward_usage: bool) -> StreamPiece:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk") from exc
    if event == b"error" or (isinstance(chunk, dict) and "error" in chunk):
        raise UpstreamUnavailable(200, "the upstream failed during the stream")
    return piece_from_chunk(payload, chunk, forward_usage)


def _upstream_body(request: UpstreamRequest, quirks: Quirks, *, stream: bool) -> bytes:
    """The body to send: the client's bytes when nothing changes, else a re-encoded copy."""
    chat = request.chat
    payload = chat.payload
    renamed = quirks.token_limit_field and quirks.other_limit_field in payload
    unchanged = request.upstream_model == chat.model and not stream and not renamed
    if unchanged and not payload.get("stream") and "stream_options" not in payload:
        return chat.body
    upstream: dict[str, Any] = {**payload, "model": request.upstream_model}
    if renamed:
        limit = upstream.pop(quirks.other_limit_field)
        upstream.setdefault(quirks.token_limit_field, limit)
    if stream and quirks.stream_usage:
        options = payload.get("stream_options")
        upstream["stream"] = True
        upstream["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
    elif stream:
        # The upstream refuses stream_options: the router counts what the stream reports.
        upstream["stream"] = True
        upstream.pop("stream_options", None)
    else:
        upstream.pop("stream", None)
        upstream.pop("stream_options", None)
    return orjson.dumps(upstream)
