"""What the SDK parsed from the gateway, in one shape for both modes, and its assertions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from openai import AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conformance.cases import Answer


@dataclass
class ToolCallSeen:
    """A tool call as the SDK gave it (a stream's pieces joined)."""

    id: str = ""
    type: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Result:
    """The answer the SDK parsed: text, tool calls, finish_reason, usage."""

    text: str
    calls: list[ToolCallSeen]
    finish: str | None
    usage: CompletionUsage | None
    argument_deltas: list[int] = field(default_factory=list)
    reasoning: str = ""  # `reasoning_content`, where the gateway surfaces vendor thinking

    def assert_matches(self, answer: Answer, *, native_ids: bool) -> None:
        """Assert this is exactly `answer` (tool ids: the vendor's own, or present and unique)."""
        assert self.text == answer.text
        assert [(c.type, c.name) for c in self.calls] == [("function", c.name)
                                                           for c in answer.calls]
        assert [json.loads(c.arguments) for c in self.calls] == [c.arguments
                                                                  for c in answer.calls]
        ids = [c.id for c in self.calls]
        if native_ids:
            assert ids == [c.id for c in answer.calls]
        assert all(ids) and len(set(ids)) == len(ids), ids
        assert self.finish == answer.finish
        self.assert_usage(answer)

    def assert_usage(self, answer: Answer) -> None:
        """Token counts, with cached and reasoning details required when nonzero."""
        usage = self.usage
        assert usage is not None, "no usage"
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
            answer.prompt, answer.completion, answer.prompt + answer.completion)
        prompt_details, completion_details = (usage.prompt_tokens_details,
                                              usage.completion_tokens_details)
        cached = prompt_details.cached_tokens if prompt_details else None
        reasoning = completion_details.reasoning_tokens if completion_details else None
        assert (cached or 0, reasoning or 0) == (answer.cached, answer.reasoning)
        if answer.cached:
            assert cached == answer.cached
        if answer.reasoning:
            assert reasoning == answer.reasoning


def from_completion(completion: ChatCompletion) -> Result:
    """The result of a non-streamed answer (one choice)."""
    assert completion.object == "chat.completion" and len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    calls = [ToolCallSeen(c.id, c.type, c.function.name, c.function.arguments)
             for c in choice.message.tool_calls or [] if c.type == "function"]
    reasoning = (choice.message.model_extra or {}).get("reasoning_content") or ""
    return Result(choice.message.content or "", calls, choice.finish_reason, completion.usage,
                  reasoning=reasoning)


async def collect_stream(stream: AsyncStream[ChatCompletionChunk]) -> Result:
    """The result of a stream, checking its shape: one id, one finish, usage chunk last."""
    chunks = [chunk async for chunk in stream]
    assert chunks, "empty stream"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None, "usage chunk not last"
    assert all(c.usage is None for c in chunks[:-1]), "usage before the last chunk"
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, ToolCallSeen] = {}
    deltas: dict[int, int] = {}
    finishes = []
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            assert choice.index == 0
            text.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
            for piece in choice.delta.tool_calls or []:
                seen = calls.setdefault(piece.index, ToolCallSeen())
                seen.id = seen.id or (piece.id or "")
                seen.type = seen.type or (piece.type or "")
                if piece.function is not None:
                    seen.name = seen.name or (piece.function.name or "")
                    if piece.function.arguments:
                        seen.arguments += piece.function.arguments
                        deltas[piece.index] = deltas.get(piece.index, 0) + 1
    assert len(finishes) == 1, f"finish reasons {finishes}"
    ordered = [calls[i] for i in sorted(calls)]
    return Result("".join(text), ordered, finishes[0], usage_chunk.usage,
                  [deltas.get(i, 0) for i in sorted(calls)], "".join(reasoning))
