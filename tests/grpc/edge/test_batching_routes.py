"""The edge's limiter and billing calls, batched under load, against fake services."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from tests.grpc.edge.conftest import Edge, auth
from tests.grpc.edge.fakes import from_client
from tests.grpc.edge.messages import MODEL

PATH = "/v1/chat/completions"
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]})


async def post(edge: Edge, rid: str) -> int:
    """POST one chat request with request id `rid`; returns the HTTP status."""
    response = await edge.client.post(PATH, data=BODY, headers={**auth(), "x-request-id": rid})
    await response.read()
    return response.status


async def test_concurrent_requests_share_batch_calls_and_each_settles_once(edge: Edge) -> None:
    # Slow batch calls keep two in flight, so the other requests' items queue and batch.
    edge.fakes.ratelimit.delay_s = edge.fakes.billing.delay_s = 0.03
    rids = [f"burst-{i}" for i in range(20)]
    statuses = await asyncio.gather(*(post(edge, rid) for rid in rids))
    await edge.settled()
    assert statuses == [200] * 20
    ratelimit, billing = edge.fakes.ratelimit, edge.fakes.billing
    # acquires + releases, reserves + settles: 40 items each, in fewer calls.
    assert sum(ratelimit.batches) == 40 and len(ratelimit.batches) < 40
    assert sum(billing.batches) == 40 and len(billing.batches) < 40
    assert max(billing.batches) > 1
    acquired = sorted(item.request_id for _, item in ratelimit.acquires)
    assert sorted(from_client(rid) for rid in acquired) == sorted(rids)
    assert sorted(r.request_id for r in billing.reserves) == acquired
    assert Counter(s.request_id for s in billing.settles) == Counter(acquired)  # once each
    assert Counter(r.lease_id for r in ratelimit.releases) == Counter(acquired)
    assert billing.releases == []


async def test_a_client_gone_during_admission_releases_the_lease_after_it_is_acquired(
    edge: Edge,
) -> None:
    ratelimit = edge.fakes.ratelimit
    ratelimit.delay_s = 0.1
    task = asyncio.create_task(post(edge, "gone-early"))
    while not ratelimit.batches:
        await asyncio.sleep(0.005)
    task.cancel()  # closes the client connection while the acquire is in flight
    await asyncio.sleep(0.15)
    await edge.settled()
    (_, rid), _ = ratelimit.events
    assert from_client(rid) == "gone-early"
    assert ratelimit.events == [("acquired", rid), ("released", rid)]
    assert [r.request_id for r in edge.fakes.billing.releases] == [rid]
    assert edge.fakes.router.requests == []
