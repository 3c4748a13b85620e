"""Ledger races on real PostgreSQL: key budgets, expiry against settle, codes, adjustments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.billing.admin import LedgerAdmin
from services.billing.admin_store import SqlAdminStore
from services.billing.core import Ledger, ReserveDecision, ReserveRequest, SettleRequest
from services.billing.database import create_schema, open_async_engine
from services.billing.domain import Usage, UsageSource
from services.billing.errors import CodeNotRedeemable
from services.billing.pricing import PriceBook
from services.billing.runner import AsyncEngineRunner
from services.billing.store import SqlBillingStore
from services.common.gateway_config import parse_gateway_config

pytestmark = pytest.mark.integration

PRICES = PriceBook.from_config(
    parse_gateway_config({"models": [{"id": "m", "price": {"prompt": 150, "completion": 600}}]})
)
HOLD = 100 * 150 + 50 * 600


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def runner(postgres_url: str) -> AsyncIterator[AsyncEngineRunner]:
    runner = AsyncEngineRunner(open_async_engine(postgres_url))
    await create_schema(runner)
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(runner: AsyncEngineRunner, clock: Clock) -> Ledger:
    return Ledger(SqlBillingStore(runner), PRICES, clock)


@pytest.fixture
def admin(ledger: Ledger, runner: AsyncEngineRunner, clock: Clock) -> LedgerAdmin:
    return LedgerAdmin(ledger, SqlAdminStore(runner), clock)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def reserve(account: str, key: str, ttl: int = 0) -> ReserveRequest:
    return ReserveRequest(uid("req"), account, key, "default", "m", 100, 50, hold_ttl_seconds=ttl)


def settle(request_id: str) -> SettleRequest:
    return SettleRequest(request_id, Usage(100, 20), UsageSource.UPSTREAM, "ch")


async def test_racing_reserves_never_pass_a_key_budget(ledger: Ledger, admin: LedgerAdmin) -> None:
    for _ in range(5):
        account, key = uid("acc"), uid("key")
        await ledger.add_credit(account, 10**9, "", "")
        await admin.set_key_budget(key, 7 * HOLD + HOLD - 1, 0)
        results = await asyncio.gather(*(ledger.reserve(reserve(account, key)) for _ in range(40)))
        decisions = [r.decision for r in results]
        assert decisions.count(ReserveDecision.RESERVED) == 7
        assert decisions.count(ReserveDecision.KEY_BUDGET_EXCEEDED) == 33
        budget = await admin.key_budget(key)
        assert budget.held_nanos == 7 * HOLD == (await ledger.balance(account)).held_nanos


async def test_expiry_racing_settles_resolves_each_hold_once(
    ledger: Ledger, admin: LedgerAdmin, clock: Clock
) -> None:
    account, key = uid("acc"), uid("key")
    await ledger.add_credit(account, 100 * HOLD, "", "")
    await admin.set_key_budget(key, 10**12, 0)
    requests = [reserve(account, key, ttl=1) for _ in range(30)]
    for request in requests:
        await ledger.reserve(request)
    clock.now += timedelta(seconds=2)
    # Two sweepers (two replicas) and the settlements, all at once.
    outcomes = await asyncio.gather(
        ledger.expire_holds(), ledger.expire_holds(),
        *(ledger.settle(settle(r.request_id)) for r in requests),
    )
    expired = outcomes[0] + outcomes[1]
    settles = outcomes[2:]
    assert all(s.newly_settled for s in settles)  # expired or not, each is charged once
    assert sum(s.late for s in settles) == expired
    wallet = await ledger.balance(account)
    assert wallet.held_nanos == 0
    assert wallet.balance_nanos == 100 * HOLD - sum(s.charged_nanos for s in settles)
    assert (await admin.key_budget(key)).held_nanos == 0
    report = await admin.check()
    assert [m for m in report.mismatches if m.account_id == account] == []
    assert report.holds_resolved_twice == () and report.net_nanos == 0


async def test_a_code_redeemed_by_many_at_once_credits_one(
    ledger: Ledger, admin: LedgerAdmin
) -> None:
    batch = await admin.create_codes(1, 12_345, None, "", uid("batch"))
    accounts = [uid("acc") for _ in range(10)]
    results = await asyncio.gather(
        *(admin.redeem(a, batch.codes[0]) for a in accounts), return_exceptions=True
    )
    winners = [a for a, r in zip(accounts, results, strict=True) if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, CodeNotRedeemable) for r in results if isinstance(r, BaseException))
    balances = [(await ledger.balance(a)).balance_nanos for a in accounts]
    assert sorted(balances) == [0] * 9 + [12_345]


async def test_concurrent_adjustments_with_one_reference_apply_once(
    ledger: Ledger, admin: LedgerAdmin
) -> None:
    account, ref = uid("acc"), uid("adj")
    wallets = await asyncio.gather(*(admin.adjust(account, -300, "fee", ref) for _ in range(10)))
    assert {w.balance_nanos for w in wallets} == {-300}
    assert (await ledger.balance(account)).balance_nanos == -300
