"""The fake's media answers speak Google's wire format: the `google-genai` SDK reads the
image and speech parts it sends, and sends audio input and image / speech configs the
fake accepts. (SDK 3.x offers `generate_images` on Vertex only, so Imagen's :predict is
checked against Google's documented REST shape in test_gemini_media.py instead.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import types

from tests.fakes.gemini_fake import (
    FAKE_KEY,
    PCM_TYPE,
    PNG,
    GeminiFake,
    _invalid,
    audio_part,
    gemini_fake,
    image_part,
    response,
)


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


def _client(fake: GeminiFake) -> genai.Client:
    options = types.HttpOptions(base_url=fake.base_url, retry_options=types.HttpRetryOptions(
        attempts=1))
    return genai.Client(api_key=FAKE_KEY, http_options=options)


async def test_image_generation_config_and_image_part(fake: GeminiFake) -> None:
    fake.answer = response([image_part()])
    answer = await _client(fake).aio.models.generate_content(
        model="gemini-2.5-flash-image", contents="a fox",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"],
                                           image_config=types.ImageConfig(aspect_ratio="16:9")))
    assert answer.parts and answer.parts[0].inline_data is not None
    assert answer.parts[0].inline_data.data == PNG
    assert answer.parts[0].inline_data.mime_type == "image/png"
    assert fake.received[0].body["generationConfig"] == {
        "responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}


async def test_speech_config_and_audio_part(fake: GeminiFake) -> None:
    fake.answer = response([audio_part(b"\x01\x02" * 10)])
    voice = types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore"))
    answer = await _client(fake).aio.models.generate_content(
        model="gemini-2.5-flash-preview-tts", contents="Say hi",
        config=types.GenerateContentConfig(response_modalities=["AUDIO"],
                                           speech_config=types.SpeechConfig(voice_config=voice)))
    blob = answer.parts[0].inline_data if answer.parts else None
    assert blob is not None and blob.data == b"\x01\x02" * 10 and blob.mime_type == PCM_TYPE
    # The SDK sends nested fields in snake_case, which Google (proto JSON) accepts too.
    sent = types.SpeechConfig.model_validate(
        fake.received[0].body["generationConfig"]["speechConfig"])
    assert sent.voice_config and sent.voice_config.prebuilt_voice_config
    assert sent.voice_config.prebuilt_voice_config.voice_name == "Kore"


async def test_audio_input_inline(fake: GeminiFake) -> None:
    fake.answer = response([{"text": "hello"}])
    answer = await _client(fake).aio.models.generate_content(
        model="gemini-2.5-flash", contents=[
            "Transcribe this", types.Part.from_bytes(data=b"RIFFxxxx", mime_type="audio/wav")])
    assert answer.text == "hello"
    parts = fake.received[0].body["contents"][0]["parts"]
    blob = types.Part.model_validate(parts[1]).inline_data
    assert blob is not None and (blob.mime_type, blob.data) == ("audio/wav", b"RIFFxxxx")


def test_a_wrong_image_config_is_refused_as_google_does() -> None:
    problem = _invalid("generateContent", {"contents": [], "generationConfig": {
        "imageConfig": {"aspectRatio": "16:9", "colour": "red"}}})
    assert problem is not None and "imageConfig" in problem
    assert _invalid("predict", {"instances": [{"prompt": "x"}],
                                "parameters": {"sampleCount": 9}}) is not None
