"""A scripted OpenAI-format answer, for fakes that speak the OpenAI wire (Azure, OpenAI).

A test queues one `ScriptedAnswer` per request it expects: an HTTP error status, or the
whole `chat.completion` and the `chat.completion.chunk` objects of its stream. The fake
sends the chunks as given, leaving out the usage chunk (empty `choices`, with `usage`)
unless the request asked for it with `stream_options.include_usage`, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class ScriptedAnswer:
    """What a fake answers to one chat request: an error status, or a body and chunks."""

    status: int = 0
    completion: Json = field(default_factory=dict)
    chunks: tuple[Json, ...] = ()

    def stream(self, body: Mapping[str, Any]) -> Iterator[Json]:
        """The chunks to send for the request `body` (its include_usage honoured)."""
        options = body.get("stream_options")
        include = isinstance(options, dict) and bool(options.get("include_usage"))
        for chunk in self.chunks:
            if chunk.get("choices") == [] and "usage" in chunk and not include:
                continue
            yield chunk
