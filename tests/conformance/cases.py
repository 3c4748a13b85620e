"""The rows of issue 4's conformance matrix: what the client asks, what it must get back.

Each `Case` is one request in the OpenAI format and the result the `openai` SDK must
parse from the gateway: an `Answer` (text, tool calls, finish_reason, usage), or an
`Failure` (the upstream's HTTP status and the SDK exception the gateway must raise).
The vendors' fakes are scripted from the same `Answer` (tests/conformance/vendors.py),
so a cell passes only when the provider translated the vendor's answer exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import openai

VENDORS = ("openai", "azure", "anthropic", "gemini")
MODES = ("stream", "non-stream")
# A 1x1 PNG, sent as a data URL (the providers pass data URLs inline).
PNG_DATA_URL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42"
                "mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}}
TIME_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@dataclass(frozen=True)
class Call:
    """One tool call of an answer (`id` is the vendor's own id; Gemini has none)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """The OpenAI-format result a cell expects; usage in OpenAI's terms.

    `thinking` is reasoning text the vendor sends alongside (Anthropic thinking block,
    Gemini thought part); `stop_sequence` is the one that ended the text, if any.
    """

    text: str = ""
    calls: tuple[Call, ...] = ()
    finish: str = "stop"
    prompt: int = 12
    completion: int = 7
    cached: int = 0
    reasoning: int = 0
    thinking: str = ""
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Failure:
    """An upstream HTTP error, and what the gateway answers the SDK with."""

    status: int
    error: type[openai.APIStatusError]
    gateway_status: int
    error_type: str


@dataclass(frozen=True)
class Case:
    """One row: its request (keyword arguments of chat.completions.create) and outcome.

    `not_applicable` maps a vendor or a mode to why the cell does not exist there;
    `notes` maps a vendor to how the case differs there (shown in the matrix).
    """

    name: str
    title: str
    request: dict[str, Any]
    outcome: Answer | Failure
    not_applicable: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def skip_reason(self, vendor: str, mode: str) -> str:
        """Why the cell (vendor, mode) is n/a, or "" when it applies."""
        return self.not_applicable.get(vendor) or self.not_applicable.get(mode, "")


def cell_id(case: str, vendor: str, mode: str) -> str:
    """The pytest id of one cell (the matrix printer reads results by it)."""
    return f"{case}-{vendor}-{mode}"


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


GREETING = "Hello from the conformance upstream, friend."
PARALLEL = (Call("call_weather_1", "get_weather", {"city": "Paris"}),
            Call("call_time_2", "get_time", {"city": "Tokyo"}))
LONG_ARGS = Call("call_long_1", "get_weather",
                 {"city": "Santa Cruz de la Sierra", "days": 14})
TOOL_TURN = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_prev_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_prev_1", "content": '{"celsius": 21}'},
]
# Upstream status: the SDK's class, the gateway's status and the envelope's `type`.
# 401 is our channel's key, not the client's: the gateway's 502, like 500 and 529.
FAILURES: dict[int, tuple[type[openai.APIStatusError], int, str]] = {
    400: (openai.BadRequestError, 400, "invalid_request_error"),
    401: (openai.InternalServerError, 502, "server_error"),
    429: (openai.RateLimitError, 429, "rate_limit_error"),
    500: (openai.InternalServerError, 502, "server_error"),
    529: (openai.InternalServerError, 502, "server_error"),
}
NO_529 = "the vendor has no 529 (overloaded is Anthropic's status)"


def _failure(status: int) -> Case:
    error, gateway, kind = FAILURES[status]
    not_applicable = {} if status != 529 else {"openai": NO_529, "azure": NO_529,
                                               "gemini": NO_529}
    return Case(f"upstream_{status}", f"upstream {status}", {"messages": _user("Hi")},
                Failure(status, error, gateway, kind), not_applicable)


CASES: tuple[Case, ...] = (
    Case("text", "text", {"messages": _user("Say hello")}, Answer(GREETING)),
    Case("multi_turn_system", "multi-turn with system", {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"}]}, Answer("Hello again.")),
    Case("image_input", "image input", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}]},
        Answer("A tiny transparent square.")),
    Case("single_tool_call", "single tool call",
         {"messages": _user("Weather in Paris?"), "tools": [WEATHER_TOOL]},
         Answer(calls=(PARALLEL[0],), finish="tool_calls")),
    Case("parallel_tool_calls", "parallel tool calls",
         {"messages": _user("Paris weather, Tokyo time?"), "tools": [WEATHER_TOOL, TIME_TOOL]},
         Answer(calls=PARALLEL, finish="tool_calls")),
    Case("streamed_tool_arguments", "streamed tool arguments",
         {"messages": _user("Two weeks in Santa Cruz?"), "tools": [WEATHER_TOOL]},
         Answer(calls=(LONG_ARGS,), finish="tool_calls"),
         {"non-stream": "arguments stream only in a stream"},
         {"gemini": "Gemini streams each function call whole: its arguments come in one delta"}),
    Case("tool_results_turn", "tool results turn", {"messages": TOOL_TURN,
                                                    "tools": [WEATHER_TOOL]},
         Answer("It is 21 degrees in Paris.")),
    Case("json_mode", "JSON mode", {"messages": _user("Give JSON"),
                                    "response_format": {"type": "json_object"}},
         Answer('{"ok": true}')),
    Case("stop_sequence", "stop sequence", {"messages": _user("Count"), "stop": ["END"]},
         Answer("one two three", stop_sequence="END")),
    Case("length_finish", "length finish", {"messages": _user("Tell a story"),
                                            "max_tokens": 5},
         Answer("Once upon a time", finish="length", completion=5)),
    Case("usage_cache_reasoning", "usage with cache and reasoning tokens",
         {"messages": _user("Think, then answer")},
         Answer("Forty-two.", prompt=40, completion=30, cached=25, reasoning=22,
                thinking="Let me think it through.")),
    *(_failure(status) for status in (400, 401, 429, 500, 529)),
)
