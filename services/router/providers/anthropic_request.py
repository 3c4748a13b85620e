"""An OpenAI chat completion request as an Anthropic Messages API body.

Decisions (documented here, tested in tests/unit/router/test_anthropic_request.py):
- `max_tokens` is required by Anthropic: the client's `max_completion_tokens` /
  `max_tokens`, else DEFAULT_MAX_TOKENS (4096, what every Claude family can produce and
  the catalog's default cap) plus the thinking budget when thinking is on.
- `reasoning_effort` turns extended thinking on with THINKING_BUDGETS (low 1024, medium
  4096, high 16384 tokens; `minimal`/`none` leave it off). As in OpenAI, a client's
  `max_tokens` covers reasoning too, so the budget is cut to fit below it; when less
  than Anthropic's minimum (1024) would fit, thinking stays off. With thinking on,
  `temperature`, `top_p` and a forced `tool_choice` are not sent (Anthropic refuses them).
- `temperature` is clamped to Anthropic's range 0..1 (OpenAI allows 0..2).
- `response_format` `json_schema` becomes Anthropic's structured output
  (`output_config.format` with the schema); `json_object`, which has no schema, becomes
  a system instruction to answer with one JSON object only.
- `tool_choice`: auto/none as is, required -> any, a named function -> tool;
  `parallel_tool_calls: false` -> `disable_parallel_tool_use`.
- `user` -> `metadata.user_id`. `n` above 1 is refused (Anthropic answers one choice).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.router.providers.anthropic_messages import Block, conversation, rejected
from services.router.request import ChatRequest

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 16384}
NO_THINKING_EFFORTS = frozenset({"minimal", "none"})
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object only, with no text before or after it."
)


def messages_body(chat: ChatRequest, upstream_model: str, *, stream: bool) -> bytes:
    """The Messages API body for `chat`, sending `upstream_model`."""
    payload = chat.payload
    if isinstance(payload.get("n"), int) and payload["n"] > 1:
        raise rejected("n above 1 is not supported by this model", "n")
    talk = conversation(payload.get("messages") or [])
    budget = _thinking_budget(payload.get("reasoning_effort"), chat.max_tokens)
    body: dict[str, Any] = {"model": upstream_model, "messages": talk.turns}
    if chat.max_tokens is not None:
        body["max_tokens"] = chat.max_tokens
    else:
        body["max_tokens"] = DEFAULT_MAX_TOKENS + (budget or 0)
    system = talk.system
    _response_format(payload.get("response_format"), body, system)
    if system:
        body["system"] = system
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        _sampling(payload, body)
    stop = payload.get("stop")
    if isinstance(stop, str) and stop:
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [s for s in stop if isinstance(s, str) and s]
    _tools(payload, body, thinking=bool(budget))
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _thinking_budget(effort: Any, max_tokens: int | None) -> int | None:
    if effort is None or effort in NO_THINKING_EFFORTS:
        return None
    if effort not in THINKING_BUDGETS:
        raise rejected(f"reasoning_effort {effort!r} is not supported", "reasoning_effort")
    budget = THINKING_BUDGETS[effort]
    if max_tokens is not None:
        # Anthropic wants the budget strictly below max_tokens.
        budget = min(budget, max_tokens - 1)
    return budget if budget >= MIN_THINKING_BUDGET else None


def _sampling(payload: Mapping[str, Any], body: dict[str, Any]) -> None:
    temperature = payload.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)
    top_p = payload.get("top_p")
    if _is_number(top_p):
        body["top_p"] = top_p


def _response_format(raw: Any, body: dict[str, Any], system: list[Block]) -> None:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "json_schema":
        spec = raw.get("json_schema") if isinstance(raw, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise rejected("response_format.json_schema.schema must be an object",
                           "response_format")
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    elif kind == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})


def _tools(payload: Mapping[str, Any], body: dict[str, Any], *, thinking: bool) -> None:
    tools = payload.get("tools")
    if not isinstance(tools, list) or not tools:
        return
    body["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
    choice = _tool_choice(payload.get("tool_choice"))
    if thinking and choice is not None and choice["type"] in ("any", "tool"):
        choice = {"type": "auto"}
    if payload.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        body["tool_choice"] = choice


def _tool(tool: Any, index: int) -> Block:
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or tool.get("type") != "function" or not isinstance(name, str):
        raise rejected(f"tools[{index}] must be a function tool with a name", "tools")
    parameters = function.get("parameters")
    result: Block = {
        "name": name,
        "input_schema": parameters if isinstance(parameters, dict)
        else {"type": "object", "properties": {}},
    }
    if isinstance(function.get("description"), str):
        result["description"] = function["description"]
    return result


def _tool_choice(raw: Any) -> Block | None:
    if raw is None:
        return None
    if raw in ("auto", "none"):
        return {"type": raw}
    if raw == "required":
        return {"type": "any"}
    function = raw.get("function") if isinstance(raw, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise rejected("tool_choice must be auto, none, required or a named function",
                       "tool_choice")
    return {"type": "tool", "name": name}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
