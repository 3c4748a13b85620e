"""Load against rate-limit replicas, and the figures an accuracy run is judged by.

Every call is logged as a Decision with the time the limiter used (Redis TIME, from the
response's `decided_at`), so the oracles measure windows on the limiter's own clock.
Calls that fail are logged with their status code, never dropped.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import grpc

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from apirelay.ratelimit.v1 import ratelimit_pb2_grpc

CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    """One call as its client saw it; `at_us` is the store's clock (None: decided locally)."""

    client: int
    replica: int
    allowed: bool
    at_us: int | None
    local: bool
    sent_s: float
    done_s: float
    error: str = ""

    @property
    def latency_s(self) -> float:
        """Seconds from sending the call to its answer."""
        return self.done_s - self.sent_s

    @property
    def at_ms(self) -> int:
        """The store's millisecond (what windows are measured in); raises if local."""
        if self.at_us is None:
            raise ValueError("decided locally: no store time")
        return self.at_us // 1000


class Replicas:
    """One channel and stub per replica address; an async context manager."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.channels = [grpc.aio.insecure_channel(address) for address in addresses]
        self.stubs: list[Any] = [ratelimit_pb2_grpc.RateLimitServiceStub(c) for c in self.channels]

    async def __aenter__(self) -> Self:
        await asyncio.gather(*(channel.channel_ready() for channel in self.channels))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels))

    def __len__(self) -> int:
        return len(self.stubs)

    async def acquire(self, client: int, replica: int, request: pb.AcquireLeaseRequest) -> Decision:
        """AcquireLease on one replica, as a Decision."""
        return await self._call(client, replica, self.stubs[replica].AcquireLease(
            request, timeout=CALL_TIMEOUT_S))

    async def check(self, client: int, replica: int, request: pb.CheckLimitsRequest) -> Decision:
        """CheckLimits on one replica, as a Decision."""
        return await self._call(client, replica, self.stubs[replica].CheckLimits(
            request, timeout=CALL_TIMEOUT_S))

    async def release(self, replica: int, request: pb.ReleaseLeaseRequest) -> int | None:
        """ReleaseLease on one replica: the store time of the release, None if not released."""
        reply = await self.stubs[replica].ReleaseLease(request, timeout=CALL_TIMEOUT_S)
        if not reply.released:
            return None
        return _micros(reply) if reply.HasField("decided_at") else 0

    @staticmethod
    async def _call(client: int, replica: int, call: Awaitable[Any]) -> Decision:
        sent = time.monotonic()
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            return Decision(client, replica, False, None, False, sent, time.monotonic(),
                            exc.code().name)
        allowed = reply.decision in (pb.LEASE_DECISION_ALLOWED, pb.CHECK_DECISION_ALLOWED)
        at_us = _micros(reply) if reply.HasField("decided_at") else None
        return Decision(client, replica, allowed, at_us, reply.local_fallback, sent,
                        time.monotonic())


def _micros(reply: Any) -> int:
    return int(reply.decided_at.seconds) * 1_000_000 + int(reply.decided_at.nanos) // 1_000


Step = Callable[[int, random.Random], Awaitable[None]]


async def paced(clients: int, duration_s: float, rate_per_s: float, seed: int, step: Step) -> None:
    """`clients` loops for `duration_s`, each running `step` then pausing, ~`rate_per_s` in all.

    Pauses are exponential (a Poisson-like arrival stream); every loop has its own seeded
    random generator, so a run is repeatable given the seed.
    """
    deadline = time.monotonic() + duration_s
    mean_pause = clients / rate_per_s

    async def loop(client: int) -> None:
        rng = random.Random(f"{seed}:{client}")
        await asyncio.sleep(rng.uniform(0, mean_pause))
        while time.monotonic() < deadline:
            await step(client, rng)
            pause = rng.expovariate(1 / mean_pause)
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    await asyncio.gather(*(loop(client) for client in range(clients)))


def window_excess(times_ms: Sequence[int], window_ms: int, limit: int) -> list[int]:
    """Per admission, how far the window (t - W, t] ending at it exceeds `limit` (0: held).

    An admission at t counts every admission in (t - W, t]: exactly the sliding window
    log's promise, checked for ANY window of length W, not only aligned ones.
    """
    ordered = sorted(times_ms)
    excess, first = [], 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window_ms:
            first += 1
        excess.append(max(0, last - first + 1 - limit))
    return excess


def over_admission(times_ms: Sequence[int], window_ms: int, limit: int) -> int:
    """The worst excess over `limit` in any window of length W (0: the limit held)."""
    return max(window_excess(times_ms, window_ms, limit), default=0)


def violations(times_ms: Sequence[int], window_ms: int, limit: int) -> int:
    """How many admissions left their window over `limit`."""
    return sum(n > 0 for n in window_excess(times_ms, window_ms, limit))


def weighted_over_admission(
    admissions: Sequence[tuple[int, int]], window_ms: int, limit: int
) -> int:
    """`over_admission` for weighted admissions (time in ms, weight)."""
    ordered = sorted(admissions)
    worst, first, total = 0, 0, 0
    for t, weight in ordered:
        total += weight
        while ordered[first][0] <= t - window_ms:
            total -= ordered[first][1]
            first += 1
        worst = max(worst, total - limit)
    return worst


def aligned_counts(times_ms: Sequence[int], window_ms: int, windows: int) -> list[int]:
    """Admissions in consecutive windows starting at the first admission."""
    if not times_ms:
        return [0] * windows
    start = min(times_ms)
    counts = [0] * windows
    for t in times_ms:
        index = (t - start) // window_ms
        if index < windows:
            counts[index] += 1
    return counts


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
