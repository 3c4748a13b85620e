"""The Gemini provider: OpenAI chat on Google's Generative Language API.

Chat goes to `models/<model>:generateContent` (non-streaming) and
`:streamGenerateContent?alt=sse` (streaming), translated both ways by
`gemini_request`, `gemini_response` and `gemini_stream`; embeddings go to
`embedContent` / `batchEmbedContents` (`gemini_embeddings`); images go to Imagen's
`predict` or a Gemini image model (`gemini_media`), speech, transcriptions and
translations to generateContent (`gemini_audio`). Gemini serves no other OpenAI
endpoint: `relays` says so, and the router does not pick the channel for them.
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
from services.router.providers.gemini_audio import relay_speech, relay_transcript, stream_speech
from services.router.providers.gemini_embeddings import relay_embeddings
from services.router.providers.gemini_http import GeminiHTTP
from services.router.providers.gemini_media import relay_images
from services.router.providers.gemini_request import gemini_body
from services.router.providers.gemini_response import completion_of
from services.router.providers.gemini_stream import GeminiStream, finishes
from services.router.providers.http import DEFAULT_CONNECT_TIMEOUT_S, transport_errors
from services.router.providers.sse import EventReader
from services.router.relay_request import Operation

UNREACHABLE = "the upstream is unreachable"
CONNECTION_FAILED = "the upstream connection failed"
NOT_SERVED = "the channel does not serve this endpoint"
SERVED = frozenset({Operation.EMBEDDINGS, Operation.IMAGE_GENERATIONS, Operation.AUDIO_SPEECH,
                    Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS})


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
        """Embeddings, image generations, speech, transcriptions and translations."""
        return operation in SERVED

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """One of the SERVED endpoints; nothing else is served."""
        operation = attempt.request.operation
        if operation is Operation.EMBEDDINGS:
            return await relay_embeddings(self._http, attempt)
        if operation is Operation.IMAGE_GENERATIONS:
            return await relay_images(self._http, attempt)
        if operation is Operation.AUDIO_SPEECH:
            return await relay_speech(self._http, attempt)
        if operation in SERVED:
            return await relay_transcript(self._http, attempt)
        raise UpstreamUnavailable(0, NOT_SERVED)

    async def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Only speech streams (as pieces of audio)."""
        if attempt.request.operation is not Operation.AUDIO_SPEECH:
            raise UpstreamUnavailable(0, NOT_SERVED)
        async for piece in stream_speech(self._http, attempt):
            yield piece
