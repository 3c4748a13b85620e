"""The mock's other endpoints: embeddings, images, transcriptions / translations, speech.

Every answer is deterministic for a request and follows OpenAI's documented shapes:
embeddings are unit vectors seeded by the model and the input (`dimensions` honoured,
`encoding_format: base64` as little-endian float32); images are a tiny valid PNG (as
`b64_json`) or a URL that resolves nowhere; transcripts are the configured reply, with
the audio file's measured duration; speech is silent audio whose length grows with the
input, in the requested format.
"""

from __future__ import annotations

import base64
import math
import random
import secrets
import struct
import zlib
from typing import Any

import orjson

from services.common.gateway_config import MockSettings
from services.common.units import audio_duration_s, audio_seconds
from services.router.errors import UpstreamRejected
from services.router.providers.base import RelayAttempt
from services.router.relay_request import Operation, RelayRequest

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
DEFAULT_DIMENSIONS = 1536
MAX_DIMENSIONS = 3072  # text-embedding-3-large's width, the most OpenAI offers
IMAGE_URL = "https://mock.apirelay.invalid/images/{}.png"
MAX_IMAGES = 10
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
               "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
SPEECH_RATE_HZ = 24_000
# 10 ms of 16-bit mono audio per input character, at speed 1.
SPEECH_BYTES_PER_CHARACTER = SPEECH_RATE_HZ * 2 // 100
_MAGIC = {"mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00", "opus": b"OggS", "aac": b"\xff\xf1",
          "flac": b"fLaC"}


def _png() -> bytes:
    """A valid 1x1 RGBA PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\x80\xf0\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(
        b"IEND", b"")


TINY_PNG_B64 = base64.b64encode(_png()).decode()


def embeddings(attempt: RelayAttempt) -> bytes:
    """A `list` of one embedding per input, with the input's token estimate as usage."""
    request = attempt.request
    inputs = _embedding_inputs(request.payload.get("input"))
    dimensions = _positive_int(request.payload.get("dimensions")) or DEFAULT_DIMENSIONS
    if dimensions > MAX_DIMENSIONS:
        raise UpstreamRejected(400, f"This model supports at most {MAX_DIMENSIONS} dimensions.",
                               param="dimensions")
    as_base64 = request.payload.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        seed = attempt.upstream_model.encode() + b"\x00" + orjson.dumps(item)
        packed = _unit_vector(seed, dimensions)
        vector: Any = (base64.b64encode(packed).decode() if as_base64
                       else list(struct.unpack(f"<{dimensions}f", packed)))
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = request.estimated_input_tokens()
    return orjson.dumps({"object": "list", "data": data, "model": attempt.upstream_model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def images(attempt: RelayAttempt, created: int) -> bytes:
    """`n` images as URLs or base64 PNGs, as `response_format` asks."""
    request = attempt.request
    count = min(_int_field(request, "n") or 1, MAX_IMAGES)
    as_base64 = request.field("response_format") == "b64_json"
    prompt = request.field("prompt") or ""
    data = [
        {"b64_json": TINY_PNG_B64} if as_base64
        else {"url": IMAGE_URL.format(secrets.token_hex(12))}
        for _ in range(count)
    ]
    for image in data:
        image["revised_prompt"] = prompt
    return orjson.dumps({"created": created, "data": data})


def transcript(settings: MockSettings, request: RelayRequest) -> tuple[bytes, str]:
    """The reply as a transcript in `response_format`, timed by the file's duration."""
    file = request.form.file("file") if request.form is not None else None
    audio = file.data if file is not None else b""
    duration = (audio_duration_s(audio) or float(audio_seconds(audio))) if audio else 0.0
    text = settings.reply
    translate = request.operation is Operation.AUDIO_TRANSLATIONS
    usage = {} if translate else {"usage": {"type": "duration", "seconds": math.ceil(duration)}}
    kind = request.field("response_format") or "json"
    if kind == "json":
        return orjson.dumps({"text": text, **usage}), JSON
    if kind == "text":
        return f"{text}\n".encode(), TEXT
    if kind == "srt":
        return f"1\n00:00:00,000 --> {_clock(duration, ',')}\n{text}\n\n".encode(), TEXT
    if kind == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> {_clock(duration, '.')}\n{text}\n\n".encode(), TEXT
    if kind == "verbose_json":
        language = "english" if translate else request.field("language") or "english"
        return orjson.dumps({
            "task": "translate" if translate else "transcribe", "language": language,
            "duration": duration, "text": text, "segments": [_segment(text, duration)],
            **usage,
        }), JSON
    raise UpstreamRejected(400, f"Unsupported response_format {kind!r}.",
                           error_type="invalid_request_error", param="response_format")


def speech(request: RelayRequest) -> tuple[bytes, str]:
    """Silent audio in `response_format`, its length proportional to the input."""
    text = request.field("input") or ""
    kind = request.field("response_format") or "mp3"
    content_type = AUDIO_TYPES.get(kind)
    if content_type is None:
        raise UpstreamRejected(400, f"Unsupported response_format {kind!r}.",
                               error_type="invalid_request_error", param="response_format")
    speed = request.payload.get("speed")
    if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= speed <= 4:
        speed = 1.0
    samples = max(1, round(len(text) * SPEECH_BYTES_PER_CHARACTER / 2 / speed))
    pcm = bytes(samples * 2)
    if kind == "wav":
        return _wav_header(len(pcm)) + pcm, content_type
    return _MAGIC.get(kind, b"") + pcm, content_type


def split(data: bytes, pieces: int) -> list[bytes]:
    """`data` in `pieces` nearly equal pieces (fewer when it is shorter)."""
    size = max(1, -(-len(data) // pieces))
    return [data[i:i + size] for i in range(0, len(data), size)]


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        return [value] if all(isinstance(v, int) for v in value) else value
    raise UpstreamRejected(400, "'input' must be a string or a non-empty array.",
                           error_type="invalid_request_error", param="input")


def _unit_vector(seed: bytes, dimensions: int) -> bytes:
    """A deterministic unit vector for `seed`, as little-endian float32."""
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return struct.pack(f"<{dimensions}f", *(v / norm for v in values))


def _int_field(request: RelayRequest, name: str) -> int | None:
    """An integer of the JSON body, or of the form (where every value is text)."""
    if request.form is None:
        return _positive_int(request.payload.get(name))
    text = request.field(name)
    return _positive_int(int(text)) if text and text.strip().isdigit() else None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def _segment(text: str, duration: float) -> dict[str, Any]:
    return {"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text,
            "tokens": list(range(50_364, 50_364 + len(text.split()))), "temperature": 0.0,
            "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.0}


def _wav_header(data_bytes: int) -> bytes:
    byte_rate = SPEECH_RATE_HZ * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SPEECH_RATE_HZ, byte_rate, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))
