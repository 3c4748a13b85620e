"""The SQL of the usage log's admin reads, one sync function per query over a `Connection`.

Written once for SQLite and PostgreSQL. `created_at` is stored in UTC; SQLite keeps it
as naive text (read back here as UTC), PostgreSQL as timestamptz.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Row,
    and_,
    case,
    cast,
    func,
    or_,
    select,
)

from services.billing.ledger_queries import utc
from services.billing.models import UsageRecordRow

_RECORDS = UsageRecordRow.__table__
# Statuses that count as a success in the daily sums ("" = not reported, e.g. older rows).
SUCCESS_STATUSES = ("ok", "")


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which usage records to read; empty strings and None match everything."""

    account_id: str = ""
    key_id: str = ""
    model: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class PagePosition:
    """The last record of a page: the next page starts strictly after it (newest first)."""

    created_at: datetime
    request_id: str


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One usage record as stored."""

    request_id: str
    account_id: str
    key_id: str
    model: str
    channel: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    cache_write_prompt_tokens: int
    reasoning_tokens: int
    units_json: str
    usage_source: str
    cost_nanos: int
    status: str
    error_code: str
    stream: bool
    latency_ms: int
    first_token_ms: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DailyFilter:
    """Which days, account and model to sum; empty strings match everything."""

    account_id: str = ""
    model: str = ""
    since_day: str = ""  # "YYYY-MM-DD", inclusive
    until_day: str = ""  # inclusive


@dataclass(frozen=True, slots=True)
class DailyLine:
    """The sums of one (day, account, model)."""

    day: str
    account_id: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int
    failed_requests: int


_LINE_COLUMNS = [_RECORDS.c[name] for name in UsageLine.__dataclass_fields__]


def read_usage_page(
    conn: Connection, where: UsageFilter, after: PagePosition | None, limit: int
) -> list[UsageLine]:
    """Up to `limit` records matching `where`, newest first, strictly after `after`."""
    created, request_id = _RECORDS.c.created_at, _RECORDS.c.request_id
    conditions = _filter_conditions(where)
    if after is not None:
        conditions.append(
            or_(
                created < after.created_at,
                and_(created == after.created_at, request_id < after.request_id),
            )
        )
    stmt = (
        select(*_LINE_COLUMNS)
        .where(*conditions)
        .order_by(created.desc(), request_id.desc())
        .limit(limit)
    )
    return [_line(row) for row in conn.execute(stmt)]


def read_daily_usage(conn: Connection, where: DailyFilter) -> list[DailyLine]:
    """The sums per (day, account, model), ordered by day, then account, then model."""
    c = _RECORDS.c
    failed = case((c.status.in_(SUCCESS_STATUSES), 0), else_=1)
    # sum(bigint) is NUMERIC on PostgreSQL: cast back so both databases return integers.
    sums = [
        cast(func.coalesce(func.sum(column), 0), BigInteger)
        for column in (c.prompt_tokens, c.completion_tokens, c.cost_nanos, failed)
    ]
    conditions: list[ColumnElement[bool]] = []
    if where.account_id:
        conditions.append(c.account_id == where.account_id)
    if where.model:
        conditions.append(c.model == where.model)
    if where.since_day:
        conditions.append(c.day >= where.since_day)
    if where.until_day:
        conditions.append(c.day <= where.until_day)
    stmt = (
        select(c.day, c.account_id, c.model, func.count(), *sums)
        .where(*conditions)
        .group_by(c.day, c.account_id, c.model)
        .order_by(c.day, c.account_id, c.model)
    )
    return [
        DailyLine(row[0], row[1], row[2], *(int(value) for value in row[3:]))
        for row in conn.execute(stmt)
    ]


def _filter_conditions(where: UsageFilter) -> list[ColumnElement[bool]]:
    c = _RECORDS.c
    conditions: list[ColumnElement[bool]] = []
    if where.account_id:
        conditions.append(c.account_id == where.account_id)
    if where.key_id:
        conditions.append(c.key_id == where.key_id)
    if where.model:
        conditions.append(c.model == where.model)
    if where.since is not None:
        conditions.append(c.created_at >= where.since)
    if where.until is not None:
        conditions.append(c.created_at < where.until)
    return conditions


def _line(row: Row[Any]) -> UsageLine:
    values = dict(row._mapping)
    values["created_at"] = utc(values["created_at"])
    return UsageLine(**values)
