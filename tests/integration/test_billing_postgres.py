"""The billing store on real PostgreSQL: no over-commit, exactly-once, ledger == balance."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from services.billing.admin_store import SqlAdminStore
from services.billing.core import Ledger, ReserveDecision, ReserveRequest, SettleRequest
from services.billing.database import create_schema, open_async_engine, open_database
from services.billing.domain import HoldStatus, Usage, UsageSource, unit_quantities
from services.billing.errors import HoldNotOpen, StoreUnavailable
from services.billing.models import HoldRow, TransferRow, UsageRecordRow, WalletRow
from services.billing.pricing import PriceBook
from services.billing.runner import AsyncEngineRunner
from services.billing.service import BillingServicer
from services.billing.store import SqlBillingStore
from services.common.charges import Tariff
from services.common.gateway_config import parse_gateway_config
from tests.backends import free_port

pytestmark = pytest.mark.integration

PRICES = PriceBook.from_config(
    parse_gateway_config(
        {
            "models": [
                {"id": "m", "price": {"prompt": 150, "completion": 600, "cached_prompt": 75}},
                {
                    "id": "img",
                    "price": {
                        "images": {"1024x1024": {"standard": 40_000_000, "hd": 80_000_000}},
                        "character": 15_000,
                    },
                },
            ],
            "groups": {"default": 10_000, "vip": 8_500},
        }
    )
)
HOLD = 100 * 150 + 50 * 600  # reserve() below: 100 prompt, 50 max completion


@pytest.fixture
async def runner(postgres_url: str) -> AsyncIterator[AsyncEngineRunner]:
    runner = AsyncEngineRunner(open_async_engine(postgres_url))
    await create_schema(runner)
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture
def engine(runner: AsyncEngineRunner) -> AsyncEngine:
    return runner.engine


@pytest.fixture
def ledger(runner: AsyncEngineRunner) -> Ledger:
    return Ledger(SqlBillingStore(runner), PRICES)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def reserve(account: str, request_id: str, group: str = "default") -> ReserveRequest:
    return ReserveRequest(request_id, account, "key", group, "m", 100, 50)


def settle(request_id: str, completion: int = 20) -> SettleRequest:
    return SettleRequest(request_id, Usage(100, completion, 30), UsageSource.UPSTREAM, "ch")


async def ledger_sum(engine: AsyncEngine, account: str) -> int:
    """Credits minus debits of the account's wallet over the transfers."""
    wallet = f"wallet:{account}"
    async with engine.connect() as conn:
        total = (
            await conn.execute(
                select(
                    func.coalesce(
                        func.sum(
                            case(
                                (TransferRow.credit_account == wallet, TransferRow.amount_nanos),
                                else_=-TransferRow.amount_nanos,
                            )
                        ),
                        0,
                    )
                ).where(
                    or_(TransferRow.credit_account == wallet, TransferRow.debit_account == wallet)
                )
            )
        ).scalar_one()
    return int(total)


async def open_holds_sum(engine: AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        total = (
            await conn.execute(
                select(func.coalesce(func.sum(HoldRow.amount_nanos), 0)).where(
                    HoldRow.account_id == account, HoldRow.status == HoldStatus.OPEN.value
                )
            )
        ).scalar_one()
    return int(total)


async def test_concurrent_reserves_never_over_commit(ledger: Ledger, engine: AsyncEngine) -> None:
    for _ in range(5):
        account = uid("acc")
        await ledger.add_credit(account, 10 * HOLD + HOLD - 1, "", "")
        results = await asyncio.gather(
            *(ledger.reserve(reserve(account, uid("req"))) for _ in range(50))
        )
        admitted = [r for r in results if r.decision is ReserveDecision.RESERVED]
        assert len(admitted) == 10
        wallet = await ledger.balance(account)
        assert wallet.held_nanos == 10 * HOLD == await open_holds_sum(engine, account)
        assert wallet.available_nanos == HOLD - 1 >= 0


async def test_concurrent_duplicate_reserves_hold_once(ledger: Ledger) -> None:
    account, rid = uid("acc"), uid("req")
    await ledger.add_credit(account, 100 * HOLD, "", "")
    results = await asyncio.gather(*(ledger.reserve(reserve(account, rid)) for _ in range(20)))
    assert all(r.decision is ReserveDecision.RESERVED and r.held_nanos == HOLD for r in results)
    assert (await ledger.balance(account)).held_nanos == HOLD


async def test_concurrent_duplicate_settles_charge_exactly_once(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    account, rid = uid("acc"), uid("req")
    await ledger.add_credit(account, 1_000_000, "", "")
    await ledger.reserve(reserve(account, rid))
    results = await asyncio.gather(*(ledger.settle(settle(rid)) for _ in range(20)))
    charge = 70 * 150 + 30 * 75 + 20 * 600
    assert sum(r.newly_settled for r in results) == 1
    assert {r.charged_nanos for r in results} == {charge}
    wallet = await ledger.balance(account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (1_000_000 - charge, 0)
    assert await ledger_sum(engine, account) == wallet.balance_nanos
    async with engine.connect() as conn:
        usage = (
            await conn.execute(
                select(UsageRecordRow.cost_nanos, UsageRecordRow.cached_prompt_tokens).where(
                    UsageRecordRow.request_id == rid
                )
            )
        ).all()
    assert [tuple(row) for row in usage] == [(charge, 30)]


async def test_a_units_round_trip_keeps_the_tariff_and_the_usage_units(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    account, rid = uid("acc"), uid("req")
    hd, standard = "image/1024x1024/hd", "image/1024x1024/standard"
    await ledger.add_credit(account, 10**9, "", "")
    request = ReserveRequest(
        rid, account, "key", "vip", "img", 0, 0, unit_quantities([(hd, 2), ("character", 0)])
    )
    reserved = await ledger.reserve(request)
    unit_prices = {"character": 15_000, hd: 80_000_000, standard: 40_000_000}
    tariff = Tariff(
        0, 0, 0, 8_500, unit_prices, cache_write_nanos=0, reasoning_nanos=0, request_nanos=0
    )
    assert reserved.decision is ReserveDecision.RESERVED
    assert (reserved.held_nanos, reserved.tariff) == (136_000_000, tariff)
    replay = await ledger.reserve(request)
    assert replay.tariff == tariff and replay.held_nanos == 136_000_000
    async with engine.connect() as conn:
        stored = (
            await conn.execute(select(HoldRow.unit_prices_json).where(HoldRow.request_id == rid))
        ).scalar_one()
    assert stored == (
        '{"character":15000,"image/1024x1024/hd":80000000,"image/1024x1024/standard":40000000}'
    )
    units = unit_quantities([(standard, 1), (hd, 1), ("character", 3)])
    usage = Usage(0, 0, units=units)
    settled = await ledger.settle(SettleRequest(rid, usage, UsageSource.UPSTREAM, "ch"))
    charge = ((40_000_000 + 80_000_000 + 3 * 15_000) * 8_500 + 5_000) // 10_000
    assert settled.charged_nanos == charge and settled.newly_settled
    wallet = await ledger.balance(account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (10**9 - charge, 0)
    assert await ledger_sum(engine, account) == wallet.balance_nanos
    async with engine.connect() as conn:
        record = (
            await conn.execute(
                select(UsageRecordRow.units_json, UsageRecordRow.cost_nanos).where(
                    UsageRecordRow.request_id == rid
                )
            )
        ).one()
    assert tuple(record) == (
        '{"character":3,"image/1024x1024/hd":1,"image/1024x1024/standard":1}',
        charge,
    )


async def test_settle_racing_release_resolves_once(ledger: Ledger) -> None:
    account = uid("acc")
    await ledger.add_credit(account, 100 * HOLD, "", "")
    for _ in range(10):
        rid = uid("req")
        await ledger.reserve(reserve(account, rid))
        settled, released = await asyncio.gather(
            ledger.settle(settle(rid)), ledger.release(rid), return_exceptions=True
        )
        # Either the settle won (the release finds nothing open) or the release did.
        assert (not isinstance(settled, BaseException) and released is False) or (
            isinstance(settled, HoldNotOpen) and released is True
        )
    assert (await ledger.balance(account)).held_nanos == 0


async def test_concurrent_top_ups_with_one_reference_credit_once(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    account, ref = uid("acc"), uid("pay")
    wallets = await asyncio.gather(*(ledger.add_credit(account, 777, ref, "") for _ in range(10)))
    assert {w.balance_nanos for w in wallets} == {777}
    assert await ledger_sum(engine, account) == 777


async def test_ledger_sums_equal_balances_after_mixed_load(
    ledger: Ledger, engine: AsyncEngine, runner: AsyncEngineRunner
) -> None:
    rng = random.Random(1234)
    accounts = [uid("acc") for _ in range(3)]
    await asyncio.gather(*(ledger.add_credit(a, 20 * HOLD, uid("pay"), "") for a in accounts))

    async def one_request(account: str) -> None:
        rid = uid("req")
        result = await ledger.reserve(reserve(account, rid, rng.choice(["default", "vip"])))
        if result.decision is not ReserveDecision.RESERVED:
            return
        action = rng.random()
        if action < 0.6:
            await ledger.settle(settle(rid, completion=rng.randint(0, 80)))
        elif action < 0.8:
            await ledger.release(rid)

    async def top_up(account: str) -> None:
        await ledger.add_credit(account, rng.randint(1, 3 * HOLD), uid("pay"), "")

    work = [one_request(rng.choice(accounts)) for _ in range(120)]
    work += [top_up(rng.choice(accounts)) for _ in range(10)]
    rng.shuffle(work)
    await asyncio.gather(*work)
    for account in accounts:
        wallet = await ledger.balance(account)
        assert await ledger_sum(engine, account) == wallet.balance_nanos
        assert await open_holds_sum(engine, account) == wallet.held_nanos
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(WalletRow.balance_nanos).where(WalletRow.account_id == account)
                )
            ).scalar_one()
        assert stored == wallet.balance_nanos
    report = await SqlAdminStore(runner).check()
    assert [m for m in report.mismatches if m.account_id in accounts] == []
    assert report.net_nanos == 0 and report.holds_resolved_twice == ()


async def test_unreachable_database_is_store_unavailable() -> None:
    database = open_database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(StoreUnavailable):
            await SqlBillingStore(database).get_wallet("a")
    finally:
        await database.close()


NO_CONTEXT: Any = None  # the servicer's batch methods do not use their context


def servicer(ledger: Ledger) -> BillingServicer:
    unused: Any = None  # the batch methods reach neither the admin nor the usage side
    return BillingServicer(ledger, unused, unused)


def reserve_proto(account: str, request_id: str) -> billing_pb2.ReserveCreditRequest:
    return billing_pb2.ReserveCreditRequest(
        request_id=request_id, account_id=account, key_id="key", group="default", model="m",
        prompt_tokens=100, max_completion_tokens=50,
    )


def settle_proto(request_id: str) -> billing_pb2.SettleCreditRequest:
    usage = usage_pb2.Usage(prompt_tokens=100, completion_tokens=20, cached_prompt_tokens=30)
    return billing_pb2.SettleCreditRequest(
        request_id=request_id, usage=usage, usage_source=usage_pb2.USAGE_SOURCE_UPSTREAM
    )


async def test_racing_reserve_batches_never_over_commit(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    account = uid("acc")
    await ledger.add_credit(account, 10 * HOLD + HOLD - 1, "", "")
    batches = [
        billing_pb2.ReserveCreditsRequest(
            reservations=[reserve_proto(account, uid("req")) for _ in range(10)]
            + [reserve_proto(account, "")]
        )
        for _ in range(5)
    ]
    replies = await asyncio.gather(
        *(servicer(ledger).ReserveCredits(batch, NO_CONTEXT) for batch in batches)
    )
    results = [r for reply in replies for r in reply.results]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.status.code for r in results].count(invalid) == 5
    reserved = [r for r in results if r.response.decision == billing_pb2.RESERVE_DECISION_RESERVED]
    assert len(reserved) == 10
    wallet = await ledger.balance(account)
    assert wallet.held_nanos == 10 * HOLD == await open_holds_sum(engine, account)


async def test_a_failed_settle_item_rolls_back_nothing_else(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    account, funds = uid("acc"), 10 * HOLD
    await ledger.add_credit(account, funds, "", "")
    rids = [uid("req") for _ in range(3)]
    for rid in rids:
        await ledger.reserve(reserve(account, rid))
    await ledger.release(rids[1])
    items = [settle_proto(rids[0]), settle_proto(rids[1]), settle_proto(rids[0]),
             settle_proto(rids[2])]
    reply = await servicer(ledger).SettleCredits(
        billing_pb2.SettleCreditsRequest(settlements=items), NO_CONTEXT
    )
    results = list(reply.results)
    precondition = grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert [r.status.code for r in results] == [0, precondition, 0, 0]
    assert [results[i].response.newly_settled for i in (0, 2, 3)] == [True, False, True]
    charge = results[0].response.charged_nanos
    assert charge == 70 * 150 + 30 * 75 + 20 * 600
    wallet = await ledger.balance(account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (funds - 2 * charge, 0)
    assert await ledger_sum(engine, account) == wallet.balance_nanos
