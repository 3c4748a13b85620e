"""Parsing the client's body once into a ChatRequest."""

from __future__ import annotations

import orjson
import pytest

from services.common.tokens import estimate_tokens
from services.router.errors import InvalidChatRequest
from services.router.request import ChatRequest, parse_chat_request


def _parse(body: object, model: str = "m", stream: bool = False) -> ChatRequest:
    return parse_chat_request(orjson.dumps(body), model, "req_1", stream=stream)


def test_fields_are_read_from_the_body() -> None:
    chat = _parse({
        "model": "m",
        "max_tokens": 10,
        "max_completion_tokens": 5,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }, stream=True)
    assert chat.max_tokens == 5
    assert chat.include_usage is True
    assert chat.prompt_texts == ("be brief", "hi")
    assert chat.last_user_text == "hi"
    assert chat.estimated_prompt_tokens() == estimate_tokens("be brief") + estimate_tokens("hi")
    assert chat.body == orjson.dumps(chat.payload)


def test_include_usage_only_counts_for_streams() -> None:
    body = {"model": "m", "messages": [], "stream_options": {"include_usage": True}}
    assert _parse(body, stream=False).include_usage is False


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b"not json", "m"),
        (b"[1, 2]", "m"),
        (orjson.dumps({"model": "m", "messages": []}), ""),
        (orjson.dumps({"model": "other", "messages": []}), "m"),
        (orjson.dumps({"model": "m"}), "m"),
        (orjson.dumps({"model": "m", "messages": ["x"]}), "m"),
        (orjson.dumps({"model": "m", "messages": [], "max_tokens": 0}), "m"),
        (orjson.dumps({"model": "m", "messages": [], "max_tokens": "5"}), "m"),
    ],
)
def test_malformed_requests_are_refused(body: bytes, model: str) -> None:
    with pytest.raises(InvalidChatRequest):
        parse_chat_request(body, model, "req_1", stream=False)
