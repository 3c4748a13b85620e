"""Gemini generateContent answers and errors translated to OpenAI's format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers.base import Usage
from services.router.providers.gemini_errors import gemini_error
from services.router.providers.gemini_ids import signature_of
from services.router.providers.gemini_response import completion_of
from tests.fakes.gemini_fake import (
    call_part,
    error_body,
    response,
    text_response,
    usage_metadata,
)

SIGNATURE = "CiQBcsjafA+8x/Zq9w=="


def _translate(answer: dict[str, Any]) -> tuple[ChatCompletion, Any]:
    completion = completion_of(orjson.dumps(answer), "gemini-up", 1700000000)
    return ChatCompletion.model_validate_json(completion.body), completion


def test_text_answer_with_usage() -> None:
    parsed, completion = _translate(text_response("Hi there.", usage=usage_metadata(7, 3)))
    assert parsed.id == "chatcmpl-fake-response-1" and parsed.model == "gemini-2.5-flash"
    assert parsed.choices[0].message.content == "Hi there."
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None and parsed.usage.total_tokens == 10
    assert (completion.text, completion.finish_reason) == ("Hi there.", "stop")
    assert completion.usage == Usage(7, 3)


def test_cached_and_thought_tokens_and_reasoning_content() -> None:
    answer = response([{"text": "Let me think.", "thought": True}, {"text": "42"}],
                      usage=usage_metadata(100, 5, cached=60, thoughts=20))
    parsed, completion = _translate(answer)
    message = parsed.choices[0].message
    assert message.content == "42"
    assert message.model_extra == {"reasoning_content": "Let me think."}
    assert completion.usage == Usage(100, 25, cached_prompt_tokens=60, reasoning_tokens=20)
    usage = parsed.usage
    assert usage is not None and usage.completion_tokens == 25 and usage.total_tokens == 125
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 60
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 20


def test_missing_usage_is_none_and_absent_from_the_body() -> None:
    parsed, completion = _translate(text_response("x"))
    assert completion.usage is None and parsed.usage is None


def test_parallel_function_calls_become_tool_calls_with_stable_signed_ids() -> None:
    answer = response([call_part("weather", {"city": "Paris"}, SIGNATURE),
                       call_part("weather", {"city": "Rome"})], usage=usage_metadata())
    parsed, completion = _translate(answer)
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls" and completion.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    first, second = (call.model_dump() for call in calls)
    assert first["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert first["id"].startswith("call_") and "_ts_" in first["id"]
    assert first["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    assert signature_of({"id": first["id"]}) == SIGNATURE  # the id alone carries it back
    assert "_ts_" not in second["id"] and "extra_content" not in second
    assert first["id"] != second["id"]
    again, _ = _translate(answer)  # the same answer gives the same ids
    assert again.choices[0].message.tool_calls == calls


@pytest.mark.parametrize(("reason", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("OTHER", "stop"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    parsed, completion = _translate(text_response("x", reason))
    assert parsed.choices[0].finish_reason == expected == completion.finish_reason


def test_several_candidates_become_choices() -> None:
    answer = text_response("a")
    answer["candidates"].append({"index": 1, "content": {"parts": [{"text": "b"}]},
                                 "finishReason": "MAX_TOKENS"})
    parsed, _ = _translate(answer)
    assert [(c.index, c.message.content, c.finish_reason) for c in parsed.choices] == [
        (0, "a", "stop"), (1, "b", "length")]


def test_a_blocked_prompt_is_a_content_filter_error() -> None:
    with pytest.raises(UpstreamRejected) as caught:
        _translate({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}})
    error = caught.value
    assert (error.status, error.code, error.retryable) == (400, "content_filter", False)
    assert "SAFETY" in error.message


def test_no_candidates_without_a_block_is_the_upstreams_fault() -> None:
    with pytest.raises(UpstreamUnavailable):
        _translate({"usageMetadata": {}})


def _error(status: int, message: str = "bad", reason: str = "") -> ProviderError:
    return gemini_error(status, orjson.dumps(error_body(status, message, reason)),
                        ("secret-key", "http://10.0.0.1"))


def test_invalid_argument_passes_through_without_secrets() -> None:
    error = _error(400, "bad field at http://10.0.0.1 with secret-key")
    assert isinstance(error, UpstreamRejected) and not error.retryable
    assert error.message == "bad field at [redacted] with [redacted]"
    assert (error.status, error.error_type, error.code) == (400, "invalid_request_error",
                                                            "invalid_argument")


def test_not_found_passes_through() -> None:
    error = _error(404, "models/x is not found")
    assert isinstance(error, UpstreamRejected) and error.code == "model_not_found"


@pytest.mark.parametrize(("status", "reason", "kind"), [
    (400, "API_KEY_INVALID", UpstreamUnavailable),  # our key, not the request
    (401, "", UpstreamUnavailable), (403, "", UpstreamUnavailable),
    (429, "", UpstreamRateLimited), (500, "", UpstreamUnavailable),
    (503, "", UpstreamUnavailable), (529, "", UpstreamUnavailable),
    (504, "", UpstreamTimeout),
])
def test_retryable_errors_hide_the_message(status: int, reason: str, kind: type[ProviderError]) -> None:
    error = _error(status, "key secret-key is bad", reason)
    assert type(error) is kind and error.retryable
    assert "secret" not in error.message and error.status == status
