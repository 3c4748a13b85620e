"""The OpenAI-compatible provider's other endpoints against a local scripted upstream:
bodies byte for byte, the model rewritten only when mapped, answers passed through."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from services.common.units import AUDIO_SECOND, CHARACTER
from services.router.errors import UpstreamRateLimited, UpstreamRejected, UpstreamUnavailable
from services.router.providers.base import RelayPiece, Usage
from services.router.relay_request import Operation, RelayRequest
from tests.unit.router.helpers import BOUNDARY, MULTIPART, attempt, form_request, relay_request, wav
from tests.unit.router.scripted import KEY, ScriptedUpstream, streamed

EMBEDDING = orjson.dumps({"object": "list", "data": [{"object": "embedding", "index": 0,
                                                       "embedding": [0.5]}],
                          "model": "up", "usage": {"prompt_tokens": 3, "total_tokens": 3}})


@pytest.mark.parametrize(
    ("operation", "body", "path"),
    [(Operation.EMBEDDINGS, {"input": "hi", "x_unknown": {"a": [1]}}, "/embeddings"),
     (Operation.COMPLETIONS, {"prompt": "hi", "suffix": "!"}, "/completions"),
     (Operation.IMAGE_GENERATIONS, {"prompt": "cat", "style": "vivid"}, "/images/generations"),
     (Operation.RESPONSES, {"input": "hi", "store": False}, "/responses")],
)
async def test_json_request_goes_byte_for_byte_and_the_answer_comes_back_untouched(
    up: ScriptedUpstream, operation: Operation, body: dict[str, object], path: str
) -> None:
    # Spacing orjson would never write proves the client's bytes are sent as they are.
    raw = b'{ "model" : "demo", ' + orjson.dumps(body)[1:]
    request = relay_request(operation, raw, request_id="req_relay")
    answer_body = b'{"data": [], "choices": [], "output": [], "extra": true}'
    up.answer(200, answer_body, content_type="application/json; charset=utf-8")
    answer = await up.provider().relay(attempt(request))
    assert (answer.body, answer.content_type) == (answer_body, "application/json; charset=utf-8")
    sent = up.seen[0]
    assert sent.url == up.base_url + path and sent.body == raw
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-request-id"] == "req_relay"
    assert sent.headers["content-type"] == "application/json"


async def test_json_model_is_replaced_only_when_the_channel_maps_it(up: ScriptedUpstream) -> None:
    up.answer(200, EMBEDDING)
    request = relay_request(Operation.EMBEDDINGS, {"input": ["a", "b"], "dimensions": 4})
    answer = await up.provider().relay(attempt(request, "text-embedding-3-small"))
    assert orjson.loads(up.seen[0].body) == {"model": "text-embedding-3-small",
                                             "input": ["a", "b"], "dimensions": 4}
    assert (answer.usage, answer.reported) == (Usage(3, 0), True)


async def test_multipart_goes_byte_for_byte_with_its_boundary(up: ScriptedUpstream) -> None:
    audio = wav(1.2)
    request = form_request(Operation.AUDIO_TRANSCRIPTIONS, {"response_format": "verbose_json"},
                           {"file": ("speech.wav", audio)}, model="demo-whisper")
    up.answer(200, b'{"text":"hi","duration":1.2,"language":"english"}')
    answer = await up.provider().relay(attempt(request))
    sent = up.seen[0]
    assert sent.url == up.base_url + "/audio/transcriptions"
    assert sent.body == request.body and sent.headers["content-type"] == MULTIPART
    assert answer.usage == Usage(0, 0, units={AUDIO_SECOND: 2}) and answer.reported


async def test_multipart_model_field_alone_is_replaced_when_mapped(up: ScriptedUpstream) -> None:
    request = form_request(Operation.IMAGE_EDITS, {"prompt": "add a hat", "size": "256x256"},
                           {"image": ("cat.png", b"\x89PNG\r\n\x00binary")}, model="demo-image")
    up.answer(200, b'{"created":1,"data":[{"b64_json":"x"},{"b64_json":"y"}]}')
    answer = await up.provider().relay(attempt(request, "dall-e-2"))
    assert up.seen[0].body == request.body.replace(b"\r\n\r\ndemo-image\r\n",
                                                   b"\r\n\r\ndall-e-2\r\n", 1)
    assert BOUNDARY in up.seen[0].headers["content-type"]
    assert dict(answer.usage.units) == {"image/256x256/standard": 2}


async def test_a_plain_text_transcript_passes_through_and_is_timed_by_the_file(
    up: ScriptedUpstream,
) -> None:
    request = form_request(Operation.AUDIO_TRANSLATIONS, {"response_format": "srt"},
                           {"file": ("a.wav", wav(3.5))})
    srt = b"1\n00:00:00,000 --> 00:00:03,500\nHello\n\n"
    up.answer(200, srt, content_type="text/plain; charset=utf-8")
    answer = await up.provider().relay(attempt(request))
    assert (answer.body, answer.content_type) == (srt, "text/plain; charset=utf-8")
    assert answer.usage == Usage(0, 0, units={AUDIO_SECOND: 4}) and not answer.reported


async def test_upstream_errors_map_as_for_chat(up: ScriptedUpstream) -> None:
    request = relay_request(Operation.EMBEDDINGS, {"input": "hi"})
    up.answer(400, orjson.dumps({"error": {"message": f"bad input {KEY}", "param": "input",
                                           "type": "invalid_request_error", "code": None}}))
    with pytest.raises(UpstreamRejected) as rejected:
        await up.provider().relay(attempt(request))
    assert (rejected.value.status, rejected.value.param) == (400, "input")
    assert KEY not in rejected.value.message
    up.answer(429, b"{}")
    with pytest.raises(UpstreamRateLimited):
        await up.provider().relay(attempt(request))
    up.answer(200, b"<html>not json</html>", content_type="text/html")
    with pytest.raises(UpstreamUnavailable):
        await up.provider().relay(attempt(request))


def _sse(*chunks: bytes, names: tuple[str, ...] = ()) -> bytes:
    named = [f"event: {n}\n".encode() for n in names] or [b""] * len(chunks)
    return b"".join(n + b"data: " + c + b"\n\n" for n, c in zip(named, chunks, strict=True))


def _text_chunk(text: str, finish: str | None = None) -> bytes:
    return orjson.dumps({"id": "cmpl-1", "object": "text_completion", "choices": [
        {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})


COMPLETION_USAGE = orjson.dumps({"id": "cmpl-1", "object": "text_completion", "choices": [],
                                 "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                           "total_tokens": 6}})
COMPLETION_STREAM = [_text_chunk(" Hi"), _text_chunk(" you"), _text_chunk("", "stop"),
                     COMPLETION_USAGE]


async def _pieces(up: ScriptedUpstream, request: RelayRequest) -> list[RelayPiece]:
    return [p async for p in up.provider().relay_stream(attempt(request, "up-model"))]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_completions_stream_asks_for_usage_and_forwards_whole_events_without_done(
    up: ScriptedUpstream, include_usage: bool
) -> None:
    body: dict[str, object] = {"prompt": "hi", "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    up.handler = streamed(_sse(*COMPLETION_STREAM) + b"data: [DONE]\n\n")
    pieces = await _pieces(up, relay_request(Operation.COMPLETIONS, body, stream=True))
    sent = orjson.loads(up.seen[0].body)
    assert sent["stream_options"] == {"include_usage": True} and sent["model"] == "up-model"
    assert up.seen[0].headers["accept"] == "text/event-stream"
    expected = [b"data: " + c + b"\n\n" for c in COMPLETION_STREAM]
    assert [p.data for p in pieces] == expected[:3] + [expected[3] if include_usage else None]
    assert pieces[0].content_type == "text/event-stream"
    assert pieces[-1].is_last and pieces[-1].usage == Usage(4, 2)
    assert "".join(p.text for p in pieces) == " Hi you"


async def test_completions_stream_already_asking_for_usage_goes_byte_for_byte(
    up: ScriptedUpstream,
) -> None:
    raw = b'{"model":"demo", "prompt":"hi", "stream":true, "stream_options":{"include_usage":true}}'
    up.handler = streamed(_sse(*COMPLETION_STREAM))
    request = relay_request(Operation.COMPLETIONS, raw, stream=True)
    pieces = [p async for p in up.provider().relay_stream(attempt(request))]
    assert up.seen[0].body == raw
    assert pieces[-1].data == b"data: " + COMPLETION_USAGE + b"\n\n"


RESPONSE_EVENTS = (
    ("response.created", {"response": {"id": "resp_1", "status": "in_progress"}}),
    ("response.output_text.delta", {"delta": "Hel"}),
    ("response.output_text.delta", {"delta": "lo"}),
    ("response.completed", {"response": {"id": "resp_1", "status": "completed", "usage": {
        "input_tokens": 7, "output_tokens": 2, "total_tokens": 9}}}),
)


def _response_stream(events: tuple[tuple[str, dict[str, object]], ...]) -> bytes:
    return _sse(*(orjson.dumps({"type": n, "sequence_number": i, **f})
                  for i, (n, f) in enumerate(events)), names=tuple(n for n, _ in events))


async def test_responses_stream_keeps_event_names_and_marks_the_completed_event_last(
    up: ScriptedUpstream,
) -> None:
    stream = _response_stream(RESPONSE_EVENTS)
    up.handler = streamed(*(stream[i:i + 9] for i in range(0, len(stream), 9)))
    pieces = await _pieces(up, relay_request(Operation.RESPONSES, {"input": "x", "stream": True},
                                             stream=True))
    assert b"".join(p.data or b"" for p in pieces) == stream
    assert [p.is_output for p in pieces] == [False, True, True, False]
    assert [p.is_last for p in pieces] == [False, False, False, True]
    assert pieces[-1].usage == Usage(7, 2)


async def test_responses_stream_without_its_terminal_event_is_cut(up: ScriptedUpstream) -> None:
    up.handler = streamed(_response_stream(RESPONSE_EVENTS[:3]))
    with pytest.raises(UpstreamUnavailable):
        await _pieces(up, relay_request(Operation.RESPONSES, {"input": "x", "stream": True},
                                        stream=True))


async def test_responses_stream_error_event_fails_after_the_events_before_it(
    up: ScriptedUpstream,
) -> None:
    error = (("error", {"code": "server_error", "message": f"boom {KEY}"}),)
    up.handler = streamed(_response_stream(RESPONSE_EVENTS[:2] + error))
    got: list[RelayPiece] = []
    request = relay_request(Operation.RESPONSES, {"input": "x", "stream": True}, stream=True)
    with pytest.raises(UpstreamUnavailable) as caught:
        async for piece in up.provider().relay_stream(attempt(request)):
            got.append(piece)
    assert len(got) == 2 and KEY not in caught.value.message


async def test_speech_streams_audio_as_it_arrives_with_the_upstream_content_type(
    up: ScriptedUpstream,
) -> None:
    release = asyncio.Event()

    async def audio(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "audio/ogg"})
        await response.prepare(request)
        await response.write(b"OggS-first")
        await release.wait()
        await response.write(b"-second")
        return response

    up.handler = audio
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hello", "voice": "alloy"},
                            stream=True)
    stream = up.provider().relay_stream(attempt(request))
    first = await anext(stream)
    assert (first.data, first.content_type, first.is_output) == (b"OggS-first", "audio/ogg", True)
    release.set()
    rest = [p.data async for p in stream]
    assert b"".join(d or b"" for d in rest) == b"-second"
    assert up.seen[0].url == up.base_url + "/audio/speech"
    whole = relay_request(Operation.AUDIO_SPEECH, {"input": "Hello", "voice": "alloy"})
    up.answer(200, b"ID3-all", content_type="audio/mpeg")
    answer = await up.provider().relay(attempt(whole))
    assert (answer.body, answer.content_type) == (b"ID3-all", "audio/mpeg")
    assert dict(answer.usage.units) == {CHARACTER: 5}


async def test_speech_connection_dropped_is_an_error(up: ScriptedUpstream) -> None:
    up.handler = streamed(b"ID3-part", drop=True, content_type="audio/mpeg")
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hello"}, stream=True)
    with pytest.raises(UpstreamUnavailable):
        await _pieces(up, request)
