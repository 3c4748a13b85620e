"""OpenAI chat requests as Anthropic Messages API bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.router.errors import UpstreamRejected
from services.router.providers.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    messages_body,
)
from services.router.request import parse_chat_request

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
USER = {"role": "user", "content": "Hi"}


def _body(messages: list[dict[str, Any]] | None = None, *, stream: bool = False,
          **extra: Any) -> dict[str, Any]:
    payload = {"model": "claude", "messages": messages or [USER], **extra}
    chat = parse_chat_request(orjson.dumps(payload), "claude", "req_1", stream=stream)
    parsed = orjson.loads(messages_body(chat, "claude-up-1", stream=stream))
    assert isinstance(parsed, dict)
    return parsed


def test_text_request_gets_the_model_default_max_tokens_and_no_stream() -> None:
    assert _body() == {"model": "claude-up-1", "max_tokens": DEFAULT_MAX_TOKENS,
                       "messages": [{"role": "user", "content": [{"type": "text",
                                                                  "text": "Hi"}]}]}
    assert _body(stream=True)["stream"] is True


def test_system_and_developer_messages_become_the_system_blocks() -> None:
    body = _body([{"role": "system", "content": "Be brief."}, USER,
                  {"role": "assistant", "content": "Hello!"},
                  {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                  {"role": "user", "content": "Again"}])
    assert body["system"] == [{"type": "text", "text": "Be brief."},
                              {"type": "text", "text": "No emoji."}]
    assert [(t["role"], t["content"][0]["text"]) for t in body["messages"]] == [
        ("user", "Hi"), ("assistant", "Hello!"), ("user", "Again")]


def test_images_as_data_urls_and_http_urls() -> None:
    body = _body([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["ftp://x/y.png", "data:image/png,notbase64", "data:;base64,"])
def test_an_unusable_image_url_is_the_clients_error(url: str) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        _body([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert (caught.value.status, caught.value.param) == (400, "messages")


def test_tools_and_every_tool_choice() -> None:
    body = _body(tools=[WEATHER])
    assert body["tools"] == [{"name": "get_weather", "description": "Weather of a city",
                              "input_schema": WEATHER["function"]["parameters"]}]  # type: ignore[index]
    assert "tool_choice" not in body
    expected = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
    for choice, anthropic_choice in expected.items():
        assert _body(tools=[WEATHER], tool_choice=choice)["tool_choice"] == anthropic_choice
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert _body(tools=[WEATHER], tool_choice=named)["tool_choice"] == {
        "type": "tool", "name": "get_weather"}


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    assert _body(tools=[WEATHER], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert _body(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)[
        "tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "tool_choice" not in _body(tools=[WEATHER], parallel_tool_calls=True)


def test_tool_calls_and_consecutive_tool_results_are_one_user_turn() -> None:
    calls = [{"id": f"toolu_{i}", "type": "function",
              "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}}
             for i, city in enumerate(("Paris", "Oslo"))]
    body = _body([USER, {"role": "assistant", "content": None, "tool_calls": calls},
                  {"role": "tool", "tool_call_id": "toolu_0", "content": "18C"},
                  {"role": "tool", "tool_call_id": "toolu_1",
                   "content": [{"type": "text", "text": "3C"}]},
                  {"role": "user", "content": "Which is warmer?"}])
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_0", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "3C"}]},
        {"type": "text", "text": "Which is warmer?"},
    ]}
    assert len(body["messages"]) == 3


def test_thinking_blocks_of_an_assistant_turn_go_back_with_their_signature() -> None:
    block = {"type": "thinking", "thinking": "Need weather.", "signature": "sig-1"}
    body = _body([USER, {"role": "assistant", "content": "", "thinking_blocks": [block],
                         "tool_calls": [{"id": "t1", "type": "function", "function": {
                             "name": "get_weather", "arguments": "{}"}}]}])
    assert body["messages"][1]["content"][0] == block
    assert body["messages"][1]["content"][1]["type"] == "tool_use"


def test_invalid_tool_call_arguments_are_the_clients_error() -> None:
    with pytest.raises(UpstreamRejected):
        _body([USER, {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
               "function": {"name": "f", "arguments": "{not json"}}]}])


def test_stop_sequences_sampling_and_max_tokens() -> None:
    body = _body(stop=["END", "STOP"], temperature=1.5, top_p=0.9, max_completion_tokens=50)
    assert (body["stop_sequences"], body["temperature"], body["top_p"], body["max_tokens"]) == (
        ["END", "STOP"], 1.0, 0.9, 50)
    assert _body(stop="END", temperature=0.2)["stop_sequences"] == ["END"]
    assert _body(max_tokens=77)["max_tokens"] == 77


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    body = _body(reasoning_effort=effort, temperature=0.3)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS + budget
    assert "temperature" not in body  # Anthropic refuses it with thinking


def test_thinking_budget_fits_below_the_clients_max_tokens() -> None:
    assert _body(reasoning_effort="high", max_tokens=3000)["thinking"]["budget_tokens"] == 2999
    assert "thinking" not in _body(reasoning_effort="high", max_tokens=1000)
    assert "thinking" not in _body(reasoning_effort="minimal")


def test_forced_tool_choice_is_relaxed_to_auto_with_thinking() -> None:
    assert _body(tools=[WEATHER], tool_choice="required",
                 reasoning_effort="low")["tool_choice"] == {"type": "auto"}


def test_json_schema_becomes_structured_output_and_json_object_an_instruction() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = _body(response_format={"type": "json_schema",
                                  "json_schema": {"name": "x", "schema": schema}})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = _body(response_format={"type": "json_object"})
    assert body["system"] == [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    assert "system" not in _body(response_format={"type": "text"})


def test_user_becomes_metadata_and_n_above_one_is_refused() -> None:
    assert _body(user="u-42")["metadata"] == {"user_id": "u-42"}
    with pytest.raises(UpstreamRejected) as caught:
        _body(n=2)
    assert caught.value.param == "n"
