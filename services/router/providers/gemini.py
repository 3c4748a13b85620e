"""The Gemini provider: OpenAI chat on Google's Generative Language API.

Chat goes to `models/<model>:generateContent` (non-streaming) and
`:streamGenerateContent?alt=sse` (streaming), translated both ways by
`gemini_request`, `gemini_response` and `gemini_stream`; embeddings go to
`embedContent` / `batchEmbedContents` (`gemini_embeddings`). Gemini serves no other
OpenAI endpoint: `relays` says so, and the router does not pick the channel for them.
Multi-turn tool use with thinking models works because every tool call id carries its
thought signature back (`gemini_ids`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import aiohttp

from services.common.gateway_config import ChannelEntry
from services.router.errors import UpstreamUnavailable
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
)
from services.router.providers.gemini_embeddings import relay_embeddings
from services.router.providers.gemini_http import GeminiHTTP
from services.router.providers.gemini_request import gemini_body
from services.router.providers.gemini_response import completion_of
from services.router.providers.gemini_stream import GeminiStream, finishes
from services.router.providers.http import DEFAULT_CONNECT_TIMEOUT_S, transport_errors
from services.router.providers.sse import EventReader
from services.router.relay_request import Operation

UNREACHABLE = "the upstream is unreachable"
CONNECTION_FAILED = "the upstream connection failed"
NOT_SERVED = "the channel does not serve this endpoint"


class GeminiProvider:
    """Calls one Gemini API base URL with one key, over a shared HTTP session."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self._http = GeminiHTTP(channel, session, api_key, connect_timeout_s)

    async def complete(self, request: UpstreamRequest) -> Completion:
        """generateContent, answered as an OpenAI chat.completion."""
        body = gemini_body(request.chat.payload)
        with transport_errors(UNREACHABLE):
            response = await self._http.post(request.upstream_model, "generateContent", body,
                                             request.chat.request_id, request.timeout_s)
            answer = await self._http.read(response)
        return completion_of(answer, request.upstream_model, int(time.time()))

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """streamGenerateContent as chat.completion.chunks; closing this closes the upstream."""
        body = gemini_body(request.chat.payload)
        with transport_errors(CONNECTION_FAILED):
            response = await self._http.post(
                request.upstream_model, "streamGenerateContent", body, request.chat.request_id,
                request.timeout_s, stream=True)
        try:
            with transport_errors(CONNECTION_FAILED):
                await self._http.check(response)
                translator = GeminiStream(request.upstream_model, int(time.time()),
                                          forward_usage=request.chat.include_usage)
                reader = EventReader(translator.read, finishes)
                while not reader.done:
                    for pieces in reader.feed(await response.content.readany()):
                        for piece in pieces:
                            yield piece
        finally:
            # Back to the pool only when the answer was read to its end.
            response.release()

    def relays(self, operation: Operation) -> bool:
        """Only embeddings, besides chat."""
        return operation is Operation.EMBEDDINGS

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Embeddings (see `gemini_embeddings`); nothing else is served."""
        if attempt.request.operation is not Operation.EMBEDDINGS:
            raise UpstreamUnavailable(0, NOT_SERVED)
        return await relay_embeddings(self._http, attempt)

    async def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """No relayed endpoint streams on Gemini."""
        raise UpstreamUnavailable(0, NOT_SERVED)
        yield RelayPiece(None)  # pragma: no cover - makes this an async generator
