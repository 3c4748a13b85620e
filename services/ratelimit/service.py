"""The gRPC servicer: requests (single or batched) in, Limiter calls, responses out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from apirelay.common.v1 import batch_pb2
from apirelay.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from services.common.batch import item_error
from services.common.interceptor import ErrorTable
from services.ratelimit import convert
from services.ratelimit.cancel import CancelGuard, granted_lease, granted_leases
from services.ratelimit.core import Limiter
from services.ratelimit.errors import (
    InvalidArgument,
    RateLimitError,
    StoreUnavailable,
    attempt,
)
from services.ratelimit.limits import LeaseResult, ReleaseResult
from services.ratelimit.metrics import BATCH_ITEMS

ERRORS: ErrorTable = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name


class RateLimitServicer(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """Adapts RateLimitService calls to a Limiter."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._guard = CancelGuard(limiter)

    async def AcquireLease(
        self, request: ratelimit_pb2.AcquireLeaseRequest, context: Context
    ) -> ratelimit_pb2.AcquireLeaseResponse:
        """Decide and consume one lease (released again if the caller cancels meanwhile)."""
        lease = convert.lease_request(request)
        result = await self._guard.run(self._limiter.acquire(lease), granted_lease(lease))
        return convert.acquire_response(result)

    async def ReleaseLease(
        self, request: ratelimit_pb2.ReleaseLeaseRequest, context: Context
    ) -> ratelimit_pb2.ReleaseLeaseResponse:
        """End a lease and reconcile its tokens."""
        result = await self._limiter.release(convert.lease_release(request))
        return convert.release_response(result)

    async def AcquireLeases(
        self, request: ratelimit_pb2.AcquireLeasesRequest, context: Context
    ) -> ratelimit_pb2.AcquireLeasesResponse:
        """AcquireLease for each item in order, with one store round trip for the batch.

        An unreachable store while failing closed fails the whole call with UNAVAILABLE
        (failing open, every item is decided locally); a retried batch replays the items
        already admitted, since acquire is idempotent by request id. If the caller cancels
        meanwhile, the leases the batch grants are released again.
        """
        BATCH_ITEMS.labels("acquire").observe(len(request.leases))
        requests = [attempt(convert.lease_request, item) for item in request.leases]
        results = await self._guard.run(
            self._limiter.acquire_many(requests), granted_leases(requests))
        return ratelimit_pb2.AcquireLeasesResponse(results=[_acquire_result(r) for r in results])

    async def ReleaseLeases(
        self, request: ratelimit_pb2.ReleaseLeasesRequest, context: Context
    ) -> ratelimit_pb2.ReleaseLeasesResponse:
        """ReleaseLease for each item in order, with one store round trip for the batch.

        An unreachable store while failing closed fails the whole call with UNAVAILABLE.
        """
        BATCH_ITEMS.labels("release").observe(len(request.leases))
        releases = [convert.lease_release(item) for item in request.leases]
        results = await self._limiter.release_many(releases)
        return ratelimit_pb2.ReleaseLeasesResponse(results=[_release_result(r) for r in results])

    async def CheckLimits(
        self, request: ratelimit_pb2.CheckLimitsRequest, context: Context
    ) -> ratelimit_pb2.CheckLimitsResponse:
        """Consume hits from every rule, all or nothing, without a lease."""
        result = await self._limiter.check(convert.check_request(request))
        return convert.check_response(result)


def _acquire_result(result: LeaseResult | RateLimitError) -> ratelimit_pb2.AcquireLeaseResult:
    if isinstance(result, RateLimitError):
        return ratelimit_pb2.AcquireLeaseResult(status=_item_status(result))
    return ratelimit_pb2.AcquireLeaseResult(
        status=batch_pb2.ItemStatus(), response=convert.acquire_response(result)
    )


def _release_result(result: ReleaseResult | RateLimitError) -> ratelimit_pb2.ReleaseLeaseResult:
    if isinstance(result, RateLimitError):
        return ratelimit_pb2.ReleaseLeaseResult(status=_item_status(result))
    return ratelimit_pb2.ReleaseLeaseResult(
        status=batch_pb2.ItemStatus(), response=convert.release_response(result)
    )


def _item_status(exc: RateLimitError) -> batch_pb2.ItemStatus:
    error = item_error(exc, ERRORS)
    return batch_pb2.ItemStatus(code=error.code, message=error.message)
