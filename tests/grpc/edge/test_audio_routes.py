"""POST /v1/audio/transcriptions, /translations and /speech against fake services."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

import aiohttp
import grpc
import openai
import orjson
import pytest

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2
from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.messages import (
    MODEL,
    Abort,
    Batch,
    Hang,
    cost_text,
    end,
    error,
    relayed,
    unit_usage,
)

SPOKEN = "Hello, world."


def wav(seconds: float) -> bytes:
    """A silent 8 kHz mono WAV file of `seconds`."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * int(8000 * seconds))
    return out.getvalue()


AUDIO = wav(2.5)  # 3 started seconds


def units(message: Any) -> dict[str, int]:
    return {u.unit: u.quantity for u in message}


async def test_sdk_transcription_text_passes_through_with_its_content_type(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_response = relayed(
        b"hello there\n", unit_usage("audio_second", 3), "text/plain; charset=utf-8"
    )
    raw = await sdk.audio.transcriptions.with_raw_response.create(
        model=MODEL, file=("a.wav", AUDIO, "audio/wav"), response_format="text",
        language="en", timestamp_granularities=["segment"],
    )
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.content == b"hello there\n"  # a text answer is never rewritten
    assert raw.headers["x-apirelay-cost-usd"] == cost_text(unit_usage("audio_second", 3))
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_AUDIO_TRANSCRIPTIONS
    assert AUDIO in request.body and request.content_type.startswith("multipart/form-data")
    reserve, = edge.fakes.billing.reserves
    assert (reserve.prompt_tokens, reserve.max_completion_tokens) == (0, 0)
    assert units(reserve.max_units) == {"audio_second": 3}
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {"audio_second": 3}


async def test_sdk_translation_json(sdk: openai.AsyncOpenAI, edge: Edge) -> None:
    body = orjson.dumps({"text": "hello", "usage": {"type": "duration", "seconds": 3}})
    edge.fakes.router.relay_response = relayed(body, unit_usage("audio_second", 3))
    raw = await sdk.audio.translations.with_raw_response.create(
        model=MODEL, file=("a.wav", AUDIO, "audio/wav")
    )
    assert raw.parse().text == "hello"
    assert f'"cost":{cost_text(unit_usage("audio_second", 3))}'.encode() in raw.content
    assert edge.fakes.router.requests[0].operation == router_pb2.OPERATION_AUDIO_TRANSLATIONS


def audio_form(*, file: bool = True, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {"model": MODEL, **fields}.items():
        form.add_field(name, value)
    if file:
        form.add_field("file", AUDIO, filename="a.wav", content_type="audio/wav")
    return form


@pytest.mark.parametrize(
    ("path", "form", "param"),
    [
        ("/v1/audio/transcriptions", audio_form(file=False), "file"),
        ("/v1/audio/transcriptions", audio_form(response_format="mp3"), "response_format"),
        ("/v1/audio/transcriptions", audio_form(temperature="1.5"), "temperature"),
        ("/v1/audio/transcriptions", audio_form(**{"timestamp_granularities[]": "char"}),
         "timestamp_granularities.0"),
        ("/v1/audio/translations", audio_form(file=False), "file"),
        ("/v1/audio/translations", audio_form(model=""), "model"),
    ],
)
async def test_form_validation_names_the_field(
    edge: Edge, path: str, form: aiohttp.FormData, param: str
) -> None:
    response = await edge.client.post(path, data=form, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.billing.reserves == [] and edge.fakes.router.requests == []


async def test_transcription_bills_its_seconds_when_the_router_is_lost(edge: Edge) -> None:
    edge.fakes.router.fail = grpc.StatusCode.UNAVAILABLE
    response = await edge.client.post("/v1/audio/transcriptions", data=audio_form(),
                                      headers=auth())
    assert response.status == 503
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {"audio_second": 3}
    assert settle.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED


async def test_transcription_refused_by_the_upstream_releases_the_hold(edge: Edge) -> None:
    edge.fakes.router.relay_response = router_pb2.RelayResponse(
        error=error(400, "invalid_request_error", "", "bad audio", "file"))
    response = await edge.client.post("/v1/audio/transcriptions", data=audio_form(),
                                      headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "file"
    await edge.settled()
    assert edge.fakes.billing.settles == [] and len(edge.fakes.billing.releases) == 1


# --- speech ----------------------------------------------------------------------------

SPEECH = {"model": MODEL, "input": SPOKEN, "voice": "alloy", "response_format": "mp3"}
CHARS = unit_usage("character", len(SPOKEN))


async def test_sdk_speech_streams_binary_audio_with_the_routers_content_type(
    sdk: openai.AsyncOpenAI, edge: Edge
) -> None:
    edge.fakes.router.relay_content_type = "audio/mpeg"
    edge.fakes.router.script = [b"ID3\x00\x01", Batch([b"\x02\x03", b"\x04"], end(usage_=CHARS))]
    async with sdk.audio.speech.with_streaming_response.create(
        model=MODEL, input=SPOKEN, voice="alloy", response_format="mp3", speed=1.5
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["x-apirelay-cost-usd"] == cost_text(CHARS)
        audio = await response.read()
    assert audio == b"ID3\x00\x01\x02\x03\x04"
    request, = edge.fakes.router.requests
    assert request.operation == router_pb2.OPERATION_AUDIO_SPEECH
    reserve, = edge.fakes.billing.reserves
    assert units(reserve.max_units) == {"character": len(SPOKEN)}
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {"character": len(SPOKEN)}


async def test_speech_failure_after_the_first_byte_breaks_the_body(edge: Edge) -> None:
    edge.fakes.router.relay_content_type = "audio/mpeg"
    edge.fakes.router.script = [b"ID3-partial", Abort(grpc.StatusCode.INTERNAL)]
    response = await edge.client.post("/v1/audio/speech", json=SPEECH, headers=auth())
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await edge.settled()
    settle, = edge.fakes.billing.settles  # audio was delivered: its characters are billed
    assert units(settle.usage.units) == {"character": len(SPOKEN)}


async def test_speech_failure_before_any_audio_is_a_json_error_and_no_charge(
    edge: Edge,
) -> None:
    edge.fakes.router.script = [end(error(429, "rate_limit_error", "", "busy"),
                                    usage_pb2.Usage())]
    response = await edge.client.post("/v1/audio/speech", json=SPEECH, headers=auth())
    assert response.status == 429
    assert response.headers["content-type"] == "application/json"
    await edge.settled()
    assert edge.fakes.billing.settles == [] and len(edge.fakes.billing.releases) == 1


async def test_speech_disconnect_cancels_the_router(edge: Edge) -> None:
    edge.fakes.router.script = [b"first-audio", Hang()]
    response = await edge.client.post("/v1/audio/speech", json=SPEECH, headers=auth())
    assert await response.content.readexactly(len(b"first-audio")) == b"first-audio"
    response.close()
    await asyncio.wait_for(edge.fakes.router.cancelled.wait(), 2)
    await edge.settled()
    settle, = edge.fakes.billing.settles
    assert units(settle.usage.units) == {"character": len(SPOKEN)}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": "x" * 4097}, "input"),
        ({"speed": 5}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"voice": 7}, "voice"),
        ({"input": None}, "input"),
    ],
)
async def test_speech_validation_names_the_param(
    edge: Edge, extra: dict[str, Any], param: str
) -> None:
    response = await edge.client.post("/v1/audio/speech", json={**SPEECH, **extra},
                                      headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert edge.fakes.billing.reserves == []
