"""What every provider offers the router: one Protocol, typed data in and out.

A provider turns one upstream attempt into a `Completion` or a stream of
`StreamPiece`s, and every failure into a `ProviderError` (see `errors.py`) whose
message is safe to show a client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.relay_request import Operation, RelayRequest
from services.router.request import ChatRequest

NO_UNITS: Mapping[str, int] = MappingProxyType({})

# Statuses where the upstream judged the request itself; its OpenAI error is the answer.
PASS_THROUGH_STATUSES = frozenset({400, 404, 413, 422})
TIMEOUT_STATUSES = frozenset({408, 504})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One attempt: the client's request, the model id to send, the time it may take."""

    chat: ChatRequest
    upstream_model: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request, and its non-token units (`services.common.units`)."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    # A factory, as dataclasses refuse a mapping default; every Usage shares the one.
    units: Mapping[str, int] = field(default_factory=lambda: NO_UNITS)
    # Prompt tokens written to the provider's prompt cache (Anthropic's cache creation):
    # a subset of prompt_tokens, disjoint from cached_prompt_tokens.
    cache_write_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """prompt_tokens + completion_tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A non-streaming answer: the chat.completion body as the upstream sent it."""

    body: bytes
    usage: Usage | None
    finish_reason: str
    text: str


@dataclass(slots=True)
class StreamPiece:
    """One upstream stream event.

    `chunk` is the chat.completion.chunk JSON to forward, or None when there is nothing
    to forward (a usage-only chunk the client did not ask for). `is_output` is true when
    the chunk carries something of the answer (content, tool calls, a finish reason),
    as opposed to a bare role announcement. `is_last` marks the usage chunk, which goes
    out with the end of the stream. Not frozen: one is built per streamed chunk, and a
    frozen dataclass's `__init__` costs four times as much; nobody changes one after it
    is built.
    """

    chunk: bytes | None
    text: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    is_output: bool = False
    is_last: bool = False
    # The prompt counts an upstream reports before its output (Anthropic's message_start):
    # kept for a stream that ends without its final usage, so its prompt and cache
    # counts are billed as reported and only the completion is counted by the router.
    prompt_usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class RelayAttempt:
    """One attempt of a relayed request: the request, the model id to send, its time."""

    request: RelayRequest
    upstream_model: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class RelayAnswer:
    """A relayed non-streaming answer as the upstream sent it, with its usage read.

    `reported` is true when the counts come from the upstream's answer, false when the
    router counted them from the request (see `relay_usage`).
    """

    body: bytes
    content_type: str
    usage: Usage
    reported: bool


@dataclass(slots=True)
class RelayPiece:
    """One piece of a relayed stream.

    `data` is one whole server-sent event (or a piece of audio) to forward, or None when
    nothing is forwarded (the usage chunk the client did not ask for). `text` is the
    answer's text it carries, `is_output` marks the answer's first content (until which
    failover stays possible), `is_last` the usage-bearing event, which goes out with the
    end of the stream. `content_type` is set on the first piece of a stream.
    """

    data: bytes | None
    text: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    is_output: bool = False
    is_last: bool = False
    content_type: str = ""


class Provider(Protocol):
    """An upstream that answers OpenAI chat completions and the other OpenAI endpoints."""

    async def complete(self, request: UpstreamRequest) -> Completion:
        """Run a non-streaming completion; raise ProviderError on failure."""
        ...

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """Stream a completion; raise ProviderError on failure. Close it to cancel."""
        ...

    def relays(self, operation: Operation) -> bool:
        """True when `relay` / `relay_stream` serve `operation` natively (a channel that
        does not is no candidate for it; responses may then be bridged onto chat)."""
        ...

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Run a non-streaming relayed request; raise ProviderError on failure."""
        ...

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Stream a relayed request; raise ProviderError on failure. Close it to cancel."""
        ...


def usage_from_json(raw: Any) -> Usage | None:
    """The Usage of an OpenAI `usage` object, or None when there is none."""
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details")
    completion_details = raw.get("completion_tokens_details")
    return Usage(
        prompt_tokens=count_of(raw.get("prompt_tokens")),
        completion_tokens=count_of(raw.get("completion_tokens")),
        cached_prompt_tokens=count_of(field_of(prompt_details, "cached_tokens")),
        reasoning_tokens=count_of(field_of(completion_details, "reasoning_tokens")),
    )


def usage_json(usage: Usage) -> dict[str, Any]:
    """The OpenAI `usage` object of a Usage."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def piece_from_chunk(data: bytes, chunk: Any, forward_usage: bool) -> StreamPiece:
    """Read one parsed chat.completion.chunk; drop it if it only carries unasked usage."""
    if not isinstance(chunk, dict):
        raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk")
    raw_usage = chunk.get("usage")
    usage = None if raw_usage is None else usage_from_json(raw_usage)
    choices = chunk.get("choices")
    text, finish_reason, is_output, any_choice = "", "", False, False
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        any_choice = True
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            if not is_output:
                is_output = any(value for key, value in delta.items() if key != "role")
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            is_output = True
            if choice.get("index", 0) == 0:
                finish_reason = reason
    if not any_choice and usage is not None:
        return StreamPiece(data if forward_usage else None, usage=usage, is_last=True)
    return StreamPiece(data, text, finish_reason, usage, is_output)


def completion_from_body(body: bytes) -> Completion:
    """Read a chat.completion body, keeping its bytes as they are."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, "the upstream sent an invalid response") from exc
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if not isinstance(choices, list):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    reason = first.get("finish_reason")
    return Completion(
        body=body,
        usage=usage_from_json(parsed.get("usage")),
        finish_reason=reason if isinstance(reason, str) else "",
        text=content if isinstance(content, str) else "",
    )


def error_for_status(status: int, body: bytes, redact: tuple[str, ...] = ()) -> ProviderError:
    """The ProviderError for an upstream HTTP error status and body.

    Only pass-through statuses keep the upstream's message, with every string of
    `redact` (keys, addresses) cut out; other statuses get a generic message.
    """
    if status == 429:
        # OpenAI's 429 `insufficient_quota` is an empty account, not a rate (see errors.py).
        code = _str(field_of(field_of(loads_or_none(body), "error"), "code"))
        return UpstreamRateLimited(status, "the upstream is rate limited",
                                   code="insufficient_quota" if code == "insufficient_quota"
                                   else "")
    if status in TIMEOUT_STATUSES:
        return UpstreamTimeout(status, "the upstream timed out")
    if status not in PASS_THROUGH_STATUSES:
        return UpstreamUnavailable(status, f"the upstream failed with status {status}")
    error = field_of(loads_or_none(body), "error")
    return UpstreamRejected(
        status,
        rejected_message(field_of(error, "message"), redact),
        error_type=_str(field_of(error, "type")) or "invalid_request_error",
        code=_str(field_of(error, "code")),
        param=_str(field_of(error, "param")),
    )


def rejected_message(message: object, redact: tuple[str, ...]) -> str:
    """An upstream's message for a refused request (a generic one when it sent none),
    every string of `redact` (keys, addresses) cut out."""
    text = message if isinstance(message, str) and message else (
        "the upstream rejected the request")
    for secret in redact:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def loads_or_none(body: bytes) -> Any:
    """`body` parsed as JSON, or None when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def field_of(raw: Any, key: str) -> Any:
    """`raw[key]` when `raw` is a JSON object, else None."""
    return raw.get(key) if isinstance(raw, dict) else None


def count_of(value: Any) -> int:
    """`value` when it is a positive JSON integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, (str, int)) else ""
