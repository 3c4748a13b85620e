"""An OpenAI chat request as a Gemini `generateContent` body.

- system / developer messages: `systemInstruction`; user: role `user`; assistant: role
  `model`; tool results: `functionResponse` parts of a `user` turn, named after the tool
  call they answer (found by id earlier in the history). Consecutive turns of one role
  are merged, as Gemini wants every result of a parallel call in one turn.
- content parts: text; `image_url` data URLs as `inlineData`, other URLs as `fileData`;
  `input_audio` and `file` data as `inlineData`.
- assistant tool calls: `functionCall` parts with their thought signature put back
  (see `gemini_ids`).
- tools: `functionDeclarations` with the JSON Schema as `parametersJsonSchema`;
  tool_choice: `toolConfig.functionCallingConfig` (AUTO, NONE, ANY, allowed names).
- sampling: temperature, topP, maxOutputTokens, stopSequences, candidateCount (n),
  penalties, seed; response_format: JSON mime type and `responseJsonSchema`;
  reasoning_effort: a thinking budget, with thought summaries asked for.
A request Gemini cannot express raises UpstreamRejected (400), never retried.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any

import orjson

from services.router.errors import UpstreamRejected
from services.router.providers.gemini_ids import signature_of

# Thinking budgets per reasoning_effort, in tokens (Gemini 2.5 accepts 0 to 24576).
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_ROLES = {"user": "user", "assistant": "model", "tool": "user", "function": "user"}
_SAMPLING = (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
             ("presence_penalty", "presencePenalty"),
             ("frequency_penalty", "frequencyPenalty"))
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def gemini_body(payload: Mapping[str, Any]) -> bytes:
    """The generateContent body for an OpenAI chat request's parsed JSON."""
    body: dict[str, Any] = {"contents": _contents(payload.get("messages"))}
    system = [part for m in _messages(payload) if m.get("role") in ("system", "developer")
              for part in _parts(m.get("content"))]
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = [_declaration(t) for t in _list(payload.get("tools"))
                    if isinstance(t, dict) and t.get("type", "function") == "function"]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
    if (choice := payload.get("tool_choice")) is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    config = _generation_config(payload)
    if config:
        body["generationConfig"] = config
    return orjson.dumps(body)


def _contents(messages: Any) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(_list(messages)):
        kind = message.get("role")
        role = _ROLES.get(kind) if isinstance(kind, str) else None
        if role is None:
            continue  # system and developer messages went to systemInstruction
        if kind == "assistant":
            parts = _parts(message.get("content")) + _calls(message, names)
        elif kind in ("tool", "function"):
            parts = [_result(message, names, index)]
        else:
            parts = _parts(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in _list(content):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            url = part.get("image_url")
            parts.append(_media(url.get("url") if isinstance(url, dict) else url))
        elif kind == "input_audio" and isinstance(audio := part.get("input_audio"), dict):
            mime = _AUDIO_TYPES.get(str(audio.get("format")), "audio/wav")
            parts.append({"inlineData": {"mimeType": mime, "data": str(audio.get("data", ""))}})
        elif kind == "file" and isinstance(file := part.get("file"), dict):
            parts.append(_media(file.get("file_data") or file.get("file_id")))
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"text": part["refusal"]})
        else:
            raise UpstreamRejected(400, f"content part type {kind!r} is not supported by "
                                   "this model", error_type="invalid_request_error",
                                   param="messages")
    return parts


def _media(url: Any) -> dict[str, Any]:
    """A data URL as inline bytes; any other URL as a file reference."""
    if not isinstance(url, str) or not url:
        raise UpstreamRejected(400, "an image or file part has no url",
                               error_type="invalid_request_error", param="messages")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise UpstreamRejected(400, "data URLs must be base64 encoded",
                                   error_type="invalid_request_error", param="messages")
        return {"inlineData": {"mimeType": mime or "application/octet-stream", "data": data}}
    file_data: dict[str, str] = {"fileUri": url}
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    if guessed:
        file_data["mimeType"] = guessed
    return {"fileData": file_data}


def _calls(message: Mapping[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in _list(message.get("tool_calls")):
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        name: str = function["name"]
        if isinstance(call.get("id"), str):
            names[call["id"]] = name
        part: dict[str, Any] = {"functionCall": {"name": name,
                                                 "args": _arguments(function.get("arguments"))}}
        if signature := signature_of(call):
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamRejected(400, "tool call arguments must be JSON",
                               error_type="invalid_request_error", param="messages") from exc
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _result(message: Mapping[str, Any], names: Mapping[str, str], index: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    name = name or message.get("name")
    if not isinstance(name, str) or not name:
        raise UpstreamRejected(400, f"messages[{index}]: tool_call_id matches no earlier "
                               "tool call", error_type="invalid_request_error",
                               param=f"messages[{index}].tool_call_id")
    content = message.get("content")
    text = content if isinstance(content, str) else "\n".join(
        p["text"] for p in _parts(content) if isinstance(p.get("text"), str))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = text
    # Gemini wants an object; a JSON object result goes as it is, anything else as output.
    response = parsed if isinstance(parsed, dict) else {"output": parsed}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise UpstreamRejected(400, "every tool needs a function with a name",
                               error_type="invalid_request_error", param="tools")
    declaration: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    if isinstance(function.get("parameters"), dict):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _calling_config(choice: Any) -> dict[str, Any]:
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if isinstance(name, str):
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": "AUTO"}


def _generation_config(payload: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {key: payload[name] for name, key in _SAMPLING
                              if payload.get(name) is not None}
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = payload.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(payload.get("n"), int) and payload["n"] > 1:
        config["candidateCount"] = payload["n"]
    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if kind == "json_schema" and isinstance(schema, dict) and isinstance(schema.get("schema"),
                                                                          dict):
        config["responseJsonSchema"] = schema["schema"]
    effort = payload.get("reasoning_effort")
    if isinstance(effort, str) and effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def _messages(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _list(payload.get("messages"))


def _list(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (other items and non-lists are ignored)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
