"""The gRPC servicer: AcquireLease / ReleaseLease requests in, Limiter calls, responses out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.duration_pb2 import Duration

from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from services.common.interceptor import ErrorTable
from services.ratelimit.core import Limiter
from services.ratelimit.errors import InvalidArgument, StoreUnavailable
from services.ratelimit.limits import LeaseRelease, LeaseRequest, LeaseResult, LimitKind, Limits

ERRORS: ErrorTable = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name

_KINDS: dict[LimitKind | None, ratelimit_pb2.LimitKind.ValueType] = {
    None: ratelimit_pb2.LIMIT_KIND_UNSPECIFIED,
    LimitKind.RPM: ratelimit_pb2.LIMIT_KIND_RPM,
    LimitKind.TPM: ratelimit_pb2.LIMIT_KIND_TPM,
    LimitKind.CONCURRENCY: ratelimit_pb2.LIMIT_KIND_CONCURRENCY,
}


class RateLimitServicer(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """Adapts RateLimitService calls to a Limiter."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def AcquireLease(
        self, request: ratelimit_pb2.AcquireLeaseRequest, context: Context
    ) -> ratelimit_pb2.AcquireLeaseResponse:
        """Decide and consume one lease."""
        limits = request.limits
        result = await self._limiter.acquire(
            LeaseRequest(
                subject=request.subject,
                lease_id=request.request_id,
                limits=Limits(limits.rpm, limits.tpm, limits.concurrency),
                tokens=request.estimated_tokens,
                ttl_ms=_ceil_ms(request.lease_ttl),
            )
        )
        return _acquire_response(result)

    async def ReleaseLease(
        self, request: ratelimit_pb2.ReleaseLeaseRequest, context: Context
    ) -> ratelimit_pb2.ReleaseLeaseResponse:
        """End a lease and reconcile its tokens."""
        released = await self._limiter.release(
            LeaseRelease(request.subject, request.lease_id, request.actual_tokens)
        )
        return ratelimit_pb2.ReleaseLeaseResponse(released=released)


def _ceil_ms(duration: Duration) -> int:
    return -(-duration.ToNanoseconds() // 1_000_000)


def _acquire_response(result: LeaseResult) -> ratelimit_pb2.AcquireLeaseResponse:
    response = ratelimit_pb2.AcquireLeaseResponse(
        decision=(
            ratelimit_pb2.LEASE_DECISION_ALLOWED
            if result.allowed
            else ratelimit_pb2.LEASE_DECISION_DENIED
        ),
        denied_by=_KINDS[result.denied_by],
        lease_id=result.lease_id,
    )
    for status in result.statuses:
        item = response.statuses.add(
            kind=_KINDS[status.kind], limit=status.limit, remaining=status.remaining
        )
        item.reset_after.FromMilliseconds(status.reset_after_ms)
    return response
