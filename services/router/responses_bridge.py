"""`POST /v1/responses` served by a provider that only speaks chat completions.

The Responses request is translated once (`responses_bridge_request`), each attempt
runs it through the provider's `complete` or `stream`, and the chat answer comes back
as a Responses `response` object (`responses_bridge_answer`) or as Responses stream
events (`responses_bridge_stream`). Usage is typed as for a native Responses answer:
the chat usage when the provider reported one, else the router's estimate of the
Responses input and the delivered text.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import orjson

from services.router.outcomes import CompletionError
from services.router.providers.base import Provider, RelayAnswer, RelayPiece, UpstreamRequest
from services.router.providers.relay_usage import stream_estimate
from services.router.relay_request import RelayRequest
from services.router.responses_bridge_answer import Envelope, new_id, read_chat_answer
from services.router.responses_bridge_request import Unbridgeable
from services.router.responses_bridge_stream import ResponseEvents

JSON = "application/json"
UNSUPPORTED = "unsupported_parameter"


def refusal(exc: Unbridgeable) -> CompletionError:
    """The client's 400 for a Responses feature no candidate channel can serve."""
    return CompletionError(400, "invalid_request_error", UNSUPPORTED, exc.message, exc.param)


class ResponsesBridge:
    """Serves one translated Responses request on chat-only providers."""

    def __init__(self, request: RelayRequest, chat_attempt: Callable[[str, float], UpstreamRequest],
                 clock: Callable[[], float] = time.time) -> None:
        self._request = request
        self._chat_attempt = chat_attempt
        self._clock = clock

    async def answer(self, provider: Provider, upstream_model: str,
                     timeout_s: float) -> RelayAnswer:
        """The `response` object of one non-streaming attempt."""
        completion = await provider.complete(self._chat_attempt(upstream_model, timeout_s))
        chat = read_chat_answer(completion.body)
        envelope = self._envelope(upstream_model)
        usage, reported = completion.usage, completion.usage is not None
        if usage is None:
            usage = stream_estimate(self._request, [chat.text] if chat.text else [],
                                    delivered=True)
        body = envelope.response("completed", chat.output, usage, chat.finish_reason)
        return RelayAnswer(orjson.dumps(body), JSON, usage, reported)

    async def events(self, provider: Provider, upstream_model: str,
                     timeout_s: float) -> AsyncGenerator[RelayPiece, None]:
        """The Responses events of one streaming attempt; closing this closes the upstream."""
        events = ResponseEvents(self._envelope(upstream_model))
        for piece in events.start():
            yield piece
        chunks = provider.stream(self._chat_attempt(upstream_model, timeout_s))
        async with aclosing(chunks):
            async for chunk in chunks:
                for piece in events.take(chunk):
                    yield piece
        for piece in events.finish():
            yield piece

    def _envelope(self, model: str) -> Envelope:
        return Envelope(new_id("resp_"), int(self._clock()), model, self._request)
