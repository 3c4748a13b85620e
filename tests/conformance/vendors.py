"""The four vendors' fakes, scripted from one `Answer` or `Failure` in OpenAI's terms.

Each `Vendor` turns the outcome a cell expects into what its vendor would send for it
(usage in the vendor's own arithmetic, finish reasons in its words), queues that for the
next request, and reads back what the provider sent upstream.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from tests.conformance.cases import Answer, Failure
from tests.e2e import fake_wire
from tests.e2e.fake_openai import FakeOpenAI
from tests.fakes import anthropic_fake as anth
from tests.fakes import gemini_fake as gem
from tests.fakes.azure_fake import AzureFake
from tests.fakes.openai_script import ScriptedAnswer

Json = dict[str, Any]
UPSTREAM_MODEL = "gpt-conformance"
ARGUMENT_PIECE = 7  # characters of tool arguments per streamed delta, as vendors split them


class Vendor(Protocol):
    """One vendor's fake behind one channel of the stack."""

    name: str
    native_ids: bool

    def arm(self, outcome: Answer | Failure) -> None:
        """Queue the vendor's wire answer for `outcome` for the next request."""

    def sent(self) -> list[Json]:
        """The bodies of every request the provider sent upstream, in order."""


@dataclass
class ScriptedOpenAI(FakeOpenAI):
    """The e2e OpenAI fake whose chat answers come from queued `ScriptedAnswer`s."""

    scripted: deque[ScriptedAnswer] = field(default_factory=deque)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self.scripted:
            return await super()._chat(request)
        answer, body = self.scripted.popleft(), await request.json()
        if answer.status:
            return web.json_response(fake_wire.error_body(answer.status), status=answer.status)
        if not body.get("stream"):
            return web.json_response(answer.completion)
        return await self._sse(request, (fake_wire.event(c) for c in answer.stream(body)))


def openai_usage(answer: Answer) -> Json:
    """OpenAI's usage object for `answer`."""
    return {"prompt_tokens": answer.prompt, "completion_tokens": answer.completion,
            "total_tokens": answer.prompt + answer.completion,
            "prompt_tokens_details": {"cached_tokens": answer.cached},
            "completion_tokens_details": {"reasoning_tokens": answer.reasoning}}


def pieces(text: str, size: int = ARGUMENT_PIECE) -> list[str]:
    """`text` cut in pieces of `size` characters."""
    return [text[i:i + size] for i in range(0, len(text), size)]


def openai_script(answer: Answer | Failure, model: str) -> ScriptedAnswer:
    """The chat.completion and chunks an OpenAI-wire upstream sends for `answer`."""
    if isinstance(answer, Failure):
        return ScriptedAnswer(status=answer.status)
    calls: list[Json] = [{"id": c.id, "type": "function",
              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
             for c in answer.calls]
    message: Json = {"role": "assistant", "content": answer.text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    head = {"id": "chatcmpl-conformance", "created": 1, "model": model,
            "system_fingerprint": "fp_conformance"}
    completion = {**head, "object": "chat.completion", "usage": openai_usage(answer),
                  "choices": [{"index": 0, "message": message, "logprobs": None,
                               "finish_reason": answer.finish}]}
    deltas: list[Json] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": word} for word in pieces(answer.text, 6)]
    for index, call in enumerate(calls):
        deltas.append({"tool_calls": [{"index": index, **call,
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                   for piece in pieces(call["function"]["arguments"])]
    chunk = {**head, "object": "chat.completion.chunk"}
    chunks = [{**chunk, "choices": [{"index": 0, "delta": d, "logprobs": None,
                                     "finish_reason": None}]} for d in deltas]
    chunks.append({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                         "finish_reason": answer.finish}]})
    chunks.append({**chunk, "choices": [], "usage": openai_usage(answer)})
    return ScriptedAnswer(completion=completion, chunks=tuple(chunks))


@dataclass
class OpenAIVendor:
    """The `openai` channel on the e2e OpenAI fake."""

    fake: ScriptedOpenAI
    name: str = "openai"
    native_ids: bool = True

    def arm(self, outcome: Answer | Failure) -> None:
        """Queue the answer."""
        self.fake.scripted.append(openai_script(outcome, UPSTREAM_MODEL))

    def sent(self) -> list[Json]:
        """The chat bodies received."""
        return [r.json() for r in self.fake.to("/v1/chat/completions")]


@dataclass
class AzureVendor:
    """The `azure` channel on the Azure fake (one deployment)."""

    fake: AzureFake
    name: str = "azure"
    native_ids: bool = True

    def arm(self, outcome: Answer | Failure) -> None:
        """Queue the answer."""
        self.fake.scripted.append(openai_script(outcome, UPSTREAM_MODEL))

    def sent(self) -> list[Json]:
        """The chat bodies received."""
        return [dict(c.body) for c in self.fake.calls if c.operation == "chat/completions"]


ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def anthropic_reply(outcome: Answer | Failure) -> anth.Reply:
    """The Messages API reply for `outcome` (prompt = input + cache read tokens)."""
    if isinstance(outcome, Failure):
        return anth.Reply(status=outcome.status, error_type=ANTHROPIC_ERRORS[outcome.status])
    blocks: list[anth.Text | anth.ToolUse | anth.Thinking] = []
    if outcome.thinking:
        blocks.append(anth.Thinking(outcome.thinking))
    if outcome.text:
        blocks.append(anth.Text(outcome.text))
    blocks += [anth.ToolUse(c.id, c.name, c.arguments) for c in outcome.calls]
    stop = {"tool_calls": "tool_use", "length": "max_tokens"}.get(outcome.finish, "end_turn")
    if outcome.stop_sequence:
        stop = "stop_sequence"
    return anth.Reply(tuple(blocks), stop, outcome.stop_sequence,
                      input_tokens=outcome.prompt - outcome.cached,
                      output_tokens=outcome.completion, cache_read=outcome.cached,
                      thinking_tokens=outcome.reasoning or None)


@dataclass
class AnthropicVendor:
    """The `anthropic` channel on the Anthropic fake."""

    fake: anth.AnthropicFake
    name: str = "anthropic"
    native_ids: bool = True

    def arm(self, outcome: Answer | Failure) -> None:
        """Queue the reply."""
        self.fake.script(anthropic_reply(outcome))

    def sent(self) -> list[Json]:
        """The Messages bodies received."""
        return [r.body for r in self.fake.requests]


def gemini_events(outcome: Answer) -> tuple[Json, list[Json]]:
    """The generateContent answer and the stream events for `outcome`."""
    thought = [{"text": outcome.thinking, "thought": True}] if outcome.thinking else []
    calls = [gem.call_part(c.name, c.arguments) for c in outcome.calls]
    finish = "MAX_TOKENS" if outcome.finish == "length" else "STOP"
    usage = gem.usage_metadata(outcome.prompt, outcome.completion - outcome.reasoning,
                               cached=outcome.cached, thoughts=outcome.reasoning)
    text = [{"text": outcome.text}] if outcome.text else []
    whole = gem.response(thought + text + calls, finish, usage=usage)
    half = len(outcome.text) // 2
    if half == 0:
        return whole, [whole]
    first = gem.response([*thought, {"text": outcome.text[:half]}], None)
    last = gem.response([{"text": outcome.text[half:]}, *calls], finish, usage=usage)
    return whole, [first, last]


@dataclass
class GeminiVendor:
    """The `gemini` channel on the Gemini fake."""

    fake: gem.GeminiFake
    name: str = "gemini"
    native_ids: bool = False  # Gemini calls have no ids; the provider makes them

    def arm(self, outcome: Answer | Failure) -> None:
        """Set the answer and events, or queue the failure."""
        if isinstance(outcome, Failure):
            self.fake.fail(outcome.status, "scripted failure")
            return
        self.fake.answer, self.fake.events = gemini_events(outcome)

    def sent(self) -> list[Json]:
        """The generateContent bodies received."""
        return [r.body for r in self.fake.received]
