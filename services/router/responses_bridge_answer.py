"""Responses `response` objects built from a chat provider's answer.

The envelope repeats what the client asked (instructions, tools, tool_choice, sampling,
`text`, metadata) the way OpenAI echoes it; the output is one `message` item with an
`output_text` part (or a `refusal` part) and one `function_call` item per tool call,
in the chat answer's order. A `length` finish is status `incomplete` with reason
`max_output_tokens`, a `content_filter` finish is `incomplete` with `content_filter`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import Usage, field_of, loads_or_none
from services.router.relay_request import RelayRequest

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ECHOED = ("instructions", "max_output_tokens", "temperature", "top_p", "reasoning", "user")


def new_id(prefix: str) -> str:
    """A fresh object id in OpenAI's style (`resp_...`, `msg_...`, `fc_...`)."""
    return prefix + secrets.token_hex(24)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every `response` object of one bridged answer repeats."""

    response_id: str
    created_at: int
    model: str
    request: RelayRequest

    def response(self, status: str, output: list[dict[str, Any]], usage: Usage | None,
                 finish_reason: str = "") -> dict[str, Any]:
        """The `response` object with `output`, its status and usage."""
        payload = self.request.payload
        reason = _INCOMPLETE.get(finish_reason)
        body: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if reason and status == "completed" else status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": reason} if reason else None,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": payload.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "store": False,  # a bridged answer is not stored: no previous_response_id later
            "text": payload.get("text") or {"format": {"type": "text"}},
            "tool_choice": payload.get("tool_choice") or "auto",
            "tools": payload.get("tools") or [],
            "truncation": "disabled",
            "metadata": payload.get("metadata") or {},
            "usage": None if usage is None else usage_json(usage),
        }
        for name in _ECHOED:
            body[name] = payload.get(name)
        return body


def usage_json(usage: Usage) -> dict[str, Any]:
    """A Responses `usage` object."""
    return {
        "input_tokens": usage.prompt_tokens,
        # Usage counts no cache writes; the SDK requires the field, as OpenAI sends it.
        "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens,
                                 "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def message_item(item_id: str, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """An assistant `message` output item."""
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": parts}


def text_part(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, status: str, call_id: str, name: str,
              arguments: str) -> dict[str, Any]:
    """A `function_call` output item."""
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What the bridge reads of a chat.completion: output items, text, finish reason."""

    output: list[dict[str, Any]]
    text: str
    finish_reason: str


def read_chat_answer(body: bytes) -> ChatAnswer:
    """The output items of a chat.completion body; raise UpstreamUnavailable if malformed."""
    parsed = loads_or_none(body)
    choices = field_of(parsed, "choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    message = choices[0].get("message")
    message = message if isinstance(message, dict) else {}
    output: list[dict[str, Any]] = []
    text = message.get("content")
    text = text if isinstance(text, str) else ""
    refusal = message.get("refusal")
    if text or (isinstance(refusal, str) and refusal):
        parts = [text_part(text)] if text else []
        if isinstance(refusal, str) and refusal:
            parts.append({"type": "refusal", "refusal": refusal})
        output.append(message_item(new_id("msg_"), "completed", parts))
    output.extend(_tool_calls(message))
    reason = choices[0].get("finish_reason")
    return ChatAnswer(output, text, reason if isinstance(reason, str) else "")


def _tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    items: list[dict[str, Any]] = []
    for call in calls if isinstance(calls, list) else ():
        function = field_of(call, "function")
        name, arguments = field_of(function, "name"), field_of(function, "arguments")
        call_id = field_of(call, "id")
        if not isinstance(name, str):
            raise UpstreamUnavailable(200, "the upstream sent an invalid tool call")
        items.append(call_item(new_id("fc_"), "completed",
                               call_id if isinstance(call_id, str) else new_id("call_"),
                               name, arguments if isinstance(arguments, str) else "{}"))
    return items
