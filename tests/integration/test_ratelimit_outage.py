"""RL-4: Redis stopped (SIGSTOP), then killed and restarted empty, under RL-1-style load.

4 replica processes share a throwaway redis-server. Pass: no call fails; no call hangs
on the stopped Redis; while it is away each replica decides alone with limit / 4, so the
replicas together admit at most 1.1 x the limit in any window; the shared store decides
again within one probe interval of coming back, exactly; each replica logs each outage
once, and logs (and counts) the counters lost with the restart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from bench.ratelimit_cluster import Cluster, ClusterSpec, RedisServer
from bench.ratelimit_load import (
    Decision,
    Replicas,
    aligned_counts,
    over_admission,
    paced,
    percentile,
)

pytestmark = pytest.mark.integration

LIMIT, WINDOW_S, REPLICAS, CLIENTS = 60, 2.0, 4, 100
TIMEOUT_S, PROBE_S = 0.05, 0.2
# The promise: exact again within one window of Redis returning (a replica notices the
# store back within a probe interval, plus the call in flight; the rest is room for a
# loaded machine reconnecting to a restarted Redis).
SLACK_S = WINDOW_S
SEED = 20_240_608


@dataclass
class Timeline:
    """When (client monotonic seconds) each fault began and ended."""

    stopped: float = 0.0
    resumed: float = 0.0
    killed: float = 0.0
    back: float = 0.0


async def _chaos(redis_server: RedisServer, timeline: Timeline) -> None:
    # The schedule is the experiment itself: faults at fixed points of the load.
    await asyncio.sleep(2.0)
    timeline.stopped = time.monotonic()
    redis_server.pause()
    await asyncio.sleep(2.5)
    redis_server.resume()
    timeline.resumed = time.monotonic()
    await asyncio.sleep(2.0)
    timeline.killed = time.monotonic()
    redis_server.kill()
    await asyncio.sleep(1.5)
    await asyncio.to_thread(redis_server.start)
    timeline.back = time.monotonic()


def _local_windows_ok(decisions: list[Decision], timeline: Timeline) -> int:
    """The worst number of local admissions in any window of W (by answer time, in ms)."""
    local = [round(d.done_s * 1000) for d in decisions if d.allowed and d.local]
    return over_admission(local, round(WINDOW_S * 1000), 0)


async def test_rl4_redis_stopped_then_killed_under_load(tmp_path: Path) -> None:
    timeline = Timeline()
    decisions: list[Decision] = []
    subject, ids = f"rl4-{uuid.uuid4().hex}", itertools.count()
    with RedisServer(tmp_path) as redis_server, Cluster(ClusterSpec(
        redis_server.url, "rl4:", REPLICAS, settings={
            "RATELIMIT_WINDOW_S": str(WINDOW_S), "RATELIMIT_REDIS_TIMEOUT_S": str(TIMEOUT_S),
            "RATELIMIT_PROBE_INTERVAL_S": str(PROBE_S)}), tmp_path) as cluster:
        async with Replicas(cluster.addresses) as replicas:

            async def step(client: int, rng: random.Random) -> None:
                request = pb.AcquireLeaseRequest(
                    request_id=f"{subject}-{next(ids)}", subject=subject,
                    limits=pb.Limits(rpm=LIMIT), lease_ttl=Duration(seconds=10))
                decisions.append(await replicas.acquire(client, client % REPLICAS, request))

            await asyncio.gather(
                paced(CLIENTS, 11.0, 3 * LIMIT / WINDOW_S, SEED, step),
                _chaos(redis_server, timeline))
        logs = [cluster.log_path(i).read_text() for i in range(REPLICAS)]

    outages = [(timeline.stopped, timeline.resumed), (timeline.killed, timeline.back)]
    local = [d for d in decisions if d.local]
    shared = [d for d in decisions if d.allowed and d.at_us is not None]
    before_kill = [d.at_ms for d in shared if d.done_s < timeline.killed]
    after_back = [d.at_ms for d in shared if d.sent_s > timeline.back]
    window_ms = round(WINDOW_S * 1000)
    figures = {
        "calls": len(decisions), "errors": sum(bool(d.error) for d in decisions),
        "local": len(local), "local_admitted": sum(d.allowed for d in local),
        "local_worst_window": _local_windows_ok(decisions, timeline),
        "p99_ms": round(percentile([d.latency_s for d in decisions], 0.99) * 1000, 1),
        "max_ms": round(max(d.latency_s for d in decisions) * 1000, 1),
        "over_before_kill": over_admission(before_kill, window_ms, LIMIT),
        "over_after_back": over_admission(after_back, window_ms, LIMIT),
        "first_window_after_back": aligned_counts(after_back, window_ms, 1)[0],
    }
    print(json.dumps({"test": "RL-4", **figures}))
    assert figures["errors"] == 0
    assert figures["max_ms"] < 2_000  # nothing waits on a stopped Redis beyond its timeout
    # The fallback engaged in both outages, and only then.
    for start, end in outages:
        assert any(start <= d.sent_s <= end for d in local)
    outside = [(round(d.sent_s - timeline.stopped, 3), round(d.done_s - timeline.stopped, 3))
               for d in local
               if not any(start <= d.done_s and d.sent_s <= end + SLACK_S for start, end in outages)]
    assert not outside, (outside, [round(t - timeline.stopped, 3) for o in outages for t in o])
    # Bounded: the replicas' shares add up to the limit (10 % for answer-time jitter).
    assert figures["local_worst_window"] <= 1.1 * LIMIT
    # Exact whenever the shared store decides, and again right after the restart.
    assert figures["over_before_kill"] == 0 and figures["over_after_back"] == 0
    assert figures["first_window_after_back"] >= LIMIT - 3
    for log in logs:
        assert log.count("rate limit store unreachable") == 2
        assert log.count("reachable again") == 2
        assert log.count("lost its counters") == 1
