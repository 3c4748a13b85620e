"""`apirelay usage` (the usage log, newest first) and `apirelay usage daily` (daily sums).

Both print a tab-separated table, or CSV with a header row (`--csv`). Costs are exact
USD; a non-USD display currency adds a converted column. Days are UTC; `--until` is
inclusive (the whole day).
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import grpc

from apirelay.auth.v1 import auth_pb2
from apirelay.billing.v1 import billing_pb2
from apirelay.common.v1 import usage_pb2
from cli.admin import CALL_TIMEOUT_S, AdminClient, CommandError
from cli.billing import MAX_PAGE, day_arg, day_start, stamp_text
from services.common.display import DisplayCurrency
from services.common.money import nanos_to_usd

DEFAULT_LIMIT = 100
DAILY = "daily"
RECORD_COLUMNS = (
    "created_at", "request_id", "account", "key", "model", "channel", "prompt", "completion",
    "cached", "cache_write", "reasoning", "cost_usd", "status", "error_code", "stream",
    "latency_ms", "first_token_ms", "usage_source",
)
DAILY_COLUMNS = ("day", "account", "model", "requests", "failed_requests", "prompt_tokens",
                 "completion_tokens", "cost_usd")
_STATUS = {
    billing_pb2.REQUEST_STATUS_OK: "ok", billing_pb2.REQUEST_STATUS_ERROR: "error",
    billing_pb2.REQUEST_STATUS_CLIENT_CLOSED: "client_closed",
    billing_pb2.REQUEST_STATUS_UPSTREAM_CUT: "upstream_cut",
}
_SOURCE = {usage_pb2.USAGE_SOURCE_UPSTREAM: "upstream",
           usage_pb2.USAGE_SOURCE_ESTIMATED: "estimated"}


def add_parsers(sub: Any) -> None:
    """Add `usage [daily] [...]` to the `apirelay` parser."""
    usage = sub.add_parser("usage", help="the usage log (newest first), or `usage daily`")
    # A positional, not a subcommand: the filters then go before or after `daily` alike.
    usage.add_argument("view", nargs="?", choices=(DAILY,),
                       help="daily: sums per UTC day, account and model")
    usage.add_argument("--account", metavar="NAME", help="only this account")
    usage.add_argument("--key", metavar="KEY_ID", help="only this API key (not with daily)")
    usage.add_argument("--model", default="", help="only this model")
    usage.add_argument("--since", type=day_arg, metavar="YYYY-MM-DD", help="first day (UTC)")
    usage.add_argument("--until", type=day_arg, metavar="YYYY-MM-DD",
                       help="last day (UTC, inclusive)")
    usage.add_argument("--limit", type=int, metavar="N",
                       help=f"at most N records (default {DEFAULT_LIMIT}; with --csv all)")
    usage.add_argument("--csv", action="store_true", help="CSV with a header row")
    usage.set_defaults(handler=usage_command)


async def usage_command(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`usage [...]` or `usage daily [...]`."""
    if args.view != DAILY:
        return await usage_list(client, args)
    if args.key or args.limit is not None:
        raise CommandError("--key and --limit apply to the usage log, not to `usage daily`")
    return await usage_daily(client, args)


def list_request(args: argparse.Namespace, account_id: str) -> billing_pb2.ListUsageRequest:
    """The ListUsage filters of `usage` (without paging)."""
    request = billing_pb2.ListUsageRequest(account_id=account_id, key_id=args.key or "",
                                           model=args.model)
    if args.since is not None:
        request.since.CopyFrom(day_start(args.since))
    if args.until is not None:
        request.until.CopyFrom(day_start(args.until + timedelta(days=1)))
    return request


def record_limit(args: argparse.Namespace) -> int | None:
    """How many records to fetch: --limit, else 100 for a table and all (None) for CSV."""
    if args.limit is not None:
        if args.limit < 1:
            raise CommandError("--limit must be at least 1")
        return int(args.limit)
    return None if args.csv else DEFAULT_LIMIT


class AccountNames:
    """Account ids to names, asking auth once per id (a deleted account shows its id)."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client
        self._names: dict[str, str] = {}

    def remember(self, account: auth_pb2.Account) -> None:
        """Record a name already known."""
        self._names[account.account_id] = account.name

    async def name(self, account_id: str) -> str:
        """The account's name, or its id when auth does not know it."""
        if account_id not in self._names:
            try:
                reply = await self._client.auth.GetAccount(
                    auth_pb2.GetAccountRequest(account_id=account_id),
                    metadata=self._client.metadata, timeout=CALL_TIMEOUT_S)
                self._names[account_id] = reply.account.name
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                self._names[account_id] = account_id
        return self._names[account_id]


async def _account_filter(client: AdminClient, args: argparse.Namespace,
                          names: AccountNames) -> str:
    if not args.account:
        return ""
    account = await client.account(args.account)
    names.remember(account)
    return str(account.account_id)


async def fetch_records(client: AdminClient, request: billing_pb2.ListUsageRequest,
                        limit: int | None) -> list[billing_pb2.UsageRecord]:
    """Follow page tokens until `limit` records (None: all) or the last page."""
    records: list[billing_pb2.UsageRecord] = []
    while limit is None or len(records) < limit:
        request.page_size = MAX_PAGE if limit is None else min(limit - len(records), MAX_PAGE)
        reply = await client.billing.ListUsage(request, metadata=client.metadata,
                                               timeout=CALL_TIMEOUT_S)
        records.extend(reply.records)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    return records if limit is None else records[:limit]


async def usage_list(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`usage [filters] [--limit N] [--csv]`."""
    names = AccountNames(client)
    request = list_request(args, await _account_filter(client, args, names))
    records = await fetch_records(client, request, record_limit(args))
    rows = [record_row(r, await names.name(r.account_id)) for r in records]
    costs = [r.cost_nanos for r in records]
    return render(RECORD_COLUMNS, rows, costs, client.display, args.csv)


async def usage_daily(client: AdminClient, args: argparse.Namespace) -> list[str]:
    """`usage daily [filters] [--csv]`."""
    names = AccountNames(client)
    account_id = await _account_filter(client, args, names)
    reply = await client.billing.GetDailyUsage(
        billing_pb2.GetDailyUsageRequest(
            account_id=account_id, model=args.model,
            since_day=args.since.isoformat() if args.since else "",
            until_day=args.until.isoformat() if args.until else ""),
        metadata=client.metadata, timeout=CALL_TIMEOUT_S)
    rows = [daily_row(d, await names.name(d.account_id)) for d in reply.days]
    return render(DAILY_COLUMNS, rows, [d.cost_nanos for d in reply.days], client.display,
                  args.csv)


def record_row(record: billing_pb2.UsageRecord, account: str) -> list[str]:
    """A usage record's cells, in RECORD_COLUMNS order."""
    usage, outcome = record.usage, record.outcome
    return [stamp_text(record.created_at), record.request_id, account, record.key_id,
            record.model, record.channel, str(usage.prompt_tokens),
            str(usage.completion_tokens), str(usage.cached_prompt_tokens),
            str(usage.cache_write_prompt_tokens), str(usage.reasoning_tokens),
            nanos_to_usd(record.cost_nanos), _STATUS.get(outcome.status, ""),
            outcome.error_code, "true" if outcome.stream else "false",
            str(outcome.latency_ms), str(outcome.first_token_ms),
            _SOURCE.get(record.usage_source, "none")]


def daily_row(day: billing_pb2.DailyUsage, account: str) -> list[str]:
    """A daily sum's cells, in DAILY_COLUMNS order."""
    return [day.day, account, day.model, str(day.requests), str(day.failed_requests),
            str(day.prompt_tokens), str(day.completion_tokens), nanos_to_usd(day.cost_nanos)]


def render(columns: Sequence[str], rows: Sequence[Sequence[str]], costs: Sequence[int],
           display: DisplayCurrency, as_csv: bool) -> list[str]:
    """Rows as CSV lines, or as a table with a total; a non-USD display adds a cost column."""
    if not display.is_usd:
        # nanos_to_usd prints any 1e-9 amount; here it is the display currency's.
        extra = f"cost_{display.code.lower()}"
        columns = [*columns, extra]
        rows = [[*row, nanos_to_usd(display.convert(cost))] for row, cost in zip(rows, costs)]
    if as_csv:
        return [csv_line(columns), *(csv_line(row) for row in rows)]
    total = f"{len(rows)} rows, total {display.with_usd(sum(costs))}"
    return ["\t".join(columns), *("\t".join(row) for row in rows), total]


def csv_line(cells: Sequence[str]) -> str:
    """One CSV record (RFC 4180 quoting) without its line break."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()[:-1]
