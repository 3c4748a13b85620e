"""The mock's other endpoints answer in OpenAI's shapes (checked with the SDK's own
models), deterministically, honouring the request as OpenAI does."""

from __future__ import annotations

import base64
import struct
import zlib

import orjson
import pytest
from openai.types import Completion, CreateEmbeddingResponse, ImagesResponse
from openai.types.audio import Transcription, TranscriptionVerbose, TranslationVerbose
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from services.common.gateway_config import MockSettings
from services.common.units import AUDIO_SECOND, CHARACTER
from services.router.errors import UpstreamRateLimited, UpstreamRejected, UpstreamUnavailable
from services.router.providers.base import RelayAnswer, RelayPiece, Usage
from services.router.providers.mock import MockProvider
from services.router.relay_request import Operation, RelayRequest
from tests.unit.router.helpers import attempt, form_request, relay_request, wav

REPLY = "Hello there, this is a mock."
PIECES = ["Hello", " there,", " this", " is", " a", " mock."]
EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)


def _provider(**settings: float) -> MockProvider:
    return MockProvider(MockSettings(reply=REPLY, **settings), clock=lambda: 1_700_000_123.9)


async def _relay(request: RelayRequest) -> RelayAnswer:
    return await _provider().relay(attempt(request, "up-model"))


async def _stream(request: RelayRequest) -> list[RelayPiece]:
    return [p async for p in _provider().relay_stream(attempt(request, "up-model"))]


async def test_completion_is_a_text_completion_with_usage() -> None:
    request = relay_request(Operation.COMPLETIONS, {"prompt": "Say hi", "max_tokens": 4})
    answer = await _relay(request)
    completion = Completion.model_validate_json(answer.body)
    assert (completion.object, completion.model, completion.created) == \
        ("text_completion", "up-model", 1_700_000_123)
    assert completion.choices[0].text == "".join(PIECES[:4])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert answer.usage == Usage(request.estimated_input_tokens(), 4) and answer.reported


async def test_completion_stream_has_text_chunks_then_a_usage_chunk() -> None:
    request = relay_request(Operation.COMPLETIONS, {
        "prompt": "Say hi", "stream": True, "stream_options": {"include_usage": True}},
        stream=True)
    pieces = await _stream(request)
    assert pieces[0].content_type == "text/event-stream"
    chunks = [orjson.loads(p.data.removeprefix(b"data: ")) for p in pieces if p.data]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == REPLY
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 6 + ["stop"]
    # The SDK's model wants a finish reason, so only the last two validate strictly.
    finish, usage = (Completion.model_validate(c) for c in chunks[-2:])
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == len(PIECES) and finish.id == usage.id
    assert pieces[-1].is_last and not any(p.is_last for p in pieces[:-1])
    assert all(p.data is not None and p.data.endswith(b"\n\n") for p in pieces)


async def test_completion_stream_drops_the_usage_chunk_the_client_did_not_ask_for() -> None:
    pieces = await _stream(relay_request(Operation.COMPLETIONS, {"prompt": "x", "stream": True},
                                         stream=True))
    assert pieces[-1].data is None and pieces[-1].usage == Usage(1, len(PIECES))
    assert all(b'"usage"' not in p.data for p in pieces if p.data)


async def test_response_is_a_response_object_with_output_text_and_usage() -> None:
    request = relay_request(Operation.RESPONSES, {
        "input": "Hi", "instructions": "Be kind", "metadata": {"k": "v"}, "temperature": 0.5})
    answer = await _relay(request)
    response = Response.model_validate_json(answer.body)
    assert response.output_text == REPLY and response.status == "completed"
    assert (response.instructions, response.metadata, response.temperature) == \
        ("Be kind", {"k": "v"}, 0.5)
    assert response.usage is not None and response.usage.output_tokens == len(PIECES)
    assert answer.usage == Usage(request.estimated_input_tokens(), len(PIECES))


async def test_response_stream_is_typed_events_in_sequence_ending_completed() -> None:
    request = relay_request(Operation.RESPONSES, {"input": "Hi", "stream": True}, stream=True)
    pieces = await _stream(request)
    events = []
    for piece in pieces:
        assert piece.data is not None
        name, data = piece.data.split(b"\n", 1)
        event = EVENTS.validate_json(data.removeprefix(b"data: "))
        assert name == f"event: {event.type}".encode()
        events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:4]] == ["response.created", "response.in_progress",
                                            "response.output_item.added",
                                            "response.content_part.added"]
    assert "".join(p.text for p in pieces) == REPLY
    last = events[-1]
    assert last.type == "response.completed" and pieces[-1].is_last
    assert last.response.output_text == REPLY and last.response.usage is not None


async def test_response_cut_by_max_output_tokens_is_incomplete() -> None:
    request = relay_request(Operation.RESPONSES, {"input": "Hi", "stream": True,
                                                  "max_output_tokens": 2}, stream=True)
    pieces = await _stream(request)
    assert pieces[-1].data is not None and pieces[-1].data.startswith(
        b"event: response.incomplete")
    assert pieces[-1].usage == Usage(1, 2)


@pytest.mark.parametrize("operation", [Operation.COMPLETIONS, Operation.RESPONSES])
async def test_magic_prompts_fail_and_cut_text_streams(operation: Operation) -> None:
    field = "prompt" if operation is Operation.COMPLETIONS else "input"
    with pytest.raises(UpstreamRateLimited):
        await _relay(relay_request(operation, {field: "[[mock:error:429]]"}))
    cut = relay_request(operation, {field: "go [[mock:cut:2]]", "stream": True}, stream=True)
    delivered: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for piece in _provider().relay_stream(attempt(cut)):
            delivered.append(piece.text)
    assert "".join(delivered) == "Hello there,"


async def test_embeddings_are_deterministic_unit_vectors_one_per_input() -> None:
    body = {"input": ["alpha", [1, 2, 3]], "dimensions": 8}
    first = CreateEmbeddingResponse.model_validate_json(
        (await _relay(relay_request(Operation.EMBEDDINGS, body))).body)
    again = CreateEmbeddingResponse.model_validate_json(
        (await _relay(relay_request(Operation.EMBEDDINGS, body))).body)
    assert [d.embedding for d in first.data] == [d.embedding for d in again.data]
    assert [d.index for d in first.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in first.data)
    assert abs(sum(v * v for v in first.data[0].embedding) - 1) < 1e-5
    assert first.data[0].embedding != first.data[1].embedding
    assert first.usage.prompt_tokens == relay_request(Operation.EMBEDDINGS, body) \
        .estimated_input_tokens()
    encoded = orjson.loads((await _relay(relay_request(
        Operation.EMBEDDINGS, {**body, "encoding_format": "base64"}))).body)
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert list(decoded) == first.data[0].embedding


async def test_embeddings_default_to_1536_dimensions_and_token_array_is_one_input() -> None:
    answer = await _relay(relay_request(Operation.EMBEDDINGS, {"input": [5, 6, 7]}))
    data = CreateEmbeddingResponse.model_validate_json(answer.body).data
    assert len(data) == 1 and len(data[0].embedding) == 1536
    with pytest.raises(UpstreamRejected):
        await _relay(relay_request(Operation.EMBEDDINGS, {"input": []}))


async def test_embeddings_wider_than_openai_offers_are_refused_like_openai() -> None:
    with pytest.raises(UpstreamRejected) as refused:
        await _relay(relay_request(Operation.EMBEDDINGS, {"input": "x", "dimensions": 3073}))
    assert refused.value.param == "dimensions"


async def test_images_honour_n_and_response_format() -> None:
    urls = ImagesResponse.model_validate_json((await _relay(relay_request(
        Operation.IMAGE_GENERATIONS, {"prompt": "a cat", "n": 3}))).body)
    assert urls.data is not None and len(urls.data) == 3
    assert all((d.url or "").startswith("https://mock.apirelay.invalid/images/") for d in urls.data)
    request = form_request(Operation.IMAGE_EDITS, {"prompt": "hat", "n": "2",
                                                   "response_format": "b64_json",
                                                   "quality": "hd"}, {"image": ("a.png", b"x")})
    answer = await _relay(request)
    images = ImagesResponse.model_validate_json(answer.body)
    assert images.data is not None and len(images.data) == 2
    png = base64.b64decode(images.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    idat = png.index(b"IDAT")
    length = struct.unpack(">I", png[idat - 4:idat])[0]
    assert zlib.decompress(png[idat + 4:idat + 4 + length]) == b"\x00\x10\x80\xf0\xff"
    assert dict(answer.usage.units) == {"image/1024x1024/hd": 2}


@pytest.mark.parametrize("operation",
                         [Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS])
async def test_transcripts_in_every_response_format(operation: Operation) -> None:
    audio = wav(2.5)

    async def transcribe(response_format: str) -> RelayAnswer:
        return await _relay(form_request(operation, {"response_format": response_format},
                                         {"file": ("a.wav", audio)}))

    plain = await transcribe("json")
    assert Transcription.model_validate_json(plain.body).text == REPLY
    assert dict(plain.usage.units) == {AUDIO_SECOND: 3}
    verbose = await transcribe("verbose_json")
    model = TranslationVerbose if operation is Operation.AUDIO_TRANSLATIONS \
        else TranscriptionVerbose
    parsed = model.model_validate_json(verbose.body)
    assert (parsed.duration, parsed.language, parsed.text) == (2.5, "english", REPLY)
    assert parsed.segments is not None and parsed.segments[0].end == 2.5
    assert verbose.reported and dict(verbose.usage.units) == {AUDIO_SECOND: 3}
    text = await transcribe("text")
    assert (text.body, text.content_type) == (f"{REPLY}\n".encode(), "text/plain; charset=utf-8")
    assert (await transcribe("srt")).body == \
        f"1\n00:00:00,000 --> 00:00:02,500\n{REPLY}\n\n".encode()
    assert (await transcribe("vtt")).body.startswith(b"WEBVTT\n\n00:00:00.000 --> 00:00:02.500")
    assert dict(text.usage.units) == {AUDIO_SECOND: 3} and not text.reported


@pytest.mark.parametrize(
    ("response_format", "content_type", "magic"),
    [("mp3", "audio/mpeg", b"ID3"), ("opus", "audio/ogg", b"OggS"), ("aac", "audio/aac", b""),
     ("flac", "audio/flac", b"fLaC"), ("wav", "audio/wav", b"RIFF"), ("pcm", "audio/pcm", b"")],
)
async def test_speech_streams_audio_in_pieces_in_the_asked_format(
    response_format: str, content_type: str, magic: bytes
) -> None:
    short = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi there", "voice": "alloy",
                                                   "response_format": response_format},
                          stream=True)
    pieces = await _stream(short)
    assert len(pieces) > 1 and all(p.is_output for p in pieces)
    assert {p.content_type for p in pieces} == {content_type}
    audio = b"".join(p.data or b"" for p in pieces)
    assert audio.startswith(magic)
    longer = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi there" * 4, "voice": "alloy",
                                                    "response_format": response_format})
    whole = await _relay(longer)
    assert whole.content_type == content_type
    assert len(whole.body) - len(magic) > 3 * (len(audio) - len(magic))
    assert dict(whole.usage.units) == {CHARACTER: 32}
