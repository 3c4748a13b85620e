"""edge.estimate: prompt estimates, completion caps, delivered text."""

from __future__ import annotations

from typing import Any

import orjson

from edge.domain import ModelInfo
from edge.estimate import (
    FALLBACK_MAX_OUTPUT_TOKENS,
    delta_texts,
    estimate_chat,
    message_texts,
)
from edge.openai.chat import ChatCompletionRequest
from services.common.tokens import estimate_tokens

MODEL = ModelInfo(id="m", owned_by="o", created=0, max_output_tokens=300)


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def test_prompt_counts_every_message_text_plus_overhead() -> None:
    chat = request(messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is"},
                                     {"type": "image_url", "image_url": {"url": "http://x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ])
    expected = 3 + 4 * 4 + sum(estimate_tokens(t) for t in
                               ("be brief", "what is", "f", '{"a":1}', "42"))
    assert estimate_chat(chat, MODEL).prompt_tokens == expected


def test_tools_count_towards_the_prompt() -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "weather", "description": "get it",
                                             "parameters": params}}
    plain = estimate_chat(request(), MODEL).prompt_tokens
    with_tool = estimate_chat(request(tools=[tool]), MODEL).prompt_tokens
    assert with_tool - plain == (estimate_tokens("weather") + estimate_tokens("get it")
                                 + estimate_tokens(orjson.dumps(params).decode()))


def test_completion_cap_precedence_and_n() -> None:
    assert estimate_chat(request(max_tokens=50, max_completion_tokens=70), MODEL)\
        .max_completion_tokens == 70
    assert estimate_chat(request(max_tokens=50), MODEL).max_completion_tokens == 50
    assert estimate_chat(request(), MODEL).max_completion_tokens == 300
    assert estimate_chat(request(n=3), MODEL).max_completion_tokens == 900
    no_cap = ModelInfo(id="m", owned_by="o", created=0, max_output_tokens=0)
    assert estimate_chat(request(), no_cap).max_completion_tokens == FALLBACK_MAX_OUTPUT_TOKENS
    estimate = estimate_chat(request(max_tokens=10), MODEL)
    assert estimate.total_tokens == estimate.prompt_tokens + 10


def test_delta_texts_takes_content_reasoning_and_tool_arguments() -> None:
    chunk = orjson.dumps({"choices": [
        {"delta": {"content": "Hi", "reasoning_content": "hmm"}},
        {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}},
        {"delta": {}, "finish_reason": "stop"},
    ]})
    assert delta_texts(chunk) == ["Hi", "hmm", '{"a"']
    assert delta_texts(b"not json") == []
    assert delta_texts(b'{"choices": null}') == []


def test_message_texts_of_a_completion_body() -> None:
    body = orjson.dumps({"choices": [{"message": {"content": "Hello", "tool_calls": [
        {"function": {"name": "f", "arguments": "{}"}}]}}]})
    assert message_texts(body) == ["Hello", "{}"]
    assert message_texts(b"[]") == []
