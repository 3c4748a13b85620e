"""BillingService batch RPCs (ReserveCredits, SettleCredits) through a real grpc.aio server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from tests.grpc.billing_helpers import (
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


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    async with serve_billing(tmp_path) as billing:
        yield billing


def code_of(status: grpc.StatusCode) -> int:
    return status.value[0]


def outcome(reply: billing_pb2.ReserveCreditResponse | billing_pb2.SettleCreditResponse) -> tuple:
    """A reply without its account id, to compare two accounts' answers."""
    wallet = reply.wallet
    fields = (wallet.balance_nanos, wallet.held_nanos, wallet.available_nanos)
    if isinstance(reply, billing_pb2.ReserveCreditResponse):
        tariff = reply.tariff if reply.HasField("tariff") else None
        return (0, reply.decision, reply.held_nanos, tariff, *fields)
    return (0, reply.charged_nanos, reply.newly_settled, *fields)


async def single_outcomes(
    method: Callable[[Any], Awaitable[Any]], requests: list[Any], account: str
) -> list[tuple]:
    """Each single call's outcome, or its (code, details) when it failed, one after another.

    A grpc.aio call starts when it is created: create each only after the last answered.
    """
    results: list[tuple] = []
    for request in requests:
        try:
            results.append(outcome(await method(request)))
        except grpc.aio.AioRpcError as exc:
            results.append((exc.code().value[0], (exc.details() or "").replace(account, "ACC")))
    return results


def batch_outcomes(
    results: list[billing_pb2.ReserveCreditResult] | list[billing_pb2.SettleCreditResult],
    account: str,
) -> list[tuple]:
    """Each item's outcome, or its (code, message), ids named by `account` made neutral."""
    return [
        outcome(r.response) if r.status.code == 0
        else (r.status.code, r.status.message.replace(account, "ACC"))
        for r in results
    ]


def mixed_reservations(account: str, stranger: str) -> list[billing_pb2.ReserveCreditRequest]:
    # 100_000 nano-USD funds two holds of 45_000.
    return [reserve(account, f"{account}-1"), reserve(account, ""),
            reserve(account, f"{account}-2"), reserve(account, f"{account}-3"),
            reserve(account, f"{account}-4", model="unpriced"),
            reserve(stranger, f"{account}-1"), reserve(account, f"{account}-1")]


async def test_a_mixed_reserve_batch_answers_each_item_in_order(stub: Stub) -> None:
    account, other, stranger = await fund(stub, 100_000), await fund(stub, 100_000), uid("acc")
    reply = await stub.ReserveCredits(
        billing_pb2.ReserveCreditsRequest(reservations=mixed_reservations(account, stranger))
    )
    results = list(reply.results)
    assert [r.status.code for r in results] == [
        0, code_of(grpc.StatusCode.INVALID_ARGUMENT), 0, 0, 0,
        code_of(grpc.StatusCode.ALREADY_EXISTS), 0,
    ]
    assert results[1].status.message == "request_id is required"
    assert not results[1].HasField("response") and results[0].status.message == ""
    assert [results[i].response.decision for i in (0, 2, 3, 4, 6)] == [
        RESERVED, RESERVED, INSUFFICIENT, NOT_PRICED, RESERVED]
    assert results[6].response.held_nanos == 45_000
    assert (await balance(stub, account)).held_nanos == 90_000
    singles = await single_outcomes(
        stub.ReserveCredit, mixed_reservations(other, stranger), other
    )
    assert batch_outcomes(results, account) == singles


def mixed_settlements(prefix: str) -> list[billing_pb2.SettleCreditRequest]:
    return [settle(f"{prefix}-1"), settle(f"{prefix}-1", completion=49),
            settle(f"{prefix}-unknown"),
            settle(f"{prefix}-2", source=usage_pb2.USAGE_SOURCE_UNSPECIFIED),
            settle(f"{prefix}-2", completion=10)]


async def test_a_settle_batch_charges_each_request_once_in_order(stub: Stub) -> None:
    accounts = [await fund(stub, 1_000_000) for _ in range(2)]
    for account in accounts:
        for n in (1, 2):
            await stub.ReserveCredit(reserve(account, f"{account}-{n}"))
    reply = await stub.SettleCredits(
        billing_pb2.SettleCreditsRequest(settlements=mixed_settlements(accounts[0]))
    )
    results = list(reply.results)
    assert [r.status.code for r in results] == [
        0, 0, code_of(grpc.StatusCode.NOT_FOUND), code_of(grpc.StatusCode.INVALID_ARGUMENT), 0]
    first, replay = results[0].response, results[1].response
    assert first.newly_settled and not replay.newly_settled
    assert replay.charged_nanos == first.charged_nanos == 100 * 150 + 20 * 600
    charged = first.charged_nanos + results[4].response.charged_nanos
    wallet = await balance(stub, accounts[0])
    assert (wallet.balance_nanos, wallet.held_nanos) == (1_000_000 - charged, 0)
    singles = await single_outcomes(
        stub.SettleCredit, mixed_settlements(accounts[1]), accounts[1]
    )
    assert batch_outcomes(results, accounts[0]) == singles


async def test_racing_settle_batches_charge_each_request_once(stub: Stub) -> None:
    account = await fund(stub, 1_000_000)
    rids = [uid("req") for _ in range(6)]
    for rid in rids:
        await stub.ReserveCredit(reserve(account, rid))
    batches = [billing_pb2.SettleCreditsRequest(settlements=[settle(r) for r in rids])
               for _ in range(4)]
    replies = await asyncio.gather(*(stub.SettleCredits(b) for b in batches))
    settled = [r.response for reply in replies for r in reply.results]
    assert sum(s.newly_settled for s in settled) == len(rids)
    assert (await balance(stub, account)).balance_nanos == 1_000_000 - 6 * 27_000


async def test_batches_count_their_sizes_and_each_item(stub: Stub) -> None:
    labels = {"operation": "reserve"}
    count, total = (sample(f"apirelay_billing_batch_items_{s}", labels) for s in ("count", "sum"))
    short = sample("apirelay_billing_reserves_total", {"decision": "insufficient_balance"})
    request = billing_pb2.ReserveCreditsRequest(
        reservations=[reserve(uid("nobody"), uid("req")) for _ in range(3)]
    )
    await stub.ReserveCredits(request)
    assert sample("apirelay_billing_batch_items_count", labels) == count + 1
    assert sample("apirelay_billing_batch_items_sum", labels) == total + 3
    assert sample("apirelay_billing_reserves_total", {"decision": "insufficient_balance"}) == (
        short + 3)
    assert not (await stub.SettleCredits(billing_pb2.SettleCreditsRequest())).results


HD, WIDE = "image/1024x1024/hd", "image/1792x1024/standard"


def unit_reservations(account: str) -> list[billing_pb2.ReserveCreditRequest]:
    return [reserve(account, f"{account}-1", 0, 0, model="img", units={HD: 2}),
            reserve(account, f"{account}-2", 0, 0, model="img", units={"image/64x64/hd": 1}),
            reserve(account, f"{account}-3", 1, 0, model="img", units={HD: 1}),
            reserve(account, f"{account}-4", 0, 0, model="tts", units={"character": -1}),
            reserve(account, f"{account}-5", 0, 0, model="whisper",
                    units={"audio_second": 3, "character": 0}),
            reserve(account, f"{account}-1", 0, 0, model="img", units={HD: 2})]


def unit_settlements(account: str) -> list[billing_pb2.SettleCreditRequest]:
    return [settle(f"{account}-1", 0, 0, units={HD: 1, "character": 1}),
            settle(f"{account}-1", 0, 0, units={HD: 1, WIDE: 1}),
            settle(f"{account}-5", 0, 0, units={"audio_second": 2, "audio_second ": 0}),
            settle(f"{account}-1", 0, 0, units={HD: 1, "character": 0})]


async def test_unit_batches_behave_like_single_calls(stub: Stub) -> None:
    accounts = [await fund(stub, 10**9) for _ in range(2)]
    reply = await stub.ReserveCredits(
        billing_pb2.ReserveCreditsRequest(reservations=unit_reservations(accounts[0]))
    )
    results = list(reply.results)
    invalid = code_of(grpc.StatusCode.INVALID_ARGUMENT)
    assert [r.status.code for r in results] == [0, 0, 0, invalid, 0, 0]
    assert [results[i].response.decision for i in (0, 1, 2, 4, 5)] == [
        RESERVED, NOT_PRICED, NOT_PRICED, RESERVED, RESERVED]
    assert results[0].response.held_nanos == 160_000_000
    assert results[5].response.tariff == results[0].response.tariff
    units = [p.unit for p in results[0].response.tariff.unit_prices]
    assert units == sorted(units) and units[0] == HD
    assert not results[1].response.HasField("tariff")
    assert results[4].response.held_nanos == 300_000
    singles = await single_outcomes(
        stub.ReserveCredit, unit_reservations(accounts[1]), accounts[1]
    )
    assert batch_outcomes(results, accounts[0]) == singles
    settled = await stub.SettleCredits(
        billing_pb2.SettleCreditsRequest(settlements=unit_settlements(accounts[0]))
    )
    items = list(settled.results)
    assert [r.status.code for r in items] == [invalid, 0, 0, 0]
    assert "character" in items[0].status.message
    assert [items[i].response.charged_nanos for i in (1, 2, 3)] == [
        80_000_000 + 80_000_000, 200_000, 160_000_000]
    assert [items[i].response.newly_settled for i in (1, 2, 3)] == [True, True, False]
    singles = await single_outcomes(stub.SettleCredit, unit_settlements(accounts[1]), accounts[1])
    assert batch_outcomes(items, accounts[0]) == singles
