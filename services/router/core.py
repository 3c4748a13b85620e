"""Routing rules: which channels serve a model, in what order, and when to fail over.

Candidates are the enabled channels serving the model: highest priority first, a
weighted random order within one priority. A retryable failure moves on to the next
candidate, but only while nothing reached the client; after the first chunk was
yielded a failure ends the stream with an in-band error. Leading chunks that carry no
output (the role announcement) are held back until the first output chunk, so a
failure right after them can still fail over.

Final errors when every attempt failed: all rate limited -> 429 `upstream_rate_limited`;
all timed out (or no time left) -> 504 `upstream_timeout`; otherwise 502
`upstream_error`. A non-retryable upstream refusal is the client's error as the
upstream worded it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from services.common.gateway_config import ChannelEntry, GatewayConfig, ModelEntry
from services.router import metrics
from services.router.errors import ProviderError
from services.router.providers.base import Completion, Provider, UpstreamRequest, Usage
from services.router.request import ChatRequest
from services.router.tally import StreamTally

logger = logging.getLogger(__name__)

NO_USAGE = Usage(0, 0)


class UsageSource(enum.Enum):
    """Where a usage came from."""

    UPSTREAM = "upstream"
    ESTIMATED = "estimated"


@dataclass(frozen=True, slots=True)
class CompletionError:
    """An error for the client, in OpenAI terms."""

    http_status: int
    type: str
    code: str
    message: str
    param: str = ""


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """How a request was served: last channel tried, model sent, attempts made."""

    channel: str = ""
    upstream_model: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """The outcome of a non-streaming request."""

    body: bytes
    usage: Usage
    usage_source: UsageSource
    finish_reason: str
    route: RouteInfo
    error: CompletionError | None = None


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """The last item of a stream: usage, finish reason, route, and the error if any."""

    usage: Usage
    usage_source: UsageSource
    finish_reason: str
    route: RouteInfo
    error: CompletionError | None = None


MODEL_NOT_FOUND = "model_not_found"
MIDSTREAM_ERROR = CompletionError(
    502, "server_error", "upstream_error", "The upstream provider failed during the stream."
)


def order_channels(channels: Sequence[ChannelEntry], rng: random.Random) -> list[ChannelEntry]:
    """Highest priority first; within a priority, a weighted random order."""
    ordered: list[ChannelEntry] = []
    for priority in sorted({c.priority for c in channels}, reverse=True):
        pool = [c for c in channels if c.priority == priority]
        while pool:
            pick = rng.random() * sum(c.weight for c in pool)
            index = len(pool) - 1
            for i, channel in enumerate(pool):
                pick -= channel.weight
                if pick < 0:
                    index = i
                    break
            ordered.append(pool.pop(index))
    return ordered


class ModelRouter:
    """Serves chat completions by trying a model's channels in order."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: Mapping[str, Provider],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._metrics = {c.name: metrics.ChannelMetrics(c.name) for c in config.channels}
        self._rng = rng or random.Random()
        self._clock = clock
        enabled = [c for c in config.channels if c.enabled]
        self._serving = {
            m.id: tuple(c for c in enabled if m.id in c.models) for m in config.models
        }
        self._models = tuple(sorted((m for m in config.models if self._serving[m.id]),
                                    key=lambda m: m.id))

    def list_models(self) -> tuple[ModelEntry, ...]:
        """The models at least one enabled channel serves, sorted by id."""
        return self._models

    def candidates(self, model: str) -> list[ChannelEntry]:
        """The channels to try for `model`, in order (empty for an unknown model)."""
        return order_channels(self._serving.get(model, ()), self._rng)

    async def complete(self, chat: ChatRequest, budget_s: float | None = None) -> CompletionResult:
        """Run a non-streaming request, failing over on retryable errors."""
        channels = self.candidates(chat.model)
        if not channels:
            return CompletionResult(b"", NO_USAGE, UsageSource.ESTIMATED, "", RouteInfo(),
                                    _model_not_found(chat.model))
        deadline = None if budget_s is None else self._clock() + budget_s
        failures: list[ProviderError] = []
        route = RouteInfo()
        for attempt, channel in enumerate(channels, 1):
            upstream = self._upstream_request(chat, channel, deadline)
            if upstream is None:
                break
            route = RouteInfo(channel.name, upstream.upstream_model, attempt)
            started = self._clock()
            try:
                answer = await self._providers[channel.name].complete(upstream)
            except ProviderError as exc:
                failures.append(exc)
                if self._failed(channel, exc, more=attempt < len(channels)):
                    continue
                break
            channel_metrics = self._metrics[channel.name]
            channel_metrics.unary_latency.observe(self._clock() - started)
            channel_metrics.count("ok")
            return _result(chat, answer, route)
        return CompletionResult(b"", NO_USAGE, UsageSource.ESTIMATED, "", route,
                                final_error(failures))

    async def stream(
        self, chat: ChatRequest, budget_s: float | None = None
    ) -> AsyncGenerator[bytes | StreamOutcome, None]:
        """Yield chunk bytes, then exactly one StreamOutcome."""
        channels = self.candidates(chat.model)
        if not channels:
            yield StreamOutcome(NO_USAGE, UsageSource.ESTIMATED, "", RouteInfo(),
                                _model_not_found(chat.model))
            return
        deadline = None if budget_s is None else self._clock() + budget_s
        failures: list[ProviderError] = []
        route = RouteInfo()
        for attempt, channel in enumerate(channels, 1):
            upstream = self._upstream_request(chat, channel, deadline)
            if upstream is None:
                break
            route = RouteInfo(channel.name, upstream.upstream_model, attempt)
            tally = StreamTally(chat)
            try:
                async with aclosing(self._attempt(channel, upstream, tally)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except ProviderError as exc:
                if tally.delivered:
                    self._failed(channel, exc, more=False)
                    yield _outcome(tally, route, MIDSTREAM_ERROR)
                    return
                failures.append(exc)
                if self._failed(channel, exc, more=attempt < len(channels)):
                    continue
                break
            yield _outcome(tally, route, None)
            return
        yield StreamOutcome(NO_USAGE, UsageSource.ESTIMATED, "", route, final_error(failures))

    async def _attempt(
        self, channel: ChannelEntry, upstream: UpstreamRequest, tally: StreamTally
    ) -> AsyncGenerator[bytes, None]:
        """One upstream stream: the chunks to deliver, with metrics; closes it on exit."""
        channel_metrics = self._metrics[channel.name]
        started = self._clock()
        try:
            async with aclosing(self._providers[channel.name].stream(upstream)) as pieces:
                async for piece in pieces:
                    was_delivered = tally.delivered
                    for chunk in tally.take(piece):
                        yield chunk
                    if tally.delivered and not was_delivered:
                        channel_metrics.stream_latency.observe(self._clock() - started)
        except (GeneratorExit, asyncio.CancelledError):
            channel_metrics.count("cancelled")
            raise
        for chunk in tally.flush():
            yield chunk
        channel_metrics.count("ok")

    def _upstream_request(
        self, chat: ChatRequest, channel: ChannelEntry, deadline: float | None
    ) -> UpstreamRequest | None:
        """The attempt on `channel`, or None when no time is left for it."""
        timeout = channel.timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - self._clock())
            if timeout <= 0:
                return None
        upstream_model = channel.model_map.get(chat.model, chat.model)
        return UpstreamRequest(chat, upstream_model, timeout)

    def _failed(self, channel: ChannelEntry, exc: ProviderError, *, more: bool) -> bool:
        """Count and log a failed attempt; true when the next channel should be tried."""
        channel_metrics = self._metrics[channel.name]
        channel_metrics.count(exc.kind)
        logger.warning("upstream failed: channel=%s status=%s kind=%s message=%s",
                       channel.name, exc.status, exc.kind, exc.message)
        if exc.retryable and more:
            channel_metrics.failovers.inc()
            return True
        return False


def final_error(failures: Sequence[ProviderError]) -> CompletionError:
    """The client's error once no attempt is left."""
    if failures and not failures[-1].retryable:
        last = failures[-1]
        return CompletionError(last.status, last.error_type, last.code, last.message, last.param)
    kinds = {f.kind for f in failures}
    if kinds == {"rate_limited"}:
        return CompletionError(429, "rate_limit_error", "upstream_rate_limited",
                               "The upstream provider is rate limited; retry later.")
    if kinds <= {"timeout"}:
        return CompletionError(504, "timeout_error", "upstream_timeout",
                               "The upstream provider did not answer in time.")
    return CompletionError(502, "server_error", "upstream_error",
                           "The upstream provider failed; retry later.")


def _model_not_found(model: str) -> CompletionError:
    return CompletionError(404, "invalid_request_error", MODEL_NOT_FOUND,
                           f"The model {model!r} does not exist or is not served.", "model")


def _result(chat: ChatRequest, answer: Completion, route: RouteInfo) -> CompletionResult:
    if answer.usage is not None:
        return CompletionResult(answer.body, answer.usage, UsageSource.UPSTREAM,
                                answer.finish_reason, route)
    usage = Usage(chat.estimated_prompt_tokens(), StreamTally.estimate_completion(answer.text, 0))
    return CompletionResult(answer.body, usage, UsageSource.ESTIMATED, answer.finish_reason, route)


def _outcome(tally: StreamTally, route: RouteInfo, error: CompletionError | None) -> StreamOutcome:
    usage, upstream = tally.usage()
    source = UsageSource.UPSTREAM if upstream else UsageSource.ESTIMATED
    return StreamOutcome(usage, source, tally.finish_reason, route, error)
