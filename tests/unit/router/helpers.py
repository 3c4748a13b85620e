"""Builders shared by the router unit tests."""

from __future__ import annotations

from typing import Any

import orjson

from services.router.providers.base import UpstreamRequest
from services.router.request import ChatRequest, parse_chat_request


def chat_request(
    text: str = "Say hello.",
    *,
    model: str = "demo",
    stream: bool = False,
    include_usage: bool = False,
    request_id: str = "req_test",
    **extra: Any,
) -> ChatRequest:
    """A parsed chat request with one user message."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return parse_chat_request(orjson.dumps(body), model, request_id, stream=stream)


def upstream(chat: ChatRequest, upstream_model: str = "", timeout_s: float = 5.0) -> UpstreamRequest:
    """An attempt for `chat`, sending `upstream_model` (default: the client's model)."""
    return UpstreamRequest(chat, upstream_model or chat.model, timeout_s)
