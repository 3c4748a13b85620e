"""Gemini `streamGenerateContent?alt=sse` events as OpenAI chat.completion.chunks.

Each event is a whole GenerateContentResponse holding the next parts of each candidate.
A candidate's first event is preceded by a role chunk (`{"role": "assistant",
"content": ""}`, not output, as OpenAI sends it); then each event becomes one chunk
with `content`, `reasoning_content` and `tool_calls` deltas (Gemini sends a call whole,
so its id, name and all arguments come in one delta, indexed in the order the calls
came) and the finish reason. usageMetadata is cumulative: once every candidate has
finished, the last one seen becomes the usage chunk (`choices: []`), always counted,
forwarded only when the client asked for it. Gemini ends the stream without `[DONE]`:
a finished candidate proves it whole.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import StreamPiece, Usage, field_of, usage_json
from services.router.providers.gemini_errors import blocked_prompt, stream_error
from services.router.providers.gemini_response import (
    candidate_index,
    completion_id,
    finish_reason,
    read_parts,
    usage_of,
)


class GeminiStream:
    """Translates one stream's events, in order; `read` is an EventReader callback."""

    def __init__(self, model: str, created: int, *, forward_usage: bool) -> None:
        self._model = model
        self._created = created
        self._forward_usage = forward_usage
        self._id = ""
        self._calls: dict[int, int] = {}  # candidate -> tool calls so far (delta indexes)
        self._finished: set[int] = set()
        self._usage: Usage | None = None
        self._usage_sent = False

    def read(self, event: bytes, payload: bytes) -> list[StreamPiece]:
        """The pieces of one event; raise for an in-band error or a blocked prompt."""
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk") from exc
        if not isinstance(answer, dict):
            raise UpstreamUnavailable(200, "the upstream sent an invalid stream chunk")
        if (error := stream_error(answer)) is not None:
            raise error
        if (blocked := blocked_prompt(answer)) is not None:
            raise blocked
        if not self._id:
            self._id = completion_id(answer)
            version = answer.get("modelVersion")
            self._model = version if isinstance(version, str) and version else self._model
        self._usage = usage_of(answer.get("usageMetadata")) or self._usage
        candidates = answer.get("candidates")
        pieces: list[StreamPiece] = []
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
            pieces.extend(self._candidate(candidate, position))
        if self._finished and not self._usage_sent and self._usage is not None \
                and self._finished.issuperset(self._calls):
            self._usage_sent = True
            chunk = self._chunk([], usage_json(self._usage))
            pieces.append(StreamPiece(chunk if self._forward_usage else None,
                                      usage=self._usage, is_last=True))
        return pieces

    def _candidate(self, candidate: Any, position: int) -> list[StreamPiece]:
        index = candidate_index(candidate, position)
        pieces: list[StreamPiece] = []
        if index not in self._calls:
            self._calls[index] = 0
            role = {"index": index, "delta": {"role": "assistant", "content": ""},
                    "logprobs": None, "finish_reason": None}
            pieces.append(StreamPiece(self._chunk([role])))
        first = self._calls[index]
        parts = read_parts(candidate, self._id, index, first)
        self._calls[index] += len(parts.tool_calls)
        delta: dict[str, Any] = {}
        if parts.text:
            delta["content"] = parts.text
        if parts.reasoning:
            delta["reasoning_content"] = parts.reasoning
        if parts.tool_calls:
            delta["tool_calls"] = [call.as_json(first + k)
                                   for k, call in enumerate(parts.tool_calls)]
        reason = finish_reason(field_of(candidate, "finishReason"), self._calls[index] > 0)
        if reason:
            self._finished.add(index)
        if delta or reason:
            choice = {"index": index, "delta": delta, "logprobs": None,
                      "finish_reason": reason or None}
            main = index == 0
            pieces.append(StreamPiece(self._chunk([choice]), parts.text if main else "",
                                      reason if main else "", is_output=True))
        return pieces

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        return orjson.dumps({"id": self._id, "object": "chat.completion.chunk",
                             "created": self._created, "model": self._model,
                             "choices": choices, "usage": usage})


def finishes(pieces: list[StreamPiece]) -> bool:
    """True when an event's pieces finish the answer (EventReader's `finishes`)."""
    return any(piece.finish_reason or piece.is_last for piece in pieces)
