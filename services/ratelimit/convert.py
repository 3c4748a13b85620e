"""Conversions between the RateLimitService messages and the limiter's dataclasses."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.ratelimit.v1 import ratelimit_pb2 as pb
from services.ratelimit.errors import InvalidArgument
from services.ratelimit.limits import (
    CheckRequest,
    CheckResult,
    Descriptor,
    LeaseRelease,
    LeaseRequest,
    LeaseResult,
    LimitKind,
    Limits,
    LimitStatus,
    ReleaseResult,
    Rule,
)

_TO_PROTO: dict[LimitKind | None, pb.LimitKind.ValueType] = {
    None: pb.LIMIT_KIND_UNSPECIFIED,
    LimitKind.RPM: pb.LIMIT_KIND_RPM,
    LimitKind.TPM: pb.LIMIT_KIND_TPM,
    LimitKind.CONCURRENCY: pb.LIMIT_KIND_CONCURRENCY,
    LimitKind.RPD: pb.LIMIT_KIND_RPD,
}
_FROM_PROTO = {value: kind for kind, value in _TO_PROTO.items() if kind is not None}


def lease_request(message: pb.AcquireLeaseRequest) -> LeaseRequest:
    """An AcquireLeaseRequest as a LeaseRequest; raises InvalidArgument for a bad rule."""
    limits = message.limits
    return LeaseRequest(
        subject=message.subject,
        lease_id=message.request_id,
        limits=Limits(limits.rpm, limits.tpm, limits.concurrency, limits.rpd),
        tokens=message.estimated_tokens,
        ttl_ms=_ceil_ms(message.lease_ttl),
        domain=message.domain,
        rules=_rules(message.rules),
    )


def lease_release(message: pb.ReleaseLeaseRequest) -> LeaseRelease:
    """A ReleaseLeaseRequest as a LeaseRelease."""
    return LeaseRelease(message.subject, message.lease_id, message.actual_tokens, message.domain)


def check_request(message: pb.CheckLimitsRequest) -> CheckRequest:
    """A CheckLimitsRequest as a CheckRequest (zero hits mean one)."""
    return CheckRequest(_rules(message.rules), message.hits or 1, message.domain)


def acquire_response(result: LeaseResult) -> pb.AcquireLeaseResponse:
    """A LeaseResult as the response message."""
    response = pb.AcquireLeaseResponse(
        decision=pb.LEASE_DECISION_ALLOWED if result.allowed else pb.LEASE_DECISION_DENIED,
        denied_by=_TO_PROTO[result.denied_by],
        lease_id=result.lease_id,
        statuses=_statuses(result.statuses),
        rule_statuses=_statuses(result.rule_statuses),
        local_fallback=result.local,
    )
    if result.decided_at_us is not None:
        response.decided_at.CopyFrom(_timestamp(result.decided_at_us))
    return response


def release_response(result: ReleaseResult) -> pb.ReleaseLeaseResponse:
    """A ReleaseResult as the response message."""
    response = pb.ReleaseLeaseResponse(released=result.released)
    if result.decided_at_us is not None:
        response.decided_at.CopyFrom(_timestamp(result.decided_at_us))
    return response


def check_response(result: CheckResult) -> pb.CheckLimitsResponse:
    """A CheckResult as the response message."""
    response = pb.CheckLimitsResponse(
        decision=pb.CHECK_DECISION_ALLOWED if result.allowed else pb.CHECK_DECISION_DENIED,
        statuses=_statuses(result.statuses),
        local_fallback=result.local,
    )
    if result.decided_at_us is not None:
        response.decided_at.CopyFrom(_timestamp(result.decided_at_us))
    return response


def _rules(messages: Iterable[pb.LimitRule]) -> tuple[Rule, ...]:
    return tuple(_rule(message) for message in messages)


def _rule(message: pb.LimitRule) -> Rule:
    kind = _FROM_PROTO.get(message.kind)
    if kind is None:
        raise InvalidArgument("a rule's kind is required")
    entries = tuple((e.key, e.value) for e in message.descriptor.entries)
    return Rule(Descriptor(entries), kind, message.limit, _ceil_ms(message.window))


def _statuses(statuses: Iterable[LimitStatus]) -> list[pb.LimitStatus]:
    result = []
    for status in statuses:
        item = pb.LimitStatus(kind=_TO_PROTO[status.kind], limit=status.limit,
                              remaining=status.remaining, over_limit=status.over_limit)
        item.reset_after.FromMilliseconds(status.reset_after_ms)
        result.append(item)
    return result


def _timestamp(at_us: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(at_us)
    return stamp


def _ceil_ms(duration: Duration) -> int:
    return -(-duration.ToNanoseconds() // 1_000_000)
