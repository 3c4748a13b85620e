"""RateLimitService descriptors through a real grpc.aio server: rules, RPD, CheckLimits."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from apirelay.ratelimit.v1 import ratelimit_pb2_grpc
from services.ratelimit.config import Settings
from services.ratelimit.server import start
from tests.backends import free_port

if TYPE_CHECKING:
    Stub: TypeAlias = ratelimit_pb2_grpc.RateLimitServiceAsyncStub

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _serve(settings: Settings) -> AsyncIterator[Stub]:
    started = await start(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
        yield ratelimit_pb2_grpc.RateLimitServiceStub(channel)
    await started.stop(0)


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    async for item in _serve(Settings(listen_addr="127.0.0.1:0")):
        yield item


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rule(kind: pb.LimitKind.ValueType, limit: int, *entries: tuple[str, str],
         window_s: float = 0.0) -> pb.LimitRule:
    window = Duration()
    window.FromNanoseconds(int(window_s * 1e9))
    descriptor = pb.Descriptor(entries=[pb.DescriptorEntry(key=k, value=v) for k, v in entries])
    return pb.LimitRule(descriptor=descriptor, kind=kind, limit=limit, window=window)


def acquire(subject: str, *rules: pb.LimitRule, rpm: int = 0, rpd: int = 0, tokens: int = 0,
            request_id: str = "", domain: str = "") -> pb.AcquireLeaseRequest:
    return pb.AcquireLeaseRequest(
        request_id=request_id or uid("req"), subject=subject, domain=domain,
        limits=pb.Limits(rpm=rpm, rpd=rpd), estimated_tokens=tokens, rules=rules)


async def test_an_account_rule_binds_all_its_keys(stub: Stub) -> None:
    account = rule(pb.LIMIT_KIND_RPM, 3, ("account", uid("acc")))
    keys = [uid("key") for _ in range(2)]
    answers = [await stub.AcquireLease(acquire(keys[i % 2], account, rpm=2)) for i in range(4)]
    assert [a.decision for a in answers] == [pb.LEASE_DECISION_ALLOWED] * 3 + [
        pb.LEASE_DECISION_DENIED]
    denied = answers[3]
    assert denied.denied_by == pb.LIMIT_KIND_RPM and denied.lease_id == ""
    assert [(s.limit, s.remaining, s.over_limit) for s in denied.statuses] == [(2, 1, False)]
    (status,) = denied.rule_statuses
    assert (status.kind, status.limit, status.remaining, status.over_limit) == (
        pb.LIMIT_KIND_RPM, 3, 0, True)
    assert 59_000 < status.reset_after.ToMilliseconds() <= 60_000
    assert not denied.HasField("decided_at") and not denied.local_fallback  # memory store


async def test_rpd_in_the_shorthand_limits_is_reported(stub: Stub) -> None:
    key = uid("key")
    first = await stub.AcquireLease(acquire(key, rpm=10, rpd=1))
    assert [(s.kind, s.remaining) for s in first.statuses] == [
        (pb.LIMIT_KIND_RPM, 9), (pb.LIMIT_KIND_RPD, 0)]
    assert first.statuses[1].reset_after.ToSeconds() == 86_400
    denied = await stub.AcquireLease(acquire(key, rpm=10, rpd=1))
    assert denied.denied_by == pb.LIMIT_KIND_RPD


async def test_a_rule_window_is_honoured_and_a_lease_is_scoped_by_domain(stub: Stub) -> None:
    key, model = uid("key"), rule(pb.LIMIT_KIND_RPM, 1, ("key", "k"), ("model", "m"),
                                  window_s=0.2)
    held = await stub.AcquireLease(acquire(key, model, domain="router", request_id="same"))
    assert held.rule_statuses[0].reset_after.ToMilliseconds() == 200
    other = await stub.AcquireLease(acquire(key, request_id="same"))  # domain apirelay
    assert other.decision == pb.LEASE_DECISION_ALLOWED
    wrong_domain = pb.ReleaseLeaseRequest(lease_id="same", subject=key, domain="elsewhere")
    assert not (await stub.ReleaseLease(wrong_domain)).released
    right = pb.ReleaseLeaseRequest(lease_id="same", subject=key, domain="router")
    assert (await stub.ReleaseLease(right)).released


async def test_check_limits_consumes_hits_all_or_nothing(stub: Stub) -> None:
    upstream = ("upstream_key", uid("up"))
    rules = [rule(pb.LIMIT_KIND_RPM, 200, upstream), rule(pb.LIMIT_KIND_TPM, 100, upstream)]
    ok = await stub.CheckLimits(pb.CheckLimitsRequest(rules=rules, hits=0))  # 0 means 1
    assert ok.decision == pb.CHECK_DECISION_ALLOWED
    assert [s.remaining for s in ok.statuses] == [199, 99]
    denied = await stub.CheckLimits(pb.CheckLimitsRequest(rules=rules, hits=100))
    assert denied.decision == pb.CHECK_DECISION_DENIED
    assert [s.over_limit for s in denied.statuses] == [False, True]
    assert [s.remaining for s in denied.statuses] == [199, 99]  # nothing was taken
    again = await stub.CheckLimits(pb.CheckLimitsRequest(rules=rules, hits=99))
    assert again.decision == pb.CHECK_DECISION_ALLOWED
    assert [s.remaining for s in again.statuses] == [100, 0]
    assert (await stub.CheckLimits(pb.CheckLimitsRequest(rules=rules[:1], hits=100))).decision \
        == pb.CHECK_DECISION_ALLOWED
    over = await stub.CheckLimits(pb.CheckLimitsRequest(rules=rules[:1], hits=1))
    assert over.decision == pb.CHECK_DECISION_DENIED and over.statuses[0].over_limit


@pytest.mark.parametrize(
    "request_",
    [
        pb.CheckLimitsRequest(),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_CONCURRENCY, 1, ("a", "b"))]),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_UNSPECIFIED, 1, ("a", "b"))]),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_RPM, 0, ("a", "b"))]),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_RPM, 1)]),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_RPM, 1, ("a", "b"))], hits=-1),
        pb.CheckLimitsRequest(rules=[rule(pb.LIMIT_KIND_RPM, 1, ("a", "b"), window_s=-1)]),
    ],
)
async def test_malformed_checks_are_invalid_arguments(
    stub: Stub, request_: pb.CheckLimitsRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CheckLimits(request_)
    assert info.value.code() == INVALID


async def test_a_batch_item_with_a_bad_rule_is_reported_in_its_result(stub: Stub) -> None:
    key = uid("key")
    items = [
        acquire(key, rpm=5),
        acquire(key, rule(pb.LIMIT_KIND_UNSPECIFIED, 1, ("a", "b")), rpm=5),
        acquire(key, rule(pb.LIMIT_KIND_RPM, 1, ("key", key)), rpm=5),
        acquire(key, rpm=5),
    ]
    reply = await stub.AcquireLeases(pb.AcquireLeasesRequest(leases=items))
    assert [r.status.code for r in reply.results] == [0, INVALID.value[0], INVALID.value[0], 0]
    assert "kind" in reply.results[1].status.message
    assert "same descriptor" in reply.results[2].status.message
    assert [s.remaining for s in reply.results[3].response.statuses] == [3]


async def test_the_local_fallback_is_flagged() -> None:
    settings = dataclasses.replace(
        Settings(listen_addr="127.0.0.1:0", replicas=2, redis_timeout_s=0.2),
        redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async for stub in _serve(settings):
        reply = await stub.AcquireLease(acquire(uid("key"), rpm=4))
        assert reply.local_fallback and reply.statuses[0].limit == 2
        assert not reply.HasField("decided_at")
        check = await stub.CheckLimits(pb.CheckLimitsRequest(
            rules=[rule(pb.LIMIT_KIND_RPM, 5, ("a", uid("b")))]))
        assert check.local_fallback and check.decision == pb.CHECK_DECISION_ALLOWED
