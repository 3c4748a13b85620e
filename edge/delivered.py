"""The generated text of what a request delivered, for billing when usage never came.

Readers never raise: a piece they cannot read contributes no text. They run only when
the router reported no usage (a cut stream, a client gone), never per chunk on the hot
path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from edge.sse import event_data

TextReader = Callable[[bytes], list[str]]
_DELTA_KEYS = ("content", "reasoning_content", "refusal")
_RESPONSE_DELTAS = frozenset({
    "response.output_text.delta", "response.refusal.delta",
    "response.function_call_arguments.delta", "response.reasoning_summary_text.delta",
})


def _json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _strings(values: Iterable[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str) and value]


def _choices(data: Any) -> list[Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _call_arguments(calls: Any) -> list[Any]:
    if not isinstance(calls, list):
        return []
    return [(c.get("function") or {}).get("arguments") for c in calls if isinstance(c, dict)]


def no_texts(_: bytes) -> list[str]:
    """For endpoints that generate no text (embeddings)."""
    return []


def delta_texts(chunk: bytes) -> list[str]:
    """The generated text in one chat.completion.chunk: content, reasoning, tool arguments."""
    texts: list[str] = []
    for choice in _choices(_json(chunk)):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            texts += _strings(delta.get(key) for key in _DELTA_KEYS)
            texts += _strings(_call_arguments(delta.get("tool_calls")))
    return texts


def message_texts(body: bytes) -> list[str]:
    """The generated text of a chat.completion body."""
    texts: list[str] = []
    for choice in _choices(_json(body)):
        message = choice.get("message")
        if isinstance(message, dict):
            texts += _strings([message.get("content")])
            texts += _strings(_call_arguments(message.get("tool_calls")))
    return texts


def completion_texts(body: bytes) -> list[str]:
    """The generated text of a legacy text_completion body."""
    return _strings(choice.get("text") for choice in _choices(_json(body)))


def completion_event_texts(event: bytes) -> list[str]:
    """The generated text of one legacy completion SSE event."""
    return completion_texts(event_data(event) or b"")


def response_event_texts(event: bytes) -> list[str]:
    """The generated text of one Responses SSE event (its text and argument deltas)."""
    data = _json(event_data(event))
    if not isinstance(data, dict) or data.get("type") not in _RESPONSE_DELTAS:
        return []
    return _strings([data.get("delta")])


def response_texts(body: bytes) -> list[str]:
    """The generated text of a Responses `response` object: its output items' text."""
    data = _json(body)
    output = data.get("output") if isinstance(data, dict) else None
    texts: list[str] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        texts += _strings([item.get("arguments")])
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict):
                texts += _strings([part.get("text"), part.get("refusal")])
    return texts
