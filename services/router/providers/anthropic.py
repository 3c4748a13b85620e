"""The Anthropic provider: OpenAI chat completions over the Messages API.

POSTs to `{base_url}/v1/messages` (base_url defaults to DEFAULT_BASE_URL; a trailing
`/v1` is tolerated, as the SDK's ANTHROPIC_BASE_URL has none) with `x-api-key` and
`anthropic-version`. Translation lives in `anthropic_request` (the body),
`anthropic_response` (answer and usage), `anthropic_stream` (events to chunks) and
`anthropic_errors` (errors). Anthropic offers none of the other OpenAI endpoints, so
`relays` is false for every operation (responses are bridged onto chat elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

import aiohttp
from yarl import URL

from services.common.gateway_config import ChannelEntry
from services.router.errors import UpstreamUnavailable
from services.router.providers.anthropic_errors import error_for_status
from services.router.providers.anthropic_request import messages_body
from services.router.providers.anthropic_response import completion_of
from services.router.providers.anthropic_stream import StreamTranslator
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
)
from services.router.providers.http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    attempt_timeout,
    post,
    read_released,
    transport_errors,
)
from services.router.providers.sse import SSEDecoder
from services.router.relay_request import Operation

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
UNREACHABLE = "the upstream is unreachable"
CONNECTION_FAILED = "the upstream connection failed"
NOT_OFFERED = "the channel's provider does not offer this endpoint"


def messages_url(base_url: str) -> str:
    """The Messages API URL under `base_url` (the default when empty)."""
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    base = base.removesuffix("/v1")
    return base + MESSAGES_PATH


class AnthropicProvider:
    """Calls one Anthropic base URL with one key, over the shared HTTP session."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = URL(messages_url(channel.base_url))
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._headers = {"anthropic-version": ANTHROPIC_VERSION,
                         "content-type": "application/json"}
        if api_key:
            self._headers["x-api-key"] = api_key
        # Strings that must never reach a client, even inside a passed-through message.
        self._redact = (api_key, channel.base_url, str(self._url))

    async def complete(self, request: UpstreamRequest) -> Completion:
        """POST the request and translate Anthropic's message into a chat.completion."""
        body = messages_body(request.chat, request.upstream_model, stream=False)
        with transport_errors(UNREACHABLE):
            response = await self._post(body, request, accept="application/json")
            raw = await read_released(response)
        if not 200 <= response.status < 300:
            raise error_for_status(response.status, raw, self._redact, response.headers)
        return completion_of(raw, int(self._clock()))

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """POST with `stream: true` and yield chunks; closing this closes the upstream."""
        body = messages_body(request.chat, request.upstream_model, stream=True)
        with transport_errors(CONNECTION_FAILED):
            response = await self._post(body, request, accept="text/event-stream")
        try:
            with transport_errors(CONNECTION_FAILED):
                if not 200 <= response.status < 300:
                    raise error_for_status(response.status, await response.read(),
                                           self._redact, response.headers)
                translator = StreamTranslator(int(self._clock()),
                                              forward_usage=request.chat.include_usage,
                                              redact=self._redact)
                decoder = SSEDecoder()
                while not translator.stopped:
                    data = await response.content.readany()
                    events = decoder.feed(data) if data else decoder.end()
                    for event in events:
                        for piece in translator.read(event.event, event.data):
                            yield piece
                    if not data:
                        break
                if not translator.finished:
                    raise UpstreamUnavailable(200, "the upstream stream ended early")
        finally:
            # Back to the pool only when the answer was read to its end.
            response.release()

    def relays(self, operation: Operation) -> bool:
        """Anthropic serves none of the other OpenAI endpoints natively."""
        return False

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Never a candidate for a relayed endpoint (see `relays`)."""
        raise UpstreamUnavailable(0, NOT_OFFERED)

    async def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Never a candidate for a relayed endpoint (see `relays`)."""
        raise UpstreamUnavailable(0, NOT_OFFERED)
        yield  # pragma: no cover - makes this an async generator

    async def _post(self, body: bytes, request: UpstreamRequest,
                    accept: str) -> aiohttp.ClientResponse:
        return await post(
            self._session, self._url, body, {**self._headers, "accept": accept},
            request.chat.request_id,
            attempt_timeout(request.timeout_s, self._connect_timeout_s))
