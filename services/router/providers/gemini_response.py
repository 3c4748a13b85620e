"""A Gemini `generateContent` answer as an OpenAI chat.completion.

- parts: text to `content`, thought parts (`thought: true`) to `reasoning_content`,
  `functionCall` to `tool_calls` (ids and thought signatures: see `gemini_ids`).
- finishReason: STOP to stop (tool_calls when the candidate called a function),
  MAX_TOKENS to length, the safety family to content_filter, anything else to stop.
- usageMetadata: promptTokenCount to prompt_tokens, candidatesTokenCount plus
  thoughtsTokenCount to completion_tokens (OpenAI counts reasoning as completion),
  cachedContentTokenCount to cached_tokens, thoughtsTokenCount to reasoning_tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import (
    Completion,
    Usage,
    count_of,
    field_of,
    loads_or_none,
    usage_json,
)
from services.router.providers.gemini_errors import blocked_prompt
from services.router.providers.gemini_ids import extra_content, tool_call_id

FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
    "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "LANGUAGE": "content_filter",
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call of a candidate, with its OpenAI id."""

    id: str
    name: str
    arguments: str
    signature: str

    def as_json(self, index: int | None = None) -> dict[str, Any]:
        """The OpenAI tool call (with `index` for a stream delta)."""
        call: dict[str, Any] = {} if index is None else {"index": index}
        call.update(id=self.id, type="function",
                    function={"name": self.name, "arguments": self.arguments})
        if self.signature:
            call["extra_content"] = extra_content(self.signature)
        return call


@dataclass(frozen=True, slots=True)
class CandidateParts:
    """What a candidate's parts (of one answer, or one stream chunk) hold."""

    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]


def read_parts(candidate: Any, seed: str, index: int, first_call: int = 0) -> CandidateParts:
    """The text, thoughts and calls of candidate `index`; calls numbered from `first_call`."""
    parts = field_of(field_of(candidate, "content"), "parts")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    position = f"{seed}/{index}"
    for part in parts if isinstance(parts, list) else ():
        call = field_of(part, "functionCall")
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            arguments = orjson.dumps(call.get("args") or {}).decode()
            signature = field_of(part, "thoughtSignature")
            signature = signature if isinstance(signature, str) else ""
            calls.append(ToolCall(
                tool_call_id(position, str(first_call + len(calls)), call["name"], arguments,
                             signature),
                call["name"], arguments, signature))
            continue
        text = field_of(part, "text")
        if isinstance(text, str):
            (thoughts if field_of(part, "thought") is True else texts).append(text)
    return CandidateParts("".join(texts), "".join(thoughts), tuple(calls))


def candidate_index(candidate: Any, default: int) -> int:
    """The candidate's `index` (Gemini omits it for the first)."""
    index = field_of(candidate, "index")
    return index if isinstance(index, int) and not isinstance(index, bool) else default


def finish_reason(raw: Any, called: bool) -> str:
    """The OpenAI finish_reason of a Gemini finishReason ("" while unfinished)."""
    if not isinstance(raw, str) or not raw or raw == "FINISH_REASON_UNSPECIFIED":
        return ""
    mapped = FINISH_REASONS.get(raw, "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def usage_of(metadata: Any) -> Usage | None:
    """The Usage of a usageMetadata object, or None when there is none."""
    if not isinstance(metadata, dict):
        return None
    thoughts = count_of(metadata.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=count_of(metadata.get("promptTokenCount"))
        + count_of(metadata.get("toolUsePromptTokenCount")),
        completion_tokens=count_of(metadata.get("candidatesTokenCount")) + thoughts,
        cached_prompt_tokens=count_of(metadata.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def completion_id(answer: Any) -> str:
    """The chat.completion id: Gemini's responseId when it sent one."""
    response_id = field_of(answer, "responseId")
    return "chatcmpl-" + (response_id if isinstance(response_id, str) and response_id
                          else uuid.uuid4().hex)


def completion_of(body: bytes, model: str, created: int) -> Completion:
    """Translate a whole generateContent answer; raise for a blocked prompt."""
    answer = loads_or_none(body)
    if not isinstance(answer, dict):
        raise UpstreamUnavailable(200, "the upstream sent an invalid response")
    if (blocked := blocked_prompt(answer)) is not None:
        raise blocked
    candidates = answer.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise UpstreamUnavailable(200, "the upstream sent no candidates")
    seed = completion_id(answer)
    choices = [_choice(candidate, position, seed) for position, candidate
               in enumerate(candidates)]
    usage = usage_of(answer.get("usageMetadata"))
    version = answer.get("modelVersion")
    result: dict[str, Any] = {
        "id": seed, "object": "chat.completion", "created": created,
        "model": version if isinstance(version, str) and version else model,
        "choices": choices,
    }
    if usage is not None:
        result["usage"] = usage_json(usage)
    first = choices[0]
    content = first["message"]["content"]
    return Completion(orjson.dumps(result), usage, first["finish_reason"] or "stop",
                      content if isinstance(content, str) else "")


def _choice(candidate: Any, position: int, seed: str) -> dict[str, Any]:
    index = candidate_index(candidate, position)
    parts = read_parts(candidate, seed, index)
    message: dict[str, Any] = {"role": "assistant",
                               "content": parts.text if parts.text or not parts.tool_calls
                               else None,
                               "refusal": None}
    if parts.reasoning:
        message["reasoning_content"] = parts.reasoning
    if parts.tool_calls:
        message["tool_calls"] = [call.as_json() for call in parts.tool_calls]
    reason = finish_reason(field_of(candidate, "finishReason"), bool(parts.tool_calls))
    return {"index": index, "message": message,
            "logprobs": None, "finish_reason": reason or "stop"}
