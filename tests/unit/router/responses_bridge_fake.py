"""A chat-only provider for the Responses bridge tests, and the SDK checks of its output."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from services.router.errors import ProviderError, UpstreamUnavailable
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
    completion_from_body,
    piece_from_chunk,
)
from services.router.relay_request import Operation

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
USAGE_JSON = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
              "prompt_tokens_details": {"cached_tokens": 4},
              "completion_tokens_details": {"reasoning_tokens": 2}}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat.completion.chunk; without a delta and with usage, the usage-only chunk."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "up-model", "choices": choices, "usage": usage}


def text_chunks(*texts: str, finish: str = "stop") -> list[dict[str, Any]]:
    """Role, one chunk per text, the finish chunk and the usage chunk."""
    return [chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": t}) for t in texts),
            chunk({}, finish), chunk(usage=USAGE_JSON)]


def tool_chunks() -> list[dict[str, Any]]:
    """Two parallel tool calls whose arguments come in pieces."""
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})
    return [
        chunk({"role": "assistant", "content": None}),
        call(0, id="call_a", type="function", function={"name": "weather", "arguments": ""}),
        call(0, function={"arguments": '{"city":'}),
        call(0, function={"arguments": '"Paris"}'}),
        call(1, id="call_b", type="function", function={"name": "time", "arguments": "{}"}),
        chunk({}, "tool_calls"), chunk(usage=USAGE_JSON),
    ]


def chat_answer(content: str | None = "Hello world", finish: str = "stop",
                tool_calls: list[dict[str, Any]] | None = None,
                usage: dict[str, Any] | None = USAGE_JSON) -> dict[str, Any]:
    """A chat.completion body."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    return body if usage is None else {**body, "usage": usage}


@dataclass
class ChatOnlyProvider:
    """Speaks only chat: plays a scripted answer or chunks, maybe cut after `cut_after`."""

    answer: dict[str, Any] = field(default_factory=chat_answer)
    chunks: Sequence[dict[str, Any]] = field(default_factory=lambda: text_chunks("Hi", " there"))
    cut_after: int | None = None
    error: ProviderError | None = None
    requests: list[UpstreamRequest] = field(default_factory=list)
    closed: int = 0

    def relays(self, operation: Operation) -> bool:
        """Nothing but chat."""
        return False

    async def complete(self, request: UpstreamRequest) -> Completion:
        """The scripted chat.completion."""
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return completion_from_body(orjson.dumps(self.answer))

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """The scripted chunks, as the OpenAI provider reads them."""
        self.requests.append(request)
        try:
            if self.error is not None:
                raise self.error
            for sent, raw in enumerate(self.chunks):
                if sent == self.cut_after:
                    raise UpstreamUnavailable(200, "the upstream stream was cut")
                yield piece_from_chunk(orjson.dumps(raw), raw, request.chat.include_usage)
        finally:
            self.closed += 1

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Never called: the router must bridge."""
        raise AssertionError("a chat-only provider got a relayed request")

    def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Never called: the router must bridge."""
        raise AssertionError("a chat-only provider got a relayed stream")


def event_of(frame: bytes) -> ResponseStreamEvent:
    """One SSE frame (`event: <type>` and `data: <json>`), checked and parsed by the SDK."""
    lines = frame.decode().split("\n")
    assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
    assert frame.endswith(b"\n\n") and lines[2:] == ["", ""], frame
    event = EVENTS.validate_json(lines[1][len("data: "):])
    assert event.type == lines[0][len("event: "):]
    return event


def accumulate(events: Sequence[ResponseStreamEvent]) -> Response:
    """The final response as the openai SDK's own stream accumulator builds it."""
    state: ResponseStreamState[object] = ResponseStreamState(input_tools=[], text_format=omit)
    final: Response | None = None
    for event in events:
        for handled in state.handle_event(event):
            if handled.type == "response.completed":
                final = handled.response
    assert final is not None
    return final


def response_of(body: bytes) -> Response:
    """A non-streaming body, checked by the SDK's Response model."""
    return Response.model_validate_json(body)
