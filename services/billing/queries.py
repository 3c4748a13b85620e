"""The SQL of the billing store: one function per statement, over a sync Core `Connection`.

Each statement is a Core construct built once, at import, with bound parameters, and
compiled once (see `statements.py`); a call only binds values. `store.py` decides which
statements run together in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import MultipleResultsFound

from services.billing.domain import (
    Hold,
    HoldStatus,
    LedgerKind,
    NewHold,
    TopUp,
    UsageReport,
    Wallet,
)
from services.billing.models import HoldRow, LedgerEntryRow, UsageRecordRow, WalletRow
from services.billing.statements import Statement
from services.billing.unit_json import dump_units, load_units
from services.common.charges import Tariff

_OPEN = HoldStatus.OPEN.value
_WALLET_KEYS = ("account_id", "balance_nanos", "held_nanos", "updated_at")
_HOLD_KEYS = (
    "request_id",
    "account_id",
    "key_id",
    "price_group",
    "model",
    "prompt_price_nanos",
    "completion_price_nanos",
    "cached_prompt_price_nanos",
    "multiplier_bps",
    "unit_prices_json",
    "amount_nanos",
    "status",
    "charged_nanos",
    "created_at",
)
_CHARGE_KEYS = (
    "account_id",
    "kind",
    "amount_nanos",
    "balance_after_nanos",
    "request_id",
    "note",
    "created_at",
)
_TOP_UP_KEYS = (
    "account_id",
    "kind",
    "amount_nanos",
    "balance_after_nanos",
    "reference",
    "note",
    "created_at",
)
_USAGE_KEYS = tuple(column.name for column in UsageRecordRow.__table__.columns)


def _nanos(name: str) -> Any:
    return bindparam(name, type_=BigInteger())


_WALLET_COLUMNS = (WalletRow.balance_nanos, WalletRow.held_nanos)
_READ_WALLET = select(*_WALLET_COLUMNS).where(WalletRow.account_id == bindparam("w_account"))
_READ_WALLET_SQL = Statement(_READ_WALLET)
_LOCK_WALLET_SQL = Statement(_READ_WALLET.with_for_update())
# ON CONFLICT DO NOTHING: a concurrent insert of the same wallet is not an error.
_CREATE_WALLET_SQL = Statement(
    sqlite.insert(WalletRow).on_conflict_do_nothing(),
    _WALLET_KEYS,
    postgresql=postgresql.insert(WalletRow).on_conflict_do_nothing(),
)
_MOVE_WALLET_SQL = Statement(
    update(WalletRow)
    .where(WalletRow.account_id == bindparam("w_account"))
    .values(
        balance_nanos=WalletRow.balance_nanos + _nanos("balance_delta"),
        held_nanos=WalletRow.held_nanos + _nanos("held_delta"),
        updated_at=bindparam("at"),
    )
    .returning(*_WALLET_COLUMNS)
)
# The no-overdraft guard in one statement: on PostgreSQL the row lock makes a waiting
# UPDATE re-check the condition against the committed row, so holds cannot over-commit.
_HOLD_ON_WALLET_SQL = Statement(
    update(WalletRow)
    .where(
        WalletRow.account_id == bindparam("w_account"),
        WalletRow.balance_nanos - WalletRow.held_nanos >= _nanos("amount"),
    )
    .values(held_nanos=WalletRow.held_nanos + _nanos("amount"), updated_at=bindparam("at"))
    .returning(*_WALLET_COLUMNS)
)
_INSERT_HOLD_SQL = Statement(
    sqlite.insert(HoldRow).on_conflict_do_nothing(),
    _HOLD_KEYS,
    postgresql=postgresql.insert(HoldRow).on_conflict_do_nothing(),
)
_HOLD_COLUMNS = (
    HoldRow.request_id,
    HoldRow.account_id,
    HoldRow.key_id,
    HoldRow.price_group,
    HoldRow.model,
    HoldRow.prompt_price_nanos,
    HoldRow.completion_price_nanos,
    HoldRow.cached_prompt_price_nanos,
    HoldRow.multiplier_bps,
    HoldRow.unit_prices_json,
    HoldRow.amount_nanos,
    HoldRow.status,
    HoldRow.charged_nanos,
)
_READ_HOLD = select(*_HOLD_COLUMNS).where(HoldRow.request_id == bindparam("h_request"))
_READ_HOLD_SQL = Statement(_READ_HOLD)
_LOCK_HOLD_SQL = Statement(_READ_HOLD.with_for_update())
# Matches no row unless the hold is still open: the exactly-once arbiter of settle/release.
_CLOSE_HOLD_SQL = Statement(
    update(HoldRow)
    .where(HoldRow.request_id == bindparam("h_request"), HoldRow.status == bindparam("old"))
    .values(
        status=bindparam("new_status"),
        charged_nanos=_nanos("charged"),
        resolved_at=bindparam("at"),
    )
    .returning(HoldRow.account_id, HoldRow.amount_nanos)
)
_INSERT_CHARGE_SQL = Statement(insert(LedgerEntryRow), _CHARGE_KEYS)
_INSERT_TOP_UP_SQL = Statement(insert(LedgerEntryRow), _TOP_UP_KEYS)
_INSERT_USAGE_SQL = Statement(insert(UsageRecordRow), _USAGE_KEYS)
_READ_TOP_UP_SQL = Statement(
    select(LedgerEntryRow.account_id, LedgerEntryRow.amount_nanos).where(
        LedgerEntryRow.reference == bindparam("reference")
    )
)


def _one_or_none(rows: Sequence[Sequence[Any]]) -> Sequence[Any] | None:
    if len(rows) > 1:
        raise MultipleResultsFound("expected at most one row")
    return rows[0] if rows else None


def read_wallet(conn: Connection, account_id: str, lock: bool = False) -> Wallet | None:
    """The wallet row, None when there is none; `lock` adds FOR UPDATE (no-op on SQLite)."""
    stmt = _LOCK_WALLET_SQL if lock else _READ_WALLET_SQL
    row = _one_or_none(stmt.rows(conn, {"w_account": account_id}))
    return None if row is None else Wallet(account_id, row[0], row[1])


def create_wallet(conn: Connection, account_id: str, at: datetime) -> None:
    """Insert an empty wallet unless one exists."""
    params = {"account_id": account_id, "balance_nanos": 0, "held_nanos": 0, "updated_at": at}
    _CREATE_WALLET_SQL.rowcount(conn, params)


def move_wallet(
    conn: Connection, account_id: str, balance_delta: int, held_delta: int, at: datetime
) -> Wallet:
    """Add deltas to balance and held in place; the wallet after."""
    params = {
        "w_account": account_id,
        "balance_delta": balance_delta,
        "held_delta": held_delta,
        "at": at,
    }
    (row,) = _MOVE_WALLET_SQL.rows(conn, params)
    return Wallet(account_id, row[0], row[1])


def hold_on_wallet(conn: Connection, account_id: str, amount: int, at: datetime) -> Wallet | None:
    """Add `amount` to held if available covers it; None when short or without a wallet."""
    params = {"w_account": account_id, "amount": amount, "at": at}
    row = _one_or_none(_HOLD_ON_WALLET_SQL.rows(conn, params))
    return None if row is None else Wallet(account_id, row[0], row[1])


def insert_hold(conn: Connection, hold: NewHold) -> bool:
    """Insert an open hold with its tariff snapshot; False when the request id exists."""
    params = {
        "request_id": hold.request_id,
        "account_id": hold.account_id,
        "key_id": hold.key_id,
        "price_group": hold.group,
        "model": hold.model,
        "prompt_price_nanos": hold.tariff.prompt_nanos,
        "completion_price_nanos": hold.tariff.completion_nanos,
        "cached_prompt_price_nanos": hold.tariff.cached_prompt_nanos,
        "multiplier_bps": hold.tariff.multiplier_bps,
        "unit_prices_json": dump_units(hold.tariff.unit_nanos),
        "amount_nanos": hold.amount_nanos,
        "status": _OPEN,
        "charged_nanos": 0,
        "created_at": hold.at,
    }
    return _INSERT_HOLD_SQL.rowcount(conn, params) == 1


def read_hold(conn: Connection, request_id: str, lock: bool = False) -> Hold | None:
    """The hold of a request; `lock` adds FOR UPDATE (no-op on SQLite)."""
    stmt = _LOCK_HOLD_SQL if lock else _READ_HOLD_SQL
    row = _one_or_none(stmt.rows(conn, {"h_request": request_id}))
    return None if row is None else _hold_from_row(row)


def close_hold(
    conn: Connection, request_id: str, status: HoldStatus, charged: int, at: datetime
) -> tuple[str, int] | None:
    """Move an open hold to `status`: (account id, amount held), or None if not open."""
    params = {
        "h_request": request_id,
        "old": _OPEN,
        "new_status": status.value,
        "charged": charged,
        "at": at,
    }
    row = _one_or_none(_CLOSE_HOLD_SQL.rows(conn, params))
    return None if row is None else (row[0], row[1])


def insert_charge_entry(
    conn: Connection, report: UsageReport, account_id: str, charge: int, balance_after: int
) -> None:
    """The ledger line of a settlement (a non-positive amount)."""
    params = {
        "account_id": account_id,
        "kind": LedgerKind.CHARGE.value,
        "amount_nanos": -charge,
        "balance_after_nanos": balance_after,
        "request_id": report.request_id,
        "note": "",
        "created_at": report.at,
    }
    _INSERT_CHARGE_SQL.rowcount(conn, params)


def insert_usage_record(conn: Connection, report: UsageReport, hold: Hold, charge: int) -> None:
    """The usage log line of a settlement."""
    usage = report.usage
    params = {
        "request_id": report.request_id,
        "account_id": hold.account_id,
        "key_id": hold.key_id,
        "model": hold.model,
        "channel": report.channel,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "units_json": dump_units(usage.units),
        "usage_source": report.usage_source.value,
        "cost_nanos": charge,
        "created_at": report.at,
    }
    _INSERT_USAGE_SQL.rowcount(conn, params)


def insert_top_up_entry(conn: Connection, top_up: TopUp, balance_after: int) -> None:
    """The ledger line of a top-up; an empty reference is stored as NULL (no uniqueness)."""
    params = {
        "account_id": top_up.account_id,
        "kind": LedgerKind.TOPUP.value,
        "amount_nanos": top_up.amount_nanos,
        "balance_after_nanos": balance_after,
        "reference": top_up.reference or None,
        "note": top_up.note,
        "created_at": top_up.at,
    }
    _INSERT_TOP_UP_SQL.rowcount(conn, params)


def read_top_up(conn: Connection, reference: str) -> tuple[str, int] | None:
    """The account and amount of the top-up recorded under `reference`."""
    row = _one_or_none(_READ_TOP_UP_SQL.rows(conn, {"reference": reference}))
    return None if row is None else (row[0], row[1])


def _hold_from_row(row: Sequence[Any]) -> Hold:
    (request_id, account_id, key_id, group, model, prompt, completion, cached, bps) = row[:9]
    unit_prices, amount, status_text, charged = row[9:13]
    tariff = Tariff(prompt, completion, cached, bps, load_units(unit_prices))
    status = HoldStatus(status_text)
    return Hold(request_id, account_id, key_id, group, model, tariff, amount, status, charged)
