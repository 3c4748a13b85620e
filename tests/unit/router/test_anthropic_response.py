"""Anthropic messages as chat.completions, usage, and Anthropic errors as ProviderErrors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from services.router.errors import (
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers.anthropic_errors import error_for_event, error_for_status
from services.router.providers.anthropic_response import completion_of
from services.router.providers.base import Usage

KEY = "sk-ant-secret"


def _message(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> bytes:
    return orjson.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    })


def test_text_answer() -> None:
    completion = completion_of(_message([{"type": "text", "text": "Hello"},
                                         {"type": "text", "text": " there"}]), 1700)
    parsed = ChatCompletion.model_validate_json(completion.body)
    assert (parsed.id, parsed.created, parsed.model) == ("msg_1", 1700, "claude-up")
    assert parsed.choices[0].message.content == "Hello there"
    assert parsed.choices[0].finish_reason == "stop"
    assert (completion.text, completion.finish_reason) == ("Hello there", "stop")
    assert completion.usage == Usage(10, 5)


def test_tool_calls_keep_their_ids_and_content_is_null() -> None:
    completion = completion_of(_message([
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
    ], "tool_use"), 1)
    message = ChatCompletion.model_validate_json(completion.body).choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("toolu_a", "get_weather", '{"city":"Paris"}'), ("toolu_b", "get_time", "{}")]
    assert completion.finish_reason == "tool_calls"


def test_thinking_is_reasoning_content_with_its_blocks() -> None:
    completion = completion_of(_message([
        {"type": "thinking", "thinking": "Think.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer"},
    ], output_tokens_details={"thinking_tokens": 3}), 1)  # type: ignore[arg-type]
    message = orjson.loads(completion.body)["choices"][0]["message"]
    assert message["reasoning_content"] == "Think."
    assert message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Think.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"}]
    assert completion.usage is not None and completion.usage.reasoning_tokens == 3


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_stop_reason_to_finish_reason(stop: str, finish: str) -> None:
    completion = completion_of(_message([{"type": "text", "text": "x"}], stop), 1)
    assert completion.finish_reason == finish
    assert ChatCompletion.model_validate_json(completion.body).choices[0].finish_reason == finish


def test_usage_counts_cache_reads_and_writes_as_prompt() -> None:
    completion = completion_of(_message([{"type": "text", "text": "x"}],
                                        cache_read_input_tokens=100,
                                        cache_creation_input_tokens=20), 1)
    # input_tokens (10) counts only what follows the last cache breakpoint.
    assert completion.usage == Usage(130, 5, cached_prompt_tokens=100,
                                     cache_write_prompt_tokens=20)
    usage = ChatCompletion.model_validate_json(completion.body).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
            usage.prompt_tokens_details.cached_tokens) == (130, 5, 135, 100)


def test_invalid_answer_is_unavailable() -> None:
    with pytest.raises(UpstreamUnavailable):
        completion_of(b"<html>", 1)
    with pytest.raises(UpstreamUnavailable):
        completion_of(b'{"type": "message"}', 1)


def _error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def test_client_mistakes_pass_through_without_secrets() -> None:
    error = error_for_status(400, _error("invalid_request_error", f"bad key {KEY}"), (KEY,))
    assert isinstance(error, UpstreamRejected) and not error.retryable
    assert (error.status, error.error_type, error.message) == (
        400, "invalid_request_error", "bad key [redacted]")
    too_large = error_for_status(413, _error("request_too_large", "too big"))
    assert isinstance(too_large, UpstreamRejected)
    assert (too_large.status, too_large.code) == (413, "request_too_large")


@pytest.mark.parametrize(("status", "kind", "error_class"), [
    (401, "authentication_error", UpstreamUnavailable),
    (403, "permission_error", UpstreamUnavailable),
    (404, "not_found_error", UpstreamUnavailable),
    (429, "rate_limit_error", UpstreamRateLimited),
    (500, "api_error", UpstreamUnavailable),
    (504, "timeout_error", UpstreamTimeout),
    (529, "overloaded_error", UpstreamUnavailable),
])
def test_our_side_and_anthropic_failures_are_retryable_with_generic_messages(
    status: int, kind: str, error_class: type[UpstreamUnavailable],
) -> None:
    error = error_for_status(status, _error(kind, f"detail with {KEY}"), (KEY,))
    assert type(error) is error_class and error.retryable
    assert error.status == status
    assert KEY not in error.message and "detail" not in error.message
    same = error_for_event(_error(kind, "x"))
    assert (type(same), same.status) == (error_class, status)


def test_an_unknown_error_event_is_a_retryable_500() -> None:
    error = error_for_event(b"not json")
    assert isinstance(error, UpstreamUnavailable) and error.status == 500
