"""Audio requests: transcriptions and translations (multipart), speech (JSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from edge.openai.base import OpenAIBaseModel
from edge.openai.forms import FormModel, UploadFile
from edge.openai.images import refuse_stream

MAX_SPEECH_INPUT = 4096
TextFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


class _AudioForm(FormModel):
    """What transcriptions and translations share: the audio file and how to read it."""

    file: UploadFile
    model: str = Field(min_length=1)
    prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)


class TranslationForm(_AudioForm):
    """An audio translation request (into English)."""

    response_format: TextFormat | None = None


class TranscriptionForm(_AudioForm):
    """An audio transcription request."""

    language: str | None = None
    response_format: TextFormat | Literal["diarized_json"] | None = None
    timestamp_granularities: list[Granularity] | None = None
    stream: bool | None = None

    _no_stream = field_validator("stream")(refuse_stream)

    @field_validator("timestamp_granularities", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, list) else [value]


class SpeechRequest(OpenAIBaseModel):
    """A text-to-speech request; the answer is binary audio."""

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT)
    voice: str | dict[str, Any]
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4)
    instructions: str | None = None
    stream_format: Literal["audio"] | None = None
