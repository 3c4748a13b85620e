"""Billing admin commands: credit adjustments and limits, redemption codes, key budgets, ledger.

Amounts are typed as exact USD decimal strings and sent as nano-USD; they are printed
exactly (9 decimals), with the display currency alongside when it is not USD.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from apirelay.billing.v1 import billing_pb2
from cli.admin import CALL_TIMEOUT_S, AdminClient, CommandError, parse_usd, wallet_line
from services.common.money import nanos_to_usd

NO_CAP = "none"
DEFAULT_LEDGER_LIMIT = 50
MAX_PAGE = 1000
LEDGER_CHECK = "check"


def add_parsers(sub: Any) -> None:
    """Add `credit`, `codes` and `ledger` to the `apirelay` parser."""
    credit = sub.add_parser("credit", help="adjust balances and credit limits").add_subparsers(
        dest="action", required=True)
    adjust = credit.add_parser("adjust", help="move a balance up or down, with a reason")
    adjust.add_argument("account", metavar="ACCOUNT")
    adjust.add_argument("usd", metavar="AMOUNT_USD", help="signed, e.g. 2.5 or -0.75")
    adjust.add_argument("--reason", required=True, help="why (kept on the ledger)")
    adjust.add_argument("--reference", default="", help="an idempotency key")
    adjust.set_defaults(handler=credit_adjust)
    limit = credit.add_parser("limit", help="how far the balance may go below zero")
    limit.add_argument("account", metavar="ACCOUNT")
    limit.add_argument("usd", metavar="AMOUNT_USD", help="0 for prepaid only")
    limit.set_defaults(handler=credit_limit)

    codes = sub.add_parser("codes", help="redemption codes").add_subparsers(
        dest="action", required=True)
    create = codes.add_parser("create", help="mint codes; prints them, one per line, once")
    create.add_argument("--count", type=int, required=True, help="1 to 1000")
    create.add_argument("--usd", required=True, metavar="AMOUNT", help="what each code is worth")
    create.add_argument("--expires", type=day_arg, metavar="YYYY-MM-DD",
                        help="last day (UTC) the codes can be redeemed")
    create.add_argument("--note", default="")
    create.add_argument("--reference", default="", help="an idempotency key for the batch")
    create.set_defaults(handler=codes_create)
    redeem = codes.add_parser("redeem", help="credit an account with a code")
    redeem.add_argument("account", metavar="ACCOUNT")
    redeem.add_argument("code")
    redeem.set_defaults(handler=codes_redeem)

    ledger = sub.add_parser("ledger", help="an account's ledger entries, or `ledger check`")
    ledger.add_argument("target", metavar="ACCOUNT|check",
                        help="an account name, or `check` to verify the whole ledger")
    ledger.add_argument("--limit", type=int, default=DEFAULT_LEDGER_LIMIT, metavar="N")
    ledger.set_defaults(handler=ledger_command)


def add_key_budget_parser(keys: Any) -> None:
    """Add `keys budget KEY_ID [--daily USD|none] [--monthly USD|none]`."""
    budget = keys.add_parser("budget", help="show or set a key's daily / monthly spending caps")
    budget.add_argument("key_id")
    budget.add_argument("--daily", type=cap_arg, metavar="USD|none")
    budget.add_argument("--monthly", type=cap_arg, metavar="USD|none")
    budget.set_defaults(handler=keys_budget)


def day_arg(text: str) -> date:
    """A "YYYY-MM-DD" command-line day."""
    try:
        if len(text) != len("YYYY-MM-DD"):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day YYYY-MM-DD, got {text!r}") from None


def cap_arg(text: str) -> int:
    """A spending cap: a USD amount, or `none` (0) for no cap."""
    if text.strip().lower() == NO_CAP:
        return 0
    try:
        nanos = parse_usd(text)
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if nanos < 0:
        raise argparse.ArgumentTypeError(f"a cap must not be negative, got {text!r}")
    return nanos


def day_start(day: date) -> Timestamp:
    """Midnight UTC at the start of `day`."""
    stamp = Timestamp()
    stamp.FromDatetime(datetime.combine(day, time(), tzinfo=UTC))
    return stamp


def stamp_text(stamp: Timestamp) -> str:
    """A protobuf timestamp as ISO 8601 UTC."""
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


async def credit_adjust(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`credit adjust ACCOUNT AMOUNT_USD --reason TEXT [--reference R]`."""
    amount = parse_usd(args.usd)
    if amount == 0:
        raise CommandError("an adjustment must not be 0")
    if not args.reason.strip():
        raise CommandError("--reason must not be empty")
    account = await client.account(args.account)
    reply = await client.billing.AdjustCredit(
        billing_pb2.AdjustCreditRequest(account_id=account.account_id, amount_nanos=amount,
                                        reason=args.reason, reference=args.reference),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    return [f"adjusted {account.name} by {client.display.with_usd(amount)}",
            wallet_line(account.name, reply.wallet, client.display)]


async def credit_limit(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`credit limit ACCOUNT AMOUNT_USD`."""
    amount = parse_usd(args.usd)
    if amount < 0:
        raise CommandError("a credit limit must not be negative")
    account = await client.account(args.account)
    reply = await client.billing.SetCreditLimit(
        billing_pb2.SetCreditLimitRequest(account_id=account.account_id,
                                          credit_limit_nanos=amount),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    return [wallet_line(account.name, reply.wallet, client.display)]


async def codes_create(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`codes create --count N --usd AMOUNT ...`: the codes alone, one per line."""
    amount = parse_usd(args.usd)
    if amount <= 0:
        raise CommandError("a code must be worth a positive amount")
    if not 1 <= args.count <= MAX_PAGE:
        raise CommandError(f"--count must be 1 to {MAX_PAGE}")
    request = billing_pb2.CreateRedemptionCodesRequest(
        count=args.count, amount_nanos=amount, note=args.note, batch_reference=args.reference)
    if args.expires is not None:
        # Redeemable through the whole last day: the codes expire when the next one starts.
        request.expires_at.CopyFrom(day_start(args.expires + timedelta(days=1)))
    reply = await client.billing.CreateRedemptionCodes(
        request, metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    return list(reply.codes)


async def codes_redeem(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`codes redeem ACCOUNT CODE`."""
    account = await client.account(args.account)
    reply = await client.billing.RedeemCode(
        billing_pb2.RedeemCodeRequest(account_id=account.account_id, code=args.code.strip()),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    return [f"redeemed {client.display.with_usd(reply.amount_nanos)} for {account.name}",
            wallet_line(account.name, reply.wallet, client.display)]


async def keys_budget(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`keys budget KEY_ID [--daily USD|none] [--monthly USD|none]`: set what is given, show."""
    options = {"metadata": client.metadata, "timeout": CALL_TIMEOUT_S}
    if args.daily is None and args.monthly is None:
        reply = await client.billing.GetKeyBudget(
            billing_pb2.GetKeyBudgetRequest(key_id=args.key_id), **options)
        return budget_lines(reply.budget, client)
    daily, monthly = args.daily, args.monthly
    if daily is None or monthly is None:
        # SetKeyBudget sets both caps: keep the one not given as it is.
        current = (await client.billing.GetKeyBudget(
            billing_pb2.GetKeyBudgetRequest(key_id=args.key_id), **options)).budget
        daily = current.daily_limit_nanos if daily is None else daily
        monthly = current.monthly_limit_nanos if monthly is None else monthly
    reply = await client.billing.SetKeyBudget(
        billing_pb2.SetKeyBudgetRequest(key_id=args.key_id, daily_limit_nanos=daily,
                                        monthly_limit_nanos=monthly), **options)
    return budget_lines(reply.budget, client)


def budget_lines(budget: billing_pb2.KeyBudget, client: AdminClient) -> list[str]:
    """A key budget: one line per period, with the caps, spend and holds."""
    def cap(nanos: int) -> str:
        return client.display.with_usd(nanos) if nanos else NO_CAP

    daily = (f"  daily   cap {cap(budget.daily_limit_nanos)}, "
             f"spent today {client.display.with_usd(budget.spent_today_nanos)}")
    monthly = (f"  monthly cap {cap(budget.monthly_limit_nanos)}, "
               f"spent this month {client.display.with_usd(budget.spent_month_nanos)}")
    return [f"key {budget.key_id}", daily, monthly,
            f"  held {client.display.with_usd(budget.held_nanos)}"]


async def ledger_command(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`ledger ACCOUNT [--limit N]` (newest first) or `ledger check`."""
    if args.target == LEDGER_CHECK:
        return await ledger_check(client)
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    account = await client.account(args.target)
    entries: list[billing_pb2.LedgerEntry] = []
    token = ""
    while len(entries) < args.limit:
        reply = await client.billing.ListLedgerEntries(
            billing_pb2.ListLedgerEntriesRequest(
                account_id=account.account_id, page_token=token,
                page_size=min(args.limit - len(entries), MAX_PAGE)),
            metadata=client.metadata, timeout=CALL_TIMEOUT_S)
        entries.extend(reply.entries)
        if not (token := reply.next_page_token):
            break
    return [entry_line(entry) for entry in entries[:args.limit]]


def entry_line(entry: billing_pb2.LedgerEntry) -> str:
    """One ledger entry: id, time, kind, signed USD amount, counterparty, what it is for."""
    sign = "+" if entry.amount_nanos > 0 else ""
    about = entry.request_id or entry.reference
    return "\t".join([str(entry.id), stamp_text(entry.created_at), entry.kind,
                      f"{sign}{nanos_to_usd(entry.amount_nanos)}", entry.counterparty,
                      about or "-", entry.note])


async def ledger_check(client: AdminClient) -> list[str]:
    """`ledger check`: the invariants; a CommandError (exit 1) when any is broken."""
    reply = await client.billing.CheckLedger(
        billing_pb2.CheckLedgerRequest(), metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    summary = (f"checked {reply.wallets} wallets, {reply.transfers} transfers; "
               f"net {nanos_to_usd(reply.net_nanos)} USD")
    lines = [summary]
    lines += [f"MISMATCH {m.account_id}: balance {nanos_to_usd(m.balance_nanos)} != transfers "
              f"{nanos_to_usd(m.transfers_nanos)} or held {nanos_to_usd(m.held_nanos)} != open "
              f"holds {nanos_to_usd(m.open_holds_nanos)}" for m in reply.mismatches]
    lines += [f"RESOLVED TWICE {request_id}" for request_id in reply.holds_resolved_twice]
    problems = len(reply.mismatches) + len(reply.holds_resolved_twice) + (reply.net_nanos != 0)
    if problems:
        raise CommandError(f"the ledger is inconsistent ({problems} problems)", lines)
    return [*lines, "ledger consistent"]
