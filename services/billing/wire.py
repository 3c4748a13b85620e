"""Wire forms of the billing vocabulary: protos in and out, validated on the way in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from services.billing.core import ReserveRequest
from services.billing.domain import (
    RequestOutcome,
    RequestStatus,
    Usage,
    UsageSource,
    Wallet,
    unit_quantities,
)
from services.billing.errors import InvalidBillingRequest

# The width of usage_records.error_code.
ERROR_CODE_MAX = 64


def wallet_to_proto(wallet: Wallet) -> billing_pb2.Wallet:
    """The wire form of a wallet."""
    return billing_pb2.Wallet(
        account_id=wallet.account_id,
        balance_nanos=wallet.balance_nanos,
        held_nanos=wallet.held_nanos,
        available_nanos=wallet.available_nanos,
        credit_limit_nanos=wallet.credit_limit_nanos,
    )


def units_from_proto(units: Iterable[usage_pb2.UnitUsage]) -> Mapping[str, int]:
    """Unit quantities from the wire; a nameless, repeated or negative unit is invalid."""
    return unit_quantities((u.unit, u.quantity) for u in units)


def usage_from_proto(usage: usage_pb2.Usage) -> Usage:
    """Token counts and units from the wire; invalid ones raise InvalidBillingRequest."""
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cache_write_prompt_tokens=usage.cache_write_prompt_tokens,
        units=units_from_proto(usage.units),
    )


def reserve_from_proto(request: billing_pb2.ReserveCreditRequest) -> ReserveRequest:
    """A reserve request from the wire; malformed units raise InvalidBillingRequest."""
    return ReserveRequest(
        request_id=request.request_id,
        account_id=request.account_id,
        key_id=request.key_id,
        group=request.group,
        model=request.model,
        prompt_tokens=request.prompt_tokens,
        max_completion_tokens=request.max_completion_tokens,
        max_units=units_from_proto(request.max_units),
        hold_ttl_seconds=request.hold_ttl_seconds,
    )


# Who counted the usage, as a settle may report it.
SOURCES = {
    usage_pb2.USAGE_SOURCE_UPSTREAM: UsageSource.UPSTREAM,
    usage_pb2.USAGE_SOURCE_ESTIMATED: UsageSource.ESTIMATED,
}
STATUSES = {
    billing_pb2.REQUEST_STATUS_UNSPECIFIED: RequestStatus.UNSPECIFIED,
    billing_pb2.REQUEST_STATUS_OK: RequestStatus.OK,
    billing_pb2.REQUEST_STATUS_ERROR: RequestStatus.ERROR,
    billing_pb2.REQUEST_STATUS_CLIENT_CLOSED: RequestStatus.CLIENT_CLOSED,
    billing_pb2.REQUEST_STATUS_UPSTREAM_CUT: RequestStatus.UPSTREAM_CUT,
}


def outcome_from_proto(outcome: billing_pb2.RequestOutcome) -> RequestOutcome:
    """How a request went, from the wire; unknown statuses and negative times are invalid."""
    status = STATUSES.get(outcome.status)
    if status is None:
        raise InvalidBillingRequest("outcome.status is not a known RequestStatus")
    if outcome.latency_ms < 0 or outcome.first_token_ms < 0:
        raise InvalidBillingRequest("outcome times must not be negative")
    if len(outcome.error_code) > ERROR_CODE_MAX:
        raise InvalidBillingRequest(f"outcome.error_code is longer than {ERROR_CODE_MAX}")
    return RequestOutcome(
        status, outcome.error_code, outcome.stream, outcome.latency_ms, outcome.first_token_ms
    )


def release_outcome(request: billing_pb2.ReleaseCreditRequest) -> RequestOutcome | None:
    """The outcome to record with a release; None when the caller reported none."""
    if not request.HasField("outcome"):
        return None
    if request.outcome.status == billing_pb2.REQUEST_STATUS_UNSPECIFIED:
        return None
    return outcome_from_proto(request.outcome)
