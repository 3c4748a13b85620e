"""The Responses API request (`POST /v1/responses`), passed through almost untouched.

Only what the gateway itself relies on is checked (the model to route and price, an
input to estimate, the output cap, whether to stream); everything else is the
upstream's to validate, so that new Responses features work without a gateway change.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from edge.openai.base import MAX_TOKEN_CAP, OpenAIBaseModel

MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens


class ResponsesRequest(OpenAIBaseModel):
    """A Responses request; unknown fields travel on untouched."""

    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=MIN_OUTPUT_TOKENS, le=MAX_TOKEN_CAP)
    stream: bool | None = None
