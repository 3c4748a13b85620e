"""Writing the usage log: one record per request, by its settlement or its release.

A settlement writes the record in its own transaction (the unique request id makes a
second record impossible); a release with an outcome writes a zero-cost record unless
the request already has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.budgets import day_of
from services.billing.domain import Hold, RequestOutcome, Usage, UsageSource
from services.billing.models import UsageRecordRow
from services.billing.queries import one_or_none
from services.billing.statements import Statement
from services.billing.unit_json import dump_units

_KEYS = tuple(column.name for column in UsageRecordRow.__table__.columns)


def _upsert(dialect: Any) -> Any:
    stmt = dialect.insert(UsageRecordRow)
    fresh = {key: stmt.excluded[key] for key in _KEYS if key != "request_id"}
    return stmt.on_conflict_do_update(index_elements=["request_id"], set_=fresh)


# A settlement's record replaces a zero-cost one written by a release of the same
# request (an expired hold released with an outcome, then settled late).
_UPSERT_SQL = Statement(_upsert(sqlite), _KEYS, postgresql=_upsert(postgresql))
_INSERT_IF_ABSENT_SQL = Statement(
    sqlite.insert(UsageRecordRow).on_conflict_do_nothing(),
    _KEYS,
    postgresql=postgresql.insert(UsageRecordRow).on_conflict_do_nothing(),
)
_READ_LATE_SQL = Statement(
    select(type_coerce(UsageRecordRow.late, Integer)).where(
        UsageRecordRow.request_id == bindparam("u_request")
    )
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One usage record to write: the hold it belongs to, what it used and cost, how it went."""

    hold: Hold
    usage: Usage
    usage_source: UsageSource
    channel: str
    cost_nanos: int
    outcome: RequestOutcome
    late: bool
    at: datetime


def insert_record(conn: Connection, record: RecordedRequest, if_absent: bool = False) -> None:
    """Write the record over any earlier one; with `if_absent`, an earlier one is kept."""
    usage, outcome, hold = record.usage, record.outcome, record.hold
    params = {
        "request_id": hold.request_id,
        "account_id": hold.account_id,
        "key_id": hold.key_id,
        "model": hold.model,
        "channel": record.channel,
        "price_group": hold.group,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "cache_write_prompt_tokens": usage.cache_write_prompt_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "units_json": dump_units(usage.units),
        "usage_source": record.usage_source.value,
        "cost_nanos": record.cost_nanos,
        "status": outcome.status.value,
        "error_code": outcome.error_code,
        "stream": outcome.stream,
        "latency_ms": outcome.latency_ms,
        "first_token_ms": outcome.first_token_ms,
        "late": record.late,
        "day": day_of(record.at),
        "created_at": record.at,
    }
    (_INSERT_IF_ABSENT_SQL if if_absent else _UPSERT_SQL).rowcount(conn, params)


def read_late(conn: Connection, request_id: str) -> bool:
    """Whether the request's recorded settlement was late (False without a record)."""
    row = one_or_none(_READ_LATE_SQL.rows(conn, {"u_request": request_id}))
    return row is not None and bool(row[0])
