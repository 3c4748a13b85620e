"""Token estimates for admission, and counting the text a stream delivered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from edge.domain import ModelInfo
from edge.openai.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    FunctionTool,
)
from services.common.tokens import estimate_tokens

# Chat formats wrap each message in a few role/separator tokens, and the reply in a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
FALLBACK_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request may cost, before the upstream says what it did cost."""

    prompt_tokens: int
    max_completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus the completion cap, for the TPM limit."""
        return self.prompt_tokens + self.max_completion_tokens


def estimate_chat(request: ChatCompletionRequest, model: ModelInfo) -> Estimate:
    """The prompt estimate and the completion cap (times `n`) of a chat request."""
    prompt = TOKENS_PER_REPLY + sum(_message_tokens(m) for m in request.messages)
    for tool in request.tools or ():
        if isinstance(tool, FunctionTool):
            fn = tool.function
            prompt += estimate_tokens(fn.name) + estimate_tokens(fn.description or "")
            if fn.parameters:
                prompt += estimate_tokens(orjson.dumps(fn.parameters).decode())
    cap = (
        request.max_completion_tokens
        or request.max_tokens
        or model.max_output_tokens
        or FALLBACK_MAX_OUTPUT_TOKENS
    )
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


def delta_texts(chunk: bytes) -> list[str]:
    """The generated text in one chat.completion.chunk: content, reasoning, tool arguments."""
    try:
        data: Any = orjson.loads(chunk)
        texts: list[str] = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            for key in ("content", "reasoning_content", "refusal"):
                value = delta.get(key)
                if isinstance(value, str) and value:
                    texts.append(value)
            for call in delta.get("tool_calls") or ():
                args = (call.get("function") or {}).get("arguments")
                if isinstance(args, str) and args:
                    texts.append(args)
        return texts
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return []


def message_texts(body: bytes) -> list[str]:
    """The generated text of a chat.completion body (for usage when none was reported)."""
    try:
        data: Any = orjson.loads(body)
        texts: list[str] = []
        for choice in data.get("choices") or ():
            message = choice.get("message") or {}
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            for call in message.get("tool_calls") or ():
                args = (call.get("function") or {}).get("arguments")
                if isinstance(args, str):
                    texts.append(args)
        return texts
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return []
