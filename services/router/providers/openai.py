"""The OpenAI-compatible provider: OpenAI, DeepSeek, vLLM, Ollama, any `/chat/completions`.

Bodies pass through as bytes; the router only reads usage and finish reasons. Streams
always ask the upstream for usage (`stream_options.include_usage`) so that billing gets
real counts; the usage-only chunk is forwarded only when the client asked for it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx
import orjson

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
from services.router.providers.sse import DONE, aiter_events, split_payloads

DEFAULT_CONNECT_TIMEOUT_S = 10.0


class OpenAIProvider:
    """Calls one OpenAI-compatible base URL with one key, over a shared HTTP client."""

    def __init__(
        self,
        channel: ChannelEntry,
        client: httpx.AsyncClient,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self._url = channel.base_url + "/chat/completions"
        self._client = client
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        # Strings that must never reach a client, even inside a passed-through message.
        self._redact = (api_key, channel.base_url)

    async def complete(self, request: UpstreamRequest) -> Completion:
        """POST the request and return the upstream's chat.completion bytes untouched."""
        try:
            response = await self._client.post(
                self._url,
                content=_upstream_body(request, stream=False),
                headers=self._headers(request),
                timeout=self._timeout(request),
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(0, "the upstream timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(0, "the upstream is unreachable") from exc
        if not response.is_success:
            raise error_for_status(response.status_code, response.content, self._redact)
        return completion_from_body(response.content)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """POST with `stream: true` and yield the chunks; closing this closes the upstream."""
        try:
            async with self._client.stream(
                "POST",
                self._url,
                content=_upstream_body(request, stream=True),
                headers=self._headers(request),
                timeout=self._timeout(request),
            ) as response:
                if not response.is_success:
                    body = await response.aread()
                    raise error_for_status(response.status_code, body, self._redact)
                async with aclosing(_pieces(response, request.chat.include_usage)) as pieces:
                    async for piece in pieces:
                        yield piece
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(0, "the upstream timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(0, "the upstream connection failed") from exc

    def _headers(self, request: UpstreamRequest) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if request.chat.request_id:
            headers[REQUEST_ID_HEADER] = request.chat.request_id
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _timeout(self, request: UpstreamRequest) -> httpx.Timeout:
        return httpx.Timeout(request.timeout_s, connect=min(self._connect_timeout_s, request.timeout_s))


async def _pieces(response: httpx.Response, forward_usage: bool) -> AsyncGenerator[StreamPiece, None]:
    """The stream's chunks until `[DONE]`; an in-band error or an early end raises."""
    finished = False
    async with aclosing(aiter_events(response.aiter_lines())) as events:
        async for event in events:
            for payload in split_payloads(event.data):
                if payload == DONE:
                    return
                piece = _piece(event.event, payload, forward_usage)
                finished = finished or bool(piece.finish_reason)
                yield piece
    # Some compatible servers omit [DONE]; a finish reason is proof enough of a whole answer.
    if not finished:
        raise UpstreamUnavailable(200, "the upstream stream ended early")


def _piece(event: str, payload: str, forward_usage: bool) -> StreamPiece:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk") from exc
    if event == "error" or (isinstance(chunk, dict) and "error" in chunk):
        raise UpstreamUnavailable(200, "the upstream failed during the stream")
    return piece_from_chunk(payload.encode(), chunk, forward_usage)


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
