"""The OpenAI-compatible provider's other endpoints: completions, embeddings, images,
audio and responses, relayed as the client sent them.

The body goes upstream byte for byte with the client's content type (the multipart
boundary included); only a model id the channel maps is replaced (in the JSON, or in
the form's `model` field), and a streamed legacy completion always asks for usage.
The answer comes back as it was, with its content type, and its usage read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Any

import aiohttp
import orjson

from services.common.multipart import replace_field
from services.router.providers.base import RelayAnswer, RelayAttempt, RelayPiece
from services.router.providers.events import EVENT_STREAM, completions_piece, responses_piece
from services.router.providers.http import UpstreamHTTP, transport_errors
from services.router.providers.relay_usage import answer_usage
from services.router.providers.sse import EventReader
from services.router.relay_request import Operation

UNREACHABLE = "the upstream is unreachable"
CONNECTION_FAILED = "the upstream connection failed"
DEFAULT_AUDIO_TYPE = "audio/mpeg"


async def relay(http: UpstreamHTTP, attempt: RelayAttempt) -> RelayAnswer:
    """POST the request and return the upstream's answer untouched, with its usage."""
    request = attempt.request
    with transport_errors(UNREACHABLE):
        response = await _send(http, attempt, accept="*/*")
        body = await http.read(response)
    content_type = response.headers.get("content-type", "application/json")
    usage, reported = answer_usage(request, body, content_type)
    return RelayAnswer(body, content_type, usage, reported)


async def relay_stream(
    http: UpstreamHTTP, attempt: RelayAttempt
) -> AsyncGenerator[RelayPiece, None]:
    """POST a streaming request and yield its pieces; closing this closes the upstream."""
    events = attempt.request.operation.events
    with transport_errors(CONNECTION_FAILED):
        response = await _send(http, attempt, accept=EVENT_STREAM if events else "*/*")
    try:
        with transport_errors(CONNECTION_FAILED):
            await http.check(response)
            pieces = _events(attempt, response) if events else _audio(response)
            async for piece in pieces:
                yield piece
    finally:
        # Back to the pool only when the answer was read to its end.
        response.release()


async def _events(
    attempt: RelayAttempt, response: aiohttp.ClientResponse
) -> AsyncGenerator[RelayPiece, None]:
    request = attempt.request
    read: Callable[[bytes, bytes], RelayPiece] = (
        partial(completions_piece, forward_usage=request.include_usage)
        if request.operation is Operation.COMPLETIONS else responses_piece
    )
    reader = EventReader(read, _finishes)
    first = True
    while not reader.done:
        for piece in reader.feed(await response.content.readany()):
            if first:
                piece.content_type, first = EVENT_STREAM, False
            yield piece


async def _audio(response: aiohttp.ClientResponse) -> AsyncGenerator[RelayPiece, None]:
    content_type = response.headers.get("content-type", DEFAULT_AUDIO_TYPE)
    async for data in response.content.iter_any():
        yield RelayPiece(data, is_output=True, content_type=content_type)


def _finishes(piece: RelayPiece) -> bool:
    return bool(piece.finish_reason) or piece.is_last


async def _send(
    http: UpstreamHTTP, attempt: RelayAttempt, *, accept: str
) -> aiohttp.ClientResponse:
    request = attempt.request
    return await http.post(request.operation.path, upstream_body(attempt), request.request_id,
                           attempt.timeout_s, content_type=request.content_type, accept=accept)


def upstream_body(attempt: RelayAttempt) -> bytes:
    """The body to send: the client's bytes, unless the model or the usage option changes."""
    request = attempt.request
    model = attempt.upstream_model
    if request.form is not None:
        if model == request.model:
            return request.body
        return replace_field(request.body, request.form, "model", model)
    force_usage = (request.operation is Operation.COMPLETIONS and request.stream
                   and not request.include_usage)
    if model == request.model and not force_usage:
        return request.body
    upstream: dict[str, Any] = {**request.payload, "model": model}
    if force_usage:
        options = request.payload.get("stream_options")
        upstream["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}
    return orjson.dumps(upstream)
