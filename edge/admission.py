"""Admission of a request: the limiter lease and the billing hold, in parallel.

A denial or failure of either ends the request with the OpenAI error, and whatever the
other one granted is undone, so a refused request never leaves a hold or a lease.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from edge.clients import Clients
from edge.domain import Lease, Principal, Reservation, ReserveDecision
from edge.errors import ApiError, UpstreamError, from_upstream
from edge.estimate import Estimate
from edge.limits import denial_message, ratelimit_headers, retry_after_s
from edge.openai.errors import ErrorCode, ErrorType
from edge.settlement import Settler

_INSUFFICIENT = "You exceeded your current quota: the account's balance is too low."
_KEY_BUDGET = (
    "This API key has reached its spending cap for the current period; raise the key's "
    "budget or use another key."
)
_NOT_PRICED = (
    "The model '{model}' is not priced for this request; an operator must set its price "
    "before use."
)


@dataclass(frozen=True, slots=True)
class Admission:
    """What an admitted request holds: its lease and its hold (with the hold's tariff)."""

    lease: Lease
    reservation: Reservation


async def admit(
    clients: Clients,
    settler: Settler,
    principal: Principal,
    request_id: str,
    model: str,
    estimate: Estimate,
) -> Admission:
    """The granted lease and hold, or ApiError after undoing whichever was granted."""
    lease_id, acquire = clients.ratelimit.start_acquire(
        request_id, principal, model, estimate.total_tokens)
    reserve = clients.billing.reserve(
        request_id, principal, model, estimate.prompt_tokens, estimate.max_completion_tokens,
        estimate.units,
    )
    both = asyncio.gather(acquire, reserve, return_exceptions=True)
    try:
        lease, hold = await asyncio.shield(both)
    except asyncio.CancelledError:
        # The calls go on (a batched item is sent anyway): undo only once they have
        # answered, or a release could overtake a still-queued acquire or reserve.
        settler.undo(request_id, principal.key_id, hold=True, lease_id=lease_id, after=both)
        raise
    error = _refusal(lease, hold, model)
    if error is None and isinstance(lease, Lease) and isinstance(hold, Reservation):
        return Admission(lease, hold)
    for result in (lease, hold):
        if isinstance(result, BaseException) and not isinstance(result, UpstreamError):
            settler.undo(request_id, principal.key_id, hold=True, lease_id=lease_id)
            raise result
    # Undo whatever may have been granted: a clean refusal granted nothing, anything
    # else (granted, or a failed call whose effect is unknown) is released.
    refused_lease = isinstance(lease, Lease) and not lease.allowed
    settler.undo(
        request_id, principal.key_id,
        hold=not (isinstance(hold, Reservation) and hold.decision is not ReserveDecision.RESERVED),
        lease_id="" if refused_lease else lease_id,
    )
    raise error or ApiError(500, ErrorType.SERVER, "The server had an error.")


def _refusal(
    lease: Lease | BaseException, hold: Reservation | BaseException, model: str
) -> ApiError | None:
    if isinstance(lease, UpstreamError):
        return from_upstream(lease)
    if isinstance(lease, Lease) and not lease.allowed:
        return rate_limited(lease, model)
    if isinstance(hold, UpstreamError):
        if hold.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            # Billing that does not answer in time is unreachable: fail closed with 503
            # (DESIGN failure policy), not a 504 about the client's own deadline.
            return from_upstream(UpstreamError(hold.service, grpc.StatusCode.UNAVAILABLE,
                                               hold.details))
        return from_upstream(hold)
    if isinstance(hold, Reservation):
        if hold.decision is ReserveDecision.INSUFFICIENT_BALANCE:
            return ApiError(
                429, ErrorType.INSUFFICIENT_QUOTA, _INSUFFICIENT,
                code=ErrorCode.INSUFFICIENT_QUOTA, headers={"x-should-retry": "false"},
            )
        if hold.decision is ReserveDecision.KEY_BUDGET_EXCEEDED:
            return ApiError(
                429, ErrorType.INSUFFICIENT_QUOTA, _KEY_BUDGET,
                code=ErrorCode.INSUFFICIENT_QUOTA, headers={"x-should-retry": "false"},
            )
        if hold.decision is ReserveDecision.MODEL_NOT_PRICED:
            return ApiError(
                403, ErrorType.INVALID_REQUEST, _NOT_PRICED.format(model=model),
                code=ErrorCode.MODEL_NOT_PRICED, param="model",
            )
    return None


def rate_limited(lease: Lease, model: str) -> ApiError:
    """The 429 for a denied lease, with `retry-after` and the x-ratelimit-* headers."""
    retry_after = retry_after_s(lease.states, lease.denied)
    headers = dict(ratelimit_headers(lease.states))
    headers["retry-after"] = str(retry_after)
    message = denial_message(lease.denied, model, retry_after)
    return ApiError(
        429, ErrorType.RATE_LIMIT, message, code=ErrorCode.RATE_LIMIT_EXCEEDED, headers=headers
    )
