"""edge.delivered: reading generated text from answers and stream pieces."""

from __future__ import annotations

import orjson

from edge.delivered import (
    completion_event_texts,
    completion_texts,
    response_event_texts,
    response_texts,
)


def test_legacy_completion_text() -> None:
    body = orjson.dumps({"choices": [{"text": "a"}, {"text": "b"}, {"text": None}]})
    assert completion_texts(body) == ["a", "b"]
    assert completion_event_texts(b"data: " + body + b"\n\n") == ["a", "b"]
    assert completion_event_texts(b": ping\n\n") == []


def test_responses_deltas_only_from_text_and_argument_events() -> None:
    def event(kind: str, delta: str) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(
            {"type": kind, "delta": delta}) + b"\n\n"

    assert response_event_texts(event("response.output_text.delta", "Hi")) == ["Hi"]
    assert response_event_texts(event("response.function_call_arguments.delta", "{")) == ["{"]
    assert response_event_texts(event("response.audio.delta", "AAAA")) == []
    assert response_event_texts(b"data: not json\n\n") == []


def test_response_object_text() -> None:
    body = orjson.dumps({"output": [
        {"type": "message", "content": [{"type": "output_text", "text": "Hi"},
                                        {"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "arguments": '{"a":1}'},
        "junk",
    ]})
    assert response_texts(body) == ["Hi", "no", '{"a":1}']
    assert response_texts(b"[]") == []
