"""RL-1 and RL-2: exact limits across 4 replica processes sharing one Redis, under load.

Replicas are real `python -m services.ratelimit` processes (bench/ratelimit_cluster.py);
the clients are asyncio tasks in this process, spread round-robin over the replicas.
Windows are measured on the limiter's own clock (Redis TIME, returned as `decided_at`).
Sizes here are the PR ones; tests/soak/test_ratelimit_soak.py runs the same scenarios
bigger, and test_ratelimit_concurrency.py runs RL-3 on a cluster like this one. Each
scenario prints a one-line JSON summary of its figures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass

import pytest
import redis.asyncio as redis
from google.protobuf.duration_pb2 import Duration

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from apirelay.ratelimit.v1 import ratelimit_pb2_grpc
from bench.ratelimit_cluster import Cluster, ClusterSpec
from bench.ratelimit_load import (
    Decision,
    Replicas,
    aligned_counts,
    over_admission,
    paced,
    percentile,
    violations,
)
from services.common.grpc_server import RunningServer, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.ratelimit import service
from services.ratelimit.core import Limiter, LimiterConfig
from services.ratelimit.errors import StoreUnavailable
from services.ratelimit.limits import (
    Acquisition,
    Release,
    ReleaseVerdict,
    Usage,
    Verdict,
)
from services.ratelimit.rules import StandardWindows

pytestmark = pytest.mark.integration

WINDOW_S = 3.0
SEED = 20_240_607
GAP_S = 0.010


def report(test: str, **figures: object) -> None:
    """The anchor's one-line JSON result, for a bench or acceptance script to collect."""
    print(json.dumps({"test": test, **figures}, default=str))


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """4 replicas, one Redis, a 3 s standard window (so RPM and TPM are per 3 s)."""
    spec = ClusterSpec(redis_url, f"test:acc:{uuid.uuid4().hex[:8]}:", replicas=4, settings={
        "RATELIMIT_WINDOW_S": str(WINDOW_S),
        # Accuracy runs measure the shared path; a slow CI box must not trip the fallback.
        "RATELIMIT_REDIS_TIMEOUT_S": "2",
    })
    with Cluster(spec, tmp_path_factory.mktemp("ratelimit")) as started:
        yield started


@pytest.fixture
async def inspect(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


# --- RL-1: exact admission across replicas ------------------------------------------------


@dataclass(frozen=True)
class Rl1Size:
    """The size of an RL-1 run."""

    limit: int = 100
    window_s: float = WINDOW_S
    clients: int = 200
    windows: int = 3
    demand: float = 3.0


async def rl1_load(addresses: Sequence[str], size: Rl1Size, subject: str) -> list[Decision]:
    """Paced clients asking for one request each (AcquireLease, rpm = limit)."""
    decisions: list[Decision] = []
    ids = itertools.count()
    ttl = Duration(seconds=10)
    async with Replicas(addresses) as replicas:

        async def step(client: int, rng: random.Random) -> None:
            request = pb.AcquireLeaseRequest(
                request_id=f"{subject}-{next(ids)}", subject=subject,
                limits=pb.Limits(rpm=size.limit), lease_ttl=ttl)
            decisions.append(await replicas.acquire(client, client % len(replicas), request))

        rate = size.demand * size.limit / size.window_s
        await paced(size.clients, size.windows * size.window_s + 0.5, rate, SEED, step)
    return decisions


def rl1_figures(decisions: list[Decision], size: Rl1Size) -> dict[str, object]:
    """Over-admission (any window), admissions per window, errors, fallbacks, p99."""
    admitted = [d.at_ms for d in decisions if d.allowed and d.at_us is not None]
    window_ms = round(size.window_s * 1000)
    return {
        "calls": len(decisions),
        "errors": sum(bool(d.error) for d in decisions),
        "local": sum(d.local for d in decisions),
        "over_admission": over_admission(admitted, window_ms, size.limit),
        "violations": violations(admitted, window_ms, size.limit),
        "admitted": aligned_counts(admitted, window_ms, size.windows),
        "p99_ms": round(percentile([d.latency_s for d in decisions], 0.99) * 1000, 1),
    }


async def rl1_exact(cluster: Cluster, size: Rl1Size) -> dict[str, object]:
    """Run RL-1 on the cluster and assert its pass criteria; returns the figures."""
    figures = rl1_figures(await rl1_load(cluster.addresses, size, f"rl1-{uuid.uuid4().hex}"), size)
    report("RL-1", **figures, size=asdict(size))
    assert figures["errors"] == 0 and figures["local"] == 0
    assert figures["over_admission"] == 0
    assert all(size.limit - 3 <= n <= size.limit for n in figures["admitted"])
    return figures


async def test_rl1_four_replicas_admit_exactly_the_limit_in_every_window(
    cluster: Cluster,
) -> None:
    await rl1_exact(cluster, Rl1Size())


class GetThenSetStore:
    """The classic race (new-api #969, APISIX #12592): count, then add, two round trips.

    Between the read and the write it waits GAP_S, what a read-modify-write costs from a
    gateway whose Redis is a few milliseconds away (GET, decide, SET); on loopback the gap
    would be ~0.1 ms and the race too rare to show in a few windows.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    async def acquire(self, acquisition: Acquisition) -> Verdict:
        sec, usec = await self._redis.time()
        now = sec * 1000 + usec // 1000
        counts = [await self._redis.zcount(self._prefix + c.key, now - c.window_ms + 1, "+inf")
                  for c in acquisition.checks]
        await asyncio.sleep(GAP_S)
        usages = tuple(Usage(n, 0) for n in counts)
        at_us = sec * 1_000_000 + usec
        for i, (check, used) in enumerate(zip(acquisition.checks, counts, strict=True)):
            if used + check.amount > check.limit:
                return Verdict(False, False, i, usages, at_us)
        for check in acquisition.checks:
            await self._redis.zadd(self._prefix + check.key, {uuid.uuid4().hex: now})
        return Verdict(True, False, None, usages, at_us)

    async def acquire_many(self, acquisitions: Sequence[Acquisition]) -> list[Verdict]:
        return [await self.acquire(a) for a in acquisitions]

    async def release(self, release: Release) -> ReleaseVerdict:
        raise StoreUnavailable("not needed by RL-1")

    async def release_many(self, releases: Sequence[Release]) -> list[ReleaseVerdict]:
        raise StoreUnavailable("not needed by RL-1")

    async def lost_state(self) -> bool:
        return False

    async def close(self) -> None:
        await self._redis.aclose()


async def _broken_replica(redis_url: str, prefix: str, window_ms: int) -> RunningServer:
    store = GetThenSetStore(redis.Redis.from_url(redis_url), prefix)
    servicer = service.RateLimitServicer(
        Limiter(store, LimiterConfig(windows=StandardWindows(minute_ms=window_ms))))

    def register(server: object) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)

    return await start_grpc_server("127.0.0.1:0", register, [service.SERVICE_NAME],
                                   ServiceInterceptor(service.ERRORS))


async def test_rl1_the_same_harness_catches_a_get_then_set_limiter(redis_url: str) -> None:
    size = Rl1Size()
    prefix = f"test:broken:{uuid.uuid4().hex[:8]}:"
    servers = [await _broken_replica(redis_url, prefix, round(size.window_s * 1000))
               for _ in range(4)]
    try:
        decisions = await rl1_load([f"127.0.0.1:{s.port}" for s in servers], size, "victim")
    finally:
        for server in servers:
            await server.stop(0)
    figures = rl1_figures(decisions, size)
    report("RL-1-mutation", **figures)
    assert figures["errors"] == 0
    assert figures["over_admission"] > 0 and figures["violations"] > 0


# --- RL-2: TPM reserve and reconcile ---------------------------------------------------------


@dataclass(frozen=True)
class Rl2Size:
    """The size of an RL-2 run."""

    limit: int = 20_000
    window_s: float = WINDOW_S
    clients: int = 100
    windows: int = 3
    max_tokens: int = 500


@dataclass(frozen=True)
class Reservation:
    """An admitted lease: its estimate, and the actual tokens once released."""

    at_us: int
    estimate: int
    actual: int
    released_at_us: int | None


async def rl2_load(addresses: Sequence[str], size: Rl2Size, subject: str) -> tuple[
        list[Reservation], list[Decision]]:
    """Clients reserve prompt + max_tokens, hold like an upstream call, release the actual."""
    reservations: list[Reservation] = []
    decisions: list[Decision] = []
    ids = itertools.count()
    async with Replicas(addresses) as replicas:

        async def step(client: int, rng: random.Random) -> None:
            prompt = rng.randint(50, 150)
            request = pb.AcquireLeaseRequest(
                request_id=f"{subject}-{next(ids)}", subject=subject,
                limits=pb.Limits(tpm=size.limit), estimated_tokens=prompt + size.max_tokens)
            replica = client % len(replicas)
            decision = await replicas.acquire(client, replica, request)
            decisions.append(decision)
            if not decision.allowed or decision.at_us is None:
                return
            await asyncio.sleep(rng.uniform(0.02, 0.2))
            actual = prompt + rng.randint(50, size.max_tokens)
            released = await replicas.release((replica + 1) % len(replicas), pb.ReleaseLeaseRequest(
                lease_id=request.request_id, subject=subject, actual_tokens=actual))
            reservations.append(Reservation(decision.at_us, request.estimated_tokens, actual,
                                            released))

        # Saturation: every client comes back after at most ~50 ms.
        await paced(size.clients, size.windows * size.window_s + 0.5, size.clients / 0.05,
                    SEED, step)
    return reservations, decisions


def reserve_violations(reservations: Sequence[Reservation], window_ms: int, limit: int) -> int:
    """Admissions at which reserved (estimates) plus reconciled (actuals) exceeded the limit."""
    ordered = sorted(reservations, key=lambda r: r.at_us)
    violations = 0
    for j, new in enumerate(ordered):
        now_ms = new.at_us // 1000
        held = 0
        for old in ordered[: j + 1]:
            if old.at_us // 1000 > now_ms - window_ms:
                reconciled = old.released_at_us is not None and old.released_at_us < new.at_us
                held += old.actual if reconciled else old.estimate
        violations += held > limit
    return violations


async def test_rl2_tpm_reservations_never_exceed_the_limit_and_are_reconciled(
    cluster: Cluster, inspect: redis.Redis
) -> None:
    size = Rl2Size()
    subject = f"rl2-{uuid.uuid4().hex}"
    reservations, decisions = await rl2_load(cluster.addresses, size, subject)
    window_ms = round(size.window_s * 1000)
    admitted = sorted(r.at_us // 1000 for r in reservations)
    start = admitted[0]
    settled = [sum(r.actual for r in reservations if (r.at_us // 1000 - start) // window_ms == k)
               for k in range(size.windows)]
    figures = {
        "calls": len(decisions), "admitted": len(reservations),
        "errors": sum(bool(d.error) for d in decisions),
        "violations": reserve_violations(reservations, window_ms, size.limit),
        "unreleased": sum(r.released_at_us is None for r in reservations),
        "settled_per_window": settled,
    }
    report("RL-2", **figures, size=asdict(size))
    assert figures["errors"] == 0 and figures["unreleased"] == 0
    assert figures["violations"] == 0
    assert all(n >= 0.8 * size.limit for n in settled)
    # Quiescence: no lease left, the window's sum equals its entries, nothing negative.
    prefix = cluster.spec.prefix
    assert not [k async for k in inspect.scan_iter(match=f"{prefix}l:*{subject}*")]
    weights = await inspect.hgetall(f"{prefix}t:{window_ms}:apirelay|key={subject}:w")
    total = weights.pop("sum", "0")
    assert int(total) == sum(int(w) for w in weights.values()) >= 0
    assert all(int(w) >= 0 for w in weights.values())
