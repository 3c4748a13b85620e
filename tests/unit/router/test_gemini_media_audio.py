"""Gemini speech, transcriptions and translations against the fake Gemini API: request
bodies, the WAV header, pieces, transcript formats, units, and the client's errors."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator

import pytest
from openai.types.audio import Transcription

from services.common.gateway_config import ChannelEntry
from services.common.units import AUDIO_SECOND, CHARACTER
from services.router.config import Settings
from services.router.errors import UpstreamRejected, UpstreamUnavailable
from services.router.providers import build_provider
from services.router.providers.gemini import GeminiProvider
from services.router.providers.gemini_audio import audio_type, gemini_voice, wav_header
from services.router.relay_request import Operation
from services.router.server import upstream_session
from tests.fakes.gemini_fake import FAKE_KEY, GeminiFake, audio_part, gemini_fake, response
from tests.unit.router.helpers import attempt, form_request, relay_request, wav

PCM = bytes(range(256)) * 400  # 102400 bytes: three pieces of 48000


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        running.answer = response([audio_part(PCM)])
        yield running


@pytest.fixture
async def provider(fake: GeminiFake) -> AsyncIterator[GeminiProvider]:
    channel = ChannelEntry(name="g", type="gemini", models=("demo",), base_url=fake.base_url,
                           api_key_env="GEMINI_API_KEY")
    async with upstream_session(Settings()) as session:
        built = build_provider(channel, session, {"GEMINI_API_KEY": FAKE_KEY})
        assert isinstance(built, GeminiProvider)
        yield built


TTS = "gemini-2.5-flash-preview-tts"


async def test_speech_as_wav_with_the_voice_mapped(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    request = relay_request(Operation.AUDIO_SPEECH, {
        "input": "Héllo there", "voice": "alloy", "response_format": "wav",
        "instructions": "Say cheerfully"})
    answer = await provider.relay(attempt(request, TTS))
    assert answer.content_type == "audio/wav"
    with wave.open(io.BytesIO(answer.body)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, 24000)
        assert read.readframes(read.getnframes()) == PCM
    assert dict(answer.usage.units) == {CHARACTER: 11} and not answer.reported
    sent = fake.received[0]
    assert (sent.model, sent.method) == (TTS, "generateContent")
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "Say cheerfully: Héllo there"}]}],
        "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": {
            "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Zephyr"}}}}}


async def test_speech_streams_raw_pcm_in_pieces(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.answer = response([audio_part(PCM, "audio/L16;codec=pcm;rate=16000")])
    request = relay_request(Operation.AUDIO_SPEECH, {
        "input": "Hi", "voice": "puck", "response_format": "pcm"}, stream=True)
    pieces = [p async for p in provider.relay_stream(attempt(request, TTS))]
    assert [len(p.data or b"") for p in pieces] == [48000, 48000, 6400]
    assert b"".join(p.data or b"" for p in pieces) == PCM
    assert all(p.is_output and p.content_type == "audio/pcm" for p in pieces)
    voice = fake.received[0].body["generationConfig"]["speechConfig"]["voiceConfig"]
    assert voice == {"prebuiltVoiceConfig": {"voiceName": "Puck"}}


async def test_speech_without_format_is_wav_at_the_upstream_rate(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.answer = response([audio_part(PCM, "audio/L16;codec=pcm;rate=16000")])
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi", "voice": "Kore"})
    answer = await provider.relay(attempt(request, TTS))
    assert answer.body[:44] == wav_header(len(PCM), 16000)


@pytest.mark.parametrize(("body", "param"), [
    ({"response_format": "mp3"}, "response_format"),
    ({"response_format": "opus"}, "response_format"),
    ({"voice": "robot"}, "voice"),
    ({"speed": 1.5}, "speed"),
    ({"input": ""}, "input"),
])
async def test_speech_gemini_cannot_make_is_a_400(
    provider: GeminiProvider, fake: GeminiFake, body: dict[str, object], param: str,
) -> None:
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi", "voice": "alloy", **body})
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, TTS))
    assert (caught.value.status, caught.value.param) == (400, param)
    assert fake.received == []


async def test_speech_answer_without_audio_is_the_upstreams_failure(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.answer = response([{"text": "no audio"}])
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Hi", "voice": "alloy"})
    with pytest.raises(UpstreamUnavailable):
        await provider.relay(attempt(request, TTS))


async def test_transcription_json_with_audio_inline_and_seconds_billed(
    provider: GeminiProvider, fake: GeminiFake,
) -> None:
    fake.answer = response([{"text": " Hello world. \n"}])
    audio = wav(2.5)
    request = form_request(Operation.AUDIO_TRANSCRIPTIONS,
                           {"language": "de", "prompt": "Zürich", "temperature": "0.2"},
                           {"file": ("talk.wav", audio)})
    answer = await provider.relay(attempt(request, "gemini-2.5-flash"))
    assert Transcription.model_validate_json(answer.body).text == "Hello world."
    assert answer.content_type == "application/json"
    assert dict(answer.usage.units) == {AUDIO_SECOND: 3} and not answer.reported
    body = fake.received[0].body
    text, blob = body["contents"][0]["parts"]
    assert "Transcribe" in text["text"] and "code de" in text["text"]
    assert "Zürich" in text["text"]
    assert blob == {"inlineData": {"mimeType": "audio/wav",
                                   "data": base64.b64encode(audio).decode()}}
    assert body["generationConfig"] == {"temperature": 0.2}


async def test_translation_as_text(provider: GeminiProvider, fake: GeminiFake) -> None:
    fake.answer = response([{"text": "Good morning."}])
    request = form_request(Operation.AUDIO_TRANSLATIONS, {"response_format": "text"},
                           {"file": ("a.mp3", b"ID3" + bytes(40_000))})
    answer = await provider.relay(attempt(request, "gemini-2.5-flash"))
    assert answer.body == b"Good morning.\n" and answer.content_type.startswith("text/plain")
    assert dict(answer.usage.units) == {AUDIO_SECOND: 3}
    parts = fake.received[0].body["contents"][0]["parts"]
    assert "into English" in parts[0]["text"]
    assert parts[1]["inlineData"]["mimeType"] == "audio/mp3"


@pytest.mark.parametrize("kind", ["srt", "vtt", "verbose_json"])
async def test_timed_transcripts_are_a_400_naming_response_format(
    provider: GeminiProvider, fake: GeminiFake, kind: str,
) -> None:
    request = form_request(Operation.AUDIO_TRANSCRIPTIONS, {"response_format": kind},
                           {"file": ("a.wav", wav(1))})
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "gemini-2.5-flash"))
    assert caught.value.param == "response_format" and fake.received == []


async def test_a_file_that_is_not_audio_is_a_400(provider: GeminiProvider) -> None:
    request = form_request(Operation.AUDIO_TRANSCRIPTIONS, {}, {"file": ("a.txt", b"text")})
    with pytest.raises(UpstreamRejected) as caught:
        await provider.relay(attempt(request, "gemini-2.5-flash"))
    assert caught.value.param == "file"


def test_voices_and_audio_types() -> None:
    assert gemini_voice("ONYX") == "Orus" and gemini_voice("sulafat") == "Sulafat"
    assert audio_type("audio/ogg; codecs=opus", "x.bin") == "audio/ogg"
    assert audio_type("application/octet-stream", "x.m4a") == "audio/mp4"
    assert audio_type("application/octet-stream", "x.flac") == "audio/flac"


def test_wav_header_is_the_canonical_44_bytes() -> None:
    header = wav_header(1000, 24000)
    assert len(header) == 44 and header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert int.from_bytes(header[4:8], "little") == 1036
    assert int.from_bytes(header[24:28], "little") == 24000
    assert int.from_bytes(header[28:32], "little") == 48000
    assert int.from_bytes(header[40:44], "little") == 1000
