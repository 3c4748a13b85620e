"""Ledger rules on a fake store: holds, exactly-once settle, release, top-ups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.billing.core import (
    Ledger,
    ReserveDecision,
    ReserveRequest,
    SettleRequest,
)
from services.billing.domain import HoldStatus, Usage, UsageSource, Wallet
from services.billing.errors import (
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InvalidBillingRequest,
    ModelNotPriced,
)
from services.billing.pricing import PriceBook
from services.common.gateway_config import parse_gateway_config
from tests.unit.billing.fake_store import FakeBillingStore

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = {
    "models": [
        {"id": "m", "price": {"prompt": 100, "completion": 300, "cached_prompt": 10}},
        {"id": "free", "price": {"prompt": 0, "completion": 0}},
        {"id": "unpriced"},
    ],
    "groups": {"default": 10_000, "half": 5_000},
}


@pytest.fixture
def store() -> FakeBillingStore:
    return FakeBillingStore()


@pytest.fixture
def ledger(store: FakeBillingStore) -> Ledger:
    return Ledger(store, PriceBook.from_config(parse_gateway_config(CONFIG)), lambda: NOW)


def reserve_req(
    account: str,
    prompt: int = 10,
    max_completion: int = 20,
    model: str = "m",
    group: str = "default",
    request_id: str | None = None,
) -> ReserveRequest:
    return ReserveRequest(
        request_id or uuid.uuid4().hex, account, "key-1", group, model, prompt, max_completion
    )


def settle_req(
    request_id: str, prompt: int = 10, completion: int = 5, cached: int = 0
) -> SettleRequest:
    return SettleRequest(
        request_id, Usage(prompt, completion, cached), UsageSource.UPSTREAM, "chan"
    )


async def test_reserve_holds_the_maximum_cost(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    result = await ledger.reserve(reserve_req("acc", prompt=10, max_completion=20))
    assert result.decision is ReserveDecision.RESERVED
    assert result.held_nanos == 10 * 100 + 20 * 300
    assert result.wallet == Wallet("acc", 100_000, 7_000)
    assert result.wallet.available_nanos == 93_000


async def test_reserve_applies_the_group_multiplier(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    result = await ledger.reserve(reserve_req("acc", prompt=1, max_completion=0, group="half"))
    assert result.held_nanos == 50


async def test_insufficient_balance_writes_nothing(ledger: Ledger, store: FakeBillingStore) -> None:
    await ledger.add_credit("acc", 6_999, "", "")
    result = await ledger.reserve(reserve_req("acc"))
    assert result.decision is ReserveDecision.INSUFFICIENT_BALANCE
    assert result.held_nanos == 0
    assert result.wallet == Wallet("acc", 6_999, 0)
    assert store.holds == {}


async def test_account_without_wallet_has_nothing(ledger: Ledger) -> None:
    result = await ledger.reserve(reserve_req("nobody"))
    assert result.decision is ReserveDecision.INSUFFICIENT_BALANCE
    assert result.wallet == Wallet("nobody", 0, 0)


async def test_unpriced_model_is_refused_never_free(
    ledger: Ledger, store: FakeBillingStore
) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    for model in ("unpriced", "not-in-config"):
        result = await ledger.reserve(reserve_req("acc", model=model))
        assert result.decision is ReserveDecision.MODEL_NOT_PRICED
    assert store.holds == {}
    with pytest.raises(ModelNotPriced):
        ledger.price("unpriced")


async def test_explicit_zero_price_is_reserved_at_zero(ledger: Ledger) -> None:
    result = await ledger.reserve(reserve_req("empty", model="free"))
    assert result.decision is ReserveDecision.RESERVED
    assert result.held_nanos == 0


async def test_reserve_replay_returns_the_existing_hold(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    first = await ledger.reserve(reserve_req("acc", request_id="r1"))
    again = await ledger.reserve(reserve_req("acc", request_id="r1", max_completion=1))
    assert again.decision is ReserveDecision.RESERVED
    assert again.held_nanos == first.held_nanos
    assert again.wallet.held_nanos == first.held_nanos


async def test_reserve_replay_for_another_account_conflicts(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    with pytest.raises(IdempotencyConflict):
        await ledger.reserve(reserve_req("other", request_id="r1"))


async def test_reserve_of_a_settled_request_is_refused(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    await ledger.settle(settle_req("r1"))
    with pytest.raises(HoldNotOpen):
        await ledger.reserve(reserve_req("acc", request_id="r1"))


async def test_settle_charges_real_usage_and_frees_the_hold(
    ledger: Ledger, store: FakeBillingStore
) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    result = await ledger.settle(settle_req("r1", prompt=10, completion=5, cached=4))
    charge = 6 * 100 + 4 * 10 + 5 * 300
    assert result.charged_nanos == charge
    assert result.newly_settled and not result.exceeded_hold
    assert result.wallet == Wallet("acc", 100_000 - charge, 0)
    assert store.holds["r1"].status is HoldStatus.SETTLED
    assert [e.amount_nanos for e in store.ledger] == [100_000, -charge]


async def test_settle_twice_charges_once(ledger: Ledger, store: FakeBillingStore) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    first = await ledger.settle(settle_req("r1"))
    second = await ledger.settle(settle_req("r1", completion=19))
    assert second.newly_settled is False
    assert second.charged_nanos == first.charged_nanos
    assert second.wallet == first.wallet
    assert len(store.ledger) == 2


async def test_settle_above_the_hold_charges_the_real_cost(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 7_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    result = await ledger.settle(settle_req("r1", prompt=10, completion=30))
    assert result.charged_nanos == 10 * 100 + 30 * 300
    assert result.exceeded_hold
    assert result.wallet == Wallet("acc", 7_000 - 10_000, 0)


async def test_settle_unknown_and_released(ledger: Ledger) -> None:
    with pytest.raises(HoldNotFound):
        await ledger.settle(settle_req("nope"))
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    assert await ledger.release("r1") is True
    with pytest.raises(HoldNotOpen):
        await ledger.settle(settle_req("r1"))


async def test_release_is_idempotent_and_never_undoes_a_settle(ledger: Ledger) -> None:
    await ledger.add_credit("acc", 100_000, "", "")
    await ledger.reserve(reserve_req("acc", request_id="r1"))
    assert await ledger.release("r1") is True
    assert await ledger.release("r1") is False
    assert await ledger.balance("acc") == Wallet("acc", 100_000, 0)
    await ledger.reserve(reserve_req("acc", request_id="r2"))
    charged = (await ledger.settle(settle_req("r2"))).charged_nanos
    assert await ledger.release("r2") is False
    assert await ledger.release("unknown") is False
    assert await ledger.balance("acc") == Wallet("acc", 100_000 - charged, 0)


async def test_add_credit_rules(ledger: Ledger) -> None:
    for amount in (0, -5):
        with pytest.raises(InvalidBillingRequest):
            await ledger.add_credit("acc", amount, "", "")
    assert await ledger.add_credit("acc", 10, "pay-1", "") == Wallet("acc", 10, 0)
    assert await ledger.add_credit("acc", 10, "pay-1", "") == Wallet("acc", 10, 0)
    assert await ledger.add_credit("acc", 10, "", "") == Wallet("acc", 20, 0)
    assert await ledger.add_credit("acc", 10, "", "") == Wallet("acc", 30, 0)
    with pytest.raises(IdempotencyConflict):
        await ledger.add_credit("acc", 11, "pay-1", "")
    with pytest.raises(IdempotencyConflict):
        await ledger.add_credit("other", 10, "pay-1", "")


@pytest.mark.parametrize(
    "req",
    [
        ReserveRequest("", "a", "k", "default", "m", 1, 1),
        ReserveRequest("r", "", "k", "default", "m", 1, 1),
        ReserveRequest("r", "a", "k", "default", "", 1, 1),
        ReserveRequest("r", "a", "k", "default", "m", -1, 1),
        ReserveRequest("r", "a", "k", "default", "m", 1, -1),
    ],
)
async def test_reserve_rejects_malformed_requests(ledger: Ledger, req: ReserveRequest) -> None:
    with pytest.raises(InvalidBillingRequest):
        await ledger.reserve(req)
