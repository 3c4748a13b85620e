"""A lenient server-sent events decoder for upstream chat streams.

It follows the SSE rules (fields, comments, events ended by a blank line, multi-line
data joined by newlines) and forgives what real upstreams get wrong: a last event
without its blank line, and several JSON chunks in one event when the blank lines
between them were left out.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

import orjson

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type ("message" unless named) and its data."""

    event: str
    data: str


async def aiter_events(lines: AsyncIterable[str]) -> AsyncGenerator[SSEEvent, None]:
    """Decode lines (without line terminators) into events."""
    data: list[str] = []
    event = ""
    async for line in lines:
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data))


def split_payloads(data: str) -> list[str]:
    """The payloads an event's data holds: the data itself, or one per line if joined."""
    if "\n" not in data or data == DONE or _is_json(data):
        return [data]
    return [line.strip() for line in data.split("\n") if line.strip()]


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
