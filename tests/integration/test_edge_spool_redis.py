"""RedisSpool on a real Redis: ack after commit, replicas sharing the stream, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from apirelay.billing.v1 import billing_pb2
from edge.spool import CallKind, SpooledCall, encode_release, encode_settle
from edge.spool_redis import RedisSpool

pytestmark = pytest.mark.integration

SpoolFactory = Callable[..., RedisSpool]


def settle(rid: str) -> SpooledCall:
    return encode_settle(billing_pb2.SettleCreditRequest(request_id=rid, channel="c"))


@pytest.fixture
async def make_spool(redis_url: str) -> AsyncIterator[SpoolFactory]:
    """Spools (each its own client and consumer, like edge replicas) on one test stream."""
    stream = f"test:{uuid.uuid4().hex[:8]}:settlements"
    spools: list[RedisSpool] = []

    def make(consumer: str, claim_idle_ms: int = 60_000) -> RedisSpool:
        spool = RedisSpool.from_url(redis_url, stream, "edge", consumer, claim_idle_ms)
        spools.append(spool)
        return spool

    yield make
    cleanup = spools[0] if spools else None
    for spool in spools[1:]:
        await spool.close()
    if cleanup is not None:
        await cleanup._redis.delete(stream, f"{stream}:dead")
        await cleanup.close()


async def test_entries_stay_until_acked_and_are_reread(make_spool: SpoolFactory) -> None:
    spool = make_spool("edge-a")
    await spool.put(settle("a"))
    await spool.put(encode_release(billing_pb2.ReleaseCreditRequest(request_id="b")))
    first = await spool.take(10)
    assert [(e.call.kind, e.call.request_id) for e in first] == [
        (CallKind.SETTLE, "a"), (CallKind.RELEASE, "b")]
    again = await spool.take(10)  # not acked: this consumer's pending entries come back
    assert [e.entry_id for e in again] == [e.entry_id for e in first]
    assert await spool.depth() == 2
    await spool.ack(first[:1])
    assert [e.call.request_id for e in await spool.take(10)] == ["b"]
    assert await spool.depth() == 1
    payload = (await spool.take(1))[0].call.payload
    assert billing_pb2.ReleaseCreditRequest.FromString(payload).request_id == "b"


async def test_replicas_share_new_entries_without_duplicates(make_spool: SpoolFactory) -> None:
    a, b = make_spool("edge-a"), make_spool("edge-b")
    for i in range(20):
        await a.put(settle(f"r{i}"))
    taken_a, taken_b = await asyncio.gather(a.take(10), b.take(10))
    ids = [e.call.request_id for e in taken_a + taken_b]
    assert sorted(ids) == sorted(f"r{i}" for i in range(20))  # each delivered once


async def test_a_dead_replicas_entries_are_claimed_after_idling(
    make_spool: SpoolFactory,
) -> None:
    dead, alive = make_spool("edge-dead", 50), make_spool("edge-alive", 50)
    await dead.put(settle("orphan"))
    assert [e.call.request_id for e in await dead.take(10)] == ["orphan"]
    assert await alive.take(10) == []  # still fresh at the other replica
    await asyncio.sleep(0.1)  # the claim rule is about idle time itself
    claimed = await alive.take(10)
    assert [e.call.request_id for e in claimed] == ["orphan"]
    await alive.ack(claimed)
    assert await alive.depth() == 0 and await dead.take(10) == []


async def test_dead_letters_leave_the_queue_and_keep_the_call(make_spool: SpoolFactory) -> None:
    spool = make_spool("edge-a")
    await spool.put(settle("gone"))
    [entry] = await spool.take(10)
    await spool.dead_letter(entry, "NOT_FOUND: no hold")
    await spool.bury(settle("refused"), "INVALID_ARGUMENT: bad")
    assert await spool.depth() == 0 and await spool.dead_letters() == 2
    assert await spool.take(10) == []
