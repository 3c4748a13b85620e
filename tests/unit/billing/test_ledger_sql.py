"""The ledger on the real SQL store (SQLite in memory, fixed clock): double entry, key
budgets, expiry and late settlement, adjustments, credit limits, codes, ledger reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, select, update

from services.billing.admin import LedgerAdmin, decode_page_token, encode_page_token
from services.billing.admin_store import SqlAdminStore
from services.billing.core import Ledger, ReserveDecision, ReserveRequest, SettleRequest
from services.billing.database import create_schema, open_database
from services.billing.domain import RequestOutcome, RequestStatus, Usage, UsageSource
from services.billing.errors import (
    BatchAlreadyExists,
    CodeNotFound,
    CodeNotRedeemable,
    HoldNotOpen,
    IdempotencyConflict,
    InvalidBillingRequest,
)
from services.billing.models import TransferRow, UsageRecordRow, WalletRow
from services.billing.pricing import PriceBook
from services.billing.runner import TransactionRunner
from services.billing.store import SqlBillingStore
from services.common.gateway_config import parse_gateway_config

START = datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC)
PRICES = PriceBook.from_config(
    parse_gateway_config(
        {"models": [{"id": "m", "price": {"prompt": 100, "completion": 300, "request": 5}}]}
    )
)
HOLD = 10 * 100 + 20 * 300 + 5  # reserve() below


@dataclass
class Bench:
    """A ledger on SQLite in memory with a clock the test moves."""

    db: TransactionRunner
    ledger: Ledger
    admin: LedgerAdmin
    now: datetime

    def clock(self) -> datetime:
        return self.now

    async def rows(self, stmt: object) -> list[tuple[object, ...]]:
        def body(conn: Connection) -> list[tuple[object, ...]]:
            return [tuple(row) for row in conn.execute(stmt)]  # type: ignore[call-overload]

        return await self.db.read(body)


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    db = open_database("sqlite://")
    await create_schema(db)
    holder = Bench(db, None, None, START)  # type: ignore[arg-type]
    holder.ledger = Ledger(SqlBillingStore(db), PRICES, holder.clock, hold_ttl_s=60)
    holder.admin = LedgerAdmin(holder.ledger, SqlAdminStore(db), holder.clock)
    try:
        yield holder
    finally:
        await db.close()


def reserve(rid: str, account: str = "a", key: str = "k", ttl: int = 0) -> ReserveRequest:
    return ReserveRequest(rid, account, key, "default", "m", 10, 20, hold_ttl_seconds=ttl)


def settle(rid: str, completion: int = 10) -> SettleRequest:
    outcome = RequestOutcome(RequestStatus.CLIENT_CLOSED, "", True, 1200, 80)
    usage = Usage(10, completion, 2, 1, cache_write_prompt_tokens=3)
    return SettleRequest(rid, usage, UsageSource.ESTIMATED, "ch-1", outcome)


async def test_every_movement_is_one_balanced_transfer(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "pay-1", "card")
    await bench.ledger.reserve(reserve("r1"))
    await bench.ledger.settle(settle("r1"))
    await bench.admin.adjust("a", -500, "refund of r0", "")
    rows = await bench.rows(
        select(
            TransferRow.debit_account,
            TransferRow.credit_account,
            TransferRow.amount_nanos,
            TransferRow.kind,
            TransferRow.request_id,
            TransferRow.reference,
        ).order_by(TransferRow.id)
    )
    charge = 10 * 100 + 10 * 300 + 5
    assert rows == [
        ("system:funding", "wallet:a", 100_000, "topup", None, "topup:pay-1"),
        ("wallet:a", "system:revenue", charge, "charge", "r1", None),
        ("wallet:a", "system:adjustments", 500, "adjustment", None, None),
    ]
    report = await bench.admin.check()
    assert (report.wallets, report.transfers, report.net_nanos) == (1, 3, 0)
    assert report.mismatches == () and report.holds_resolved_twice == ()


async def test_a_zero_charge_moves_nothing(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "", "")
    free = PriceBook.from_config(
        parse_gateway_config({"models": [{"id": "m", "price": {"prompt": 0, "completion": 0}}]})
    )
    ledger = Ledger(SqlBillingStore(bench.db), free, bench.clock)
    await ledger.reserve(reserve("r"))
    assert (await ledger.settle(settle("r"))).charged_nanos == 0
    assert (await bench.admin.check()).transfers == 1


async def test_the_usage_record_has_every_column(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "", "")
    await bench.ledger.reserve(reserve("r1"))
    await bench.ledger.settle(settle("r1"))
    (row,) = await bench.rows(
        select(
            UsageRecordRow.cache_write_prompt_tokens,
            UsageRecordRow.usage_source,
            UsageRecordRow.status,
            UsageRecordRow.stream,
            UsageRecordRow.latency_ms,
            UsageRecordRow.first_token_ms,
            UsageRecordRow.late,
            UsageRecordRow.day,
            UsageRecordRow.price_group,
            UsageRecordRow.channel,
        )
    )
    assert row == (3, "estimated", "client_closed", True, 1200, 80, False, "2026-01-31",
                   "default", "ch-1")


async def test_a_key_budget_caps_reserves_and_rolls_with_the_day(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 10**9, "", "")
    await bench.admin.set_key_budget("k", 2 * HOLD, 0)
    assert (await bench.ledger.reserve(reserve("r1"))).decision is ReserveDecision.RESERVED
    assert (await bench.ledger.reserve(reserve("r2"))).decision is ReserveDecision.RESERVED
    refused = await bench.ledger.reserve(reserve("r3"))
    assert refused.decision is ReserveDecision.KEY_BUDGET_EXCEEDED and refused.held_nanos == 0
    assert refused.wallet.held_nanos == 2 * HOLD  # nothing held for the refused one
    other_key = await bench.ledger.reserve(reserve("r4", key="k2"))
    assert other_key.decision is ReserveDecision.RESERVED
    charge = (await bench.ledger.settle(settle("r1"))).charged_nanos
    await bench.ledger.release("r2")
    budget = await bench.admin.key_budget("k")
    assert (budget.day_spent_nanos, budget.month_spent_nanos, budget.held_nanos) == (
        charge,
        charge,
        0,
    )
    bench.now += timedelta(minutes=2)  # a new day and a new month
    budget = await bench.admin.key_budget("k")
    assert (budget.day_spent_nanos, budget.month_spent_nanos) == (0, 0)
    assert (await bench.ledger.reserve(reserve("r5"))).decision is ReserveDecision.RESERVED


async def test_a_monthly_cap_counts_the_whole_month(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 10**9, "", "")
    await bench.admin.set_key_budget("k", 0, HOLD + 10)
    bench.now = datetime(2026, 3, 1, tzinfo=UTC)
    await bench.ledger.reserve(reserve("r1"))
    await bench.ledger.settle(settle("r1", completion=20))  # spends exactly HOLD
    bench.now += timedelta(days=1)
    refused = await bench.ledger.reserve(reserve("r2"))
    assert refused.decision is ReserveDecision.KEY_BUDGET_EXCEEDED
    await bench.admin.set_key_budget("k", 0, 0)  # removed: no cap at all
    assert (await bench.ledger.reserve(reserve("r3"))).decision is ReserveDecision.RESERVED


async def test_an_expired_hold_frees_its_money_and_still_settles_late(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "", "")
    await bench.admin.set_key_budget("k", 10**6, 0)
    await bench.ledger.reserve(reserve("r1", ttl=5))
    await bench.ledger.reserve(reserve("r2"))
    bench.now += timedelta(seconds=5)
    assert await bench.ledger.expire_holds() == 1
    wallet = await bench.ledger.balance("a")
    assert wallet.held_nanos == HOLD  # r2 only
    assert (await bench.admin.key_budget("k")).held_nanos == HOLD
    assert await bench.ledger.release("r1") is False
    with pytest.raises(HoldNotOpen):
        await bench.ledger.reserve(reserve("r1"))
    late = await bench.ledger.settle(settle("r1"))
    assert late.late and late.newly_settled
    assert late.wallet.held_nanos == HOLD and late.wallet.balance_nanos == 100_000 - late.charged_nanos
    replay = await bench.ledger.settle(settle("r1"))
    assert (replay.late, replay.newly_settled, replay.charged_nanos) == (True, False, late.charged_nanos)
    budget = await bench.admin.key_budget("k")
    assert (budget.held_nanos, budget.day_spent_nanos) == (HOLD, late.charged_nanos)
    assert (await bench.admin.check()).mismatches == ()


async def test_a_release_with_an_outcome_is_recorded_once(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "", "")
    await bench.ledger.reserve(reserve("r1"))
    failed = RequestOutcome(RequestStatus.ERROR, "upstream_error", False, 30, 0)
    assert await bench.ledger.release("r1", failed, "ch-9") is True
    assert await bench.ledger.release("r1", RequestOutcome(RequestStatus.OK), "x") is False
    rows = await bench.rows(
        select(UsageRecordRow.cost_nanos, UsageRecordRow.usage_source, UsageRecordRow.status,
               UsageRecordRow.error_code, UsageRecordRow.channel)
    )
    assert rows == [(0, "none", "error", "upstream_error", "ch-9")]
    await bench.ledger.reserve(reserve("r2"))
    assert await bench.ledger.release("r2") is True  # no outcome: never ran, no record
    assert len(await bench.rows(select(UsageRecordRow.request_id))) == 1


async def test_adjustments_need_a_reason_and_replay_by_reference(bench: Bench) -> None:
    with pytest.raises(InvalidBillingRequest):
        await bench.admin.adjust("a", 100, " ", "")
    with pytest.raises(InvalidBillingRequest):
        await bench.admin.adjust("a", 0, "why", "")
    wallet = await bench.admin.adjust("a", -700, "chargeback", "cb-1")
    assert wallet.balance_nanos == -700  # a correction may go below zero
    again = await bench.admin.adjust("a", -700, "chargeback", "cb-1")
    assert again.balance_nanos == -700
    with pytest.raises(IdempotencyConflict):
        await bench.admin.adjust("a", 700, "chargeback", "cb-1")
    # The same text as a top-up reference is another key (references are namespaced).
    assert (await bench.ledger.add_credit("a", 700, "cb-1", "")).balance_nanos == 0


async def test_a_credit_limit_lets_holds_go_below_zero_and_no_further(bench: Bench) -> None:
    refused = await bench.ledger.reserve(reserve("r0"))
    assert refused.decision is ReserveDecision.INSUFFICIENT_BALANCE
    wallet = await bench.admin.set_credit_limit("a", HOLD)
    assert (wallet.balance_nanos, wallet.available_nanos) == (0, HOLD)
    assert (await bench.ledger.reserve(reserve("r1"))).decision is ReserveDecision.RESERVED
    second = await bench.ledger.reserve(reserve("r2"))
    assert second.decision is ReserveDecision.INSUFFICIENT_BALANCE
    assert second.wallet.available_nanos == 0
    with pytest.raises(InvalidBillingRequest):
        await bench.admin.set_credit_limit("a", -1)


async def test_redemption_codes_redeem_once(bench: Bench) -> None:
    batch = await bench.admin.create_codes(3, 5_000, START + timedelta(days=1), "promo", "b-1")
    assert len(set(batch.codes)) == 3
    assert all(c.startswith("rc-") and len(c) == 35 for c in batch.codes)
    with pytest.raises(BatchAlreadyExists):
        await bench.admin.create_codes(3, 5_000, None, "promo", "b-1")
    first, second, third = batch.codes
    assert (await bench.admin.redeem("a", first))[0] == 5_000
    amount, wallet = await bench.admin.redeem("a", first)  # same account: the first result
    assert (amount, wallet.balance_nanos) == (5_000, 5_000)
    with pytest.raises(CodeNotRedeemable, match="redeemed"):
        await bench.admin.redeem("b", first)
    with pytest.raises(CodeNotFound):
        await bench.admin.redeem("a", "rc-" + "0" * 32)
    bench.now += timedelta(days=1)
    with pytest.raises(CodeNotRedeemable, match="expired"):
        await bench.admin.redeem("a", second)
    for bad in (0, 1001):
        with pytest.raises(InvalidBillingRequest):
            await bench.admin.create_codes(bad, 1, None, "", "")
    del third
    report = await bench.admin.check()
    assert report.mismatches == () and report.transfers == 1


async def test_ledger_pages_go_newest_first_with_opaque_tokens(bench: Bench) -> None:
    for i in range(5):
        await bench.ledger.add_credit("a", 100 + i, f"p{i}", "")
    await bench.admin.adjust("a", -1, "fee", "")
    first = await bench.admin.ledger_page("a", 4, "")
    assert [e.amount_nanos for e in first.entries] == [-1, 104, 103, 102]
    assert first.entries[0].counterparty == "system:adjustments"
    assert first.entries[1].reference == "p4" and first.before_id is not None
    token = encode_page_token(first.before_id)
    second = await bench.admin.ledger_page("a", 4, token)
    assert [e.amount_nanos for e in second.entries] == [101, 100] and second.before_id is None
    for bad in ("x", encode_page_token(1)[:-2] + "!!", "dDE6YWJj"):
        with pytest.raises(InvalidBillingRequest):
            await bench.admin.ledger_page("a", 4, bad)
    assert decode_page_token(token) == first.before_id


async def test_check_reports_a_wallet_that_disagrees_with_its_transfers(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 1_000, "", "")
    await bench.ledger.add_credit("b", 1_000, "", "")
    await bench.ledger.reserve(reserve("r", account="b"))

    def tamper(conn: Connection) -> None:
        conn.execute(update(WalletRow).where(WalletRow.account_id == "a").values(balance_nanos=999))
        conn.execute(update(WalletRow).where(WalletRow.account_id == "b").values(held_nanos=1))

    await bench.db.write(tamper)
    report = await bench.admin.check()
    assert [(m.account_id, m.balance_nanos, m.transfers_nanos, m.held_nanos,
             m.open_holds_nanos) for m in report.mismatches] == [
        ("a", 999, 1_000, 0, 0),
        ("b", 1_000, 1_000, 1, 0),
    ]


async def test_a_late_settle_replaces_the_record_of_a_release_after_expiry(bench: Bench) -> None:
    await bench.ledger.add_credit("a", 100_000, "", "")
    await bench.ledger.reserve(reserve("r", ttl=1))
    bench.now += timedelta(seconds=1)
    assert await bench.ledger.expire_holds() == 1
    failed = RequestOutcome(RequestStatus.ERROR, "timeout")
    assert await bench.ledger.release("r", failed, "c") is False  # expired: nothing to drop
    assert await bench.rows(select(UsageRecordRow.cost_nanos, UsageRecordRow.status)) == [
        (0, "error")
    ]
    late = await bench.ledger.settle(settle("r"))
    assert late.late and late.charged_nanos > 0
    assert await bench.rows(
        select(UsageRecordRow.cost_nanos, UsageRecordRow.status, UsageRecordRow.late)
    ) == [(late.charged_nanos, "client_closed", True)]
