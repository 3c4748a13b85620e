"""The legacy completion request (`POST /v1/completions`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.openai.base import MAX_TOKEN_CAP, OpenAIBaseModel
from edge.openai.chat import StreamOptions

# A prompt is text, texts, one token array or several (OpenAI's four forms).
TokenArray = Annotated[list[int], Field(min_length=1)]
Prompt = (
    str
    | Annotated[list[str], Field(min_length=1)]
    | TokenArray
    | Annotated[list[TokenArray], Field(min_length=1)]
)
LEGACY_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class CompletionRequest(OpenAIBaseModel):
    """A legacy completion request; unknown fields travel on untouched."""

    model: str = Field(min_length=1)
    prompt: Prompt
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKEN_CAP)
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=0, le=20)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    suffix: str | None = None
    seed: int | None = None
    user: str | None = None

    def prompt_count(self) -> int:
        """How many prompts the request holds (each gets `n` completions)."""
        prompt = self.prompt
        if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
            return 1
        return len(prompt)
