"""Failover, the same for every operation: candidates, deadlines, attempts, final errors.

Candidates are the (channel, key) targets of the enabled channels serving the model
whose provider serves the operation (a `Pool`); the balancer picks each next one by
priority, health and load, and `walk.Walk` accounts retries, budget and health. A model
without channels is not found; one whose channels serve none of the operation gets the
caller's error for that. A retryable failure moves on to another target, but only while
nothing reached the client; after the first content was yielded a failure ends the
stream with an in-band error. Each try must produce its first output within its
channel's `first_byte_timeout_s` (and the deadline), else it counts as a timeout. Leading pieces that carry no
output (a role announcement, `response.created`) are held back by the stream's tally
until the first output, so a failure right after them can still fail over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from services.common.gateway_config import ChannelEntry, GatewayConfig
from services.router import metrics
from services.router.affinity import AffinityBook
from services.router.balancer import Balancer, Target
from services.router.budget import RetryBudget, RetryPolicy
from services.router.caps import CapGate
from services.router.channels import NO_KEY_ID
from services.router.errors import ProviderError, UpstreamTimeout
from services.router.health import HealthBook
from services.router.outcomes import (
    MIDSTREAM_ERROR,
    NO_USAGE,
    CompletionError,
    RouteInfo,
    StreamOutcome,
    UsageSource,
    model_not_found,
)
from services.router.providers import KeyedProvider
from services.router.providers.base import Provider
from services.router.walk import Attempt, Pool, Stage, Walk, WalkParts

__all__ = ["Attempt", "Failover", "Pool", "Served", "Tally", "order_channels"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


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
    """Runs a request on a model's (channel, key) targets until one serves it."""

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
        self._rng = rng or random.Random()
        self._clock = clock
        self.health = health or HealthBook(clock=clock)
        self.affinity = affinity or AffinityBook(config.affinity, clock)
        retry = retry or RetryPolicy()
        self._parts = WalkParts(Balancer(self.health, self._rng), RetryBudget(retry), retry,
                                self._rng, clock, self.channel_metrics, self.affinity, caps)
        enabled = [c for c in config.channels if c.enabled]
        self.serving = {m.id: tuple(c for c in enabled if m.id in c.models) for m in config.models}
        self._fallbacks = {m.id: m.fallbacks for m in config.models}
        self._targets = {c.name: _targets(c, providers[c.name]) for c in enabled}
        # Each model's whole pool, built once: most requests walk it unfiltered.
        self._pools = {m: Pool(ch, model_not_found(m), None, self._of(ch))
                       for m, ch in self.serving.items()}
        # Bound on first use: a channel serves few of the operations.
        self._metrics: dict[tuple[str, str], metrics.ChannelMetrics] = {}

    def candidates(self, model: str) -> list[ChannelEntry]:
        """The channels that may serve `model`, in a priority then weighted random order."""
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
        if channels and serves is not None:
            kept = tuple(c for c in channels if serves(self._targets[c.name][0].provider))
            return Pool(kept, unserved or model_not_found(model), serves, self._of(kept))
        if serves is None and model in self._pools:
            return self._pools[model]
        return Pool(channels, model_not_found(model), serves, self._of(channels))

    async def unary(
        self, model: str, operation: str, budget_s: float | None,
        call: Callable[[Attempt], Awaitable[T]], pool: Pool | None = None,
        affinity: str | None = None,
    ) -> Served[T]:
        """Await `call` on targets of `pool` (default: all of `model`'s) until one answers
        or no retry is left; `affinity` is the request's prompt-cache affinity key."""
        walk = self._walk(model, operation, budget_s, pool, affinity)
        try:
            while (attempt := await walk.next()) is not None:
                started = self._clock()
                try:
                    async with asyncio.timeout(attempt.first_byte_s):
                        answer = await call(attempt)
                except TimeoutError:
                    walk.failed(UpstreamTimeout(0, "the upstream did not answer in time"))
                    continue
                except ProviderError as exc:
                    walk.failed(exc)
                    continue
                assert walk.channel_metrics is not None
                walk.channel_metrics.unary_latency.observe(self._clock() - started)
                walk.succeeded(self._clock() - started, "unary")
                walk.count("ok")
                return Served(answer, walk.route)
            return Served(None, walk.route, walk.error())
        finally:
            walk.close()

    async def stream(
        self, model: str, operation: str, budget_s: float | None,
        open_stream: Callable[[Attempt], AsyncGenerator[P, None]],
        new_tally: Callable[[], Tally[P, C]], pool: Pool | None = None,
        affinity: str | None = None,
    ) -> AsyncGenerator[C | StreamOutcome, None]:
        """Yield what the tally delivers of one target's stream (of `pool`, default all of
        `model`'s), then one StreamOutcome; `affinity` as for `unary`."""
        walk = self._walk(model, operation, budget_s, pool, affinity)
        try:
            while (attempt := await walk.next()) is not None:
                tally = new_tally()
                try:
                    async with aclosing(self._deliver(walk, attempt, open_stream(attempt),
                                                      tally)) as out:
                        async for item in out:
                            yield item
                except ProviderError as exc:
                    if tally.delivered:
                        walk.failed(exc, midstream=True)
                        yield tally.outcome(walk.route, MIDSTREAM_ERROR)
                        return
                    walk.failed(exc)
                    continue
                yield tally.outcome(walk.route, None)
                return
            yield StreamOutcome(NO_USAGE, UsageSource.ESTIMATED, "", walk.route, walk.error())
        finally:
            walk.close()

    async def _deliver(
        self, walk: Walk, attempt: Attempt, pieces: AsyncGenerator[P, None], tally: Tally[P, C],
    ) -> AsyncGenerator[C, None]:
        """One upstream stream through its tally, with metrics and the first-byte timeout;
        closes it on exit."""
        started = self._clock()
        try:
            async with aclosing(pieces):
                try:
                    async with asyncio.timeout(attempt.first_byte_s) as first_byte:
                        async for piece in pieces:
                            was_delivered = tally.delivered
                            items = tally.take(piece)
                            if tally.delivered and not was_delivered:
                                # Committed: from here on only the client's deadline.
                                first_byte.reschedule(None)
                                assert walk.channel_metrics is not None
                                walk.channel_metrics.stream_latency.observe(
                                    self._clock() - started)
                                walk.succeeded(self._clock() - started, "stream")
                            for item in items:
                                yield item
                except TimeoutError as exc:
                    raise UpstreamTimeout(0, "the upstream sent nothing in time") from exc
        except (GeneratorExit, asyncio.CancelledError):
            walk.count("cancelled")
            raise
        for item in tally.flush():
            yield item
        if not tally.delivered:
            walk.succeeded(self._clock() - started, "stream")
        walk.count("ok")

    def channel_metrics(self, channel: str, operation: str) -> metrics.ChannelMetrics:
        """The series of `channel` for `operation`, bound once."""
        bound = self._metrics.get((channel, operation))
        if bound is None:
            bound = self._metrics[channel, operation] = metrics.ChannelMetrics(channel, operation)
        return bound

    def _of(self, channels: Sequence[ChannelEntry]) -> tuple[Target, ...]:
        return tuple(t for c in channels for t in self._targets[c.name])

    def _walk(self, model: str, operation: str, budget_s: float | None,
              pool: Pool | None, affinity: str | None) -> Walk:
        first = Stage(model, pool or self.pool(model))

        def fallbacks() -> list[Stage]:
            return [Stage(f, self.pool(f, first.pool.serves, first.pool.empty_error))
                    for f in self._fallbacks.get(model, ()) if f != model]

        deadline = None if budget_s is None else self._clock() + budget_s
        return Walk(fallbacks, first, operation, deadline, self._parts, affinity)


def _targets(channel: ChannelEntry, keyed: Provider | Sequence[KeyedProvider]) -> tuple[Target, ...]:
    """A channel's targets, its weight shared by its keys (a bare provider: one key)."""
    pool = tuple(keyed) if isinstance(keyed, Sequence) else (KeyedProvider(NO_KEY_ID, keyed),)
    return tuple(Target(channel, k.key_id, k.provider, channel.weight / len(pool)) for k in pool)
