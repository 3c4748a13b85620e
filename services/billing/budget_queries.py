"""The SQL of key budgets: the hot path's locked read and write, and the admin upsert.

See `budgets.py` for the rules; these statements only move rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.budgets import KeyBudget
from services.billing.models import KeyBudgetRow
from services.billing.queries import nanos, one_or_none
from services.billing.statements import Statement

_BUDGET_COLUMNS = (
    KeyBudgetRow.daily_limit_nanos,
    KeyBudgetRow.monthly_limit_nanos,
    KeyBudgetRow.day,
    KeyBudgetRow.day_spent_nanos,
    KeyBudgetRow.month,
    KeyBudgetRow.month_spent_nanos,
    KeyBudgetRow.held_nanos,
)
_READ_BUDGET = select(*_BUDGET_COLUMNS).where(KeyBudgetRow.key_id == bindparam("b_key"))
_READ_BUDGET_SQL = Statement(_READ_BUDGET)
_LOCK_BUDGET_SQL = Statement(_READ_BUDGET.with_for_update())
_WRITE_BUDGET_SQL = Statement(
    update(KeyBudgetRow)
    .where(KeyBudgetRow.key_id == bindparam("b_key"))
    .values(
        day=bindparam("b_day"),
        day_spent_nanos=nanos("b_day_spent"),
        month=bindparam("b_month"),
        month_spent_nanos=nanos("b_month_spent"),
        held_nanos=nanos("b_held"),
        updated_at=bindparam("at"),
    )
    .returning(KeyBudgetRow.key_id)
)


def lock_budget(conn: Connection, key_id: str) -> KeyBudget | None:
    """The key's budget row under FOR UPDATE; None when the key has no budget."""
    return _budget(key_id, one_or_none(_LOCK_BUDGET_SQL.rows(conn, {"b_key": key_id})))


def write_budget(conn: Connection, budget: KeyBudget, at: datetime) -> None:
    """Store the budget's periods, spend and held amount (its caps are left as they are)."""
    params = {
        "b_key": budget.key_id,
        "b_day": budget.day,
        "b_day_spent": budget.day_spent_nanos,
        "b_month": budget.month,
        "b_month_spent": budget.month_spent_nanos,
        "b_held": budget.held_nanos,
        "at": at,
    }
    _WRITE_BUDGET_SQL.rows(conn, params)


def read_budget(conn: Connection, key_id: str) -> KeyBudget | None:
    """The key's budget as stored (periods not rolled); None when it has none."""
    return _budget(key_id, one_or_none(_READ_BUDGET_SQL.rows(conn, {"b_key": key_id})))


def _budget(key_id: str, row: Sequence[Any] | None) -> KeyBudget | None:
    # The row holds _BUDGET_COLUMNS, in KeyBudget's field order after key_id.
    return None if row is None else KeyBudget(key_id, *row)


def set_limits(conn: Connection, budget: KeyBudget, at: datetime) -> None:
    """Create the budget row, or change only the caps of an existing one (spend is kept)."""
    values = {
        "key_id": budget.key_id,
        "daily_limit_nanos": budget.daily_limit_nanos,
        "monthly_limit_nanos": budget.monthly_limit_nanos,
        "day": budget.day,
        "day_spent_nanos": 0,
        "month": budget.month,
        "month_spent_nanos": 0,
        "held_nanos": 0,
        "updated_at": at,
    }
    changed = {
        "daily_limit_nanos": budget.daily_limit_nanos,
        "monthly_limit_nanos": budget.monthly_limit_nanos,
        "updated_at": at,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(KeyBudgetRow).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key_id"], set_=changed))


def delete_budget(conn: Connection, key_id: str) -> None:
    """Remove the key's budget (its open holds then count nowhere)."""
    conn.execute(delete(KeyBudgetRow).where(KeyBudgetRow.key_id == key_id))
