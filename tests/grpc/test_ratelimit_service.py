"""RateLimitService through a real grpc.aio server and a real stub: decisions and codes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from apirelay.ratelimit.v1 import ratelimit_pb2_grpc
from services.common.grpc_server import StartedService
from services.ratelimit.config import Settings
from services.ratelimit.outage import FailMode
from services.ratelimit.server import start
from services.ratelimit.service import SERVICE_NAME
from tests.backends import free_port

if TYPE_CHECKING:
    Stub: TypeAlias = ratelimit_pb2_grpc.RateLimitServiceAsyncStub

OpenStub = Callable[[Settings], Awaitable["Stub"]]


@pytest.fixture
async def open_stub() -> AsyncIterator[OpenStub]:
    """Start services from settings; yields a coroutine factory returning their stubs."""
    running: list[tuple[StartedService, grpc.aio.Channel]] = []

    async def open_(settings: Settings) -> Stub:
        started = await start(settings)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
        running.append((started, channel))
        return ratelimit_pb2_grpc.RateLimitServiceStub(channel)

    yield open_
    for started, channel in running:
        await channel.close()
        await started.stop(0)


@pytest.fixture
async def stub(open_stub: OpenStub) -> Stub:
    return await open_stub(Settings(listen_addr="127.0.0.1:0"))


def acquire_request(
    subject: str, request_id: str = "", *, rpm: int = 0, tpm: int = 0, concurrency: int = 0,
    tokens: int = 0, ttl_s: float = 0.0,
) -> pb.AcquireLeaseRequest:
    ttl = Duration()
    ttl.FromNanoseconds(int(ttl_s * 1e9))
    return pb.AcquireLeaseRequest(
        request_id=request_id or "req_" + uuid.uuid4().hex,
        subject=subject,
        limits=pb.Limits(rpm=rpm, tpm=tpm, concurrency=concurrency),
        estimated_tokens=tokens,
        lease_ttl=ttl,
    )


@pytest.fixture
def subject() -> str:
    return "key_" + uuid.uuid4().hex[:10]


async def test_an_allowed_lease_reports_every_finite_limit(stub: Stub, subject: str) -> None:
    response = await stub.AcquireLease(
        acquire_request(subject, "req_a", rpm=10, tpm=1000, tokens=100)
    )
    assert response.decision == pb.LEASE_DECISION_ALLOWED
    assert response.denied_by == pb.LIMIT_KIND_UNSPECIFIED
    assert response.lease_id == "req_a"
    assert [(s.kind, s.limit, s.remaining) for s in response.statuses] == [
        (pb.LIMIT_KIND_RPM, 10, 9), (pb.LIMIT_KIND_TPM, 1000, 900)
    ]
    assert all(s.reset_after.ToMilliseconds() == 60_000 for s in response.statuses)


async def test_over_the_limit_is_a_denied_decision_not_an_error(stub: Stub, subject: str) -> None:
    for _ in range(3):
        ok = await stub.AcquireLease(acquire_request(subject, rpm=3))
        assert ok.decision == pb.LEASE_DECISION_ALLOWED
    denied = await stub.AcquireLease(acquire_request(subject, rpm=3))
    assert denied.decision == pb.LEASE_DECISION_DENIED
    assert denied.denied_by == pb.LIMIT_KIND_RPM and denied.lease_id == ""
    (status,) = denied.statuses
    assert status.remaining == 0 and 59_000 < status.reset_after.ToMilliseconds() <= 60_000


async def test_release_frees_the_slot_once(stub: Stub, subject: str) -> None:
    held = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    denied = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    assert denied.denied_by == pb.LIMIT_KIND_CONCURRENCY
    release = pb.ReleaseLeaseRequest(lease_id=held.lease_id, subject=subject, actual_tokens=5)
    assert (await stub.ReleaseLease(release)).released
    assert not (await stub.ReleaseLease(release)).released
    unknown = pb.ReleaseLeaseRequest(lease_id="nope", subject=subject, actual_tokens=-1)
    assert not (await stub.ReleaseLease(unknown)).released
    again = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    assert again.decision == pb.LEASE_DECISION_ALLOWED


async def test_a_retried_acquire_consumes_once(stub: Stub, subject: str) -> None:
    request = acquire_request(subject, rpm=2, tpm=100, tokens=60)
    first = await stub.AcquireLease(request)
    retry = await stub.AcquireLease(request)
    assert first.decision == retry.decision == pb.LEASE_DECISION_ALLOWED
    assert [s.remaining for s in retry.statuses] == [1, 40]


async def test_the_lease_ttl_from_the_request_is_honoured(stub: Stub, subject: str) -> None:
    assert (await stub.AcquireLease(acquire_request(subject, concurrency=1, ttl_s=0.2))).lease_id
    await asyncio.sleep(0.25)
    again = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    assert again.decision == pb.LEASE_DECISION_ALLOWED


@pytest.mark.parametrize(
    "request_",
    [
        acquire_request(""),
        pb.AcquireLeaseRequest(subject="s"),
        acquire_request("s", rpm=-1),
        acquire_request("s", tpm=-5),
        acquire_request("s", concurrency=-1),
        acquire_request("s", tokens=-1),
        acquire_request("s", ttl_s=-1),
    ],
)
async def test_malformed_acquire_is_invalid_argument(
    stub: Stub, request_: pb.AcquireLeaseRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AcquireLease(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "request_", [pb.ReleaseLeaseRequest(subject="s"), pb.ReleaseLeaseRequest(lease_id="l")]
)
async def test_malformed_release_is_invalid_argument(
    stub: Stub, request_: pb.ReleaseLeaseRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ReleaseLease(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def unreachable_redis(**overrides: Any) -> Settings:
    """Settings whose Redis is a closed port on loopback (answers at once with a refusal)."""
    base = Settings(listen_addr="127.0.0.1:0",
                    redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.2)
    return dataclasses.replace(base, **overrides)


async def test_unreachable_redis_is_unavailable_when_failing_closed(
    open_stub: OpenStub, subject: str
) -> None:
    stub = await open_stub(unreachable_redis(fail_mode=FailMode.CLOSED))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.AcquireLease(acquire_request(subject, rpm=1))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "redis" not in (info.value.details() or "").lower()


async def test_unreachable_redis_fails_open_with_the_replica_share(
    open_stub: OpenStub, subject: str
) -> None:
    stub = await open_stub(unreachable_redis(replicas=2))
    decisions = [(await stub.AcquireLease(acquire_request(subject, rpm=4))).decision
                 for _ in range(3)]
    assert decisions == [pb.LEASE_DECISION_ALLOWED] * 2 + [pb.LEASE_DECISION_DENIED]


async def test_python_dash_m_serves_and_stops_on_sigterm(subject: str) -> None:
    port = free_port()
    env = {**os.environ, "RATELIMIT_LISTEN_ADDR": f"127.0.0.1:{port}", "RATELIMIT_REDIS_URL": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ratelimit", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            response = await ratelimit_pb2_grpc.RateLimitServiceStub(channel).AcquireLease(
                acquire_request(subject, rpm=1)
            )
            assert response.decision == pb.LEASE_DECISION_ALLOWED
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
ALLOWED, DENIED = pb.LEASE_DECISION_ALLOWED, pb.LEASE_DECISION_DENIED


def acquire_fields(response: pb.AcquireLeaseResponse) -> tuple[object, ...]:
    """What must match between a batch item and a single call (lease ids differ by subject)."""
    return (response.decision, response.denied_by, bool(response.lease_id),
            [(s.kind, s.limit, s.remaining) for s in response.statuses])


async def test_a_mixed_acquire_batch_answers_each_item_in_order(stub: Stub, subject: str) -> None:
    items = [
        acquire_request(subject, "r1", rpm=2, tokens=10),
        acquire_request("", "r2", rpm=2),
        acquire_request(subject, "r3", rpm=2, tokens=10),
        acquire_request(subject, "r4", rpm=2, tokens=-1),
        acquire_request(subject, "r5", rpm=2),
        acquire_request(subject, "r1", rpm=2, tokens=10),
    ]
    reply = await stub.AcquireLeases(pb.AcquireLeasesRequest(leases=items))
    codes = [r.status.code for r in reply.results]
    assert codes == [0, INVALID, 0, INVALID, 0, 0]
    assert reply.results[1].status.message == "subject is required"
    assert not reply.results[1].HasField("response")
    assert "estimated_tokens" in reply.results[3].status.message
    decisions = [r.response.decision for r in reply.results if r.status.code == 0]
    # r5 is over the limit; r1 again is a replay of the held lease, not a third request.
    assert decisions == [ALLOWED, ALLOWED, DENIED, ALLOWED]
    assert [r.response.lease_id for r in reply.results if r.status.code == 0] == [
        "r1", "r3", "", "r1"]
    assert reply.results[4].response.denied_by == pb.LIMIT_KIND_RPM


async def test_batch_items_answer_as_single_calls_do(stub: Stub) -> None:
    batch_subject, single_subject = (f"key_{uuid.uuid4().hex[:10]}" for _ in range(2))

    def items(subject: str) -> list[pb.AcquireLeaseRequest]:
        return [acquire_request(subject, f"{subject}-{i}", rpm=4, tpm=100, concurrency=2,
                                tokens=30 * i) for i in range(5)]

    batch = await stub.AcquireLeases(pb.AcquireLeasesRequest(leases=items(batch_subject)))
    singles = [await stub.AcquireLease(item) for item in items(single_subject)]
    assert [acquire_fields(r.response) for r in batch.results] == [
        acquire_fields(r) for r in singles]
    assert {s.denied_by for s in singles} >= {pb.LIMIT_KIND_TPM, pb.LIMIT_KIND_CONCURRENCY}

    def releases(subject: str) -> list[pb.ReleaseLeaseRequest]:
        return [pb.ReleaseLeaseRequest(lease_id=f"{subject}-{i}", subject=subject,
                                       actual_tokens=5) for i in (0, 1, 1, 4)]

    released = await stub.ReleaseLeases(pb.ReleaseLeasesRequest(leases=releases(batch_subject)))
    single_released = [(await stub.ReleaseLease(r)).released for r in releases(single_subject)]
    assert [r.response.released for r in released.results] == single_released == [
        True, True, False, False]
    assert all(r.status.code == 0 and r.HasField("response") for r in released.results)


async def test_a_release_batch_reports_invalid_items_and_frees_the_rest(
    stub: Stub, subject: str
) -> None:
    held = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    reply = await stub.ReleaseLeases(pb.ReleaseLeasesRequest(leases=[
        pb.ReleaseLeaseRequest(lease_id="x", subject=""),
        pb.ReleaseLeaseRequest(lease_id=held.lease_id, subject=subject, actual_tokens=-1),
    ]))
    assert [r.status.code for r in reply.results] == [INVALID, 0]
    assert reply.results[1].response.released
    again = await stub.AcquireLease(acquire_request(subject, concurrency=1))
    assert again.decision == pb.LEASE_DECISION_ALLOWED


async def test_an_empty_batch_is_an_empty_answer(stub: Stub) -> None:
    assert not (await stub.AcquireLeases(pb.AcquireLeasesRequest())).results
    assert not (await stub.ReleaseLeases(pb.ReleaseLeasesRequest())).results


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_batches_count_their_sizes_and_each_decision(stub: Stub, subject: str) -> None:
    acquire, denied = {"operation": "acquire"}, {"result": "denied", "limit": "rpm"}
    names = ("apirelay_ratelimit_batch_items_count", "apirelay_ratelimit_batch_items_sum")
    before = [_sample(name, acquire) for name in names]
    denied_before = _sample("apirelay_ratelimit_decisions_total", denied)
    items = [acquire_request(subject, rpm=1) for _ in range(3)]
    await stub.AcquireLeases(pb.AcquireLeasesRequest(leases=items))
    assert [_sample(name, acquire) for name in names] == [before[0] + 1, before[1] + 3]
    assert _sample("apirelay_ratelimit_decisions_total", denied) == denied_before + 2


async def test_an_unreachable_store_fails_a_whole_batch_when_failing_closed(
    open_stub: OpenStub, subject: str
) -> None:
    stub = await open_stub(unreachable_redis(fail_mode=FailMode.CLOSED))
    for call in (
        stub.AcquireLeases(pb.AcquireLeasesRequest(leases=[acquire_request(subject, rpm=1)])),
        stub.ReleaseLeases(pb.ReleaseLeasesRequest(
            leases=[pb.ReleaseLeaseRequest(lease_id="l", subject=subject)])),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "redis" not in (info.value.details() or "").lower()


async def test_an_unreachable_store_decides_a_batch_locally_when_failing_open(
    open_stub: OpenStub, subject: str
) -> None:
    stub = await open_stub(unreachable_redis(replicas=2))
    items = [acquire_request(subject, rpm=4) for _ in range(3)]
    reply = await stub.AcquireLeases(pb.AcquireLeasesRequest(leases=items))
    assert [r.response.decision for r in reply.results] == [ALLOWED, ALLOWED, DENIED]
    released = await stub.ReleaseLeases(pb.ReleaseLeasesRequest(leases=[
        pb.ReleaseLeaseRequest(lease_id=items[0].request_id, subject=subject),
        pb.ReleaseLeaseRequest(lease_id="never-held", subject=subject),
    ]))
    assert [r.response.released for r in released.results] == [True, False]
