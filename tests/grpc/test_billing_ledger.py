"""The ledger RPCs through a served BillingService: admin methods, status codes, the sweeper."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.billing.v1 import billing_pb2
from tests.grpc.billing_helpers import (
    ADMIN,
    BUDGET_EXCEEDED,
    MAX_COST,
    RESERVED,
    balance,
    check_ledger,
    fund,
    reserve,
    sample,
    serve_billing,
    settle,
    uid,
)

ADMIN_ONLY = (
    ("AdjustCredit", billing_pb2.AdjustCreditRequest(account_id="a", amount_nanos=1, reason="r")),
    ("SetCreditLimit", billing_pb2.SetCreditLimitRequest(account_id="a")),
    ("SetKeyBudget", billing_pb2.SetKeyBudgetRequest(key_id="k", daily_limit_nanos=1)),
    ("GetKeyBudget", billing_pb2.GetKeyBudgetRequest(key_id="k")),
    ("CreateRedemptionCodes", billing_pb2.CreateRedemptionCodesRequest(count=1, amount_nanos=1)),
    ("ListLedgerEntries", billing_pb2.ListLedgerEntriesRequest(account_id="a")),
    ("CheckLedger", billing_pb2.CheckLedgerRequest()),
    ("ExpireHolds", billing_pb2.ExpireHoldsRequest()),
    ("ListUsage", billing_pb2.ListUsageRequest()),
    ("GetDailyUsage", billing_pb2.GetDailyUsageRequest()),
)


async def test_admin_methods_refuse_callers_without_the_admin_key(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        for method, request in ADMIN_ONLY:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await getattr(stub, method)(request)
            assert caught.value.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            ), method
        # The request path stays open: redeeming needs no admin key (here: unknown code).
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.RedeemCode(billing_pb2.RedeemCodeRequest(account_id="a", code="rc-x"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_adjust_limit_codes_and_ledger_pages(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        account = await fund(stub, 1_000)
        adjusted = await stub.AdjustCredit(
            billing_pb2.AdjustCreditRequest(
                account_id=account, amount_nanos=-1_500, reason="chargeback", reference="cb"
            ),
            metadata=ADMIN,
        )
        assert adjusted.wallet.balance_nanos == -500
        limited = await stub.SetCreditLimit(
            billing_pb2.SetCreditLimitRequest(account_id=account, credit_limit_nanos=2_000),
            metadata=ADMIN,
        )
        assert (limited.wallet.credit_limit_nanos, limited.wallet.available_nanos) == (2_000, 1_500)
        batch = await stub.CreateRedemptionCodes(
            billing_pb2.CreateRedemptionCodesRequest(count=2, amount_nanos=700, batch_reference="b"),
            metadata=ADMIN,
        )
        assert len(batch.codes) == 2 and batch.batch_id
        redeemed = await stub.RedeemCode(
            billing_pb2.RedeemCodeRequest(account_id=account, code=batch.codes[0])
        )
        assert (redeemed.amount_nanos, redeemed.wallet.balance_nanos) == (700, 200)
        page = await stub.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(account_id=account, page_size=2), metadata=ADMIN
        )
        assert [(e.kind, e.amount_nanos, e.counterparty) for e in page.entries] == [
            ("redemption", 700, "system:redemptions"),
            ("adjustment", -1_500, "system:adjustments"),
        ]
        assert page.entries[1].note == "chargeback" and page.next_page_token
        rest = await stub.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(
                account_id=account, page_size=2, page_token=page.next_page_token
            ),
            metadata=ADMIN,
        )
        assert [e.kind for e in rest.entries] == ["topup"] and rest.next_page_token == ""
        await check_ledger(stub, {account})


async def test_domain_errors_have_their_status_codes(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        account = await fund(stub, 1_000)
        batch = await stub.CreateRedemptionCodes(
            billing_pb2.CreateRedemptionCodesRequest(count=1, amount_nanos=9, batch_reference="r"),
            metadata=ADMIN,
        )
        await stub.RedeemCode(billing_pb2.RedeemCodeRequest(account_id=account, code=batch.codes[0]))
        calls = [
            (stub.RedeemCode(billing_pb2.RedeemCodeRequest(account_id="x", code=batch.codes[0])),
             grpc.StatusCode.FAILED_PRECONDITION),
            (stub.CreateRedemptionCodes(
                billing_pb2.CreateRedemptionCodesRequest(count=1, amount_nanos=9,
                                                         batch_reference="r"), metadata=ADMIN),
             grpc.StatusCode.ALREADY_EXISTS),
            (stub.CreateRedemptionCodes(
                billing_pb2.CreateRedemptionCodesRequest(count=1001, amount_nanos=9),
                metadata=ADMIN), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.AdjustCredit(billing_pb2.AdjustCreditRequest(account_id=account, amount_nanos=5),
                               metadata=ADMIN), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.ListLedgerEntries(billing_pb2.ListLedgerEntriesRequest(
                account_id=account, page_token="nope"), metadata=ADMIN),
             grpc.StatusCode.INVALID_ARGUMENT),
            (stub.SetCreditLimit(billing_pb2.SetCreditLimitRequest(
                account_id=account, credit_limit_nanos=-1), metadata=ADMIN),
             grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for call, code in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == code


async def test_a_key_budget_refuses_reserves_past_its_cap(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        account, key = await fund(stub, 10**9), uid("key")
        budget = await stub.SetKeyBudget(
            billing_pb2.SetKeyBudgetRequest(key_id=key, daily_limit_nanos=MAX_COST),
            metadata=ADMIN,
        )
        assert budget.budget.daily_limit_nanos == MAX_COST
        first = reserve(account, uid("req"))
        first.key_id = key
        second = reserve(account, uid("req"))
        second.key_id = key
        assert (await stub.ReserveCredit(first)).decision == RESERVED
        refused = await stub.ReserveCredit(second)
        assert refused.decision == BUDGET_EXCEEDED and refused.held_nanos == 0
        got = await stub.GetKeyBudget(billing_pb2.GetKeyBudgetRequest(key_id=key), metadata=ADMIN)
        assert (got.budget.held_nanos, got.budget.spent_today_nanos) == (MAX_COST, 0)
        await stub.SettleCredit(settle(first.request_id))
        got = await stub.GetKeyBudget(billing_pb2.GetKeyBudgetRequest(key_id=key), metadata=ADMIN)
        assert got.budget.held_nanos == 0 and got.budget.spent_today_nanos > 0


async def test_expire_holds_then_a_late_settle_and_a_recorded_release(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        account = await fund(stub, 10 * MAX_COST)
        expiring, failing = uid("req"), uid("req")
        short = reserve(account, expiring)
        short.hold_ttl_seconds = 1
        await stub.ReserveCredit(short)
        await stub.ReserveCredit(reserve(account, failing))
        late_before = sample("apirelay_billing_late_settlements_total")
        expired_before = sample("apirelay_billing_holds_expired_total")
        expired = 0
        for _ in range(50):  # the hold's one-second TTL must pass first
            expired += (await stub.ExpireHolds(billing_pb2.ExpireHoldsRequest(),
                                               metadata=ADMIN)).expired
            if expired:
                break
            await asyncio.sleep(0.05)
        assert expired == 1
        assert sample("apirelay_billing_holds_expired_total") == expired_before + 1
        assert (await balance(stub, account)).held_nanos == MAX_COST
        late = await stub.SettleCredit(settle(expiring))
        assert late.late and late.newly_settled
        assert sample("apirelay_billing_late_settlements_total") == late_before + 1
        outcome = billing_pb2.RequestOutcome(
            status=billing_pb2.REQUEST_STATUS_ERROR, error_code="upstream_error"
        )
        released = await stub.ReleaseCredit(
            billing_pb2.ReleaseCreditRequest(request_id=failing, outcome=outcome, channel="c")
        )
        assert released.released
        usage = await stub.ListUsage(billing_pb2.ListUsageRequest(account_id=account),
                                     metadata=ADMIN)
        assert {r.request_id for r in usage.records} == {expiring, failing}
        await check_ledger(stub, {account})


async def test_the_sweeper_expires_holds_on_its_own(tmp_path: Path) -> None:
    interval = timedelta(milliseconds=50)
    async with serve_billing(tmp_path, expiry_interval=interval, hold_ttl_s=1) as stub:
        account = await fund(stub, 10 * MAX_COST)
        reply = await stub.ReserveCredit(reserve(account, uid("req")))
        assert reply.decision == RESERVED
        for _ in range(100):  # bounded: 1 s TTL plus a few sweeps
            if (await balance(stub, account)).held_nanos == 0:
                break
            await asyncio.sleep(0.05)
        assert (await balance(stub, account)).held_nanos == 0


async def test_get_price_at_a_time(tmp_path: Path) -> None:
    async with serve_billing(tmp_path) as stub:
        at = Timestamp(seconds=1_700_000_000)
        reply = await stub.GetPrice(billing_pb2.GetPriceRequest(model="m", at=at))
        assert reply.price.prompt_nanos_per_token == 150
