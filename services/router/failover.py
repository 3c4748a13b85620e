"""Failover, the same for every operation: candidates, deadlines, attempts, final errors.

Candidates are the enabled channels serving the model whose provider serves the
operation (a `Pool`): highest priority first, a weighted random order within one
priority. A model without channels is not found; one whose channels serve none of the
operation gets the caller's error for that. A retryable failure moves on to the next
candidate, but only while nothing reached the client; after the first content was
yielded a failure ends the stream with an in-band error. Leading pieces that carry no
output (a role announcement, `response.created`) are held back by the stream's tally
until the first output, so a failure right after them can still fail over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from services.common.gateway_config import ChannelEntry, GatewayConfig
from services.router import metrics
from services.router.errors import ProviderError
from services.router.outcomes import (
    MIDSTREAM_ERROR,
    NO_USAGE,
    CompletionError,
    RouteInfo,
    StreamOutcome,
    UsageSource,
    final_error,
    model_not_found,
)
from services.router.providers.base import Provider

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try on one channel: its provider, the model id to send, the time it may take."""

    provider: Provider
    upstream_model: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Pool:
    """The channels that may serve one request, and the client's error when none may."""

    channels: tuple[ChannelEntry, ...]
    empty_error: CompletionError


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """A non-streaming outcome: the answer, or the error once no attempt is left."""

    answer: T | None
    route: RouteInfo
    error: CompletionError | None = None


class Tally(Protocol[P_contra, C_co]):
    """What one streamed attempt delivered; holds pieces back until the first output."""

    @property
    def delivered(self) -> bool:
        """True once something reached the client (no failover after that)."""
        ...

    def take(self, piece: P_contra) -> Sequence[C_co]:
        """Account for `piece`; return what to deliver now (maybe nothing)."""
        ...

    def flush(self) -> Sequence[C_co]:
        """What is still held when the upstream ended without any output."""
        ...

    def outcome(self, route: RouteInfo, error: CompletionError | None) -> StreamOutcome:
        """The end of the stream."""
        ...


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


class Failover:
    """Runs a request on a model's channels in order until one serves it."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: Mapping[str, Provider],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._rng = rng or random.Random()
        self._clock = clock
        enabled = [c for c in config.channels if c.enabled]
        self.serving = {m.id: tuple(c for c in enabled if m.id in c.models) for m in config.models}
        # Bound on first use: a channel serves few of the operations.
        self._metrics: dict[tuple[str, str], metrics.ChannelMetrics] = {}

    def candidates(self, model: str) -> list[ChannelEntry]:
        """The channels to try for `model`, in order (empty for an unknown model)."""
        return order_channels(self.serving.get(model, ()), self._rng)

    def pool(
        self, model: str, serves: Callable[[Provider], bool] | None = None,
        unserved: CompletionError | None = None,
    ) -> Pool:
        """`model`'s channels whose provider `serves` (all when None).

        With none left, the error is model-not-found when the model has no channel at
        all, else `unserved` (the operation is not served for this model).
        """
        channels = self.serving.get(model, ())
        if not channels or serves is None:
            return Pool(channels, model_not_found(model))
        kept = tuple(c for c in channels if serves(self._providers[c.name]))
        return Pool(kept, unserved or model_not_found(model))

    async def unary(
        self, model: str, operation: str, budget_s: float | None,
        call: Callable[[Attempt], Awaitable[T]], pool: Pool | None = None,
    ) -> Served[T]:
        """Await `call` on each candidate of `pool` (default: all of `model`'s) until one
        answers or no retry is left."""
        run = _Run(self, model, operation, budget_s, pool or self.pool(model))
        for attempt in run:
            started = self._clock()
            try:
                answer = await call(attempt)
            except ProviderError as exc:
                if run.failed(exc):
                    continue
                break
            run.metrics.unary_latency.observe(self._clock() - started)
            run.metrics.count("ok")
            return Served(answer, run.route)
        return Served(None, run.route, run.error())

    async def stream(
        self, model: str, operation: str, budget_s: float | None,
        open_stream: Callable[[Attempt], AsyncGenerator[P, None]],
        new_tally: Callable[[], Tally[P, C]], pool: Pool | None = None,
    ) -> AsyncGenerator[C | StreamOutcome, None]:
        """Yield what the tally delivers of one candidate's stream (of `pool`, default all
        of `model`'s), then one StreamOutcome."""
        run = _Run(self, model, operation, budget_s, pool or self.pool(model))
        for attempt in run:
            tally = new_tally()
            try:
                async with aclosing(self._deliver(run.metrics, open_stream(attempt), tally)) as out:
                    async for item in out:
                        yield item
            except ProviderError as exc:
                if tally.delivered:
                    run.failed(exc, midstream=True)
                    yield tally.outcome(run.route, MIDSTREAM_ERROR)
                    return
                if run.failed(exc):
                    continue
                break
            yield tally.outcome(run.route, None)
            return
        yield StreamOutcome(NO_USAGE, UsageSource.ESTIMATED, "", run.route, run.error())

    async def _deliver(
        self, channel_metrics: metrics.ChannelMetrics, pieces: AsyncGenerator[P, None],
        tally: Tally[P, C],
    ) -> AsyncGenerator[C, None]:
        """One upstream stream through its tally, with metrics; closes it on exit."""
        started = self._clock()
        try:
            async with aclosing(pieces):
                async for piece in pieces:
                    was_delivered = tally.delivered
                    for item in tally.take(piece):
                        yield item
                    if tally.delivered and not was_delivered:
                        channel_metrics.stream_latency.observe(self._clock() - started)
        except (GeneratorExit, asyncio.CancelledError):
            channel_metrics.count("cancelled")
            raise
        for item in tally.flush():
            yield item
        channel_metrics.count("ok")

    def channel_metrics(self, channel: str, operation: str) -> metrics.ChannelMetrics:
        """The series of `channel` for `operation`, bound once."""
        bound = self._metrics.get((channel, operation))
        if bound is None:
            bound = self._metrics[channel, operation] = metrics.ChannelMetrics(channel, operation)
        return bound

    def order(self, channels: Sequence[ChannelEntry]) -> list[ChannelEntry]:
        """`channels` in the order to try them."""
        return order_channels(channels, self._rng)

    def attempt(self, channel: ChannelEntry, model: str, deadline: float | None) -> Attempt | None:
        """The try on `channel`, or None when no time is left for it."""
        timeout = channel.timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - self._clock())
            if timeout <= 0:
                return None
        return Attempt(self._providers[channel.name], channel.model_map.get(model, model), timeout)

    def deadline(self, budget_s: float | None) -> float | None:
        """The clock reading by which every attempt must be done."""
        return None if budget_s is None else self._clock() + budget_s


class _Run:
    """One request's walk through its candidates: route, failures and metrics so far."""

    def __init__(self, failover: Failover, model: str, operation: str,
                 budget_s: float | None, pool: Pool) -> None:
        self._failover = failover
        self._model = model
        self._operation = operation
        self._pool = pool
        self._channels = failover.order(pool.channels)
        self._deadline = failover.deadline(budget_s)
        self._failures: list[ProviderError] = []
        self._channel = ""
        self._more = False
        self.route = RouteInfo()
        self.metrics: metrics.ChannelMetrics  # the current attempt's, set by __iter__

    def __iter__(self) -> Iterator[Attempt]:
        for number, channel in enumerate(self._channels, 1):
            attempt = self._failover.attempt(channel, self._model, self._deadline)
            if attempt is None:
                return
            self._channel, self._more = channel.name, number < len(self._channels)
            self.route = RouteInfo(channel.name, attempt.upstream_model, number)
            self.metrics = self._failover.channel_metrics(channel.name, self._operation)
            yield attempt

    def failed(self, exc: ProviderError, *, midstream: bool = False) -> bool:
        """Count and log a failed attempt; true when the next channel should be tried."""
        self.metrics.count(exc.kind)
        logger.warning("upstream failed: channel=%s operation=%s status=%s kind=%s message=%s",
                       self._channel, self._operation, exc.status, exc.kind, exc.message)
        if midstream:
            return False
        self._failures.append(exc)
        if exc.retryable and self._more:
            self.metrics.failovers.inc()
            return True
        return False

    def error(self) -> CompletionError:
        """The client's error: the pool was empty, or every attempt failed."""
        if not self._channels:
            return self._pool.empty_error
        return final_error(self._failures)
