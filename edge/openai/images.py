"""Image requests: `POST /v1/images/generations` (JSON) and `/v1/images/edits` (multipart)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from edge.openai.base import OpenAIBaseModel
from edge.openai.forms import FormModel, UploadFile

MAX_IMAGES = 10
ImageSize = Annotated[str, Field(pattern=r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")]
ImageQuality = Literal["standard", "hd", "low", "medium", "high", "auto"]
ImageFormat = Literal["url", "b64_json"]
NO_STREAM = "this gateway does not stream this endpoint; omit 'stream'"


def refuse_stream(value: bool | None) -> bool | None:
    """Image and transcription streams are not relayed: `stream: true` is a 400."""
    if value:
        raise ValueError(NO_STREAM)
    return value


class ImageGenerationRequest(OpenAIBaseModel):
    """An image generation request; unknown fields travel on untouched.

    `model` is required: OpenAI defaults it to dall-e-2, the gateway routes by it.
    """

    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    n: int | None = Field(default=None, ge=1, le=MAX_IMAGES)
    size: ImageSize | None = None
    quality: ImageQuality | None = None
    style: Literal["vivid", "natural"] | None = None
    response_format: ImageFormat | None = None
    user: str | None = None
    stream: bool | None = None

    _no_stream = field_validator("stream")(refuse_stream)


class ImageEditForm(FormModel):
    """An image edit request (one or several `image` / `image[]` files)."""

    image: Annotated[list[UploadFile], Field(min_length=1)]
    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    mask: UploadFile | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_IMAGES)
    size: ImageSize | None = None
    quality: ImageQuality | None = None
    response_format: ImageFormat | None = None
    user: str | None = None
    stream: bool | None = None

    _no_stream = field_validator("stream")(refuse_stream)

    @field_validator("image", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]
