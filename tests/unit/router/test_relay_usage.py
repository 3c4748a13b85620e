"""Usage of relayed answers per operation: reported by the upstream, else counted."""

from __future__ import annotations

import orjson
import pytest

from services.common.tokens import estimate_tokens
from services.common.units import AUDIO_SECOND, CHARACTER, audio_seconds
from services.router.errors import UpstreamUnavailable
from services.router.providers.base import Usage
from services.router.providers.relay_usage import answer_usage, stream_estimate
from services.router.relay_request import Operation
from tests.unit.router.helpers import form_request, relay_request, wav

JSON = "application/json"


def test_completions_usage_is_read_or_estimated() -> None:
    request = relay_request(Operation.COMPLETIONS, {"prompt": "Tell me a story"})
    reported = orjson.dumps({"choices": [{"text": "Once"}], "usage": {
        "prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}})
    assert answer_usage(request, reported, JSON) == (Usage(4, 1), True)
    silent = orjson.dumps({"choices": [{"text": "Once upon a time"}]})
    assert answer_usage(request, silent, JSON) == (
        Usage(estimate_tokens("Tell me a story"), estimate_tokens("Once upon a time")), False)


def test_embeddings_usage_has_no_completion_tokens() -> None:
    request = relay_request(Operation.EMBEDDINGS, {"input": [[1, 2, 3], [4]]})
    reported = orjson.dumps({"data": [], "usage": {"prompt_tokens": 9, "total_tokens": 9}})
    assert answer_usage(request, reported, JSON) == (Usage(9, 0), True)
    assert answer_usage(request, b'{"data":[]}', JSON) == (Usage(4, 0), False)


@pytest.mark.parametrize(
    ("body", "unit"),
    [({"prompt": "cat", "n": 2}, "image/1024x1024/standard"),
     ({"prompt": "cat", "size": "1792x1024", "quality": "hd"}, "image/1792x1024/hd")],
)
def test_generated_images_are_counted_by_size_and_quality(
    body: dict[str, object], unit: str
) -> None:
    request = relay_request(Operation.IMAGE_GENERATIONS, body)
    answer = orjson.dumps({"created": 1, "data": [{"url": "a"}, {"url": "b"}],
                           "usage": {"input_tokens": 50, "output_tokens": 60}})
    usage, reported = answer_usage(request, answer, JSON)
    assert reported and dict(usage.units) == {unit: 2}
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, 0)


def test_edited_images_take_size_and_quality_from_the_form() -> None:
    request = form_request(Operation.IMAGE_EDITS, {"prompt": "hat", "size": "512x512"},
                           {"image": ("a.png", b"png")})
    usage, _ = answer_usage(request, b'{"created":1,"data":[{"b64_json":"x"}]}', JSON)
    assert dict(usage.units) == {"image/512x512/standard": 1}


def test_images_answer_without_data_is_an_upstream_failure() -> None:
    request = relay_request(Operation.IMAGE_GENERATIONS, {"prompt": "cat"})
    for body in (b"<html>", b'{"created":1}'):
        with pytest.raises(UpstreamUnavailable):
            answer_usage(request, body, JSON)


@pytest.mark.parametrize(
    ("body", "content_type", "seconds", "reported"),
    [
        (b'{"text":"hi","duration":7.01}', JSON, 8, True),
        (b'{"text":"hi","usage":{"type":"duration","seconds":4}}', "application/json; x=1", 4,
         True),
        (b'{"text":"hi","usage":{"type":"tokens","input_tokens":3}}', JSON, 3, False),
        (b"hi\n", "text/plain; charset=utf-8", 3, False),
        (b"1\n00:00:00,000 --> 00:00:02,500\nhi\n", "text/plain", 3, False),
    ],
)
def test_audio_seconds_come_from_the_upstream_else_from_the_file(
    body: bytes, content_type: str, seconds: int, reported: bool
) -> None:
    audio = wav(2.5)
    assert audio_seconds(audio) == 3
    for operation in (Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS):
        request = form_request(operation, {}, {"file": ("a.wav", audio)})
        usage = answer_usage(request, body, content_type)
        assert usage == (Usage(0, 0, units={AUDIO_SECOND: seconds}), reported)


def test_speech_is_counted_in_characters_of_the_input() -> None:
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Grüße, Welt! 👋"})
    usage, reported = answer_usage(request, b"\xff\xf3audio", "audio/mpeg")
    assert dict(usage.units) == {CHARACTER: len("Grüße, Welt! 👋")} and not reported
    assert stream_estimate(request, [], delivered=True) == usage
    assert stream_estimate(request, [], delivered=False) == Usage(0, 0)


def test_responses_usage_reads_cached_and_reasoning_tokens() -> None:
    request = relay_request(Operation.RESPONSES, {"input": "hi"})
    answer = orjson.dumps({"output": [], "usage": {
        "input_tokens": 20, "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 50}})
    assert answer_usage(request, answer, JSON) == (Usage(20, 30, 8, 12), True)


def test_responses_without_usage_estimate_the_output_text() -> None:
    request = relay_request(Operation.RESPONSES, {"input": "hi there"})
    answer = orjson.dumps({"output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": "Hello you"},
                                        {"type": "refusal", "refusal": "no"}]}]})
    assert answer_usage(request, answer, JSON) == (
        Usage(estimate_tokens("hi there"), estimate_tokens("Hello you")), False)


def test_cut_stream_estimate_counts_at_least_a_token_per_delivered_piece() -> None:
    request = relay_request(Operation.COMPLETIONS, {"prompt": "count", "stream": True},
                            stream=True)
    usage = stream_estimate(request, ["a", "b", "c"], delivered=True)
    assert usage == Usage(estimate_tokens("count"), 3)
