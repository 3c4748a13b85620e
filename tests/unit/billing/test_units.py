"""Non-token units in the ledger: admission, hold amounts, the tariff snapshot, settlement."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from services.billing.core import Ledger, ReserveDecision, ReserveRequest, SettleRequest
from services.billing.domain import HoldStatus, Usage, UsageSource, Wallet, unit_quantities
from services.billing.errors import InvalidBillingRequest, UnpricedUsage
from services.billing.pricing import PriceBook
from services.common.charges import Tariff
from services.common.gateway_config import parse_gateway_config
from services.common.units import AUDIO_SECOND, CHARACTER, image_unit
from tests.unit.billing.fake_store import FakeBillingStore

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
HD = image_unit("1024x1024", "hd")
STANDARD = image_unit(None, None)
WIDE_HD = image_unit("1792x1024", "hd")
IMAGE_PRICES = {"1024x1024": {"standard": 40_000_000, "hd": 80_000_000}}


def config(image_hd: int = 80_000_000, tts: int = 15_000) -> dict[str, Any]:
    return {
        "models": [
            {"id": "chat", "price": {"prompt": 100, "completion": 300}},
            {"id": "img", "price": {"images": {"1024x1024": {"standard": 40_000_000,
                                                             "hd": image_hd}}}},
            {"id": "whisper", "price": {"audio_second": 100_000}},
            {"id": "tts", "price": {"character": tts}},
            {"id": "both", "price": {"prompt": 10, "completion": 20, "character": 3}},
        ],
        "groups": {"default": 10_000, "vip": 8_500, "third": 3_333},
    }


@pytest.fixture
def store() -> FakeBillingStore:
    return FakeBillingStore()


def ledger_for(store: FakeBillingStore, **prices: int) -> Ledger:
    return Ledger(store, PriceBook.from_config(parse_gateway_config(config(**prices))), lambda: NOW)


@pytest.fixture
def ledger(store: FakeBillingStore) -> Ledger:
    return ledger_for(store)


def reserve_req(
    account: str,
    model: str,
    units: Mapping[str, int],
    prompt: int = 0,
    max_completion: int = 0,
    group: str = "default",
    request_id: str | None = None,
) -> ReserveRequest:
    return ReserveRequest(
        request_id or uuid.uuid4().hex, account, "key-1", group, model, prompt, max_completion,
        unit_quantities(units.items()),
    )


def settle_req(request_id: str, units: Mapping[str, int], prompt: int = 0) -> SettleRequest:
    usage = Usage(prompt, 0, units=unit_quantities(units.items()))
    return SettleRequest(request_id, usage, UsageSource.UPSTREAM, "chan")


async def funded(ledger: Ledger, amount: int = 10**12) -> str:
    account = uuid.uuid4().hex
    await ledger.add_credit(account, amount, "", "")
    return account


@pytest.mark.parametrize(
    ("model", "units", "held"),
    [
        ("img", {HD: 2}, 2 * 80_000_000),
        ("img", {HD: 1, STANDARD: 3}, 80_000_000 + 3 * 40_000_000),
        ("whisper", {AUDIO_SECOND: 61}, 61 * 100_000),
        ("tts", {CHARACTER: 4_096}, 4_096 * 15_000),
        ("img", {HD: 0, STANDARD: 1}, 40_000_000),
    ],
)
async def test_hold_is_the_most_units_times_their_prices(
    ledger: Ledger, model: str, units: dict[str, int], held: int
) -> None:
    account = await funded(ledger)
    result = await ledger.reserve(reserve_req(account, model, units))
    assert result.decision is ReserveDecision.RESERVED
    assert result.held_nanos == held
    assert result.wallet.held_nanos == held


async def test_tokens_and_units_are_held_together_with_one_rounding(ledger: Ledger) -> None:
    account = await funded(ledger)
    # (1 * 10 + 1 * 3) * 0.3333 = 4.3329 -> 4; rounded per part it would be 3 + 1.
    result = await ledger.reserve(
        reserve_req(account, "both", {CHARACTER: 1}, prompt=1, group="third")
    )
    assert result.held_nanos == 4
    vip = await ledger.reserve(reserve_req(account, "tts", {CHARACTER: 3}, group="vip"))
    assert vip.held_nanos == (3 * 15_000 * 8_500 + 5_000) // 10_000


@pytest.mark.parametrize(
    ("model", "units", "prompt", "max_completion"),
    [
        ("img", {WIDE_HD: 1}, 0, 0),  # a size the model does not price
        ("img", {HD: 1, AUDIO_SECOND: 1}, 0, 0),
        ("img", {HD: 1}, 1, 0),  # tokens on a model priced by units only
        ("whisper", {AUDIO_SECOND: 1}, 0, 1),
        ("chat", {CHARACTER: 1}, 10, 10),  # a unit on a model priced by tokens only
        ("tts", {}, 5, 0),
    ],
)
async def test_requests_the_price_does_not_cover_are_not_priced(
    ledger: Ledger,
    store: FakeBillingStore,
    model: str,
    units: dict[str, int],
    prompt: int,
    max_completion: int,
) -> None:
    account = await funded(ledger)
    result = await ledger.reserve(reserve_req(account, model, units, prompt, max_completion))
    assert result.decision is ReserveDecision.MODEL_NOT_PRICED
    assert (result.held_nanos, result.tariff) == (0, None)
    assert store.holds == {}


async def test_an_unpriced_unit_with_zero_quantity_is_no_obstacle(ledger: Ledger) -> None:
    account = await funded(ledger)
    result = await ledger.reserve(reserve_req(account, "tts", {CHARACTER: 2, WIDE_HD: 0}))
    assert result.decision is ReserveDecision.RESERVED and result.held_nanos == 30_000


async def test_reserve_returns_the_tariff_and_a_replay_the_stored_one(
    store: FakeBillingStore,
) -> None:
    ledger = ledger_for(store)
    account = await funded(ledger)
    first = await ledger.reserve(reserve_req(account, "img", {HD: 1}, group="vip", request_id="r"))
    expected = Tariff(
        0,
        0,
        0,
        8_500,
        {HD: 80_000_000, STANDARD: 40_000_000},
        cache_write_nanos=0,
        reasoning_nanos=0,
        request_nanos=0,
    )
    assert first.tariff == expected
    repriced = ledger_for(store, image_hd=90_000_000)
    replay = await repriced.reserve(
        reserve_req(account, "img", {HD: 1}, group="vip", request_id="r")
    )
    assert replay.decision is ReserveDecision.RESERVED
    assert replay.tariff == expected and replay.held_nanos == first.held_nanos
    fresh = await repriced.reserve(reserve_req(account, "img", {HD: 1}, group="vip"))
    assert fresh.tariff is not None and fresh.tariff.unit_nanos[HD] == 90_000_000


async def test_no_tariff_without_a_hold(ledger: Ledger) -> None:
    short = await ledger.reserve(reserve_req(uuid.uuid4().hex, "img", {HD: 1}))
    assert short.decision is ReserveDecision.INSUFFICIENT_BALANCE and short.tariff is None


async def test_settle_charges_units_by_the_snapshot_after_a_price_change(
    store: FakeBillingStore,
) -> None:
    old = ledger_for(store, tts=15_000)
    account = await funded(old, 1_000_000_000)
    await old.reserve(reserve_req(account, "tts", {CHARACTER: 100}, request_id="r"))
    new = ledger_for(store, tts=99_000)
    result = await new.settle(settle_req("r", {CHARACTER: 80}))
    assert result.charged_nanos == 80 * 15_000 and result.newly_settled
    assert result.wallet == Wallet(account, 1_000_000_000 - 80 * 15_000, 0)
    assert store.usage["r"].units == {CHARACTER: 80}


async def test_settle_above_the_held_units_charges_them_all(ledger: Ledger) -> None:
    account = await funded(ledger)
    await ledger.reserve(reserve_req(account, "whisper", {AUDIO_SECOND: 10}, request_id="r"))
    result = await ledger.settle(settle_req("r", {AUDIO_SECOND: 12}))
    assert result.charged_nanos == 12 * 100_000 and result.exceeded_hold


async def test_settle_of_a_unit_the_snapshot_does_not_price_changes_nothing(
    ledger: Ledger, store: FakeBillingStore
) -> None:
    account = await funded(ledger, 1_000_000_000)
    await ledger.reserve(reserve_req(account, "img", {HD: 1}, request_id="r"))
    before = await ledger.balance(account)
    with pytest.raises(UnpricedUsage, match="1792x1024"):
        await ledger.settle(settle_req("r", {HD: 1, WIDE_HD: 1}))
    assert await ledger.balance(account) == before
    assert store.holds["r"].status is HoldStatus.OPEN
    assert "r" not in store.usage and len(store.ledger) == 1
    # The same hold settles once the usage is one the snapshot prices.
    settled = await ledger.settle(settle_req("r", {HD: 1}))
    assert settled.charged_nanos == 80_000_000


async def test_negative_units_are_invalid(ledger: Ledger) -> None:
    with pytest.raises(InvalidBillingRequest):
        await ledger.reserve(
            ReserveRequest("r", "a", "k", "default", "tts", 0, 0, {CHARACTER: -1})
        )
