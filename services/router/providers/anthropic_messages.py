"""OpenAI chat messages as Anthropic Messages API `system` and `messages`.

System and developer messages (wherever they stand) become the top-level `system`
text blocks. User content parts become text, image (a base64 data URL becomes a
`base64` source, an http(s) URL a `url` source) and document blocks (a PDF `file` part
given as a data URL). An assistant's `tool_calls` become `tool_use` blocks (ids kept)
and its `thinking_blocks` (ours, see `anthropic_response`) go back first, signatures
included, so that multi-turn tool use with thinking works. Tool messages become
`tool_result` blocks in a user turn. Turns of one role in a row are merged into one, so
consecutive tool results share one user turn, as Anthropic expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.router.errors import UpstreamRejected

Block = dict[str, Any]
_DATA_URL_PREFIX = "data:"
_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(slots=True)
class Conversation:
    """The translated conversation: system text blocks and alternating turns."""

    system: list[Block] = field(default_factory=list)
    turns: list[Block] = field(default_factory=list)

    def add(self, role: str, blocks: list[Block]) -> None:
        """Append a turn, merged into the last one when it has the same role."""
        if not blocks:
            return
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"].extend(blocks)
        else:
            self.turns.append({"role": role, "content": blocks})


def rejected(message: str, param: str = "messages") -> UpstreamRejected:
    """The client's request cannot be said in the Messages API."""
    return UpstreamRejected(400, message, error_type="invalid_request_error", param=param)


def conversation(messages: Sequence[Mapping[str, Any]]) -> Conversation:
    """Translate the client's `messages`."""
    result = Conversation()
    for number, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in _SYSTEM_ROLES:
            result.system.extend(_text_blocks(content, number))
        elif role == "user":
            result.add("user", _user_blocks(content, number))
        elif role == "assistant":
            result.add("assistant", _assistant_blocks(message, number))
        elif role == "tool":
            result.add("user", [_tool_result(message, number)])
        else:
            raise rejected(f"messages[{number}].role {role!r} is not supported by this model")
    return result


def _text_blocks(content: Any, number: int) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content if isinstance(content, list) else ():
        text = part.get("text") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise rejected(f"messages[{number}].content may only hold text parts here")
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any, number: int) -> list[Block]:
    if not isinstance(content, list):
        return _text_blocks(content, number)
    blocks: list[Block] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append({"type": "image", "source": _image_source(part, number)})
        elif kind == "file":
            blocks.append(_document(part, number))
        else:
            raise rejected(f"messages[{number}].content part {kind!r} is not supported "
                           "by this model")
    return blocks


def _image_source(part: Mapping[str, Any], number: int) -> Block:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    if isinstance(url, str) and url.startswith(_DATA_URL_PREFIX):
        media_type, data = _data_url(url, number)
        return {"type": "base64", "media_type": media_type, "data": data}
    raise rejected(f"messages[{number}] has an image_url that is neither a data URL "
                   "nor an http(s) URL")


def _document(part: Mapping[str, Any], number: int) -> Block:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith(_DATA_URL_PREFIX):
        raise rejected(f"messages[{number}] has a file part without file_data")
    media_type, data = _data_url(data_url, number)
    return {"type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": data}}


def _data_url(url: str, number: int) -> tuple[str, str]:
    """The media type and base64 data of `data:<type>;base64,<data>`."""
    head, comma, data = url[len(_DATA_URL_PREFIX):].partition(",")
    media_type, _, encoding = head.partition(";")
    if not comma or encoding != "base64" or not media_type or not data:
        raise rejected(f"messages[{number}] has a data URL that is not base64")
    return media_type, data


def _assistant_blocks(message: Mapping[str, Any], number: int) -> list[Block]:
    blocks = [_thinking_block(b, number) for b in _list(message.get("thinking_blocks"))]
    blocks.extend(_text_blocks(message.get("content"), number))
    for call in _list(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise rejected(f"messages[{number}].tool_calls holds a call without a function")
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""),
                       "name": function["name"],
                       "input": _arguments(function.get("arguments"), number)})
    return blocks


def _thinking_block(block: Any, number: int) -> Block:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking" and isinstance(block.get("signature"), str):
        return {"type": "thinking", "thinking": str(block.get("thinking") or ""),
                "signature": block["signature"]}
    if kind == "redacted_thinking" and isinstance(block.get("data"), str):
        return {"type": "redacted_thinking", "data": block["data"]}
    raise rejected(f"messages[{number}].thinking_blocks holds an unknown block")


def _arguments(arguments: Any, number: int) -> Any:
    if arguments is None or arguments == "":
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise rejected(f"messages[{number}].tool_calls arguments are not a JSON object")
    return parsed


def _tool_result(message: Mapping[str, Any], number: int) -> Block:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise rejected(f"messages[{number}] is a tool message without tool_call_id")
    content = message.get("content")
    result: Block = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _text_blocks(content, number)
    return result


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
