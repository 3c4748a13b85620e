"""The built-in mock provider: deterministic OpenAI answers for demos, tests and benchmarks.

The reply is `MockSettings.reply` cut into word-ish pieces (" word" with its leading
space); one piece is one completion token, one content chunk in a stream.
`max_tokens` / `max_completion_tokens` cut the reply (finish reason "length").
Prompt tokens are the router's estimate over the messages' text, so they are stable.
`first_token_delay_ms` waits before the first chunk; `tokens_per_second` paces the
pieces (0 = no waiting).

Magic instructions, read from the last user message, make the mock misbehave on purpose:
- `[[mock:error:503]]` (any HTTP status) fails before the first chunk the way an upstream
  answering that status would (429 rate limited, 400 rejected with an OpenAI error, ...).
- `[[mock:cut:N]]` cuts a stream with an upstream error after N content chunks; it has
  no effect on non-streaming requests.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.gateway_config import MockSettings
from services.router.errors import UpstreamUnavailable
from services.router.providers.base import (
    Completion,
    StreamPiece,
    UpstreamRequest,
    Usage,
    error_for_status,
)

SYSTEM_FINGERPRINT = "fp_apirelay_mock"
_PIECES = re.compile(r"\s*\S+")
_ERROR = re.compile(r"\[\[mock:error:(\d{3})\]\]")
_CUT = re.compile(r"\[\[mock:cut:(\d+)\]\]")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one request gets: its pieces, finish reason, usage, ids and failures."""

    completion_id: str
    created: int
    model: str
    pieces: tuple[str, ...]
    finish_reason: str
    usage: Usage
    cut_after: int | None


class MockProvider:
    """Answers every request itself, following its MockSettings."""

    def __init__(self, settings: MockSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    async def complete(self, request: UpstreamRequest) -> Completion:
        """Return the whole reply as a chat.completion."""
        plan = self._plan(request)
        await self._wait(self._settings.first_token_delay_ms / 1000 + self._pace(len(plan.pieces)))
        text = "".join(plan.pieces)
        body = {
            "id": plan.completion_id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": plan.finish_reason,
            }],
            "usage": _usage_json(plan.usage),
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        return Completion(orjson.dumps(body), plan.usage, plan.finish_reason, text)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """Yield the role chunk, one chunk per piece, the finish chunk, then usage."""
        plan = self._plan(request)
        include_usage = request.chat.include_usage
        await self._wait(self._settings.first_token_delay_ms / 1000)
        role = {"role": "assistant", "content": "", "refusal": None}
        yield StreamPiece(_chunk(plan, role, None, include_usage))
        for sent, piece in enumerate(plan.pieces):
            if sent == plan.cut_after:
                raise UpstreamUnavailable(200, "the upstream stream was cut")
            if sent:
                await self._wait(self._pace(1))
            data = _chunk(plan, {"content": piece}, None, include_usage)
            yield StreamPiece(data, text=piece, is_output=True)
        if plan.cut_after is not None:
            raise UpstreamUnavailable(200, "the upstream stream was cut")
        final = _chunk(plan, {}, plan.finish_reason, include_usage)
        yield StreamPiece(final, finish_reason=plan.finish_reason, is_output=True)
        usage_chunk = _usage_chunk(plan) if include_usage else None
        yield StreamPiece(usage_chunk, usage=plan.usage)

    def _plan(self, request: UpstreamRequest) -> _Plan:
        chat = request.chat
        if match := _ERROR.search(chat.last_user_text):
            status = int(match.group(1))
            raise error_for_status(status, _error_body(status))
        pieces = tuple(_PIECES.findall(self._settings.reply))
        finish_reason = "stop"
        if chat.max_tokens is not None and len(pieces) > chat.max_tokens:
            pieces, finish_reason = pieces[: chat.max_tokens], "length"
        cut = _CUT.search(chat.last_user_text) if chat.stream else None
        return _Plan(
            completion_id="chatcmpl-" + secrets.token_hex(12),
            created=int(self._clock()),
            model=request.upstream_model,
            pieces=pieces,
            finish_reason=finish_reason,
            usage=Usage(chat.estimated_prompt_tokens(), len(pieces)),
            cut_after=int(cut.group(1)) if cut and int(cut.group(1)) <= len(pieces) else None,
        )

    def _pace(self, pieces: int) -> float:
        tps = self._settings.tokens_per_second
        return pieces / tps if tps > 0 else 0.0

    @staticmethod
    async def _wait(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


def _chunk(plan: _Plan, delta: dict[str, Any], finish: str | None, include_usage: bool) -> bytes:
    chunk: dict[str, Any] = {
        "id": plan.completion_id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        # OpenAI sends "usage": null on every chunk but the last when usage was asked for.
        chunk["usage"] = None
    return orjson.dumps(chunk)


def _usage_chunk(plan: _Plan) -> bytes:
    return orjson.dumps({
        "id": plan.completion_id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [],
        "usage": _usage_json(plan.usage),
    })


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _error_body(status: int) -> bytes:
    return orjson.dumps({"error": {
        "message": f"mock upstream error {status}",
        "type": "invalid_request_error",
        "param": None,
        "code": "mock_error",
    }})
