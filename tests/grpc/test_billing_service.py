"""BillingService through a real grpc.aio server on SQLite in tmp_path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from tests.grpc.billing_helpers import (
    ADMIN,
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
    async with serve_billing(tmp_path, admin_key="") as stub:
        request = billing_pb2.GetBalanceRequest(account_id="a")
        await expect_status(
            stub.GetBalance(request, metadata=ADMIN), grpc.StatusCode.PERMISSION_DENIED
        )


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
