"""The mock's text endpoints: legacy completions and responses, whole and streamed.

Shapes follow OpenAI's API reference: a `text_completion` object and its chunks (the
usage-only chunk last, as for `stream_options.include_usage`), and a `response` object
with its stream of typed events, each with a `sequence_number`, ending in
`response.completed` (or `response.incomplete` when `max_output_tokens` cut it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson

from services.common.gateway_config import MockSettings
from services.router.errors import UpstreamUnavailable
from services.router.providers.base import RelayAttempt
from services.router.providers.mock_plan import SYSTEM_FINGERPRINT, ReplyPlan, plan_reply
from services.router.relay_request import Operation

# OpenAI's default `max_tokens` for legacy completions.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
Event = tuple[bytes, bytes]  # an SSE event's name (b"message" for none) and its data
_UNNAMED = b"message"
# Response fields echoed from the request, with OpenAI's defaults.
_ECHOED: tuple[tuple[str, Any], ...] = (
    ("instructions", None), ("max_output_tokens", None), ("metadata", {}),
    ("parallel_tool_calls", True), ("previous_response_id", None), ("store", True),
    ("temperature", 1.0), ("text", {"format": {"type": "text"}}), ("tool_choice", "auto"),
    ("tools", []), ("top_p", 1.0), ("truncation", "disabled"), ("user", None),
)


def plan(settings: MockSettings, attempt: RelayAttempt, created: int) -> ReplyPlan:
    """The reply to a completions or responses request."""
    request = attempt.request
    completions = request.operation is Operation.COMPLETIONS
    limit = request.payload.get("max_tokens" if completions else "max_output_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        limit = COMPLETIONS_DEFAULT_MAX_TOKENS if completions else None
    return plan_reply(
        settings, text=request.prompt_text(), max_tokens=limit, stream=request.stream,
        prompt_tokens=request.estimated_input_tokens(), model=attempt.upstream_model,
        id_prefix="cmpl-" if completions else "resp_", created=created,
    )


def completion_body(reply: ReplyPlan) -> bytes:
    """A whole `text_completion`."""
    body = _completion(reply, reply.text, reply.finish_reason)
    return orjson.dumps({**body, "usage": _completion_usage(reply)})


def completion_events(reply: ReplyPlan, include_usage: bool) -> Iterator[Event]:
    """The chunks of a streamed completion, the usage chunk last; raises at a magic cut."""
    # OpenAI sends "usage": null on every chunk but the last when usage was asked for.
    extra = {"usage": None} if include_usage else {}
    for sent, piece in enumerate(reply.pieces):
        if sent == reply.cut_after:
            raise UpstreamUnavailable(200, "the upstream stream was cut")
        yield _UNNAMED, orjson.dumps({**_completion(reply, piece, None), **extra})
    if reply.cut_after is not None:
        raise UpstreamUnavailable(200, "the upstream stream was cut")
    yield _UNNAMED, orjson.dumps({**_completion(reply, "", reply.finish_reason), **extra})
    usage_chunk = {**_completion(reply, "", None), "choices": [],
                   "usage": _completion_usage(reply)}
    yield _UNNAMED, orjson.dumps(usage_chunk)


def _completion(reply: ReplyPlan, text: str, finish: str | None) -> dict[str, Any]:
    return {
        "id": reply.reply_id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
    }


def _completion_usage(reply: ReplyPlan) -> dict[str, int]:
    return {
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "total_tokens": reply.usage.total_tokens,
    }


def response_body(reply: ReplyPlan, attempt: RelayAttempt) -> bytes:
    """A whole `response`."""
    message_id = "msg_" + secrets.token_hex(12)
    return orjson.dumps(_response(reply, attempt, _message(message_id, reply.text), done=True))


def response_events(reply: ReplyPlan, attempt: RelayAttempt) -> Iterator[Event]:
    """The typed events of a streamed response; raises at a magic cut."""
    message_id = "msg_" + secrets.token_hex(12)
    events = _Sequence()
    started = _response(reply, attempt, None, done=False)
    yield events.next("response.created", response=started)
    yield events.next("response.in_progress", response=started)
    in_progress = {**_message(message_id, ""), "status": "in_progress", "content": []}
    yield events.next("response.output_item.added", output_index=0, item=in_progress)
    where = {"item_id": message_id, "output_index": 0, "content_index": 0}
    yield events.next("response.content_part.added", **where, part=_part(""))
    for sent, piece in enumerate(reply.pieces):
        if sent == reply.cut_after:
            raise UpstreamUnavailable(200, "the upstream stream was cut")
        yield events.next("response.output_text.delta", **where, delta=piece, logprobs=[])
    if reply.cut_after is not None:
        raise UpstreamUnavailable(200, "the upstream stream was cut")
    yield events.next("response.output_text.done", **where, text=reply.text, logprobs=[])
    yield events.next("response.content_part.done", **where, part=_part(reply.text))
    message = _message(message_id, reply.text)
    yield events.next("response.output_item.done", output_index=0, item=message)
    finished = _response(reply, attempt, message, done=True)
    yield events.next(f"response.{finished['status']}", response=finished)


class _Sequence:
    """Numbers a response's events from 0."""

    def __init__(self) -> None:
        self._number = 0

    def next(self, kind: str, **fields: Any) -> Event:
        """One event of type `kind`, named as its type, with its sequence number."""
        event = {"type": kind, "sequence_number": self._number, **fields}
        self._number += 1
        return kind.encode(), orjson.dumps(event)


def _response(
    reply: ReplyPlan, attempt: RelayAttempt, message: dict[str, Any] | None, *, done: bool
) -> dict[str, Any]:
    payload = attempt.request.payload
    cut = done and reply.finish_reason == "length"
    status = ("incomplete" if cut else "completed") if done else "in_progress"
    body: dict[str, Any] = {
        "id": reply.reply_id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "model": reply.model,
        "output": [message] if message is not None else [],
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "usage": _response_usage(reply) if done else None,
    }
    body.update((key, payload.get(key, default)) for key, default in _ECHOED)
    return body


def _response_usage(reply: ReplyPlan) -> dict[str, Any]:
    return {
        "input_tokens": reply.usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": reply.usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.usage.total_tokens,
    }


def _message(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [_part(text)]}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
