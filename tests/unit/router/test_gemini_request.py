"""OpenAI chat requests translated to Gemini generateContent bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.router.errors import UpstreamRejected
from services.router.providers.gemini_ids import tool_call_id
from services.router.providers.gemini_request import gemini_body

SIGNATURE = "CiQBcsjafA+8x/Zq9w=="  # base64 with '+', '/' and padding, as Gemini sends


def _body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(gemini_body({"model": "g", "messages": messages,
                                                     **extra}))
    return body


def _call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}, **extra}


def test_multi_turn_with_system_maps_roles_and_system_instruction() -> None:
    body = _body([{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"},
                  {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                  {"role": "user", "content": [{"type": "text", "text": "Again"}]}])
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "No emoji."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                     {"role": "model", "parts": [{"text": "Hello!"}]},
                     {"role": "user", "parts": [{"text": "Again"}]}],
    }


def test_images_become_inline_data_or_file_data() -> None:
    body = _body([{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?x=1"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
    ]}])
    assert body["contents"][0]["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?x=1", "mimeType": "image/jpeg"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,plain", "", None])
def test_bad_image_urls_are_the_clients_mistake(url: str | None) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        _body([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert caught.value.status == 400 and not caught.value.retryable


def test_tools_become_function_declarations_with_json_schema() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
    body = _body([{"role": "user", "content": "Weather?"}], tools=[
        {"type": "function", "function": {"name": "weather", "description": "Forecast",
                                          "parameters": schema}},
        {"type": "function", "function": {"name": "now"}}])
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "weather", "description": "Forecast", "parametersJsonSchema": schema},
        {"name": "now"}]}]
    assert "toolConfig" not in body


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["weather"]}),
])
def test_tool_choice_becomes_function_calling_config(choice: Any, config: Any) -> None:
    body = _body([{"role": "user", "content": "Weather?"}], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_tool_calls_and_parallel_results_round_trip_with_the_thought_signature() -> None:
    signed = tool_call_id("r", "0", "weather", '{"city":"Paris"}', SIGNATURE)
    body = _body([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            _call(signed, "weather", '{"city":"Paris"}'),
            _call("call_plain", "weather", '{"city":"Rome"}')]},
        {"role": "tool", "tool_call_id": "call_plain", "content": "rainy"},
        {"role": "tool", "tool_call_id": signed, "content": '{"sky": "sunny"}'},
    ])
    assert body["contents"][1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}},
             "thoughtSignature": SIGNATURE},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]},
        {"role": "user", "parts": [  # both results in one turn, as Gemini requires
            {"functionResponse": {"name": "weather", "response": {"output": "rainy"}}},
            {"functionResponse": {"name": "weather", "response": {"sky": "sunny"}}}]},
    ]


def test_signature_in_extra_content_is_put_back_too() -> None:
    extra = {"extra_content": {"google": {"thought_signature": SIGNATURE}}}
    body = _body([{"role": "user", "content": "Hi"},
                  {"role": "assistant", "tool_calls": [_call("c1", "f", "{}", **extra)]},
                  {"role": "tool", "tool_call_id": "c1", "content": "42"}])
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SIGNATURE}]
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"output": 42}


def test_a_tool_result_for_an_unknown_call_is_rejected() -> None:
    with pytest.raises(UpstreamRejected) as caught:
        _body([{"role": "user", "content": "Hi"},
               {"role": "tool", "tool_call_id": "nope", "content": "x"}])
    assert caught.value.param == "messages[1].tool_call_id"


def test_generation_config_sampling_stop_and_candidates() -> None:
    body = _body([{"role": "user", "content": "Hi"}], temperature=0.3, top_p=0.9,
                 max_tokens=50, stop="END", n=2, seed=7, presence_penalty=0.5)
    assert body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.9, "seed": 7, "presencePenalty": 0.5,
        "maxOutputTokens": 50, "stopSequences": ["END"], "candidateCount": 2}


def test_max_completion_tokens_wins_and_stop_lists_pass() -> None:
    body = _body([{"role": "user", "content": "Hi"}], max_completion_tokens=9, max_tokens=50,
                 stop=["a", "b"])
    assert body["generationConfig"] == {"maxOutputTokens": 9, "stopSequences": ["a", "b"]}


def test_json_mode_and_json_schema() -> None:
    plain = _body([{"role": "user", "content": "Hi"}], response_format={"type": "json_object"})
    assert plain["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    typed = _body([{"role": "user", "content": "Hi"}], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    assert typed["generationConfig"] == {"responseMimeType": "application/json",
                                         "responseJsonSchema": schema}


@pytest.mark.parametrize(("effort", "config"), [
    ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("none", {"thinkingBudget": 0, "includeThoughts": False}),
])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, config: Any) -> None:
    body = _body([{"role": "user", "content": "Hi"}], reasoning_effort=effort)
    assert body["generationConfig"] == {"thinkingConfig": config}
