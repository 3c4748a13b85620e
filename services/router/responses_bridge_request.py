"""A Responses request translated into the chat request a chat-only provider serves.

The bridge speaks the stateless core of the Responses API: `input` as a string or as
items (messages with text and image parts, `function_call`, `function_call_output`;
earlier `reasoning` items are dropped), `instructions` as the first system message,
function tools and `tool_choice`, `max_output_tokens`, `temperature`, `top_p`,
`parallel_tool_calls`, `reasoning.effort`, `user` and `text.format` (JSON schema or
JSON object). What needs OpenAI's own state or tools (`previous_response_id`,
`conversation`, `background`, stored prompts, built-in tools, item references, files)
is refused with the offending parameter named, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.router.errors import InvalidRelayRequest
from services.router.providers.base import field_of
from services.router.relay_request import RelayRequest
from services.router.request import ChatRequest, parse_chat_request

# Parameters that need OpenAI's stored state or its server-side execution.
_STATEFUL = ("previous_response_id", "conversation", "prompt")
# Fields copied to the chat request under the same name when they are set.
_SAME_NAME = ("temperature", "top_p", "parallel_tool_calls", "user")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class Unbridgeable(InvalidRelayRequest):
    """The request uses a Responses feature a chat-only provider cannot serve."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def chat_of_responses(request: RelayRequest) -> ChatRequest:
    """The chat request serving `request`; raise Unbridgeable for what chat cannot do."""
    payload = request.payload
    for name in _STATEFUL:
        if payload.get(name) is not None:
            raise Unbridgeable(f"{name} is not supported for this model.", name)
    if payload.get("background") is True:
        raise Unbridgeable("background is not supported for this model.", "background")
    chat: dict[str, Any] = {"model": request.model, "messages": _messages(payload)}
    for name in _SAME_NAME:
        if payload.get(name) is not None:
            chat[name] = payload[name]
    if isinstance(limit := payload.get("max_output_tokens"), int):
        # max_tokens, not max_completion_tokens: every chat-compatible API knows it.
        chat["max_tokens"] = limit
    if isinstance(effort := field_of(payload.get("reasoning"), "effort"), str):
        chat["reasoning_effort"] = effort
    tools = payload.get("tools")
    if isinstance(tools, list) and tools:
        chat["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if (choice := payload.get("tool_choice")) is not None:
        chat["tool_choice"] = _tool_choice(choice)
    if (response_format := _response_format(field_of(payload.get("text"), "format"))) is not None:
        chat["response_format"] = response_format
    if request.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return parse_chat_request(orjson.dumps(chat), request.model, request.request_id,
                              stream=request.stream)


def _messages(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = payload.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if not isinstance(items, list):
        raise Unbridgeable("input must be a string or a list of items.", "input")
    for index, item in enumerate(items):
        _add_item(messages, item, f"input[{index}]")
    return messages


def _add_item(messages: list[dict[str, Any]], item: Any, param: str) -> None:
    """Append the chat form of one input item; function calls join one assistant turn."""
    if not isinstance(item, dict):
        raise Unbridgeable("each input item must be an object.", param)
    kind = item.get("type", "message")
    if kind == "message":
        messages.append(_message(item, param))
    elif kind == "function_call":
        call = {"id": _text(item, "call_id", param), "type": "function",
                "function": {"name": _text(item, "name", param),
                             "arguments": _text(item, "arguments", param)}}
        if messages and messages[-1]["role"] == "assistant":
            # The calls of one turn (and its text) are one assistant message in chat.
            messages[-1].setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else _parts_text(output, f"{param}.output")
        messages.append({"role": "tool", "tool_call_id": _text(item, "call_id", param),
                         "content": content})
    elif kind != "reasoning":
        # Reasoning items of earlier turns are the upstream's own; a chat API takes none.
        raise Unbridgeable(f"input items of type {kind!r} are not supported for this model.",
                           f"{param}.type")


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise Unbridgeable(f"role {item.get('role')!r} is not supported.", f"{param}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise Unbridgeable("message content must be a string or a list of parts.",
                           f"{param}.content")
    if role != "user":
        return {"role": role, "content": _parts_text(content, f"{param}.content")}
    return {"role": role, "content": [_user_part(part, f"{param}.content[{i}]")
                                      for i, part in enumerate(content)]}


def _user_part(part: Any, param: str) -> dict[str, Any]:
    kind = field_of(part, "type")
    if kind in ("input_text", "output_text") and isinstance(field_of(part, "text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(url := field_of(part, "image_url"), str):
        image: dict[str, Any] = {"url": url}
        if isinstance(detail := field_of(part, "detail"), str):
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    raise Unbridgeable(f"content parts of type {kind!r} are not supported for this model.",
                       param)


def _parts_text(parts: Any, param: str) -> str:
    """The text of text parts (assistant turns, tool outputs), which chat takes as a string."""
    if not isinstance(parts, list):
        raise Unbridgeable("content must be a string or a list of parts.", param)
    texts: list[str] = []
    for index, part in enumerate(parts):
        kind = field_of(part, "type")
        text = field_of(part, "refusal" if kind == "refusal" else "text")
        if kind not in ("input_text", "output_text", "refusal") or not isinstance(text, str):
            raise Unbridgeable("only text parts are supported here for this model.",
                               f"{param}[{index}]")
        texts.append(text)
    return "".join(texts)


def _tool(tool: Any, param: str) -> dict[str, Any]:
    if field_of(tool, "type") != "function" or not isinstance(field_of(tool, "name"), str):
        raise Unbridgeable(
            f"tools of type {field_of(tool, 'type')!r} are not supported for this model; "
            "only function tools are.", f"{param}.type")
    function = {key: tool[key] for key in ("name", "description", "parameters", "strict")
                if tool.get(key) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if field_of(choice, "type") == "function" and isinstance(field_of(choice, "name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise Unbridgeable("tool_choice must be auto, none, required or a function for this model.",
                       "tool_choice")


def _response_format(fmt: Any) -> dict[str, Any] | None:
    kind = field_of(fmt, "type")
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(field_of(fmt, "schema"), dict):
        schema = {key: fmt[key] for key in ("name", "description", "schema", "strict")
                  if fmt.get(key) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise Unbridgeable("text.format must be text, json_object or json_schema.", "text.format")


def _text(item: Mapping[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise Unbridgeable(f"{key} must be a string.", f"{param}.{key}")
    return value
