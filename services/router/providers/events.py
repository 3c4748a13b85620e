"""Server-sent events of relayed streams (legacy completions, responses): what each
event means for routing and billing, and each event framed whole for the client.

A relayed stream's pieces are whole events as bytes (`event: <name>` when the upstream
named it, `data: <json>`, the blank line), so the edge writes them as they are; the
closing `data: [DONE]` is the edge's to write, never forwarded from the upstream.
The usage-bearing event (the completions usage chunk, the Responses terminal event)
is marked `is_last`: it goes out in the stream's last item.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import RelayPiece, field_of, usage_from_json
from services.router.providers.relay_usage import responses_usage
from services.router.providers.sse import DEFAULT_EVENT

EVENT_STREAM = "text/event-stream"
TEXT_DELTA = "response.output_text.delta"
# Responses events that end the answer; each carries the response with its usage.
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def frame(event: bytes, data: bytes) -> bytes:
    """One whole SSE event: its name unless it is the default, its data, the blank line."""
    head = b"" if event == DEFAULT_EVENT else b"event: " + event + b"\n"
    if b"\n" in data:
        return head + b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"
    return head + b"data: " + data + b"\n\n"


def completions_piece(event: bytes, payload: bytes, *, forward_usage: bool) -> RelayPiece:
    """Read one text_completion chunk; drop the usage-only one unless the client asked."""
    chunk = _parse(event, payload)
    raw_usage = chunk.get("usage")
    usage = None if raw_usage is None else usage_from_json(raw_usage)
    choices = chunk.get("choices")
    text, finish_reason, any_choice = "", "", False
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        any_choice = True
        if isinstance(piece := choice.get("text"), str):
            text += piece
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason and choice.get("index", 0) == 0:
            finish_reason = reason
    if not any_choice and usage is not None:
        return RelayPiece(frame(event, payload) if forward_usage else None, usage=usage,
                          is_last=True)
    return RelayPiece(frame(event, payload), text, finish_reason, usage,
                      is_output=bool(text or finish_reason))


def responses_piece(event: bytes, payload: bytes) -> RelayPiece:
    """Read one Responses stream event: text deltas are output, terminal events last."""
    parsed = _parse(event, payload)
    kind = parsed.get("type")
    if not isinstance(kind, str):
        kind = event.decode("utf-8", "replace")
    data = frame(event, payload)
    if kind == TEXT_DELTA:
        delta = parsed.get("delta")
        return RelayPiece(data, text=delta if isinstance(delta, str) else "", is_output=True)
    if kind in TERMINAL_EVENTS:
        usage = responses_usage(field_of(parsed.get("response"), "usage"))
        return RelayPiece(data, usage=usage, is_last=True)
    # Other deltas (function call arguments, refusals, audio) are output too.
    return RelayPiece(data, is_output=kind.endswith(".delta"))


def _parse(event: bytes, payload: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream event") from exc
    if not isinstance(parsed, dict):
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream event")
    kind = parsed.get("type")
    if event == b"error" or kind == "error" or (kind is None and "error" in parsed):
        raise UpstreamUnavailable(200, "the upstream failed during the stream")
    return parsed
