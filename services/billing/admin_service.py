"""The admin RPCs of BillingService (and RedeemCode): proto in, LedgerAdmin call, proto out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from apirelay.billing.v1 import billing_pb2
from services.billing.admin import LedgerAdmin, encode_page_token
from services.billing.admin_wire import (
    entry_to_proto,
    key_budget_to_proto,
    optional_time,
    report_to_proto,
)
from services.billing.core import Ledger
from services.billing.errors import InvalidBillingRequest
from services.billing.expiry import expire_now
from services.billing.wire import wallet_to_proto

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AdminMethods:
    """Mixed into BillingServicer, which sets `_ledger` and `_admin`."""

    _ledger: Ledger
    _admin: LedgerAdmin

    async def AdjustCredit(
        self, request: billing_pb2.AdjustCreditRequest, context: Context
    ) -> billing_pb2.AdjustCreditResponse:
        """Correct a balance up or down, with a reason."""
        wallet = await self._admin.adjust(
            request.account_id, request.amount_nanos, request.reason, request.reference
        )
        return billing_pb2.AdjustCreditResponse(wallet=wallet_to_proto(wallet))

    async def SetCreditLimit(
        self, request: billing_pb2.SetCreditLimitRequest, context: Context
    ) -> billing_pb2.SetCreditLimitResponse:
        """Set how far the account's available balance may go below zero."""
        wallet = await self._admin.set_credit_limit(request.account_id, request.credit_limit_nanos)
        return billing_pb2.SetCreditLimitResponse(wallet=wallet_to_proto(wallet))

    async def SetKeyBudget(
        self, request: billing_pb2.SetKeyBudgetRequest, context: Context
    ) -> billing_pb2.SetKeyBudgetResponse:
        """Set a key's daily and monthly caps (both 0 removes them)."""
        budget = await self._admin.set_key_budget(
            request.key_id, request.daily_limit_nanos, request.monthly_limit_nanos
        )
        return billing_pb2.SetKeyBudgetResponse(budget=key_budget_to_proto(budget))

    async def GetKeyBudget(
        self, request: billing_pb2.GetKeyBudgetRequest, context: Context
    ) -> billing_pb2.GetKeyBudgetResponse:
        """A key's caps and its spend and holds in the current periods."""
        budget = await self._admin.key_budget(request.key_id)
        return billing_pb2.GetKeyBudgetResponse(budget=key_budget_to_proto(budget))

    async def CreateRedemptionCodes(
        self, request: billing_pb2.CreateRedemptionCodesRequest, context: Context
    ) -> billing_pb2.CreateRedemptionCodesResponse:
        """Mint a batch of one-time codes, shown this once."""
        expires_at = optional_time(request.HasField("expires_at"), request.expires_at)
        batch = await self._admin.create_codes(
            request.count, request.amount_nanos, expires_at, request.note, request.batch_reference
        )
        return billing_pb2.CreateRedemptionCodesResponse(
            batch_id=batch.batch_id, codes=list(batch.codes)
        )

    async def RedeemCode(
        self, request: billing_pb2.RedeemCodeRequest, context: Context
    ) -> billing_pb2.RedeemCodeResponse:
        """Credit a code's amount to an account, once."""
        amount, wallet = await self._admin.redeem(request.account_id, request.code)
        return billing_pb2.RedeemCodeResponse(amount_nanos=amount, wallet=wallet_to_proto(wallet))

    async def ListLedgerEntries(
        self, request: billing_pb2.ListLedgerEntriesRequest, context: Context
    ) -> billing_pb2.ListLedgerEntriesResponse:
        """A page of an account's transfers, newest first."""
        page = await self._admin.ledger_page(
            request.account_id, request.page_size, request.page_token
        )
        token = "" if page.before_id is None else encode_page_token(page.before_id)
        return billing_pb2.ListLedgerEntriesResponse(
            entries=[entry_to_proto(entry) for entry in page.entries], next_page_token=token
        )

    async def CheckLedger(
        self, request: billing_pb2.CheckLedgerRequest, context: Context
    ) -> billing_pb2.CheckLedgerResponse:
        """The ledger's invariants, with every mismatch."""
        return report_to_proto(await self._admin.check())

    async def ExpireHolds(
        self, request: billing_pb2.ExpireHoldsRequest, context: Context
    ) -> billing_pb2.ExpireHoldsResponse:
        """Void the open holds past their deadline now."""
        if request.limit < 0:
            raise InvalidBillingRequest("limit must not be negative")
        return billing_pb2.ExpireHoldsResponse(expired=await expire_now(self._ledger, request.limit))
