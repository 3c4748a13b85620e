"""OpenAI `/v1/audio/speech`, `/transcriptions` and `/translations` on Gemini.

Speech: generateContent on a TTS model with `responseModalities: ["AUDIO"]` and
`speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName`. OpenAI's voices map to Gemini
voices of a like character (`VOICES`); a Gemini voice name passes through. `instructions`
is said before the text, as Google's style prompts are ("Say cheerfully: ..."). Gemini
answers 16-bit mono PCM (`audio/L16;codec=pcm;rate=24000`): `wav` wraps it in a WAV
header, `pcm` is it raw, and no `response_format` means wav (OpenAI's default mp3 needs
an encoder we do not ship; mp3, opus, aac and flac are a 400 naming response_format).
Gemini has no speed control, so a `speed` other than 1 is a 400 too.

Transcriptions and translations: generateContent with the file as `inlineData` and an
instruction (transcribe verbatim; or translate to English). The answer is `json`
(`{"text"}`) or `text`; srt, vtt and verbose_json need timings Gemini does not give, so
they are a 400 naming response_format. Usage: `character` units of the input for
speech, `audio_second` units of the file for transcripts (`relay_usage`).
"""

from __future__ import annotations

import base64
import mimetypes
import re
import struct
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from services.router.errors import UpstreamUnavailable
from services.router.providers.base import RelayAnswer, RelayAttempt, RelayPiece, field_of
from services.router.providers.gemini_http import GeminiHTTP
from services.router.providers.gemini_media import (
    candidate_parts,
    generate,
    inline_data,
    rejected,
)
from services.router.providers.relay_usage import answer_usage, speech_usage
from services.router.relay_request import Operation, RelayRequest

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
SPEECH_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}
DEFAULT_RATE_HZ = 24_000
# A streamed speech answer goes out in pieces of this size (one second at 24 kHz).
PIECE_BYTES = 48_000
# Google's limit for a whole request with inline data; larger files need its File API.
MAX_INLINE_BYTES = 20 * 1024 * 1024
# OpenAI voice -> the Gemini voice closest in character (Google's voice descriptions).
VOICES = {"alloy": "Zephyr", "ash": "Charon", "ballad": "Algieba", "coral": "Aoede",
          "echo": "Puck", "fable": "Fenrir", "onyx": "Orus", "nova": "Leda", "sage": "Kore",
          "shimmer": "Despina", "verse": "Enceladus", "marin": "Sulafat", "cedar": "Achird"}
GEMINI_VOICES = frozenset({
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe",
    "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib",
    "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima",
    "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat"})
_BY_LOWER = {name.lower(): name for name in GEMINI_VOICES}
TRANSCRIBE = ("Transcribe the speech in this audio verbatim. Answer with the transcript "
              "text only, without timestamps, labels or comments.")
TRANSLATE = ("Translate the speech in this audio into English. Answer with the English "
             "text only, without timestamps, labels or comments.")
TRANSCRIPT_FORMATS = ("json", "text")
_RATE = re.compile(r"rate=(\d+)")
# Extensions OpenAI accepts whose type mimetypes does not know or names otherwise.
_AUDIO_TYPES = {".mp3": "audio/mp3", ".mpga": "audio/mpeg", ".mpeg": "audio/mpeg",
                ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".wav": "audio/wav",
                ".webm": "audio/webm", ".ogg": "audio/ogg", ".flac": "audio/flac",
                ".aac": "audio/aac", ".aiff": "audio/aiff"}


def speech_body(request: RelayRequest) -> dict[str, Any]:
    """The generateContent body of a speech request (400s for what Gemini cannot do)."""
    text = request.field("input")
    if not text:
        raise rejected("input is required", "input")
    speed = request.payload.get("speed")
    if speed is not None and speed != 1:
        raise rejected("this model speaks at one speed only; leave speed out", "speed")
    instructions = request.field("instructions")
    if instructions:
        text = f"{instructions}: {text}"
    voice = {"prebuiltVoiceConfig": {"voiceName": gemini_voice(request.payload.get("voice"))}}
    return {"contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"responseModalities": ["AUDIO"],
                                 "speechConfig": {"voiceConfig": voice}}}


def gemini_voice(voice: Any) -> str:
    """The Gemini voice for an OpenAI voice or a Gemini voice name (any case)."""
    if isinstance(voice, str):
        name = VOICES.get(voice.lower()) or _BY_LOWER.get(voice.lower())
        if name is not None:
            return name
    raise rejected(f"voice must be one of {', '.join(VOICES)} or a Gemini voice name",
                   "voice")


def wav_header(data_bytes: int, rate_hz: int) -> bytes:
    """A 44-byte WAV header for 16-bit mono PCM of `data_bytes` at `rate_hz`."""
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz * 2, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


async def relay_speech(http: GeminiHTTP, attempt: RelayAttempt) -> RelayAnswer:
    """Speech as one WAV or PCM body, billed by the input's characters."""
    audio, content_type = await _speech(http, attempt)
    return RelayAnswer(audio, content_type, speech_usage(attempt.request), reported=False)


async def stream_speech(
    http: GeminiHTTP, attempt: RelayAttempt
) -> AsyncGenerator[RelayPiece, None]:
    """Speech in pieces (Gemini answers it whole; the client still gets it streamed)."""
    audio, content_type = await _speech(http, attempt)
    for start in range(0, len(audio), PIECE_BYTES):
        yield RelayPiece(audio[start:start + PIECE_BYTES], is_output=True,
                         content_type=content_type)


async def relay_transcript(http: GeminiHTTP, attempt: RelayAttempt) -> RelayAnswer:
    """A transcript (or English translation) of the uploaded file, as json or text."""
    request = attempt.request
    kind = request.field("response_format") or "json"
    if kind not in TRANSCRIPT_FORMATS:
        raise rejected(f"response_format must be json or text on this model, not {kind!r}",
                       "response_format")
    answer = await generate(http, attempt, transcript_body(request))
    parts = candidate_parts(answer, "file")
    text = "".join(p["text"] for p in parts if isinstance(field_of(p, "text"), str)
                   and not field_of(p, "thought")).strip()
    if kind == "json":
        body, content_type = orjson.dumps({"text": text}), JSON
    else:
        body, content_type = f"{text}\n".encode(), TEXT
    usage, reported = answer_usage(request, body, content_type)
    return RelayAnswer(body, content_type, usage, reported)


def transcript_body(request: RelayRequest) -> dict[str, Any]:
    """The generateContent body of a transcription or translation."""
    file = request.form.file("file") if request.form is not None else None
    if file is None or not file.data:
        raise rejected("file is required", "file")
    if len(file.data) > MAX_INLINE_BYTES:
        raise rejected(f"file must be at most {MAX_INLINE_BYTES} bytes on this model", "file")
    translate = request.operation is Operation.AUDIO_TRANSLATIONS
    instruction = TRANSLATE if translate else TRANSCRIBE
    language = request.field("language")
    if language and not translate:
        instruction += f" The speech is in the language with ISO-639-1 code {language}."
    prompt = request.field("prompt")
    if prompt:
        instruction += f" Context and spelling guide: {prompt}"
    blob = {"mimeType": audio_type(file.content_type, file.filename or ""),
            "data": base64.b64encode(file.data).decode()}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [
        {"text": instruction}, {"inlineData": blob}]}]}
    temperature = request.field("temperature")
    if temperature:
        try:
            body["generationConfig"] = {"temperature": float(temperature)}
        except ValueError:
            raise rejected("temperature must be a number", "temperature") from None
    return body


def audio_type(content_type: str, filename: str) -> str:
    """The file's audio MIME type: its part's, else by its extension; a 400 if neither."""
    declared = content_type.split(";")[0].strip().lower()
    if declared.startswith("audio/"):
        return declared
    suffix = filename[filename.rfind("."):].lower() if "." in filename else ""
    guessed = _AUDIO_TYPES.get(suffix) or mimetypes.guess_type(filename)[0]
    if guessed is None or not guessed.startswith("audio/"):
        raise rejected("file must be audio (flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or "
                       "webm)", "file")
    return guessed


async def _speech(http: GeminiHTTP, attempt: RelayAttempt) -> tuple[bytes, str]:
    request = attempt.request
    kind = request.field("response_format") or "wav"
    content_type = SPEECH_TYPES.get(kind)
    if content_type is None:
        raise rejected(f"response_format must be wav or pcm on this model, not {kind!r}",
                       "response_format")
    answer = await generate(http, attempt, speech_body(request))
    found = inline_data(candidate_parts(answer, "input"), "audio/")
    if not found:
        raise UpstreamUnavailable(200, "the upstream answered without audio")
    mime, data = found[0]
    try:
        pcm = base64.b64decode(data, validate=True)
    except ValueError:
        raise UpstreamUnavailable(200, "the upstream sent an invalid response") from None
    if kind == "pcm":
        return pcm, content_type
    rate = _RATE.search(mime)
    header = wav_header(len(pcm), int(rate.group(1)) if rate else DEFAULT_RATE_HZ)
    return header + pcm, content_type
