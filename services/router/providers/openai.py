"""The OpenAI-compatible provider: OpenAI, DeepSeek, vLLM, Ollama, any `/chat/completions`.

Bodies pass through as bytes; the router only reads usage and finish reasons. Streams
always ask the upstream for usage (`stream_options.include_usage`) so that billing gets
real counts; the usage-only chunk is forwarded only when the client asked for it.

Upstream calls go through one shared `aiohttp.ClientSession` (built in `server.py`).
Measured against the bench mock upstream on one machine, aiohttp's client costs
0.20 ms CPU per unary request and 0.28 ms per stream, httpx 0.90 ms and 1.20 ms: the
router's whole per-request budget is about 1 ms, so httpx alone would spend it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from services.common.context import REQUEST_ID_HEADER
from services.common.gateway_config import ChannelEntry
from services.router.errors import UpstreamTimeout, UpstreamUnavailable
from services.router.providers.base import (
    Completion,
    StreamPiece,
    UpstreamRequest,
    completion_from_body,
    error_for_status,
    piece_from_chunk,
)
from services.router.providers.sse import DONE, SSEDecoder, split_payloads

DEFAULT_CONNECT_TIMEOUT_S = 10.0


class OpenAIProvider:
    """Calls one OpenAI-compatible base URL with one key, over a shared HTTP session."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self._url = URL(channel.base_url + "/chat/completions")
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        # Strings that must never reach a client, even inside a passed-through message.
        self._redact = (api_key, channel.base_url)

    async def complete(self, request: UpstreamRequest) -> Completion:
        """POST the request and return the upstream's chat.completion bytes untouched."""
        try:
            response = await self._send(request, stream=False)
            try:
                body = await response.read()
            finally:
                response.release()
        except TimeoutError as exc:
            raise UpstreamTimeout(0, "the upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(0, "the upstream is unreachable") from exc
        if not 200 <= response.status < 300:
            raise error_for_status(response.status, body, self._redact)
        return completion_from_body(body)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """POST with `stream: true` and yield the chunks; closing this closes the upstream."""
        try:
            response = await self._send(request, stream=True)
        except TimeoutError as exc:
            raise UpstreamTimeout(0, "the upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(0, "the upstream connection failed") from exc
        try:
            if not 200 <= response.status < 300:
                raise error_for_status(response.status, await response.read(), self._redact)
            reader = _ChunkReader(request.chat.include_usage)
            while not reader.done:
                for piece in reader.feed(await response.content.readany()):
                    yield piece
        except TimeoutError as exc:
            raise UpstreamTimeout(0, "the upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(0, "the upstream connection failed") from exc
        finally:
            # Back to the pool only when the answer was read to its end; a stream left
            # early (cancelled, [DONE] before the final bytes, an error) is closed now.
            response.release()

    async def _send(self, request: UpstreamRequest, *, stream: bool) -> aiohttp.ClientResponse:
        """POST the attempt; the caller reads and releases the response."""
        headers = self._headers
        if request.chat.request_id:
            headers = {**headers, REQUEST_ID_HEADER: request.chat.request_id}
        return await self._session.post(
            self._url,
            data=_upstream_body(request, stream=stream),
            headers=headers,
            timeout=self._timeout(request.timeout_s),
            allow_redirects=False,
        )

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        # As before with httpx: each wait (pool, connect, every read) gets the attempt's
        # time, the TCP connect at most the connect timeout; no cap on a whole stream.
        return aiohttp.ClientTimeout(
            total=None,
            connect=timeout_s,
            sock_connect=min(self._connect_timeout_s, timeout_s),
            sock_read=timeout_s,
        )


class _ChunkReader:
    """Turns the bytes of an upstream chat stream into pieces, in order, as they arrive."""

    def __init__(self, forward_usage: bool) -> None:
        self._decoder = SSEDecoder()
        self._forward_usage = forward_usage
        self._finished = False
        self.done = False

    def feed(self, data: bytes) -> Iterator[StreamPiece]:
        """The pieces `data` completes; empty `data` is the end of the stream.

        An in-band error or an early end raises after the pieces before it.
        """
        events = self._decoder.feed(data) if data else self._decoder.end()
        for event in events:
            payloads = (event.data,) if b"\n" not in event.data else split_payloads(event.data)
            for payload in payloads:
                if payload == DONE:
                    self.done = True
                    return
                piece = _piece(event.event, payload, self._forward_usage)
                self._finished = self._finished or bool(piece.finish_reason)
                yield piece
        if not data:
            self.done = True
            # Some compatible servers omit [DONE]; a finish reason proves a whole answer.
            if not self._finished:
                raise UpstreamUnavailable(200, "the upstream stream ended early")


def _piece(event: bytes, payload: bytes, forward_usage: bool) -> StreamPiece:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk") from exc
    if event == b"error" or (isinstance(chunk, dict) and "error" in chunk):
        raise UpstreamUnavailable(200, "the upstream failed during the stream")
    return piece_from_chunk(payload, chunk, forward_usage)


def _upstream_body(request: UpstreamRequest, *, stream: bool) -> bytes:
    """The body to send: the client's bytes when nothing changes, else a re-encoded copy."""
    chat = request.chat
    payload = chat.payload
    unchanged = request.upstream_model == chat.model and not stream
    if unchanged and not payload.get("stream") and "stream_options" not in payload:
        return chat.body
    upstream: dict[str, Any] = {**payload, "model": request.upstream_model}
    if stream:
        options = payload.get("stream_options")
        upstream["stream"] = True
        upstream["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
    else:
        upstream.pop("stream", None)
        upstream.pop("stream_options", None)
    return orjson.dumps(upstream)
