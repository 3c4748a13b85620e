"""BillingService with non-token units: tariffs on reserve and replay, unit settles, prices."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from apirelay.billing.v1 import billing_pb2
from tests.grpc.billing_helpers import (
    CONFIG,
    INSUFFICIENT,
    NOT_PRICED,
    RESERVED,
    balance,
    fund,
    reserve,
    sample,
    serve_billing,
    settle,
    uid,
)

if TYPE_CHECKING:
    from tests.grpc.billing_helpers import Stub

HD, STANDARD = "image/1024x1024/hd", "image/1024x1024/standard"
WIDE_HD, WIDE_STANDARD = "image/1792x1024/hd", "image/1792x1024/standard"
IMAGE_UNITS = [
    (HD, 80_000_000),
    (STANDARD, 40_000_000),
    (WIDE_HD, 120_000_000),
    (WIDE_STANDARD, 80_000_000),
]


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    async with serve_billing(tmp_path) as billing:
        yield billing


async def expect_status(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code
    return info.value.details() or ""


def unit_prices(message: billing_pb2.Tariff | billing_pb2.Price) -> list[tuple[str, int]]:
    return [(p.unit, p.nanos_per_unit) for p in message.unit_prices]


def repriced() -> dict[str, Any]:
    """CONFIG with dearer images and a dearer vip group."""
    config = copy.deepcopy(CONFIG)
    image = next(m for m in config["models"] if m["id"] == "img")
    image["price"]["images"]["1024x1024"]["hd"] = 90_000_000
    config["groups"]["vip"] = 9_000
    return config


async def test_reserve_returns_the_tariff_and_a_replay_the_stored_one(tmp_path: Path) -> None:
    rid, token_rid = uid("req"), uid("req")
    async with serve_billing(tmp_path) as stub:
        account = await fund(stub, 10**9)
        first = await stub.ReserveCredit(
            reserve(account, rid, 0, 0, model="img", group="vip", units={HD: 2})
        )
        assert first.decision == RESERVED
        assert first.held_nanos == 2 * 80_000_000 * 8_500 // 10_000
        tariff = first.tariff
        assert (tariff.prompt_nanos_per_token, tariff.completion_nanos_per_token) == (0, 0)
        assert (tariff.cached_prompt_nanos_per_token, tariff.multiplier_bps) == (0, 8_500)
        assert unit_prices(tariff) == IMAGE_UNITS
        tokens = await stub.ReserveCredit(reserve(account, token_rid, 10, 10, group="vip"))
        assert tokens.tariff == billing_pb2.Tariff(
            prompt_nanos_per_token=150,
            completion_nanos_per_token=600,
            cached_prompt_nanos_per_token=75,
            multiplier_bps=8_500,
            # Without prices of their own, cache writes pay the prompt price and
            # reasoning tokens the completion price.
            cache_write_nanos_per_token=150,
            reasoning_nanos_per_token=600,
        )
    # Restarted on the same database with new prices: the hold keeps its own.
    async with serve_billing(tmp_path, prices=repriced()) as stub:
        replay = await stub.ReserveCredit(
            reserve(account, rid, 0, 0, model="img", group="vip", units={HD: 2})
        )
        assert replay.decision == RESERVED and replay.held_nanos == first.held_nanos
        assert replay.tariff == first.tariff
        fresh = await stub.ReserveCredit(
            reserve(account, uid("req"), 0, 0, model="img", group="vip", units={HD: 2})
        )
        assert fresh.tariff.multiplier_bps == 9_000
        assert unit_prices(fresh.tariff)[0] == (HD, 90_000_000)
        settled = await stub.SettleCredit(settle(rid, 0, 0, units={HD: 1, WIDE_STANDARD: 1}))
        assert settled.charged_nanos == (80_000_000 + 80_000_000) * 8_500 // 10_000
        assert (await stub.SettleCredit(settle(token_rid, 10, 3))).charged_nanos == (
            (10 * 150 + 3 * 600) * 8_500 + 5_000
        ) // 10_000


async def test_no_tariff_without_a_hold(stub: Stub) -> None:
    account = await fund(stub, 1_000)
    short = await stub.ReserveCredit(reserve(account, uid("req"), 0, 0, "img", units={HD: 1}))
    assert short.decision == INSUFFICIENT and not short.HasField("tariff")
    for model, prompt, units in (
        ("img", 0, {"image/64x64/hd": 1}),
        ("img", 5, {HD: 1}),
        ("m", 5, {"character": 1}),
        ("whisper", 1, {"audio_second": 1}),
        ("unpriced", 0, {}),
    ):
        reply = await stub.ReserveCredit(reserve(account, uid("req"), prompt, 0, model, units=units))
        assert reply.decision == NOT_PRICED and not reply.HasField("tariff"), model
        assert reply.held_nanos == 0
    assert (await balance(stub, account)).held_nanos == 0


@pytest.mark.parametrize(
    ("model", "units", "held", "used", "charged"),
    [
        ("whisper", {"audio_second": 120}, 12_000_000, {"audio_second": 61}, 6_100_000),
        ("tts", {"character": 4_096}, 61_440_000, {"character": 4_000}, 60_000_000),
        ("img", {WIDE_HD: 2}, 240_000_000, {WIDE_HD: 1, WIDE_STANDARD: 0}, 120_000_000),
    ],
)
async def test_settle_with_units_charges_exactly(
    stub: Stub, model: str, units: dict[str, int], held: int, used: dict[str, int], charged: int
) -> None:
    funds = 10**9
    account, rid = await fund(stub, funds), uid("req")
    reply = await stub.ReserveCredit(reserve(account, rid, 0, 0, model, units=units))
    assert (reply.decision, reply.held_nanos, reply.wallet.held_nanos) == (RESERVED, held, held)
    settled = await stub.SettleCredit(settle(rid, 0, 0, units=used))
    assert settled.charged_nanos == charged and settled.newly_settled
    wallet = await balance(stub, account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (funds - charged, 0)


async def test_settle_of_a_unit_the_tariff_does_not_price_changes_nothing(stub: Stub) -> None:
    account, rid = await fund(stub, 10**9), uid("req")
    await stub.ReserveCredit(reserve(account, rid, 0, 0, "tts", units={"character": 10}))
    before = await balance(stub, account)
    for units in ({"character": 10, "audio_second": 1}, {HD: 1}):
        details = await expect_status(
            stub.SettleCredit(settle(rid, 0, 0, units=units)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "is not priced" in details
    malformed = settle(rid, 0, 0, units={"character": 1})
    malformed.usage.units.add(unit="character", quantity=2)
    await expect_status(stub.SettleCredit(malformed), grpc.StatusCode.INVALID_ARGUMENT)
    assert await balance(stub, account) == before
    settled = await stub.SettleCredit(settle(rid, 0, 0, units={"character": 7}))
    assert settled.newly_settled and settled.charged_nanos == 7 * 15_000


async def test_malformed_max_units_are_invalid(stub: Stub) -> None:
    account = await fund(stub, 10**9)
    repeated = reserve(account, uid("req"), 0, 0, "tts", units={"character": 1})
    repeated.max_units.add(unit="character", quantity=1)
    for request in (
        reserve(account, uid("req"), 0, 0, "tts", units={"character": -1}),
        reserve(account, uid("req"), 0, 0, "tts", units={"": 1}),
        repeated,
    ):
        await expect_status(stub.ReserveCredit(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert (await balance(stub, account)).held_nanos == 0


async def test_get_price_shows_unit_prices_sorted(stub: Stub) -> None:
    image = (await stub.GetPrice(billing_pb2.GetPriceRequest(model="img"))).price
    assert (image.model, image.prompt_nanos_per_token, image.completion_nanos_per_token) == (
        "img",
        0,
        0,
    )
    assert unit_prices(image) == IMAGE_UNITS
    whisper = (await stub.GetPrice(billing_pb2.GetPriceRequest(model="whisper"))).price
    assert unit_prices(whisper) == [("audio_second", 100_000)]
    tokens = (await stub.GetPrice(billing_pb2.GetPriceRequest(model="m"))).price
    assert tokens.prompt_nanos_per_token == 150 and not tokens.unit_prices


async def test_metrics_count_charges_by_kind(stub: Stub) -> None:
    kinds = ("image", "character", "tokens", "audio_second")
    before = {k: sample("apirelay_billing_charges_total", {"kind": k}) for k in kinds}
    account = await fund(stub, 10**9)
    image_rid, token_rid = uid("req"), uid("req")
    await stub.ReserveCredit(reserve(account, image_rid, 0, 0, "img", units={HD: 2}))
    await stub.ReserveCredit(reserve(account, token_rid))
    await stub.SettleCredit(settle(image_rid, 0, 0, units={HD: 1, STANDARD: 1}))
    await stub.SettleCredit(settle(image_rid, 0, 0, units={HD: 1}))
    await stub.SettleCredit(settle(token_rid))
    after = {k: sample("apirelay_billing_charges_total", {"kind": k}) for k in kinds}
    assert {k: after[k] - before[k] for k in kinds} == {
        "image": 1,
        "character": 0,
        "tokens": 1,
        "audio_second": 0,
    }
