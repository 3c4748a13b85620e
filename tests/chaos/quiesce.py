"""Getting a chaos run to rest, and reading what the gateway says about itself then.

The settlement spool (edge.spool_redis, a Redis stream shared by the edges) is read
directly: its entries are deleted once billing confirmed them, so the stream's length is
what still waits, and `<stream>:dead` keeps what billing refused for good. The edges'
settlement counters come from their Prometheus endpoints; the hold sweep and the ledger
check are billing's admin RPCs; the upstream's call log is its own endpoint.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import httpx
import redis.asyncio as redis

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from tests.chaos.audit import Findings
from tests.chaos.cluster import Cluster
from tests.chaos.oracle import UpstreamCall

SPOOL_DRAIN_TIMEOUT_S = 60.0
EDGE_COUNTERS = (
    "apirelay_edge_settlement_spooled_total", "apirelay_edge_settlement_drained_total",
    "apirelay_edge_settlement_dead_letters_total", "apirelay_edge_settlement_failures_total",
)


async def spool_depth(redis_url: str, stream: str) -> tuple[int, int]:
    """(waiting, dead-lettered) settlements of the edges' shared spool stream."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(await client.xlen(stream)), int(await client.xlen(f"{stream}:dead"))
    finally:
        await client.aclose()


async def wait_spool_drained(redis_url: str, stream: str) -> tuple[int, int]:
    """Poll the spool until nothing waits (bounded); the last (waiting, dead) seen."""
    deadline = time.monotonic() + SPOOL_DRAIN_TIMEOUT_S
    while (depth := await spool_depth(redis_url, stream))[0] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return depth


async def drop_keys(redis_url: str, pattern: str) -> None:
    """Delete a run's keys (its spool streams, its limiter counters)."""
    client = redis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=pattern, count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


async def edge_counters(urls: list[str]) -> dict[str, float]:
    """The settlement counters of every edge, summed (what the spool did in this run)."""
    totals = dict.fromkeys(EDGE_COUNTERS, 0.0)
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            for line in (await client.get(url)).text.splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in totals:
                    totals[name] += float(line.rsplit(" ", 1)[1])
    return {name.removeprefix("apirelay_edge_settlement_"): n for name, n in totals.items()}


async def upstream_calls(url: str) -> list[UpstreamCall]:
    """The upstream's call log."""
    async with httpx.AsyncClient(timeout=30) as client:
        raw = (await client.get(f"{url}/_calls")).json()
    return [UpstreamCall.from_json(entry) for entry in raw]


async def sweep_and_check(cluster: Cluster, findings: Findings) -> dict[str, Any]:
    """ExpireHolds, then CheckLedger, on a billing replica (admin RPCs)."""
    facts: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(cluster.addresses["billing"][0]) as channel:
        stub: Any = billing_pb2_grpc.BillingServiceStub(channel)
        meta = cluster.admin_metadata
        try:
            swept = await stub.ExpireHolds(billing_pb2.ExpireHoldsRequest(limit=100_000),
                                           metadata=meta, timeout=30)
            facts["expired_by_sweep"] = swept.expired
        except grpc.aio.AioRpcError as exc:
            findings.ledger_errors.append(f"ExpireHolds failed: {exc.code().name}")
        try:
            check = await stub.CheckLedger(billing_pb2.CheckLedgerRequest(), metadata=meta,
                                           timeout=60)
        except grpc.aio.AioRpcError as exc:
            findings.ledger_errors.append(f"CheckLedger failed: {exc.code().name}")
            return facts
    facts["check_ledger"] = {"wallets": check.wallets, "transfers": check.transfers,
                             "net_nanos": check.net_nanos}
    findings.ledger_errors += [f"CheckLedger: {m}".replace("\n", " ") for m in check.mismatches]
    findings.double_charges += [f"CheckLedger: {h} resolved twice"
                                for h in check.holds_resolved_twice]
    if check.net_nanos != 0:
        findings.ledger_errors.append(f"CheckLedger: net {check.net_nanos}")
    return facts
