"""The built-in mock provider: deterministic OpenAI answers for demos, tests and benchmarks.

Chat completions, legacy completions and responses answer `MockSettings.reply` cut into
word-ish pieces, one completion token each (see `mock_plan`, which also describes the
magic `[[mock:error:NNN]]` and `[[mock:cut:N]]` instructions, read from the last user
message, the prompt or the input). Prompt tokens are the router's estimate, so they are
stable. `first_token_delay_ms` waits before the first piece; `tokens_per_second` paces
the pieces (0 = no waiting). Embeddings, images and audio are in `mock_media`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable
from functools import partial
from typing import Any

import orjson

from services.common.gateway_config import MockSettings
from services.router.errors import UpstreamUnavailable
from services.router.providers import mock_media, mock_text
from services.router.providers.base import (
    Completion,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
    Usage,
)
from services.router.providers.events import EVENT_STREAM, completions_piece, responses_piece
from services.router.providers.mock_plan import (
    SYSTEM_FINGERPRINT,
    Pacer,
    ReplyPlan,
    check_magic_error,
    plan_reply,
)
from services.router.providers.relay_usage import answer_usage
from services.router.relay_request import Operation

# A speech answer streams in this many pieces.
SPEECH_PIECES = 4


class MockProvider:
    """Answers every request itself, following its MockSettings."""

    def __init__(self, settings: MockSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._pacer = Pacer(settings)

    async def complete(self, request: UpstreamRequest) -> Completion:
        """Return the whole reply as a chat.completion."""
        plan = self._plan(request)
        await self._pacer.first(len(plan.pieces))
        body = {
            "id": plan.reply_id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": plan.text, "refusal": None},
                "logprobs": None,
                "finish_reason": plan.finish_reason,
            }],
            "usage": _usage_json(plan.usage),
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        return Completion(orjson.dumps(body), plan.usage, plan.finish_reason, plan.text)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[StreamPiece, None]:
        """Yield the role chunk, one chunk per piece, the finish chunk, then usage."""
        plan = self._plan(request)
        include_usage = request.chat.include_usage
        await self._pacer.first()
        role = {"role": "assistant", "content": "", "refusal": None}
        yield StreamPiece(_chunk(plan, role, None, include_usage))
        for sent, piece in enumerate(plan.pieces):
            if sent == plan.cut_after:
                raise UpstreamUnavailable(200, "the upstream stream was cut")
            if sent:
                await self._pacer.next()
            data = _chunk(plan, {"content": piece}, None, include_usage)
            yield StreamPiece(data, text=piece, is_output=True)
        if plan.cut_after is not None:
            raise UpstreamUnavailable(200, "the upstream stream was cut")
        final = _chunk(plan, {}, plan.finish_reason, include_usage)
        yield StreamPiece(final, finish_reason=plan.finish_reason, is_output=True)
        usage_chunk = _usage_chunk(plan) if include_usage else None
        yield StreamPiece(usage_chunk, usage=plan.usage, is_last=True)

    def relays(self, operation: Operation) -> bool:
        """Every OpenAI endpoint is served natively."""
        return True

    async def relay(self, attempt: RelayAttempt) -> RelayAnswer:
        """Answer a non-streaming request of another endpoint, as OpenAI would."""
        request = attempt.request
        operation = request.operation
        content_type = mock_media.JSON
        if operation in (Operation.COMPLETIONS, Operation.RESPONSES):
            plan = mock_text.plan(self._settings, attempt, int(self._clock()))
            await self._pacer.first(len(plan.pieces))
            body = (mock_text.completion_body(plan) if operation is Operation.COMPLETIONS
                    else mock_text.response_body(plan, attempt))
        else:
            check_magic_error(request.prompt_text())
            await self._pacer.first()
            body, content_type = self._media(attempt)
        usage, reported = answer_usage(request, body, content_type)
        return RelayAnswer(body, content_type, usage, reported)

    async def relay_stream(self, attempt: RelayAttempt) -> AsyncGenerator[RelayPiece, None]:
        """Stream a completion or a response as events, or speech as audio pieces."""
        request = attempt.request
        if request.operation is Operation.AUDIO_SPEECH:
            check_magic_error(request.prompt_text())
            audio, content_type = mock_media.speech(request)
            await self._pacer.first()
            for sent, data in enumerate(mock_media.split(audio, SPEECH_PIECES)):
                if sent:
                    await self._pacer.next()
                yield RelayPiece(data, is_output=True, content_type=content_type)
            return
        plan = mock_text.plan(self._settings, attempt, int(self._clock()))
        if request.operation is Operation.COMPLETIONS:
            events = mock_text.completion_events(plan, request.include_usage)
            read: Callable[[bytes, bytes], RelayPiece] = partial(
                completions_piece, forward_usage=request.include_usage)
        else:
            events, read = mock_text.response_events(plan, attempt), responses_piece
        async for piece in self._paced(events, read):
            yield piece

    async def _paced(
        self, events: Iterable[tuple[bytes, bytes]], read: Callable[[bytes, bytes], RelayPiece]
    ) -> AsyncGenerator[RelayPiece, None]:
        """The events as pieces, the first delay before them and the pace between texts."""
        await self._pacer.first()
        texts = 0
        for number, (event, payload) in enumerate(events):
            piece = read(event, payload)
            if piece.text:
                if texts:
                    await self._pacer.next()
                texts += 1
            if not number:
                piece.content_type = EVENT_STREAM
            yield piece

    def _media(self, attempt: RelayAttempt) -> tuple[bytes, str]:
        request = attempt.request
        operation = request.operation
        if operation is Operation.EMBEDDINGS:
            return mock_media.embeddings(attempt), mock_media.JSON
        if operation in (Operation.IMAGE_GENERATIONS, Operation.IMAGE_EDITS):
            return mock_media.images(attempt, int(self._clock())), mock_media.JSON
        if operation is Operation.AUDIO_SPEECH:
            return mock_media.speech(request)
        return mock_media.transcript(self._settings, request)

    def _plan(self, request: UpstreamRequest) -> ReplyPlan:
        chat = request.chat
        return plan_reply(
            self._settings, text=chat.last_user_text, max_tokens=chat.max_tokens,
            stream=chat.stream, prompt_tokens=chat.estimated_prompt_tokens(),
            model=request.upstream_model, id_prefix="chatcmpl-", created=int(self._clock()),
        )


def _chunk(
    plan: ReplyPlan, delta: dict[str, Any], finish: str | None, include_usage: bool
) -> bytes:
    chunk: dict[str, Any] = {
        "id": plan.reply_id,
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


def _usage_chunk(plan: ReplyPlan) -> bytes:
    return orjson.dumps({
        "id": plan.reply_id,
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
