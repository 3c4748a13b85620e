"""The embedding request (`POST /v1/embeddings`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge.openai.base import OpenAIBaseModel

MAX_INPUTS = 2048
_Text = Annotated[str, Field(min_length=1)]
_Tokens = Annotated[list[int], Field(min_length=1)]
# OpenAI refuses an empty string or array, and more than 2048 inputs.
# The largest vectors any provider offers today are 4096 wide; this bounds a request's work.
MAX_DIMENSIONS = 8192

EmbeddingInput = (
    _Text
    | Annotated[list[_Text], Field(min_length=1, max_length=MAX_INPUTS)]
    | _Tokens
    | Annotated[list[_Tokens], Field(min_length=1, max_length=MAX_INPUTS)]
)


class EmbeddingRequest(OpenAIBaseModel):
    """An embedding request; unknown fields travel on untouched."""

    model: str = Field(min_length=1)
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    user: str | None = None
