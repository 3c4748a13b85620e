"""How each kind of relayed stream is written: framing, trailers, the usage event.

    chat completions   JSON chunks framed as `data:` events; in-band `data: {"error"}`;
                       `data: [DONE]`
    legacy completions whole SSE events from the router, verbatim; same trailers
    responses          whole SSE events, verbatim; a failure is one `event: error`;
                       no [DONE] (OpenAI sends none)
    speech             binary audio with the router's content type; no pings; a failure
                       after the first byte aborts the connection, so the client sees a
                       broken body rather than a short, valid-looking file
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from edge.cost import add_cost_to_event, add_cost_to_json
from edge.errors import ApiError
from edge.sse import DONE, error_event, event_data, frame_all

ErrorTrailer = Callable[[ApiError, bytes | None], bytes]
CostPatch = Callable[[bytes, int], bytes | None]


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """How one kind of stream is written."""

    sse: bool  # an event stream (pinged while quiet), else binary with the router's type
    encode: Callable[[Sequence[bytes]], bytes]  # the pieces of one router item, as one write
    error_trailer: ErrorTrailer | None  # an in-band failure (given the last piece sent)
    closing: bytes  # written after the last piece (and after an in-band error)
    add_cost: CostPatch | None  # `cost` into a usage-bearing piece, None if it has none


def _data_error(error: ApiError, _last: bytes | None) -> bytes:
    return error_event(error)


def responses_error(error: ApiError, last: bytes | None) -> bytes:
    """The Responses `error` event, numbered after the last event sent."""
    payload = {
        "type": "error", "code": error.code, "message": error.message, "param": error.param,
        "sequence_number": _sequence_number(last) + 1,
    }
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def _sequence_number(event: bytes | None) -> int:
    data = None if event is None else event_data(event)
    try:
        number = orjson.loads(data).get("sequence_number") if data else None
    except (orjson.JSONDecodeError, AttributeError):
        number = None
    return number if isinstance(number, int) else -1


def _verbatim(pieces: Sequence[bytes]) -> bytes:
    return b"".join(pieces)


CHAT_STREAM = StreamFormat(True, frame_all, _data_error, DONE, add_cost_to_json)
COMPLETIONS_STREAM = StreamFormat(True, _verbatim, _data_error, DONE, add_cost_to_event)
RESPONSES_STREAM = StreamFormat(True, _verbatim, responses_error, b"", add_cost_to_event)
AUDIO_STREAM = StreamFormat(False, _verbatim, None, b"", None)
