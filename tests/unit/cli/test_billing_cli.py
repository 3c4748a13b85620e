"""The billing CLI commands on fake stubs: parsing, exact amounts, paging, CSV, exit codes."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.auth.v1 import auth_pb2
from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from cli import admin, main, usage
from cli.admin import AdminClient, CommandError
from cli.main import _parser
from services.common.display import DisplayCurrency

CNY = DisplayCurrency.parse("CNY", "7.10")
USD = DisplayCurrency()


class FakeStub:
    """Answers RPCs with `replies[name](request)` and records every request."""

    def __init__(self, **replies: Callable[[Any], Message]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def call(request: Message, **_: Any) -> Message:
            copy = type(request)()
            copy.CopyFrom(request)
            self.calls.append((name, copy))
            return self.replies[name](copy)

        return call

    def requests(self, name: str) -> list[Any]:
        return [request for called, request in self.calls if called == name]


def accounts() -> FakeStub:
    def get(request: auth_pb2.GetAccountRequest) -> auth_pb2.GetAccountResponse:
        name = request.name or {"id-acme": "acme", "id-bob": "bob"}[request.account_id]
        return auth_pb2.GetAccountResponse(account=auth_pb2.Account(account_id=f"id-{name}",
                                                                    name=name))
    return FakeStub(GetAccount=get)


def client(billing: FakeStub, display: DisplayCurrency = USD) -> AdminClient:
    return AdminClient(accounts(), billing, (("authorization", "Bearer k"),), display=display)


def parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


async def run(billing: FakeStub, *argv: str, display: DisplayCurrency = USD
              ) -> list[str]:
    args = parse(*argv)
    return list(await args.handler(client(billing, display), args))


def at(second: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 3, 14, 12, 0, tzinfo=UTC) + timedelta(seconds=second))
    return stamp


def record(i: int, account: str = "id-acme") -> billing_pb2.UsageRecord:
    return billing_pb2.UsageRecord(
        request_id=f"req-{i}", account_id=account, key_id="key-1", model="gpt,4", channel="mock",
        usage=usage_pb2.Usage(prompt_tokens=10, completion_tokens=5, cached_prompt_tokens=2,
                              cache_write_prompt_tokens=1, reasoning_tokens=3),
        usage_source=usage_pb2.USAGE_SOURCE_ESTIMATED, cost_nanos=4_999_986_050,
        outcome=billing_pb2.RequestOutcome(status=billing_pb2.REQUEST_STATUS_CLIENT_CLOSED,
                                           stream=True, latency_ms=250, first_token_ms=40),
        created_at=at(i))


def paged_usage(total: int) -> FakeStub:
    """A ListUsage over `total` records whose page token is the next offset."""
    def page(request: billing_pb2.ListUsageRequest) -> billing_pb2.ListUsageResponse:
        start = int(request.page_token or 0)
        end = min(start + request.page_size, total)
        return billing_pb2.ListUsageResponse(
            records=[record(i) for i in range(start, end)],
            next_page_token=str(end) if end < total else "")
    return FakeStub(ListUsage=page)


def test_days_and_filters_parse_and_until_is_inclusive() -> None:
    args = parse("usage", "--account", "acme", "--since", "2026-03-01", "--until", "2026-03-14")
    request = usage.list_request(args, "id-acme")
    assert request.since.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    assert request.until.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 15, tzinfo=UTC)
    assert (request.account_id, request.key_id, request.model) == ("id-acme", "", "")
    assert parse("usage", "--account", "a", "daily").view == "daily"
    assert parse("usage", "daily", "--account", "a").account == "a"
    for bad in (["usage", "--since", "2026-3-1"], ["usage", "weekly"],
                ["keys", "budget", "k", "--daily", "-1"], ["codes", "create", "--count", "1",
                                                          "--usd", "1", "--expires", "soon"]):
        with pytest.raises(SystemExit):
            parse(*bad)


async def test_usage_follows_page_tokens_up_to_the_limit() -> None:
    billing = paged_usage(2500)
    lines = await run(billing, "usage", "--limit", "1500")
    assert len(lines) == 1 + 1500 + 1  # header, rows, total
    assert [r.page_size for r in billing.requests("ListUsage")] == [1000, 500]
    assert lines[-1] == f"1500 rows, total {1500 * 4_999_986_050 // 10**9}." \
        f"{1500 * 4_999_986_050 % 10**9:09d} USD"
    default = paged_usage(2500)
    assert len(await run(default, "usage")) == 1 + 100 + 1


async def test_usage_csv_exports_every_record_exactly() -> None:
    billing = paged_usage(1001)
    lines = await run(billing, "usage", "--account", "acme", "--csv")
    rows = list(csv.reader(lines))
    assert rows[0] == list(usage.RECORD_COLUMNS)
    assert len(rows) == 1 + 1001
    assert billing.requests("ListUsage")[0].account_id == "id-acme"
    assert rows[1] == ["2026-03-14T12:00:00+00:00", "req-0", "acme", "key-1", "gpt,4", "mock",
                       "10", "5", "2", "1", "3", "4.999986050", "client_closed", "", "true",
                       "250", "40", "estimated"]


async def test_a_non_usd_display_adds_a_converted_cost_column() -> None:
    lines = await run(paged_usage(1), "usage", "--csv", display=CNY)
    header, row = csv.reader(lines)
    assert header[-2:] == ["usage_source", "cost_cny"] and row[-1] == "35.499900955"
    table = await run(paged_usage(1), "usage", display=CNY)
    assert table[-1] == "1 rows, total 4.999986050 USD (35.499900955 CNY)"


async def test_usage_daily_names_accounts_and_sums() -> None:
    days = [billing_pb2.DailyUsage(day="2026-03-14", account_id="id-bob", model="m", requests=3,
                                   prompt_tokens=30, completion_tokens=15, cost_nanos=7,
                                   failed_requests=1)]
    billing = FakeStub(GetDailyUsage=lambda _: billing_pb2.GetDailyUsageResponse(days=days))
    lines = await run(billing, "usage", "daily", "--since", "2026-03-14", "--csv")
    assert list(csv.reader(lines)) == [list(usage.DAILY_COLUMNS),
                                       ["2026-03-14", "bob", "m", "3", "1", "30", "15",
                                        "0.000000007"]]
    assert billing.requests("GetDailyUsage")[0].since_day == "2026-03-14"
    with pytest.raises(CommandError):
        await run(billing, "usage", "daily", "--key", "k")


def wallet_reply(kind: type[Message], balance: int = 1) -> Callable[[Any], Message]:
    return lambda _: kind(wallet=billing_pb2.Wallet(balance_nanos=balance,
                                                    available_nanos=balance))


async def test_credit_adjust_sends_a_signed_exact_amount() -> None:
    billing = FakeStub(AdjustCredit=wallet_reply(billing_pb2.AdjustCreditResponse, -500))
    lines = await run(billing, "credit", "adjust", "acme", "-0.000000501", "--reason", "refund",
                      "--reference", "r1", display=CNY)
    assert billing.requests("AdjustCredit") == [billing_pb2.AdjustCreditRequest(
        account_id="id-acme", amount_nanos=-501, reason="refund", reference="r1")]
    assert lines[0] == "adjusted acme by -0.000000501 USD (-0.000003557 CNY)"
    assert lines[1].startswith("acme: balance -0.000000500 USD (-0.000003550 CNY) (held")
    for amount in ("0", "1.0000000001"):
        with pytest.raises(CommandError):
            await run(billing, "credit", "adjust", "acme", amount, "--reason", "x")


async def test_credit_limit_and_redeem() -> None:
    billing = FakeStub(
        SetCreditLimit=lambda _: billing_pb2.SetCreditLimitResponse(
            wallet=billing_pb2.Wallet(credit_limit_nanos=2 * 10**9)),
        RedeemCode=lambda _: billing_pb2.RedeemCodeResponse(amount_nanos=10**9))
    lines = await run(billing, "credit", "limit", "acme", "2")
    assert billing.requests("SetCreditLimit")[0].credit_limit_nanos == 2 * 10**9
    assert lines[0].endswith("credit limit 2.000000000)")
    with pytest.raises(CommandError):
        await run(billing, "credit", "limit", "acme", "-1")
    lines = await run(billing, "codes", "redeem", "acme", " CODE-1 ")
    assert billing.requests("RedeemCode")[0] == billing_pb2.RedeemCodeRequest(
        account_id="id-acme", code="CODE-1")
    assert lines[0] == "redeemed 1.000000000 USD for acme"


async def test_codes_create_prints_only_the_codes_and_expires_after_the_last_day() -> None:
    billing = FakeStub(CreateRedemptionCodes=lambda r: billing_pb2.CreateRedemptionCodesResponse(
        batch_id="b", codes=[f"C{i}" for i in range(r.count)]))
    lines = await run(billing, "codes", "create", "--count", "3", "--usd", "0.5",
                      "--expires", "2026-12-31", "--note", "promo", "--reference", "batch-1")
    assert lines == ["C0", "C1", "C2"]
    sent = billing.requests("CreateRedemptionCodes")[0]
    assert (sent.amount_nanos, sent.note, sent.batch_reference) == (500_000_000, "promo",
                                                                    "batch-1")
    assert sent.expires_at.ToDatetime(tzinfo=UTC) == datetime(2027, 1, 1, tzinfo=UTC)
    for count, amount in (("0", "1"), ("1001", "1"), ("1", "0")):
        with pytest.raises(CommandError):
            await run(billing, "codes", "create", "--count", count, "--usd", amount)


async def test_keys_budget_keeps_the_cap_not_given() -> None:
    current = billing_pb2.KeyBudget(key_id="k", daily_limit_nanos=10**9,
                                    monthly_limit_nanos=20 * 10**9, spent_today_nanos=5)
    billing = FakeStub(
        GetKeyBudget=lambda _: billing_pb2.GetKeyBudgetResponse(budget=current),
        SetKeyBudget=lambda r: billing_pb2.SetKeyBudgetResponse(budget=billing_pb2.KeyBudget(
            key_id=r.key_id, daily_limit_nanos=r.daily_limit_nanos,
            monthly_limit_nanos=r.monthly_limit_nanos)))
    lines = await run(billing, "keys", "budget", "k", "--monthly", "none")
    assert billing.requests("SetKeyBudget") == [billing_pb2.SetKeyBudgetRequest(
        key_id="k", daily_limit_nanos=10**9, monthly_limit_nanos=0)]
    assert "monthly cap none" in lines[2] and "daily   cap 1.000000000 USD" in lines[1]
    shown = await run(billing, "keys", "budget", "k")
    assert "spent today 0.000000005 USD" in shown[1]
    assert len(billing.requests("SetKeyBudget")) == 1


async def test_ledger_pages_entries_up_to_the_limit() -> None:
    def page(request: billing_pb2.ListLedgerEntriesRequest) -> Message:
        start = int(request.page_token or 0)
        entries = [billing_pb2.LedgerEntry(id=100 - i, kind="charge", amount_nanos=-15,
                                           counterparty="system:revenue", request_id=f"r{i}",
                                           created_at=at(0))
                   for i in range(start, start + request.page_size)]
        return billing_pb2.ListLedgerEntriesResponse(entries=entries,
                                                     next_page_token=str(start + len(entries)))
    billing = FakeStub(ListLedgerEntries=page)
    lines = await run(billing, "ledger", "acme", "--limit", "3")
    assert lines[0] == "100\t2026-03-14T12:00:00+00:00\tcharge\t-0.000000015\tsystem:revenue\tr0\t"
    assert len(lines) == 3 and billing.requests("ListLedgerEntries")[0].account_id == "id-acme"


async def test_ledger_check_fails_on_any_mismatch() -> None:
    good = FakeStub(CheckLedger=lambda _: billing_pb2.CheckLedgerResponse(wallets=2, transfers=9))
    assert (await run(good, "ledger", "check"))[-1] == "ledger consistent"
    bad = FakeStub(CheckLedger=lambda _: billing_pb2.CheckLedgerResponse(
        wallets=2, transfers=9, holds_resolved_twice=["r1"],
        mismatches=[billing_pb2.LedgerMismatch(account_id="id-acme", balance_nanos=5,
                                               transfers_nanos=4)]))
    with pytest.raises(CommandError) as info:
        await run(bad, "ledger", "check")
    assert any(line.startswith("MISMATCH id-acme") for line in info.value.output)
    assert "RESOLVED TWICE r1" in info.value.output


def test_main_prints_the_output_of_a_failed_command_and_exits_1(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(args: argparse.Namespace) -> list[str]:
        raise CommandError("the ledger is inconsistent", ["MISMATCH x"])

    monkeypatch.setattr(admin, "run_admin", failing)
    assert main.main(["ledger", "check"]) == 1
    out = capsys.readouterr()
    assert out.out == "MISMATCH x\n" and "inconsistent" in out.err
