"""edge.openai: the chat request schema and the `param` path of validation errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from edge.errors import ApiError
from edge.openai.chat import ChatCompletionRequest, UserMessage
from edge.openai.validation import parse_body

FULL = {
    "model": "gpt-4o",
    "messages": [
        {"role": "developer", "content": "be kind"},
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "name": "ann", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:,xx", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "function", "name": "f", "content": "old style"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}},
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 10,
    "max_completion_tokens": 20,
    "n": 2,
    "temperature": 1,
    "top_p": 0.5,
    "stop": ["\n"],
    "logit_bias": {"50256": -100},
    "seed": 7,
    "a_field_from_the_future": {"kept": True},
}


def parse(body: Any) -> ChatCompletionRequest:
    return parse_body(ChatCompletionRequest, orjson.dumps(body))


def test_a_rich_request_validates_and_keeps_unknown_fields() -> None:
    chat = parse(FULL)
    assert chat.model == "gpt-4o" and chat.stream is True and chat.temperature == 1.0
    assert isinstance(chat.messages[2], UserMessage)
    assert chat.response_format is not None
    assert chat.model_extra == {"a_field_from_the_future": {"kept": True}}


def test_tool_choice_strings_and_stop_string() -> None:
    chat = parse({"model": "m", "messages": [{"role": "user", "content": "x"}],
                  "tool_choice": "required", "stop": "END"})
    assert chat.tool_choice == "required" and chat.stop == "END"


def message(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "x", **fields}]}


@pytest.mark.parametrize(
    ("body", "param", "missing"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", True),
        ({"model": "m"}, "messages", True),
        ({"model": "m", "messages": "hi"}, "messages", False),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages.0.role", False),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages.0.content", True),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]},
         "messages.0.tool_call_id", True),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
         "messages.0.content.0.type", False),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages.0.content.0.text", True),
        ({**message(), "max_tokens": 0}, "max_tokens", False),
        ({**message(), "max_tokens": True}, "max_tokens", False),
        ({**message(), "n": 1.5}, "n", False),
        ({**message(), "stream": "yes"}, "stream", False),
        ({**message(), "tools": [{"type": "function", "function": {}}]},
         "tools.0.function.name", True),
        ({**message(), "response_format": {"type": "xml"}}, "response_format.type", False),
    ],
)
def test_param_paths(body: Any, param: str, missing: bool) -> None:
    with pytest.raises(ApiError) as caught:
        parse(body)
    error = caught.value
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", param)
    assert error.message.startswith("Missing required" if missing else "Invalid value")
    assert param in error.message


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff", b'{"a": 1,}'])
def test_invalid_json(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(ChatCompletionRequest, raw)
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def test_body_must_be_an_object() -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(ChatCompletionRequest, b"[1, 2]")
    assert caught.value.status == 400 and caught.value.param is None
