"""The BillingService servicer: proto in, ledger call, proto out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.common.v1 import batch_pb2
from services.billing.admin import LedgerAdmin
from services.billing.admin_service import AdminMethods
from services.billing.admin_wire import optional_time
from services.billing.core import Ledger, ReserveDecision, SettleRequest
from services.billing.domain import NO_OUTCOME, Usage
from services.billing.errors import (
    AmountOutOfRange,
    BatchAlreadyExists,
    CodeNotFound,
    CodeNotRedeemable,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InvalidBillingRequest,
    ModelNotPriced,
    StoreUnavailable,
)
from services.billing.metrics import (
    BATCH_ITEMS,
    CHARGES,
    CHARGES_OVER_HOLD,
    LATE_SETTLEMENTS,
    RESERVES,
    SETTLE_DUPLICATES,
    SETTLED_NANOS,
)
from services.billing.price_wire import price_to_proto, tariff_to_proto
from services.billing.usage_service import UsageQueries
from services.billing.wire import (
    SOURCES,
    outcome_from_proto,
    release_outcome,
    reserve_from_proto,
    usage_from_proto,
    wallet_to_proto,
)
from services.common.batch import ItemError, process_items
from services.common.interceptor import ErrorTable

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

ERRORS: ErrorTable = {
    InvalidBillingRequest: grpc.StatusCode.INVALID_ARGUMENT,
    AmountOutOfRange: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotPriced: grpc.StatusCode.NOT_FOUND,
    HoldNotFound: grpc.StatusCode.NOT_FOUND,
    HoldNotOpen: grpc.StatusCode.FAILED_PRECONDITION,
    IdempotencyConflict: grpc.StatusCode.ALREADY_EXISTS,
    BatchAlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    CodeNotFound: grpc.StatusCode.NOT_FOUND,
    CodeNotRedeemable: grpc.StatusCode.FAILED_PRECONDITION,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
}

_DECISIONS = {
    ReserveDecision.RESERVED: billing_pb2.RESERVE_DECISION_RESERVED,
    ReserveDecision.INSUFFICIENT_BALANCE: billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE,
    ReserveDecision.MODEL_NOT_PRICED: billing_pb2.RESERVE_DECISION_MODEL_NOT_PRICED,
    ReserveDecision.KEY_BUDGET_EXCEEDED: billing_pb2.RESERVE_DECISION_KEY_BUDGET_EXCEEDED,
}


def charge_kinds(usage: Usage) -> set[str]:
    """What a usage is charged for: "tokens" and the family of each unit ("image", ...)."""
    kinds = {unit.split("/", 1)[0] for unit, quantity in usage.units.items() if quantity > 0}
    if usage.prompt_tokens or usage.completion_tokens:
        kinds.add("tokens")
    return kinds


class BillingServicer(AdminMethods, billing_pb2_grpc.BillingServiceServicer):
    """Adapts BillingService RPCs to the Ledger (admin RPCs: see AdminMethods)."""

    def __init__(self, ledger: Ledger, admin: LedgerAdmin, usage: UsageQueries) -> None:
        self._ledger = ledger
        self._admin = admin
        self._usage = usage

    async def ReserveCredit(
        self, request: billing_pb2.ReserveCreditRequest, context: Context
    ) -> billing_pb2.ReserveCreditResponse:
        """Hold the request's maximum cost, or say why not."""
        return await self._reserve(request)

    async def SettleCredit(
        self, request: billing_pb2.SettleCreditRequest, context: Context
    ) -> billing_pb2.SettleCreditResponse:
        """Charge the real usage once; a replay returns the first charge."""
        return await self._settle(request)

    async def ReserveCredits(
        self, request: billing_pb2.ReserveCreditsRequest, context: Context
    ) -> billing_pb2.ReserveCreditsResponse:
        """ReserveCredit for each item in order, each with its own status.

        An unreachable database fails the whole call with UNAVAILABLE; items before it are
        applied, and a retry of the batch replays them (reserve is idempotent by request id).
        """
        BATCH_ITEMS.labels("reserve").observe(len(request.reservations))
        outcomes = await process_items(
            request.reservations, self._reserve, ERRORS, (StoreUnavailable,)
        )
        return billing_pb2.ReserveCreditsResponse(results=[_reserve_result(o) for o in outcomes])

    async def SettleCredits(
        self, request: billing_pb2.SettleCreditsRequest, context: Context
    ) -> billing_pb2.SettleCreditsResponse:
        """SettleCredit for each item in order, each its own transaction and status.

        An unreachable database fails the whole call with UNAVAILABLE; items before it are
        applied, and a retry of the batch replays them (settle is idempotent by request id).
        """
        BATCH_ITEMS.labels("settle").observe(len(request.settlements))
        outcomes = await process_items(
            request.settlements, self._settle, ERRORS, (StoreUnavailable,)
        )
        return billing_pb2.SettleCreditsResponse(results=[_settle_result(o) for o in outcomes])

    async def ReleaseCredit(
        self, request: billing_pb2.ReleaseCreditRequest, context: Context
    ) -> billing_pb2.ReleaseCreditResponse:
        """Drop an open hold without charge; record the outcome when one is given."""
        outcome = release_outcome(request)
        released = await self._ledger.release(request.request_id, outcome, request.channel)
        return billing_pb2.ReleaseCreditResponse(released=released)

    async def AddCredit(
        self, request: billing_pb2.AddCreditRequest, context: Context
    ) -> billing_pb2.AddCreditResponse:
        """Top up a wallet (admin only)."""
        wallet = await self._ledger.add_credit(
            request.account_id, request.amount_nanos, request.reference, request.note
        )
        return billing_pb2.AddCreditResponse(wallet=wallet_to_proto(wallet))

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: Context
    ) -> billing_pb2.GetBalanceResponse:
        """Read a wallet (admin only)."""
        wallet = await self._ledger.balance(request.account_id)
        return billing_pb2.GetBalanceResponse(wallet=wallet_to_proto(wallet))

    async def GetPrice(
        self, request: billing_pb2.GetPriceRequest, context: Context
    ) -> billing_pb2.GetPriceResponse:
        """A model's price at `at` (now by default); NOT_FOUND when it has none then."""
        price = self._ledger.price(request.model, optional_time(request.HasField("at"), request.at))
        return billing_pb2.GetPriceResponse(price=price_to_proto(request.model, price))

    async def _reserve(
        self, request: billing_pb2.ReserveCreditRequest
    ) -> billing_pb2.ReserveCreditResponse:
        result = await self._ledger.reserve(reserve_from_proto(request))
        RESERVES.labels(result.decision.value).inc()
        return billing_pb2.ReserveCreditResponse(
            decision=_DECISIONS[result.decision],
            held_nanos=result.held_nanos,
            wallet=wallet_to_proto(result.wallet),
            tariff=None if result.tariff is None else tariff_to_proto(result.tariff),
        )

    async def _settle(
        self, request: billing_pb2.SettleCreditRequest
    ) -> billing_pb2.SettleCreditResponse:
        if not request.HasField("usage"):
            raise InvalidBillingRequest("usage is required")
        source = SOURCES.get(request.usage_source)
        if source is None:
            raise InvalidBillingRequest("usage_source must be UPSTREAM or ESTIMATED")
        usage = usage_from_proto(request.usage)
        outcome = outcome_from_proto(request.outcome) if request.HasField("outcome") else NO_OUTCOME
        result = await self._ledger.settle(
            SettleRequest(request.request_id, usage, source, request.channel, outcome)
        )
        if result.newly_settled:
            SETTLED_NANOS.inc(result.charged_nanos)
            for kind in charge_kinds(usage):
                CHARGES.labels(kind).inc()
            if result.late:
                LATE_SETTLEMENTS.inc()
        else:
            SETTLE_DUPLICATES.inc()
        if result.exceeded_hold:
            CHARGES_OVER_HOLD.inc()
        return billing_pb2.SettleCreditResponse(
            charged_nanos=result.charged_nanos,
            wallet=wallet_to_proto(result.wallet),
            newly_settled=result.newly_settled,
            late=result.late,
        )

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: Context
    ) -> billing_pb2.ListUsageResponse:
        """A page of the usage log (admin only)."""
        return await self._usage.list_usage(request)

    async def GetDailyUsage(
        self, request: billing_pb2.GetDailyUsageRequest, context: Context
    ) -> billing_pb2.GetDailyUsageResponse:
        """Usage summed per day, account and model (admin only)."""
        return await self._usage.daily_usage(request)


def _reserve_result(
    outcome: billing_pb2.ReserveCreditResponse | ItemError,
) -> billing_pb2.ReserveCreditResult:
    if isinstance(outcome, ItemError):
        return billing_pb2.ReserveCreditResult(status=_item_status(outcome))
    return billing_pb2.ReserveCreditResult(status=batch_pb2.ItemStatus(), response=outcome)


def _settle_result(
    outcome: billing_pb2.SettleCreditResponse | ItemError,
) -> billing_pb2.SettleCreditResult:
    if isinstance(outcome, ItemError):
        return billing_pb2.SettleCreditResult(status=_item_status(outcome))
    return billing_pb2.SettleCreditResult(status=batch_pb2.ItemStatus(), response=outcome)


def _item_status(error: ItemError) -> batch_pb2.ItemStatus:
    return batch_pb2.ItemStatus(code=error.code, message=error.message)
