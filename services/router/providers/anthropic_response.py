"""An Anthropic `message` as an OpenAI `chat.completion`, and Anthropic usage as ours.

Text blocks join into `content`; `tool_use` blocks become `tool_calls` (ids kept, input
as a JSON string); thinking becomes `reasoning_content`, and the thinking blocks with
their signatures ride along as `message.thinking_blocks` so a client can send them back
(see `anthropic_messages`). Usage: prompt = input + cache read + cache creation tokens
(Anthropic's input_tokens counts only the tokens after the last cache breakpoint), cached
= cache read, cache write = cache creation, completion = output tokens, reasoning = the
thinking tokens when Anthropic reports them. The client sees the OpenAI usage shape.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import Completion, Usage, count_of, field_of, usage_json

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
INVALID = "the upstream sent an invalid response"


def finish_reason(stop_reason: Any) -> str:
    """The OpenAI finish_reason of an Anthropic stop_reason ("stop" for unknown ones)."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_of(raw: Any) -> Usage:
    """Our Usage of an Anthropic `usage` object."""
    cache_read = count_of(field_of(raw, "cache_read_input_tokens"))
    cache_write = count_of(field_of(raw, "cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=count_of(field_of(raw, "input_tokens")) + cache_read + cache_write,
        completion_tokens=count_of(field_of(raw, "output_tokens")),
        cached_prompt_tokens=cache_read,
        reasoning_tokens=count_of(field_of(field_of(raw, "output_tokens_details"),
                                           "thinking_tokens")),
        cache_write_prompt_tokens=cache_write,
    )


def completion_of(body: bytes, created: int) -> Completion:
    """Translate a Messages API answer into a chat.completion Completion."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(200, INVALID) from exc
    blocks = field_of(message, "content")
    if not isinstance(blocks, list):
        raise UpstreamUnavailable(200, INVALID)
    texts: list[str] = []
    thoughts: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = field_of(block, "type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            tool_calls.append(tool_call(block.get("id"), block.get("name"),
                                        orjson.dumps(block.get("input") or {}).decode()))
        elif kind == "thinking":
            thoughts.append(str(block.get("thinking") or ""))
            thinking_blocks.append({"type": "thinking", "thinking": thoughts[-1],
                                    "signature": str(block.get("signature") or "")})
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking",
                                    "data": str(block.get("data") or "")})
    text = "".join(texts)
    out: dict[str, Any] = {"role": "assistant",
                           "content": None if tool_calls and not text else text}
    if tool_calls:
        out["tool_calls"] = tool_calls
    if thinking_blocks:
        out["reasoning_content"] = "".join(thoughts)
        out["thinking_blocks"] = thinking_blocks
    reason = finish_reason(field_of(message, "stop_reason"))
    raw_usage = field_of(message, "usage")
    usage = usage_of(raw_usage) if isinstance(raw_usage, dict) else None
    completion = {
        "id": str(field_of(message, "id") or ""), "object": "chat.completion",
        "created": created, "model": str(field_of(message, "model") or ""),
        "choices": [{"index": 0, "message": out, "logprobs": None, "finish_reason": reason}],
    }
    if usage is not None:
        completion["usage"] = usage_json(usage)
    return Completion(orjson.dumps(completion), usage, reason, text)


def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    """An OpenAI tool call of a `tool_use` block."""
    return {"id": str(call_id or ""), "type": "function",
            "function": {"name": str(name or ""), "arguments": arguments}}
