"""The client's chat request, parsed once from its JSON body into what routing needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.tokens import estimate_tokens
from services.router.errors import InvalidChatRequest


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A parsed chat completion request.

    `body` is the client's JSON as sent; `payload` is it parsed, read-only and only used
    to build an upstream body (so fields the gateway does not know reach the upstream).
    Everything the router decides on is a typed field.
    """

    request_id: str
    model: str
    body: bytes
    payload: Mapping[str, Any]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_texts: tuple[str, ...]
    last_user_text: str

    def estimated_prompt_tokens(self) -> int:
        """The prompt's token estimate: the sum over every message's text."""
        return sum(estimate_tokens(text) for text in self.prompt_texts)


def parse_chat_request(body: bytes, model: str, request_id: str, *, stream: bool) -> ChatRequest:
    """Parse and check a client body; raise InvalidChatRequest when it is malformed."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidChatRequest("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidChatRequest("body must be a JSON object")
    if not model:
        raise InvalidChatRequest("model is required")
    if payload.get("model") != model:
        raise InvalidChatRequest("model of the envelope and of the body differ")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidChatRequest("messages must be a list of objects")
    options = payload.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    texts = tuple(_message_text(m) for m in messages)
    last_user = next((_message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    return ChatRequest(
        request_id=request_id,
        model=model,
        body=body,
        payload=payload,
        stream=stream,
        include_usage=stream and include_usage,
        max_tokens=_max_tokens(payload),
        prompt_texts=tuple(t for t in texts if t),
        last_user_text=last_user,
    )


def _max_tokens(payload: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidChatRequest(f"{name} must be a positive integer")
        return value
    return None


def _message_text(message: Mapping[str, Any]) -> str:
    """The text of a message: a string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""
