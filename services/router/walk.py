"""One request's walk through its targets: picks, retries, health, metrics, final error.

The walk asks the balancer for each next (channel, key) of the model's pool; when the
pool is spent and every failure so far was retryable, it goes on with the model's
fallback models (the upstream model changes, the request stays billed as the model the
client asked for). A retry (any try after the first) needs a slot of the retry budget
and waits a fully jittered backoff first, both within the client's deadline. A target
whose caps refuse a lease is skipped; when only such targets are left, the request
waits in the caps' queue for them (services/router/caps.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.common.gateway_config import ChannelEntry
from services.router import metrics
from services.router.affinity import AffinityBook
from services.router.balancer import Balancer, Target
from services.router.budget import RetryBudget, RetryPolicy, backoff_s
from services.router.caps import UPSTREAM_CAPACITY, CapGate, CapTurn
from services.router.errors import ProviderError
from services.router.health import Headroom
from services.router.outcomes import CompletionError, RouteInfo, final_error
from services.router.providers.base import Provider

logger = logging.getLogger(__name__)

NO_UPSTREAM = CompletionError(503, "server_error", "upstream_unavailable",
                              "No upstream is available for this model; retry later.")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try on one (channel, key): its provider, the model id to send, its times.

    `timeout_s` bounds each wait of the provider; `first_byte_s` bounds the try until
    its first output (the whole answer of a unary call), after which it fails over.
    """

    provider: Provider
    upstream_model: str
    timeout_s: float
    key_id: str = "none"
    first_byte_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Pool:
    """The channels that may serve one request, and the client's error when none may."""

    channels: tuple[ChannelEntry, ...]
    empty_error: CompletionError
    serves: Callable[[Provider], bool] | None = None
    targets: tuple[Target, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Stage:
    """A model whose pool the walk tries (the requested one, then its fallbacks)."""

    model: str
    pool: Pool


class Walk:
    """Hands out a request's attempts and accounts their ends."""

    def __init__(self, stages: Callable[[], Sequence[Stage]], first: Stage, operation: str,
                 deadline: float | None, parts: WalkParts, affinity: str | None = None) -> None:
        self._more_stages = stages
        self._stages: list[Stage] = [first]
        self._stage = 0
        self._operation = operation
        self._deadline = deadline
        self._parts = parts
        # The request's prompt-cache affinity key (services/router/affinity.py), if any.
        self._affinity = affinity
        self._remember: str | None = None  # the key whose lookup this request made
        self._tried: list[Target] = []
        self._failures: list[ProviderError] = []
        self._current: Target | None = None
        self._retry_slot = False
        self._timed_out = False
        self.attempts = 0
        self.route = RouteInfo()
        self.channel_metrics: metrics.ChannelMetrics | None = None
        self._caps = CapTurn(parts.caps, parts.clock)
        parts.budget.request_started()

    @property
    def model(self) -> str:
        """The model of the stage being tried."""
        return self._stages[self._stage].model

    async def next(self) -> Attempt | None:
        """The next attempt, or None when the request is done trying."""
        self._end_try()
        if self._failures and not self._failures[-1].retryable:
            return None
        while True:
            stage = self._stages[self._stage]
            health = self._parts.balancer.health
            target = self._sticky(stage) or self._parts.balancer.pick(
                health.weighted(stage.pool.targets), stage.model,
                [*self._tried, *self._caps.capped],
                panic=self.attempts == 0 and not self._caps.capped)
            if target is not None:
                if not await self._caps.admit(target, target.channel.timeout_s):
                    continue
                attempt = await self._start(stage, target)
                if attempt is None:
                    self._caps.release()
                return attempt
            if not self._next_stage() and not await self._caps.wait(self._deadline):
                return None

    def succeeded(self, latency_s: float, mode: str) -> None:
        """The current try answered (its first output, for a stream)."""
        target = self._target()
        self._parts.balancer.health.succeeded(target.channel.name, target.key_id, self.model)
        if self._remember is not None and self._parts.affinity is not None and not self._stage:
            self._parts.affinity.remember(self._remember, target)
        metrics.MODEL_LATENCY.labels(self._stages[0].model, mode).observe(latency_s)

    def count(self, outcome: str) -> None:
        """Count the current try's outcome per channel and per model."""
        if self.channel_metrics is not None:
            self.channel_metrics.count(outcome)
            metrics.MODEL_ATTEMPTS.labels(self._stages[0].model, self.route.channel,
                                          outcome).inc()

    def failed(self, exc: ProviderError, *, midstream: bool = False) -> None:
        """Account a failed try: metrics, log (key id only), health."""
        target = self._target()
        self.count(exc.kind)
        logger.warning(
            "upstream failed: channel=%s key=%s model=%s operation=%s status=%s kind=%s "
            "message=%s", target.channel.name, target.key_id, self.model, self._operation,
            exc.status, exc.kind, exc.message)
        self._parts.balancer.health.failed(target.channel.name, target.key_id, self.model, exc)
        if not midstream:
            self._failures.append(exc)

    def close(self) -> None:
        """The request is over: release what its last try held."""
        self._end_try()
        self._caps.close()
        self._parts.budget.request_ended()

    def error(self) -> CompletionError:
        """The client's error: the pool was empty, nothing was available, or all failed."""
        if self._caps.exhausted:
            return UPSTREAM_CAPACITY
        if self._failures or self._timed_out:
            return final_error(self._failures)
        first = self._stages[0].pool
        return first.empty_error if not first.channels else NO_UPSTREAM

    async def _start(self, stage: Stage, target: Target) -> Attempt | None:
        parts = self._parts
        if self.attempts:
            if not parts.budget.try_retry():
                metrics.RETRIES_DENIED.labels(self._operation).inc()
                return None
            self._retry_slot = True
            pause = backoff_s(parts.policy, self.attempts, parts.rng)
            if self._deadline is not None and parts.clock() + pause >= self._deadline:
                self._timed_out = True
                return None
            await asyncio.sleep(pause)
            if self.channel_metrics is not None:
                self.channel_metrics.failovers.inc()
        channel = target.channel
        timeout, first_byte = channel.timeout_s, channel.try_timeout_s
        if self._deadline is not None:
            left = self._deadline - parts.clock()
            if left <= 0:
                self._timed_out = True
                return None
            timeout, first_byte = min(timeout, left), min(first_byte, left)
        self.attempts += 1
        self._tried.append(target)
        self._current = target
        parts.balancer.acquire(target)
        parts.balancer.health.started(channel.name, target.key_id, stage.model)
        upstream = channel.model_map.get(stage.model, stage.model)
        self.route = RouteInfo(channel.name, upstream, self.attempts)
        self.channel_metrics = parts.channel_metrics(channel.name, self._operation)
        return Attempt(target.provider, upstream, timeout, target.key_id, first_byte)

    def _sticky(self, stage: Stage) -> Target | None:
        """The target remembered for the request's prompt, on its first try, if usable."""
        book, key = self._parts.affinity, self._affinity
        if key is None or book is None or self.attempts or self._stage:
            return None
        # One lookup per request; whichever target then serves it is remembered.
        self._affinity, self._remember = None, key
        health = self._parts.balancer.health
        return book.choose(key, stage.pool.targets,
                           lambda t: health.available(t.channel.name, t.key_id, stage.model))

    def _next_stage(self) -> bool:
        """Go on with the next fallback model; false when there is none (or no reason)."""
        if not self._failures or any(not f.retryable for f in self._failures):
            return False
        if len(self._stages) == 1:
            self._stages.extend(self._more_stages())
        if self._stage + 1 >= len(self._stages):
            return False
        self._stage += 1
        self._tried = []
        metrics.FALLBACKS.labels(self._stages[0].model, self.model).inc()
        return True

    def _target(self) -> Target:
        assert self._current is not None, "no try in progress"
        return self._current

    def _end_try(self) -> None:
        if self._current is not None:
            current = self._current
            self._parts.balancer.release(current)
            # OpenAI-compatible providers expose the key's quota left (health's headroom).
            headroom = getattr(current.provider, "headroom", None)
            if isinstance(headroom, Headroom):
                self._parts.balancer.health.note_headroom(current.channel.name, current.key_id,
                                                          headroom)
            self._current = None
        self._caps.release()
        if self._retry_slot:
            self._parts.budget.retry_ended()
            self._retry_slot = False


@dataclass(frozen=True, slots=True)
class WalkParts:
    """What every walk of one router shares."""

    balancer: Balancer
    budget: RetryBudget
    policy: RetryPolicy
    rng: random.Random
    clock: Callable[[], float]
    channel_metrics: Callable[[str, str], metrics.ChannelMetrics]
    affinity: AffinityBook | None = None
    caps: CapGate | None = None
