"""The hot-path SQL of the billing store: one function per statement, over a sync `Connection`.

Each statement is a Core construct built once, at import, with bound parameters, and
compiled once (see `statements.py`); a call only binds values. `store.py` decides which
statements run together in one transaction. Boolean columns are read as integers
(`type_coerce`) so that the SQLite fast path needs no result processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Integer, bindparam, insert, select, update
from sqlalchemy import type_coerce as as_type
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import MultipleResultsFound

from services.billing.domain import Hold, HoldStatus, NewHold, Wallet
from services.billing.models import HoldRow, TransferRow, WalletRow
from services.billing.statements import Statement
from services.billing.unit_json import dump_units, load_units
from services.common.charges import Tariff

_OPEN = HoldStatus.OPEN.value
_WALLET_KEYS = ("account_id", "balance_nanos", "held_nanos", "credit_limit_nanos", "updated_at")
_HOLD_KEYS = (
    "request_id",
    "account_id",
    "key_id",
    "price_group",
    "model",
    "prompt_price_nanos",
    "completion_price_nanos",
    "cached_prompt_price_nanos",
    "cache_write_price_nanos",
    "reasoning_price_nanos",
    "request_price_nanos",
    "multiplier_bps",
    "unit_prices_json",
    "amount_nanos",
    "status",
    "charged_nanos",
    "on_key_budget",
    "created_at",
    "expires_at",
)
_TRANSFER_KEYS = (
    "debit_account",
    "credit_account",
    "amount_nanos",
    "kind",
    "request_id",
    "reference",
    "note",
    "created_at",
)


def nanos(name: str) -> Any:
    """A BIGINT bound parameter."""
    return bindparam(name, type_=BigInteger())


_WALLET_COLUMNS = (WalletRow.balance_nanos, WalletRow.held_nanos, WalletRow.credit_limit_nanos)
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
        balance_nanos=WalletRow.balance_nanos + nanos("balance_delta"),
        held_nanos=WalletRow.held_nanos + nanos("held_delta"),
        updated_at=bindparam("at"),
    )
    .returning(*_WALLET_COLUMNS)
)
# The no-overdraft guard in one statement, for every amount (no "large balance" shortcut):
# on PostgreSQL the row lock makes a waiting UPDATE re-check the condition against the
# committed row, so concurrent holds cannot over-commit the wallet.
_HOLD_ON_WALLET_SQL = Statement(
    update(WalletRow)
    .where(
        WalletRow.account_id == bindparam("w_account"),
        WalletRow.balance_nanos + WalletRow.credit_limit_nanos - WalletRow.held_nanos
        >= nanos("amount"),
    )
    .values(held_nanos=WalletRow.held_nanos + nanos("amount"), updated_at=bindparam("at"))
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
    HoldRow.cache_write_price_nanos,
    HoldRow.reasoning_price_nanos,
    HoldRow.request_price_nanos,
    HoldRow.multiplier_bps,
    HoldRow.unit_prices_json,
    HoldRow.amount_nanos,
    HoldRow.status,
    HoldRow.charged_nanos,
    as_type(HoldRow.on_key_budget, Integer),
)
_READ_HOLD = select(*_HOLD_COLUMNS).where(HoldRow.request_id == bindparam("h_request"))
_READ_HOLD_SQL = Statement(_READ_HOLD)
_LOCK_HOLD_SQL = Statement(_READ_HOLD.with_for_update())
# Matches no row unless the hold is in status `old`: the exactly-once arbiter of
# settle, release and expiry (a hold leaves each status once).
_CLOSE_HOLD_SQL = Statement(
    update(HoldRow)
    .where(HoldRow.request_id == bindparam("h_request"), HoldRow.status == bindparam("old"))
    .values(
        status=bindparam("new_status"),
        charged_nanos=nanos("charged"),
        resolved_at=bindparam("at"),
    )
    .returning(
        HoldRow.account_id,
        HoldRow.amount_nanos,
        HoldRow.key_id,
        as_type(HoldRow.on_key_budget, Integer),
    )
)
_MARK_ON_BUDGET_SQL = Statement(
    update(HoldRow)
    .where(HoldRow.request_id == bindparam("h_request"))
    .values(on_key_budget=bindparam("on_budget"))
    .returning(HoldRow.request_id)
)
_INSERT_TRANSFER_SQL = Statement(insert(TransferRow), _TRANSFER_KEYS)
def one_or_none(rows: Sequence[Sequence[Any]]) -> Sequence[Any] | None:
    """The only row, None for none; MultipleResultsFound for more."""
    if len(rows) > 1:
        raise MultipleResultsFound("expected at most one row")
    return rows[0] if rows else None


def read_wallet(conn: Connection, account_id: str, lock: bool = False) -> Wallet | None:
    """The wallet row, None when there is none; `lock` adds FOR UPDATE (no-op on SQLite)."""
    stmt = _LOCK_WALLET_SQL if lock else _READ_WALLET_SQL
    row = one_or_none(stmt.rows(conn, {"w_account": account_id}))
    return None if row is None else Wallet(account_id, row[0], row[1], row[2])


def create_wallet(conn: Connection, account_id: str, at: datetime) -> None:
    """Insert an empty wallet unless one exists."""
    params = {
        "account_id": account_id,
        "balance_nanos": 0,
        "held_nanos": 0,
        "credit_limit_nanos": 0,
        "updated_at": at,
    }
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
    return Wallet(account_id, row[0], row[1], row[2])


def hold_on_wallet(conn: Connection, account_id: str, amount: int, at: datetime) -> Wallet | None:
    """Add `amount` to held if available covers it; None when short or without a wallet."""
    params = {"w_account": account_id, "amount": amount, "at": at}
    row = one_or_none(_HOLD_ON_WALLET_SQL.rows(conn, params))
    return None if row is None else Wallet(account_id, row[0], row[1], row[2])


def insert_hold(conn: Connection, hold: NewHold) -> bool:
    """Insert an open hold with its tariff snapshot; False when the request id exists."""
    tariff = hold.tariff
    params = {
        "request_id": hold.request_id,
        "account_id": hold.account_id,
        "key_id": hold.key_id,
        "price_group": hold.group,
        "model": hold.model,
        "prompt_price_nanos": tariff.prompt_nanos,
        "completion_price_nanos": tariff.completion_nanos,
        "cached_prompt_price_nanos": tariff.cached_prompt_nanos,
        "cache_write_price_nanos": tariff.cache_write_nanos,
        "reasoning_price_nanos": tariff.reasoning_nanos,
        "request_price_nanos": tariff.request_nanos,
        "multiplier_bps": tariff.multiplier_bps,
        "unit_prices_json": dump_units(tariff.unit_nanos),
        "amount_nanos": hold.amount_nanos,
        "status": _OPEN,
        "charged_nanos": 0,
        "on_key_budget": False,
        "created_at": hold.at,
        "expires_at": hold.expires_at,
    }
    return _INSERT_HOLD_SQL.rowcount(conn, params) == 1


def mark_on_budget(conn: Connection, request_id: str) -> None:
    """Record that the hold's amount counts in its key budget."""
    _MARK_ON_BUDGET_SQL.rows(conn, {"h_request": request_id, "on_budget": True})


def read_hold(conn: Connection, request_id: str, lock: bool = False) -> Hold | None:
    """The hold of a request; `lock` adds FOR UPDATE (no-op on SQLite)."""
    stmt = _LOCK_HOLD_SQL if lock else _READ_HOLD_SQL
    row = one_or_none(stmt.rows(conn, {"h_request": request_id}))
    return None if row is None else _hold_from_row(row)


def close_hold(
    conn: Connection,
    request_id: str,
    old: HoldStatus,
    new: HoldStatus,
    charged: int,
    at: datetime,
) -> tuple[str, int, str, bool] | None:
    """Move a hold from `old` to `new`: (account, amount, key, on budget), None if not `old`."""
    params = {
        "h_request": request_id,
        "old": old.value,
        "new_status": new.value,
        "charged": charged,
        "at": at,
    }
    row = one_or_none(_CLOSE_HOLD_SQL.rows(conn, params))
    return None if row is None else (row[0], row[1], row[2], bool(row[3]))


def insert_transfer(
    conn: Connection,
    debit: str,
    credit: str,
    amount: int,
    kind: str,
    at: datetime,
    *,
    request_id: str | None = None,
    reference: str | None = None,
    note: str = "",
) -> None:
    """Append one transfer (the amount is positive: a zero movement is no transfer)."""
    params = {
        "debit_account": debit,
        "credit_account": credit,
        "amount_nanos": amount,
        "kind": kind,
        "request_id": request_id,
        "reference": reference,
        "note": note,
        "created_at": at,
    }
    _INSERT_TRANSFER_SQL.rowcount(conn, params)


def _hold_from_row(row: Sequence[Any]) -> Hold:
    (request_id, account_id, key_id, group, model) = row[:5]
    (prompt, completion, cached, cache_write, reasoning, per_request, bps) = row[5:12]
    unit_prices, amount, status_text, charged, on_budget = row[12:17]
    tariff = Tariff(
        prompt,
        completion,
        cached,
        bps,
        load_units(unit_prices),
        cache_write_nanos=cache_write,
        reasoning_nanos=reasoning,
        request_nanos=per_request,
    )
    status = HoldStatus(status_text)
    return Hold(
        request_id,
        account_id,
        key_id,
        group,
        model,
        tariff,
        amount,
        status,
        charged,
        bool(on_budget),
    )
