"""What a request may consume at most, for admission: tokens and non-token units.

Prompt tokens are estimated from the request's text; the completion cap is what the
request allows (or the model's cap); units are counted exactly where they can be
(images asked for, seconds of the uploaded audio, characters of speech input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from edge.domain import NO_UNITS, ModelInfo
from edge.openai.chat import AssistantMessage, ChatCompletionRequest, ChatMessage, FunctionTool
from edge.openai.completions import LEGACY_DEFAULT_MAX_TOKENS, CompletionRequest
from edge.openai.embeddings import EmbeddingRequest
from edge.openai.responses import ResponsesRequest
from services.common.tokens import estimate_tokens
from services.common.units import AUDIO_SECOND, CHARACTER, audio_seconds, image_unit

# Chat formats wrap each message in a few role/separator tokens, and the reply in a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
FALLBACK_MAX_OUTPUT_TOKENS = 4096
_ITEM_TEXT_KEYS = ("text", "content", "output", "arguments", "refusal")


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request may cost, before the upstream says what it did cost."""

    prompt_tokens: int
    max_completion_tokens: int
    units: Mapping[str, int] = field(default_factory=lambda: NO_UNITS)

    @property
    def total_tokens(self) -> int:
        """Prompt plus the completion cap, for the TPM limit."""
        return self.prompt_tokens + self.max_completion_tokens


def _cap(requested: int | None, model: ModelInfo) -> int:
    if requested is not None:
        return requested
    return model.max_output_tokens or FALLBACK_MAX_OUTPUT_TOKENS


def estimate_chat(request: ChatCompletionRequest, model: ModelInfo) -> Estimate:
    """The prompt estimate and the completion cap (times `n`) of a chat request."""
    prompt = TOKENS_PER_REPLY + sum(_message_tokens(m) for m in request.messages)
    for tool in request.tools or ():
        if isinstance(tool, FunctionTool):
            fn = tool.function
            prompt += estimate_tokens(fn.name) + estimate_tokens(fn.description or "")
            if fn.parameters:
                prompt += estimate_tokens(orjson.dumps(fn.parameters).decode())
    cap = _cap(request.max_completion_tokens or request.max_tokens, model)
    return Estimate(prompt_tokens=prompt, max_completion_tokens=cap * (request.n or 1))


def _message_tokens(message: ChatMessage) -> int:
    tokens = TOKENS_PER_MESSAGE
    content = message.content
    if isinstance(content, str):
        tokens += estimate_tokens(content)
    elif content:
        for part in content:
            text = getattr(part, "text", None) or getattr(part, "refusal", None)
            if isinstance(text, str):
                tokens += estimate_tokens(text)
    if isinstance(message, AssistantMessage) and message.tool_calls:
        for call in message.tool_calls:
            tokens += estimate_tokens(call.function.name) + estimate_tokens(call.function.arguments)
    return tokens


def prompt_tokens(prompt: str | list[str] | list[int] | list[list[int]]) -> int:
    """Tokens of a prompt or embedding input: text estimated, token arrays counted."""
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    total = 0
    for entry in prompt:
        if isinstance(entry, str):
            total += estimate_tokens(entry)
        elif isinstance(entry, list):
            total += len(entry)
        else:  # a single token array: each entry is one token
            total += 1
    return total


def estimate_completion(request: CompletionRequest) -> Estimate:
    """A legacy completion: `max_tokens` (default 16) per choice, per prompt."""
    per_choice = (
        LEGACY_DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
    )
    choices = max(request.n or 1, request.best_of or 0) * request.prompt_count()
    return Estimate(prompt_tokens(request.prompt), per_choice * choices)


def estimate_embedding(request: EmbeddingRequest) -> Estimate:
    """An embedding: its input's tokens, nothing generated."""
    return Estimate(prompt_tokens(request.input), 0)


def estimate_response(request: ResponsesRequest, model: ModelInfo) -> Estimate:
    """A Responses request: input and instructions, capped by max_output_tokens."""
    items = [request.input] if isinstance(request.input, str) else request.input
    prompt = TOKENS_PER_REPLY + estimate_tokens(request.instructions or "")
    prompt += sum(TOKENS_PER_MESSAGE + estimate_tokens(" ".join(_item_texts(i))) for i in items)
    return Estimate(prompt, _cap(request.max_output_tokens, model))


def _item_texts(item: Any) -> Iterable[str]:
    if isinstance(item, str):
        yield item
    elif isinstance(item, list):
        for entry in item:
            yield from _item_texts(entry)
    elif isinstance(item, dict):
        for key in _ITEM_TEXT_KEYS:
            value = item.get(key)
            if isinstance(value, str | list):
                yield from _item_texts(value)


def estimate_images(n: int | None, size: str | None, quality: str | None) -> Estimate:
    """`n` images of one size and quality; no tokens."""
    return Estimate(0, 0, {image_unit(size, quality): n or 1})


def estimate_audio(data: bytes) -> Estimate:
    """A transcription or translation: the uploaded audio's started seconds; no tokens."""
    return Estimate(0, 0, {AUDIO_SECOND: audio_seconds(data)})


def estimate_speech(text: str) -> Estimate:
    """Text to speech: the input's characters; no tokens."""
    return Estimate(0, 0, {CHARACTER: len(text)})
