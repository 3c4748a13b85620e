"""The router's operations: chat completions and every relayed endpoint, each one
served by the same failover rules (see `failover.py`) and answered as dataclasses
(see `outcomes.py`).

A relayed operation's candidates are the channels whose provider serves it natively
(`Provider.relays`); Responses requests are also served by the other channels, bridged
onto chat (`responses_bridge`), unless they use a feature the bridge cannot serve.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router.affinity import AffinityBook
from services.router.budget import RetryPolicy
from services.router.caps import CapGate
from services.router.failover import Attempt, Failover, Pool
from services.router.health import HealthBook
from services.router.outcomes import (
    NO_USAGE,
    CompletionError,
    CompletionResult,
    RelayResult,
    RouteInfo,
    StreamHead,
    StreamOutcome,
    UsageSource,
    source_of,
)
from services.router.providers import KeyedProvider
from services.router.providers.base import (
    Completion,
    Provider,
    RelayAnswer,
    RelayAttempt,
    RelayPiece,
    StreamPiece,
    UpstreamRequest,
    Usage,
)
from services.router.relay_request import Operation, RelayRequest
from services.router.relay_tally import RelayTally
from services.router.request import ChatRequest
from services.router.responses_bridge import ResponsesBridge, refusal
from services.router.responses_bridge_request import Unbridgeable, chat_of_responses
from services.router.tally import StreamTally

CHAT = "chat_completions"


class ModelRouter:
    """Serves requests by trying a model's (channel, key) targets; `health` is the
    breaker and key state (`health.enable_key` re-enables a disabled key), `affinity` the
    prompt-cache affinity book, `caps` the cap leases and wait queue (None: no caps).
    `account` is the caller's account id ("": no affinity)."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: Mapping[str, Provider | Sequence[KeyedProvider]],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        health: HealthBook | None = None,
        retry: RetryPolicy | None = None,
        affinity: AffinityBook | None = None,
        caps: CapGate | None = None,
    ) -> None:
        self._failover = Failover(config, providers, rng, clock, health=health, retry=retry,
                                  affinity=affinity, caps=caps)
        self.health = self._failover.health
        self.affinity = self._failover.affinity
        serving = self._failover.serving
        self._models = tuple(sorted((m for m in config.models if serving[m.id]),
                                    key=lambda m: m.id))

    def list_models(self) -> tuple[ModelEntry, ...]:
        """The models at least one enabled channel serves, sorted by id."""
        return self._models

    def candidates(self, model: str) -> list[ChannelEntry]:
        """The channels to try for `model`, in order (empty for an unknown model)."""
        return self._failover.candidates(model)

    async def complete(self, chat: ChatRequest, budget_s: float | None = None,
                       account: str = "") -> CompletionResult:
        """Run a non-streaming chat completion, failing over on retryable errors."""
        async def call(attempt: Attempt) -> Completion:
            return await attempt.provider.complete(_chat_attempt(chat, attempt))

        served = await self._failover.unary(chat.model, CHAT, budget_s, call,
                                            affinity=self.affinity.chat_key(account, chat))
        if served.answer is None:
            return CompletionResult(b"", NO_USAGE, UsageSource.ESTIMATED, "", served.route,
                                    served.error)
        return _result(chat, served.answer, served.route)

    def stream(
        self, chat: ChatRequest, budget_s: float | None = None, account: str = ""
    ) -> AsyncGenerator[bytes | StreamOutcome, None]:
        """Yield chunk bytes, then exactly one StreamOutcome."""
        def open_stream(attempt: Attempt) -> AsyncGenerator[StreamPiece, None]:
            return attempt.provider.stream(_chat_attempt(chat, attempt))

        return self._failover.stream(chat.model, CHAT, budget_s, open_stream,
                                     lambda: StreamTally(chat),
                                     affinity=self.affinity.chat_key(account, chat))

    async def relay(self, request: RelayRequest, budget_s: float | None = None,
                    account: str = "") -> RelayResult:
        """Run a non-streaming relayed request, failing over on retryable errors."""
        pool, bridge = self._route(request)

        async def call(attempt: Attempt) -> RelayAnswer:
            if bridge is not None and not attempt.provider.relays(request.operation):
                return await bridge.answer(attempt.provider, attempt.upstream_model,
                                           attempt.timeout_s)
            return await attempt.provider.relay(_relay_attempt(request, attempt))

        operation = request.operation.value
        served = await self._failover.unary(request.model, operation, budget_s, call, pool,
                                            self.affinity.relay_key(account, request))
        answer = served.answer
        if answer is None:
            return RelayResult(b"", "", NO_USAGE, UsageSource.ESTIMATED, served.route,
                               served.error)
        return RelayResult(answer.body, answer.content_type, answer.usage,
                           source_of(answer.reported), served.route)

    def relay_stream(
        self, request: RelayRequest, budget_s: float | None = None, account: str = ""
    ) -> AsyncGenerator[bytes | StreamHead | StreamOutcome, None]:
        """Yield a StreamHead and the pieces once the first content came, then the outcome."""
        pool, bridge = self._route(request)

        def open_stream(attempt: Attempt) -> AsyncGenerator[RelayPiece, None]:
            if bridge is not None and not attempt.provider.relays(request.operation):
                return bridge.events(attempt.provider, attempt.upstream_model,
                                     attempt.timeout_s)
            return attempt.provider.relay_stream(_relay_attempt(request, attempt))

        return self._failover.stream(request.model, request.operation.value, budget_s,
                                     open_stream, lambda: RelayTally(request), pool,
                                     self.affinity.relay_key(account, request))

    def _route(self, request: RelayRequest) -> tuple[Pool, ResponsesBridge | None]:
        """The candidates of a relayed request, and the bridge when some speak only chat."""
        operation = request.operation

        def native(provider: Provider) -> bool:
            return provider.relays(operation)

        pool = self._failover.pool(request.model, native, _not_served(request))
        if operation is not Operation.RESPONSES or \
                len(pool.channels) == len(self._failover.serving.get(request.model, ())):
            return pool, None
        try:
            chat = chat_of_responses(request)
        except Unbridgeable as exc:
            if pool.channels:
                return pool, None  # the native channels can still serve it
            return Pool((), refusal(exc)), None

        def chat_attempt(upstream_model: str, timeout_s: float) -> UpstreamRequest:
            return UpstreamRequest(chat, upstream_model, timeout_s)

        return self._failover.pool(request.model), ResponsesBridge(request, chat_attempt)


def _not_served(request: RelayRequest) -> CompletionError:
    return CompletionError(
        400, "invalid_request_error", "model_not_supported",
        f"The model {request.model!r} is not supported on /v1{request.operation.path}.",
        "model")


def _chat_attempt(chat: ChatRequest, attempt: Attempt) -> UpstreamRequest:
    return UpstreamRequest(chat, attempt.upstream_model, attempt.timeout_s)


def _relay_attempt(request: RelayRequest, attempt: Attempt) -> RelayAttempt:
    return RelayAttempt(request, attempt.upstream_model, attempt.timeout_s)


def _result(chat: ChatRequest, answer: Completion, route: RouteInfo) -> CompletionResult:
    if answer.usage is not None:
        return CompletionResult(answer.body, answer.usage, UsageSource.UPSTREAM,
                                answer.finish_reason, route)
    usage = Usage(chat.estimated_prompt_tokens(), StreamTally.estimate_completion(answer.text, 0))
    return CompletionResult(answer.body, usage, UsageSource.ESTIMATED, answer.finish_reason, route)
