"""What each case must have sent upstream, in each vendor's own format.

A result cell alone could pass with a provider that dropped the system prompt or the
image; these checks pin the translation of the request too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Json = dict[str, Any]
Check = Callable[[Json], bool]
OPENAI_WIRE = ("openai", "azure")


def _texts(value: Any) -> str:
    """Every string inside `value`, joined (to find a phrase wherever a format puts it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_texts(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_texts(v) for v in value)
    return ""


def _parts(body: Json) -> list[Json]:
    """Every part of every Gemini content."""
    return [p for c in body.get("contents", []) for p in c.get("parts", [])]


def _blocks(body: Json) -> list[Json]:
    """Every block of every Anthropic message (string contents left out)."""
    return [b for m in body.get("messages", []) if isinstance(m.get("content"), list)
            for b in m["content"]]


def _roles(body: Json, key: str) -> list[str]:
    return [m.get("role", "") for m in body.get(key, [])]


def _gen(body: Json) -> Json:
    config: Json = body.get("generationConfig") or {}
    return config


def _tool_names(vendor: str, body: Json) -> list[str]:
    if vendor in OPENAI_WIRE:
        return [t["function"]["name"] for t in body.get("tools", [])]
    if vendor == "anthropic":
        return [t["name"] for t in body.get("tools", [])]
    return [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]


SYSTEM: dict[str, Check] = {
    "openai": lambda b: _roles(b, "messages") == ["system", "user", "assistant", "user"],
    "anthropic": lambda b: "You are terse." in _texts(b.get("system"))
    and _roles(b, "messages") == ["user", "assistant", "user"],
    "gemini": lambda b: "You are terse." in _texts(b.get("systemInstruction"))
    and _roles(b, "contents") == ["user", "model", "user"],
}
IMAGE: dict[str, Check] = {
    "openai": lambda b: any(p.get("type") == "image_url"
                            for p in b["messages"][0]["content"]),
    "anthropic": lambda b: any(x.get("type") == "image"
                               and x["source"].get("media_type") == "image/png"
                               for x in _blocks(b)),
    "gemini": lambda b: any(p.get("inlineData", {}).get("mimeType") == "image/png"
                            for p in _parts(b)),
}
TOOL_RESULT: dict[str, Check] = {
    "openai": lambda b: b["messages"][-1].get("tool_call_id") == "call_prev_1",
    "anthropic": lambda b: any(x.get("type") == "tool_result"
                               and x.get("tool_use_id") == "call_prev_1" for x in _blocks(b))
    and any(x.get("type") == "tool_use" and x.get("id") == "call_prev_1" for x in _blocks(b)),
    "gemini": lambda b: any(p.get("functionResponse", {}).get("name") == "get_weather"
                            for p in _parts(b))
    and any(p.get("functionCall", {}).get("name") == "get_weather" for p in _parts(b)),
}
JSON_MODE: dict[str, Check] = {
    "openai": lambda b: b.get("response_format") == {"type": "json_object"},
    # Anthropic has no JSON mode without a schema: the provider asks for JSON in the system.
    "anthropic": lambda b: "JSON" in _texts(b.get("system")),
    "gemini": lambda b: _gen(b).get("responseMimeType") == "application/json",
}
STOP: dict[str, Check] = {
    "openai": lambda b: b.get("stop") == ["END"],
    "anthropic": lambda b: b.get("stop_sequences") == ["END"],
    "gemini": lambda b: _gen(b).get("stopSequences") == ["END"],
}
LENGTH: dict[str, Check] = {
    "openai": lambda b: 5 in (b.get("max_tokens"), b.get("max_completion_tokens")),
    "anthropic": lambda b: b.get("max_tokens") == 5,
    "gemini": lambda b: _gen(b).get("maxOutputTokens") == 5,
}
BY_CASE = {"multi_turn_system": SYSTEM, "image_input": IMAGE, "tool_results_turn": TOOL_RESULT,
           "json_mode": JSON_MODE, "stop_sequence": STOP, "length_finish": LENGTH}
TOOLS = {"single_tool_call": ["get_weather"], "parallel_tool_calls": ["get_weather", "get_time"],
         "streamed_tool_arguments": ["get_weather"], "tool_results_turn": ["get_weather"]}


def check_sent(case: str, vendor: str, body: Json, stream: bool) -> None:
    """Assert the upstream request `body` carried what case `case` asked for."""
    checks = BY_CASE.get(case, {})
    check = checks.get("openai" if vendor in OPENAI_WIRE else vendor)
    if check is not None:
        assert check(body), f"{case}: {vendor} was sent {body}"
    if case in TOOLS:
        assert _tool_names(vendor, body) == TOOLS[case], body
    if vendor in OPENAI_WIRE:
        assert bool(body.get("stream")) == stream
    elif vendor == "anthropic":
        assert bool(body.get("stream")) == stream and body["model"] == "claude-sonnet-4-5"
