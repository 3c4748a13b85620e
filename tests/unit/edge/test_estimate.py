"""edge.estimate: prompt estimates, completion caps, delivered text."""

from __future__ import annotations

from typing import Any

import orjson

from edge.delivered import delta_texts, message_texts
from edge.domain import ModelInfo
from edge.estimate import (
    FALLBACK_MAX_OUTPUT_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REPLY,
    estimate_audio,
    estimate_chat,
    estimate_completion,
    estimate_embedding,
    estimate_images,
    estimate_response,
    estimate_speech,
)
from edge.openai.chat import ChatCompletionRequest
from edge.openai.completions import CompletionRequest
from edge.openai.embeddings import EmbeddingRequest
from edge.openai.responses import ResponsesRequest
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


# --- the other endpoints ----------------------------------------------------------------


def test_legacy_completion_caps_16_per_choice_per_prompt() -> None:
    one = CompletionRequest.model_validate({"model": "m", "prompt": "hello there"})
    assert estimate_completion(one).prompt_tokens == estimate_tokens("hello there")
    assert estimate_completion(one).max_completion_tokens == 16
    many = CompletionRequest.model_validate(
        {"model": "m", "prompt": ["a b", "c"], "max_tokens": 5, "n": 2, "best_of": 4})
    assert estimate_completion(many).max_completion_tokens == 5 * 4 * 2
    tokens = CompletionRequest.model_validate({"model": "m", "prompt": [[1, 2], [3, 4, 5]]})
    assert estimate_completion(tokens).prompt_tokens == 5
    single = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]})
    assert (estimate_completion(single).prompt_tokens,
            estimate_completion(single).max_completion_tokens) == (3, 16)


def test_embeddings_count_input_only() -> None:
    texts = EmbeddingRequest.model_validate({"model": "m", "input": ["hello", "world wide"]})
    estimate = estimate_embedding(texts)
    assert estimate.prompt_tokens == estimate_tokens("hello") + estimate_tokens("world wide")
    assert estimate.max_completion_tokens == 0 and dict(estimate.units) == {}


def test_responses_count_instructions_and_item_texts() -> None:
    request = ResponsesRequest.model_validate({
        "model": "m", "instructions": "be brief",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi there"},
                                                {"type": "input_image", "image_url": "x"}]},
                  {"type": "function_call_output", "call_id": "c", "output": "42"}],
    })
    estimate = estimate_response(request, MODEL)
    assert estimate.prompt_tokens == (
        TOKENS_PER_REPLY + estimate_tokens("be brief") + 2 * TOKENS_PER_MESSAGE
        + estimate_tokens("hi there") + estimate_tokens("42"))
    assert estimate.max_completion_tokens == 300  # the model's cap
    capped = ResponsesRequest.model_validate({"model": "m", "input": "x",
                                              "max_output_tokens": 20})
    assert estimate_response(capped, MODEL).max_completion_tokens == 20


def test_unit_estimates_have_no_tokens() -> None:
    images = estimate_images(3, "512x512", None)
    assert (images.total_tokens, dict(images.units)) == (0, {"image/512x512/standard": 3})
    assert dict(estimate_images(None, None, "hd").units) == {"image/1024x1024/hd": 1}
    assert dict(estimate_audio(b"\0" * 40_000).units) == {"audio_second": 3}  # size fallback
    speech = estimate_speech("héllo")
    assert (speech.total_tokens, dict(speech.units)) == (0, {"character": 5})
