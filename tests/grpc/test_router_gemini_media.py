"""Images, speech, transcriptions and translations through RouterService with a gemini
channel in front of the fake Gemini API; answers checked with the openai SDK's types,
units in the typed usage."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import orjson
import pytest
from openai.types import ImagesResponse
from openai.types.audio import Transcription

from apirelay.common.v1 import usage_pb2
from apirelay.router.v1 import router_pb2, router_pb2_grpc
from services.router.config import Settings
from services.router.server import start
from tests.fakes.gemini_fake import FAKE_KEY, PNG, GeminiFake, audio_part, gemini_fake, response
from tests.unit.router.helpers import MULTIPART, multipart, wav

if TYPE_CHECKING:
    from typing import TypeAlias

    Stub: TypeAlias = router_pb2_grpc.RouterServiceAsyncStub


def _config(base_url: str) -> str:
    return f"""
models:
  - {{id: img}}
  - {{id: tts}}
  - {{id: stt}}
channels:
  - name: gemini
    type: gemini
    base_url: {base_url}
    api_key_env: GEMINI_API_KEY
    model_map: {{img: imagen-4.0-generate-001, tts: gemini-2.5-flash-preview-tts,
                 stt: gemini-2.5-flash}}
    models: [img, tts, stt]
"""


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


@pytest.fixture
async def stub(tmp_path: Path, fake: GeminiFake) -> AsyncIterator[Stub]:
    path = tmp_path / "apirelay.yaml"
    path.write_text(_config(fake.base_url))
    settings = Settings(listen_addr="127.0.0.1:0", config_path=str(path))
    started = await start(settings, environ={"GEMINI_API_KEY": FAKE_KEY})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield router_pb2_grpc.RouterServiceStub(channel)
    await started.stop(0)


def _units(usage: usage_pb2.Usage) -> dict[str, int]:
    return {u.unit: u.quantity for u in usage.units}


async def test_image_generation_bills_one_unit_per_image(stub: Stub, fake: GeminiFake) -> None:
    body = orjson.dumps({"model": "img", "prompt": "a fox", "n": 2, "size": "1024x1024",
                         "quality": "hd", "response_format": "b64_json"})
    result = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_img", operation=router_pb2.OPERATION_IMAGE_GENERATIONS, model="img",
        body=body, content_type="application/json"))
    assert not result.HasField("error")
    parsed = ImagesResponse.model_validate_json(result.body)
    assert [base64.b64decode(d.b64_json or "") for d in parsed.data or []] == [PNG, PNG]
    assert _units(result.usage) == {"image/1024x1024/hd": 2}
    assert result.usage_source == usage_pb2.USAGE_SOURCE_UPSTREAM
    assert (result.route.channel, result.route.upstream_model) == (
        "gemini", "imagen-4.0-generate-001")
    assert fake.received[0].body["parameters"] == {"sampleCount": 2, "aspectRatio": "1:1"}


async def test_an_url_image_is_the_clients_400(stub: Stub, fake: GeminiFake) -> None:
    body = orjson.dumps({"model": "img", "prompt": "a fox", "response_format": "url"})
    result = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_url", operation=router_pb2.OPERATION_IMAGE_GENERATIONS, model="img",
        body=body, content_type="application/json"))
    assert (result.error.http_status, result.error.param) == (400, "response_format")
    assert fake.received == []


async def test_speech_streams_wav_billed_by_characters(stub: Stub, fake: GeminiFake) -> None:
    pcm = bytes(100_000)
    fake.answer = response([audio_part(pcm)])
    body = orjson.dumps({"model": "tts", "input": "Hello world", "voice": "nova",
                         "response_format": "wav"})
    items = [item async for item in stub.StreamRelay(router_pb2.StreamRelayRequest(
        request_id="req_tts", operation=router_pb2.OPERATION_AUDIO_SPEECH, model="tts",
        body=body, content_type="application/json"))]
    audio = b"".join(p for item in items for p in item.pieces)
    assert items[0].content_type == "audio/wav"
    assert audio[:4] == b"RIFF" and audio[44:] == pcm
    end = items[-1].end
    assert not end.HasField("error") and _units(end.usage) == {"character": 11}
    voice = fake.received[0].body["generationConfig"]["speechConfig"]["voiceConfig"]
    assert voice == {"prebuiltVoiceConfig": {"voiceName": "Leda"}}


@pytest.mark.parametrize("operation", [router_pb2.OPERATION_AUDIO_TRANSCRIPTIONS,
                                       router_pb2.OPERATION_AUDIO_TRANSLATIONS])
async def test_transcripts_bill_the_files_seconds(
    stub: Stub, fake: GeminiFake, operation: router_pb2.Operation.ValueType,
) -> None:
    fake.answer = response([{"text": "Hello there."}])
    body = multipart({"model": "stt"}, {"file": ("talk.wav", wav(4.2))})
    result = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_stt", operation=operation, model="stt", body=body,
        content_type=MULTIPART))
    assert not result.HasField("error")
    assert Transcription.model_validate_json(result.body).text == "Hello there."
    assert _units(result.usage) == {"audio_second": 5}
    assert result.usage_source == usage_pb2.USAGE_SOURCE_ESTIMATED
    instruction = fake.received[0].body["contents"][0]["parts"][0]["text"]
    translating = operation == router_pb2.OPERATION_AUDIO_TRANSLATIONS
    assert ("into English" in instruction) is translating


async def test_upstream_failure_is_not_the_clients_fault(stub: Stub, fake: GeminiFake) -> None:
    fake.fail(500, "boom")
    body = orjson.dumps({"model": "img", "prompt": "a fox"})
    result = await stub.Relay(router_pb2.RelayRequest(
        request_id="req_500", operation=router_pb2.OPERATION_IMAGE_GENERATIONS, model="img",
        body=body, content_type="application/json"))
    assert result.error.http_status >= 500 and "boom" not in result.error.message
