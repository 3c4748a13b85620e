"""The gRPC servicer: lease requests (single or batched) in, Limiter calls, responses out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.duration_pb2 import Duration

from apirelay.common.v1 import batch_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from services.common.batch import item_error
from services.common.interceptor import ErrorTable
from services.ratelimit.core import Limiter
from services.ratelimit.errors import InvalidArgument, RateLimitError, StoreUnavailable
from services.ratelimit.limits import LeaseRelease, LeaseRequest, LeaseResult, LimitKind, Limits
from services.ratelimit.metrics import BATCH_ITEMS

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
        return _acquire_response(await self._limiter.acquire(_lease_request(request)))

    async def ReleaseLease(
        self, request: ratelimit_pb2.ReleaseLeaseRequest, context: Context
    ) -> ratelimit_pb2.ReleaseLeaseResponse:
        """End a lease and reconcile its tokens."""
        released = await self._limiter.release(_lease_release(request))
        return ratelimit_pb2.ReleaseLeaseResponse(released=released)

    async def AcquireLeases(
        self, request: ratelimit_pb2.AcquireLeasesRequest, context: Context
    ) -> ratelimit_pb2.AcquireLeasesResponse:
        """AcquireLease for each item in order, with one store round trip for the batch.

        An unreachable store while failing closed fails the whole call with UNAVAILABLE
        (failing open, every item is decided locally); a retried batch replays the items
        already admitted, since acquire is idempotent by request id.
        """
        BATCH_ITEMS.labels("acquire").observe(len(request.leases))
        requests = [_lease_request(item) for item in request.leases]
        results = await self._limiter.acquire_many(requests)
        return ratelimit_pb2.AcquireLeasesResponse(results=[_acquire_result(r) for r in results])

    async def ReleaseLeases(
        self, request: ratelimit_pb2.ReleaseLeasesRequest, context: Context
    ) -> ratelimit_pb2.ReleaseLeasesResponse:
        """ReleaseLease for each item in order, with one store round trip for the batch.

        An unreachable store while failing closed fails the whole call with UNAVAILABLE.
        """
        BATCH_ITEMS.labels("release").observe(len(request.leases))
        releases = [_lease_release(item) for item in request.leases]
        results = await self._limiter.release_many(releases)
        return ratelimit_pb2.ReleaseLeasesResponse(results=[_release_result(r) for r in results])


def _lease_request(request: ratelimit_pb2.AcquireLeaseRequest) -> LeaseRequest:
    limits = request.limits
    return LeaseRequest(
        subject=request.subject,
        lease_id=request.request_id,
        limits=Limits(limits.rpm, limits.tpm, limits.concurrency),
        tokens=request.estimated_tokens,
        ttl_ms=_ceil_ms(request.lease_ttl),
    )


def _lease_release(request: ratelimit_pb2.ReleaseLeaseRequest) -> LeaseRelease:
    return LeaseRelease(request.subject, request.lease_id, request.actual_tokens)


def _acquire_result(result: LeaseResult | RateLimitError) -> ratelimit_pb2.AcquireLeaseResult:
    if isinstance(result, RateLimitError):
        return ratelimit_pb2.AcquireLeaseResult(status=_item_status(result))
    return ratelimit_pb2.AcquireLeaseResult(
        status=batch_pb2.ItemStatus(), response=_acquire_response(result)
    )


def _release_result(result: bool | RateLimitError) -> ratelimit_pb2.ReleaseLeaseResult:
    if isinstance(result, RateLimitError):
        return ratelimit_pb2.ReleaseLeaseResult(status=_item_status(result))
    return ratelimit_pb2.ReleaseLeaseResult(
        status=batch_pb2.ItemStatus(),
        response=ratelimit_pb2.ReleaseLeaseResponse(released=result),
    )


def _item_status(exc: RateLimitError) -> batch_pb2.ItemStatus:
    error = item_error(exc, ERRORS)
    return batch_pb2.ItemStatus(code=error.code, message=error.message)


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
