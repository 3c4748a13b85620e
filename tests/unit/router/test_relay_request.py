"""Parsing relayed requests: envelopes, JSON and multipart bodies, inputs for estimates."""

from __future__ import annotations

import orjson
import pytest

from services.common.tokens import estimate_tokens
from services.router.errors import InvalidRelayRequest
from services.router.relay_request import Operation, parse_relay_request
from tests.unit.router.helpers import MULTIPART, form_request, multipart, relay_request


def test_each_operation_has_its_openai_path() -> None:
    assert {op: op.path for op in Operation} == {
        Operation.COMPLETIONS: "/completions",
        Operation.EMBEDDINGS: "/embeddings",
        Operation.IMAGE_GENERATIONS: "/images/generations",
        Operation.IMAGE_EDITS: "/images/edits",
        Operation.AUDIO_TRANSCRIPTIONS: "/audio/transcriptions",
        Operation.AUDIO_TRANSLATIONS: "/audio/translations",
        Operation.AUDIO_SPEECH: "/audio/speech",
        Operation.RESPONSES: "/responses",
    }
    assert {op for op in Operation if op.multipart} == {
        Operation.IMAGE_EDITS, Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS}


def test_json_request_keeps_the_body_and_reads_the_stream_options() -> None:
    body = orjson.dumps({"model": "demo", "prompt": "hi", "stream": True,
                         "stream_options": {"include_usage": True}, "unknown": [1]})
    request = parse_relay_request(Operation.COMPLETIONS, body, "application/json", "demo", "r1",
                                  stream=True)
    assert request.body == body and request.form is None
    assert (request.stream, request.include_usage, request.request_id) == (True, True, "r1")
    assert request.payload["unknown"] == [1]


def test_multipart_request_reads_its_fields() -> None:
    request = form_request(Operation.AUDIO_TRANSCRIPTIONS, {"response_format": "srt"},
                           {"file": ("a.wav", b"RIFF")})
    assert request.form is not None and request.payload == {}
    assert request.field("response_format") == "srt"
    assert request.field("file") is None  # a file is not a text field
    assert request.content_type == MULTIPART


@pytest.mark.parametrize(
    ("operation", "body", "content_type", "model", "stream", "message"),
    [
        (Operation.EMBEDDINGS, b"{nope", "application/json", "demo", False, "JSON"),
        (Operation.EMBEDDINGS, b"[1]", "application/json", "demo", False, "object"),
        (Operation.EMBEDDINGS, b'{"model":"other"}', "application/json", "demo", False, "differ"),
        (Operation.EMBEDDINGS, b'{"model":"demo"}', "application/json", "", False, "required"),
        (Operation.EMBEDDINGS, b'{"model":"demo"}', "application/json", "demo", True, "stream"),
        (Operation.COMPLETIONS, b'{"model":"demo","stream":true}', "application/json", "demo",
         False, "stream"),
        (Operation.RESPONSES, b'{"model":"demo"}', "application/json", "demo", True, "stream"),
        (Operation.IMAGE_EDITS, b'{"model":"demo"}', "application/json", "demo", False,
         "multipart"),
        (Operation.IMAGE_EDITS, multipart({"model": "other"}), MULTIPART, "demo", False,
         "differ"),
        (Operation.IMAGE_EDITS, b"--x\r\nbroken", MULTIPART, "demo", False, "multipart"),
    ],
)
def test_malformed_requests_are_refused(
    operation: Operation, body: bytes, content_type: str, model: str, stream: bool, message: str,
) -> None:
    with pytest.raises(InvalidRelayRequest, match=message):
        parse_relay_request(operation, body, content_type, model, "r", stream=stream)


def test_speech_streams_without_a_stream_field() -> None:
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi", "voice": "alloy"}, stream=True)
    assert request.stream and not request.include_usage


@pytest.mark.parametrize(
    ("operation", "body", "tokens"),
    [
        (Operation.COMPLETIONS, {"prompt": "Say hello to me"}, estimate_tokens("Say hello to me")),
        (Operation.COMPLETIONS, {"prompt": ["one two", "three"]},
         estimate_tokens("one two") + estimate_tokens("three")),
        (Operation.COMPLETIONS, {"prompt": [1, 2, 3, 4]}, 4),
        (Operation.EMBEDDINGS, {"input": [[1, 2], [3, 4, 5]]}, 5),
        (Operation.EMBEDDINGS, {"input": ["alpha", "beta gamma"]},
         estimate_tokens("alpha") + estimate_tokens("beta gamma")),
        (Operation.RESPONSES, {"input": "What is up?", "instructions": "Be brief"},
         estimate_tokens("What is up?") + estimate_tokens("Be brief")),
        (Operation.RESPONSES, {"input": [
            {"role": "user", "content": "hello"},
            {"role": "user", "content": [{"type": "input_text", "text": "big world"},
                                         {"type": "input_image", "image_url": "x"}]},
        ]}, estimate_tokens("hello") + estimate_tokens("big world")),
        (Operation.AUDIO_SPEECH, {"input": "read this"}, estimate_tokens("read this")),
        (Operation.IMAGE_GENERATIONS, {"prompt": "a red cat"}, estimate_tokens("a red cat")),
    ],
)
def test_input_tokens_are_estimated_per_operation(
    operation: Operation, body: dict[str, object], tokens: int
) -> None:
    assert relay_request(operation, body).estimated_input_tokens() == tokens


def test_prompt_text_joins_the_texts_the_client_sent() -> None:
    request = relay_request(Operation.RESPONSES, {"input": [
        {"role": "user", "content": "first [[mock:cut:2]]"},
        {"role": "user", "content": "second"}]})
    assert request.prompt_text() == "first [[mock:cut:2]]\nsecond"
    transcription = form_request(Operation.AUDIO_TRANSCRIPTIONS, {"prompt": "names: Ann"},
                                 {"file": ("a.wav", b"x")})
    assert transcription.prompt_text() == "names: Ann"
