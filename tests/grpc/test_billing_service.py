"""BillingService through a real grpc.aio server on SQLite in tmp_path."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from apirelay.common.v1 import usage_pb2
from services.billing.config import Settings
from services.billing.server import start

ADMIN_KEY = "test-admin-key"
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)
CONFIG = {
    "models": [
        {"id": "m", "price": {"prompt": 150, "completion": 600, "cached_prompt": 75}},
        {"id": "free", "price": {"prompt": 0, "completion": 0}},
        {"id": "unpriced"},
    ],
    "groups": {"default": 10_000, "vip": 8_500},
}
RESERVED = billing_pb2.RESERVE_DECISION_RESERVED
INSUFFICIENT = billing_pb2.RESERVE_DECISION_INSUFFICIENT_BALANCE
NOT_PRICED = billing_pb2.RESERVE_DECISION_MODEL_NOT_PRICED

if TYPE_CHECKING:
    # Exists only in the generated .pyi: the stub's type when built on an aio channel.
    Stub: TypeAlias = billing_pb2_grpc.BillingServiceAsyncStub


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    config = tmp_path / "apirelay.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    settings = Settings(
        listen_addr="127.0.0.1:0",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'billing.db'}",
        config_path=str(config),
        admin_key=ADMIN_KEY,
    )
    started = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{started.port}")
    try:
        yield billing_pb2_grpc.BillingServiceStub(channel)
    finally:
        await channel.close()
        await started.stop(0)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def fund(stub: Stub, amount: int) -> str:
    account = uid("acc")
    await stub.AddCredit(
        billing_pb2.AddCreditRequest(account_id=account, amount_nanos=amount), metadata=ADMIN
    )
    return account


def reserve(
    account: str,
    request_id: str,
    prompt: int = 100,
    max_completion: int = 50,
    model: str = "m",
    group: str = "default",
) -> billing_pb2.ReserveCreditRequest:
    return billing_pb2.ReserveCreditRequest(
        request_id=request_id,
        account_id=account,
        key_id="key-1",
        group=group,
        model=model,
        prompt_tokens=prompt,
        max_completion_tokens=max_completion,
    )


def settle(
    request_id: str,
    prompt: int = 100,
    completion: int = 20,
    cached: int = 0,
    source: usage_pb2.UsageSource.ValueType = usage_pb2.USAGE_SOURCE_UPSTREAM,
) -> billing_pb2.SettleCreditRequest:
    usage = usage_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_prompt_tokens=cached,
    )
    return billing_pb2.SettleCreditRequest(
        request_id=request_id, usage=usage, usage_source=source, channel="demo-mock"
    )


async def balance(stub: Stub, account: str) -> billing_pb2.Wallet:
    reply = await stub.GetBalance(billing_pb2.GetBalanceRequest(account_id=account), metadata=ADMIN)
    return reply.wallet


async def expect_status(call: object, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code


async def test_reserve_settle_balance_arithmetic_is_exact(
    stub: Stub,
) -> None:
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    reply = await stub.ReserveCredit(reserve(account, rid, prompt=100, max_completion=50))
    hold = 100 * 150 + 50 * 600
    assert reply.decision == RESERVED and reply.held_nanos == hold
    assert (reply.wallet.balance_nanos, reply.wallet.held_nanos, reply.wallet.available_nanos) == (
        1_000_000,
        hold,
        1_000_000 - hold,
    )
    settled = await stub.SettleCredit(settle(rid, prompt=100, completion=20, cached=40))
    charge = 60 * 150 + 40 * 75 + 20 * 600
    assert settled.charged_nanos == charge and settled.newly_settled
    assert settled.wallet.balance_nanos == 1_000_000 - charge
    assert settled.wallet.held_nanos == 0
    wallet = await balance(stub, account)
    assert (wallet.balance_nanos, wallet.held_nanos, wallet.available_nanos) == (
        1_000_000 - charge,
        0,
        1_000_000 - charge,
    )


async def test_group_multiplier_rounds_half_up(stub: Stub) -> None:
    account = await fund(stub, 1_000_000)
    # 1 prompt token at 150 * 0.85 = 127.5 -> 128.
    reply = await stub.ReserveCredit(
        reserve(account, uid("req"), prompt=1, max_completion=0, group="vip")
    )
    assert reply.held_nanos == 128
    reply = await stub.ReserveCredit(
        reserve(account, uid("req"), prompt=1, max_completion=0, group="unknown-group")
    )
    assert reply.held_nanos == 150


async def test_decisions_are_response_data(stub: Stub) -> None:
    account = await fund(stub, 44_999)
    short = await stub.ReserveCredit(reserve(account, uid("req")))
    assert short.decision == INSUFFICIENT and short.held_nanos == 0
    assert short.wallet.available_nanos == 44_999
    unpriced = await stub.ReserveCredit(reserve(account, uid("req"), model="unpriced"))
    assert unpriced.decision == NOT_PRICED
    nobody = await stub.ReserveCredit(reserve(uid("nobody"), uid("req")))
    assert nobody.decision == INSUFFICIENT and nobody.wallet.balance_nanos == 0
    exact = await stub.ReserveCredit(reserve(account, uid("req"), prompt=99, max_completion=50))
    assert exact.decision == RESERVED and exact.wallet.available_nanos == 44_999 - 44_850
    assert (await balance(stub, account)).held_nanos == 44_850


async def test_reserve_is_idempotent(stub: Stub) -> None:
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    first = await stub.ReserveCredit(reserve(account, rid))
    again = await stub.ReserveCredit(reserve(account, rid))
    assert again.decision == RESERVED and again.held_nanos == first.held_nanos
    assert (await balance(stub, account)).held_nanos == first.held_nanos
    await expect_status(
        stub.ReserveCredit(reserve(uid("other"), rid)), grpc.StatusCode.ALREADY_EXISTS
    )


async def test_settle_is_exactly_once(stub: Stub) -> None:
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(account, rid))
    first = await stub.SettleCredit(settle(rid))
    second = await stub.SettleCredit(settle(rid, completion=49))
    assert first.newly_settled and not second.newly_settled
    assert second.charged_nanos == first.charged_nanos
    assert (await balance(stub, account)).balance_nanos == 1_000_000 - first.charged_nanos
    # A settled request can be neither released nor re-reserved.
    assert not (await stub.ReleaseCredit(billing_pb2.ReleaseCreditRequest(request_id=rid))).released
    await expect_status(
        stub.ReserveCredit(reserve(account, rid)), grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_concurrent_duplicate_settles_charge_once(
    stub: Stub,
) -> None:
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(account, rid))
    replies = await asyncio.gather(*(stub.SettleCredit(settle(rid)) for _ in range(8)))
    assert sum(r.newly_settled for r in replies) == 1
    assert len({r.charged_nanos for r in replies}) == 1
    assert (await balance(stub, account)).balance_nanos == 1_000_000 - replies[0].charged_nanos


async def test_settle_above_the_hold_charges_the_real_cost(
    stub: Stub,
) -> None:
    account = await fund(stub, 45_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(account, rid, prompt=100, max_completion=50))
    reply = await stub.SettleCredit(settle(rid, prompt=100, completion=100))
    assert reply.charged_nanos == 75_000
    assert reply.wallet.balance_nanos == -30_000 and reply.wallet.held_nanos == 0


async def test_release_frees_the_hold_once(stub: Stub) -> None:
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(account, rid))
    release = billing_pb2.ReleaseCreditRequest(request_id=rid)
    assert (await stub.ReleaseCredit(release)).released
    assert not (await stub.ReleaseCredit(release)).released
    wallet = await balance(stub, account)
    assert (wallet.balance_nanos, wallet.held_nanos) == (1_000_000, 0)
    await expect_status(stub.SettleCredit(settle(rid)), grpc.StatusCode.FAILED_PRECONDITION)
    unknown = billing_pb2.ReleaseCreditRequest(request_id=uid("none"))
    assert not (await stub.ReleaseCredit(unknown)).released


async def test_settle_statuses(stub: Stub) -> None:
    await expect_status(stub.SettleCredit(settle(uid("none"))), grpc.StatusCode.NOT_FOUND)
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(account, rid))
    bad = [
        settle(rid, source=usage_pb2.USAGE_SOURCE_UNSPECIFIED),
        settle(rid, prompt=10, cached=11),
        settle(rid, completion=-1),
        billing_pb2.SettleCreditRequest(
            request_id=rid, usage_source=usage_pb2.USAGE_SOURCE_UPSTREAM
        ),
        settle(""),
    ]
    for request in bad:
        await expect_status(stub.SettleCredit(request), grpc.StatusCode.INVALID_ARGUMENT)
    estimated = await stub.SettleCredit(settle(rid, source=usage_pb2.USAGE_SOURCE_ESTIMATED))
    assert estimated.newly_settled


async def test_reserve_invalid_arguments(stub: Stub) -> None:
    for request in (
        reserve("acc", ""),
        reserve("", uid("req")),
        reserve("acc", uid("r"), model=""),
        reserve("acc", uid("req"), prompt=-1),
    ):
        await expect_status(stub.ReserveCredit(request), grpc.StatusCode.INVALID_ARGUMENT)


async def test_add_credit_is_idempotent_by_reference(
    stub: Stub,
) -> None:
    account, ref = uid("acc"), uid("pay")
    top_up = billing_pb2.AddCreditRequest(
        account_id=account, amount_nanos=5_000_000_000, reference=ref, note="card"
    )
    first = await stub.AddCredit(top_up, metadata=ADMIN)
    again = await stub.AddCredit(top_up, metadata=ADMIN)
    assert first.wallet.balance_nanos == again.wallet.balance_nanos == 5_000_000_000
    plain = billing_pb2.AddCreditRequest(account_id=account, amount_nanos=1)
    await stub.AddCredit(plain, metadata=ADMIN)
    await stub.AddCredit(plain, metadata=ADMIN)
    assert (await balance(stub, account)).balance_nanos == 5_000_000_002
    changed = billing_pb2.AddCreditRequest(account_id=account, amount_nanos=7, reference=ref)
    await expect_status(stub.AddCredit(changed, metadata=ADMIN), grpc.StatusCode.ALREADY_EXISTS)


async def test_add_credit_validation(stub: Stub) -> None:
    for amount in (0, -1):
        request = billing_pb2.AddCreditRequest(account_id=uid("acc"), amount_nanos=amount)
        await expect_status(
            stub.AddCredit(request, metadata=ADMIN), grpc.StatusCode.INVALID_ARGUMENT
        )
    account = await fund(stub, 2**63 - 10)
    overflow = billing_pb2.AddCreditRequest(account_id=account, amount_nanos=10)
    await expect_status(stub.AddCredit(overflow, metadata=ADMIN), grpc.StatusCode.INVALID_ARGUMENT)
    assert (await balance(stub, account)).balance_nanos == 2**63 - 10


async def test_admin_guard(stub: Stub) -> None:
    top_up = billing_pb2.AddCreditRequest(account_id=uid("acc"), amount_nanos=1)
    get = billing_pb2.GetBalanceRequest(account_id=top_up.account_id)
    wrong = (("authorization", "Bearer nope"),)
    for metadata in ((), wrong):
        await expect_status(
            stub.AddCredit(top_up, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
        )
        await expect_status(
            stub.GetBalance(get, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
        )
    assert (await balance(stub, top_up.account_id)).balance_nanos == 0


async def test_get_price(stub: Stub) -> None:
    price = (await stub.GetPrice(billing_pb2.GetPriceRequest(model="m"))).price
    assert (
        price.model,
        price.prompt_nanos_per_token,
        price.completion_nanos_per_token,
        price.cached_prompt_nanos_per_token,
    ) == ("m", 150, 600, 75)
    for model in ("unpriced", "no-such-model"):
        await expect_status(
            stub.GetPrice(billing_pb2.GetPriceRequest(model=model)), grpc.StatusCode.NOT_FOUND
        )


async def test_admin_disabled_without_key(tmp_path: Path) -> None:
    config = tmp_path / "apirelay.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    started = await start(
        Settings(
            listen_addr="127.0.0.1:0",
            config_path=str(config),
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            request = billing_pb2.GetBalanceRequest(account_id="a")
            await expect_status(
                stub.GetBalance(request, metadata=ADMIN), grpc.StatusCode.PERMISSION_DENIED
            )
    finally:
        await started.stop(0)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_metrics_count_decisions_charges_and_duplicates(stub: Stub) -> None:
    before = {
        "short": sample("apirelay_billing_reserves_total", {"decision": "insufficient_balance"}),
        "ok": sample("apirelay_billing_reserves_total", {"decision": "reserved"}),
        "nanos": sample("apirelay_billing_settled_nanos_total"),
        "dups": sample("apirelay_billing_settle_duplicates_total"),
    }
    account = await fund(stub, 1_000_000)
    rid = uid("req")
    await stub.ReserveCredit(reserve(uid("nobody"), uid("req")))
    await stub.ReserveCredit(reserve(account, rid))
    charged = (await stub.SettleCredit(settle(rid))).charged_nanos
    await stub.SettleCredit(settle(rid))
    labels = {"decision": "insufficient_balance"}
    assert sample("apirelay_billing_reserves_total", labels) == before["short"] + 1
    assert sample("apirelay_billing_reserves_total", {"decision": "reserved"}) == before["ok"] + 1
    assert sample("apirelay_billing_settled_nanos_total") == before["nanos"] + charged
    assert sample("apirelay_billing_settle_duplicates_total") == before["dups"] + 1


def code_of(status: grpc.StatusCode) -> int:
    return status.value[0]


def outcome(reply: billing_pb2.ReserveCreditResponse | billing_pb2.SettleCreditResponse) -> tuple:
    """A reply without its account id, to compare two accounts' answers."""
    wallet = reply.wallet
    fields = (wallet.balance_nanos, wallet.held_nanos, wallet.available_nanos)
    if isinstance(reply, billing_pb2.ReserveCreditResponse):
        return (0, reply.decision, reply.held_nanos, *fields)
    return (0, reply.charged_nanos, reply.newly_settled, *fields)


async def single_outcomes(calls: list[object], account: str) -> list[tuple]:
    """Each single call's outcome, or its (code, details) when it failed."""
    results: list[tuple] = []
    for call in calls:
        try:
            results.append(outcome(await call))  # type: ignore[misc]
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
        [stub.ReserveCredit(r) for r in mixed_reservations(other, stranger)], other
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
        [stub.SettleCredit(s) for s in mixed_settlements(accounts[1])], accounts[1]
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
