"""A Responses request becomes the chat request a chat-only provider serves, or a 400
that names the parameter the bridge cannot serve."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.relay_request import Operation
from services.router.responses_bridge_request import Unbridgeable, chat_of_responses
from tests.unit.router.helpers import relay_request

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _chat(stream: bool = False, **body: Any) -> dict[str, Any]:
    request = relay_request(Operation.RESPONSES, {**body, "stream": stream} if stream else body,
                            stream=stream)
    return dict(chat_of_responses(request).payload)


def test_a_string_input_with_instructions_and_options() -> None:
    chat = _chat(input="Hi", instructions="Be brief.", max_output_tokens=64, temperature=0.2,
                 top_p=0.9, user="u1", reasoning={"effort": "low"}, store=True,
                 metadata={"k": "v"}, include=["reasoning.encrypted_content"],
                 text={"format": {"type": "json_schema", "name": "city", "schema": SCHEMA,
                                  "strict": True}})
    assert chat == {
        "model": "demo",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}],
        "temperature": 0.2, "top_p": 0.9, "user": "u1", "max_tokens": 64,
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
    }


def test_items_tools_and_a_tool_round_trip() -> None:
    chat = _chat(
        stream=True,
        input=[
            {"role": "developer", "content": "Use tools."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Weather and time?"},
                {"type": "input_image", "image_url": "https://img.example/a.png",
                 "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_a", "name": "weather",
             "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_b", "name": "time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b",
             "output": [{"type": "input_text", "text": "noon"}]},
        ],
        tools=[{"type": "function", "name": "weather", "description": "Weather.",
                "parameters": SCHEMA, "strict": True},
               {"type": "function", "name": "time", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "name": "weather"}, parallel_tool_calls=True,
        text={"format": {"type": "json_object"}},
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather and time?"},
            {"type": "image_url", "image_url": {"url": "https://img.example/a.png",
                                                "detail": "low"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "weather", "description": "Weather.",
                                          "parameters": SCHEMA, "strict": True}},
        {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}},
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["parallel_tool_calls"] is True
    assert chat["response_format"] == {"type": "json_object"}
    assert (chat["stream"], chat["stream_options"]) == (True, {"include_usage": True})


def test_function_calls_without_text_open_their_own_assistant_turn() -> None:
    chat = _chat(input=[
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
    ], tool_choice="required")
    assert chat["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
    ]
    assert chat["tool_choice"] == "required"


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]},
     "tools[1].type"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "grammar"}}}, "text.format"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
])
def test_what_the_bridge_cannot_serve_names_its_parameter(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(Unbridgeable) as caught:
        _chat(**body)
    assert caught.value.param == param
