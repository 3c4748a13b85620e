"""The SQL statements of the billing store, one builder per statement.

Builders only; `store.py` decides which run together in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Row, Select, Update, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.domain import Charge, Hold, HoldStatus, LedgerKind, NewHold, Tariff, TopUp
from services.billing.models import HoldRow, LedgerEntryRow, UsageRecordRow, WalletRow


def read_wallet(account_id: str, lock: bool = False) -> Select[int, int]:
    """Balance and held of a wallet; `lock` adds FOR UPDATE (ignored by SQLite)."""
    stmt = select(WalletRow.balance_nanos, WalletRow.held_nanos).where(
        WalletRow.account_id == account_id
    )
    return stmt.with_for_update() if lock else stmt


def create_wallet(dialect_name: str, account_id: str, at: datetime) -> Insert:
    """Insert an empty wallet unless one exists (no error on a concurrent insert)."""
    values = {"account_id": account_id, "balance_nanos": 0, "held_nanos": 0, "updated_at": at}
    if dialect_name == "postgresql":
        return postgresql.insert(WalletRow).values(values).on_conflict_do_nothing()
    return sqlite.insert(WalletRow).values(values).on_conflict_do_nothing()


def move_wallet(account_id: str, balance_delta: int, held_delta: int, at: datetime) -> Update:
    """Add deltas to balance and held in place, returning the new values."""
    return (
        update(WalletRow)
        .where(WalletRow.account_id == account_id)
        .values(
            balance_nanos=WalletRow.balance_nanos + balance_delta,
            held_nanos=WalletRow.held_nanos + held_delta,
            updated_at=at,
        )
        .returning(WalletRow.balance_nanos, WalletRow.held_nanos)
    )


def read_hold(request_id: str) -> Select[Any]:
    """Every column of a hold."""
    return select(HoldRow.__table__).where(HoldRow.request_id == request_id)


def hold_from_row(row: Row[Any]) -> Hold:
    """A stored hold as the domain sees it."""
    tariff = Tariff(
        row.prompt_price_nanos,
        row.completion_price_nanos,
        row.cached_prompt_price_nanos,
        row.multiplier_bps,
    )
    return Hold(
        row.request_id,
        row.account_id,
        row.key_id,
        row.price_group,
        row.model,
        tariff,
        row.amount_nanos,
        HoldStatus(row.status),
        row.charged_nanos,
    )


def insert_hold(hold: NewHold) -> Insert:
    """A new open hold with its tariff snapshot."""
    return insert(HoldRow).values(
        request_id=hold.request_id,
        account_id=hold.account_id,
        key_id=hold.key_id,
        price_group=hold.group,
        model=hold.model,
        prompt_price_nanos=hold.tariff.prompt_nanos,
        completion_price_nanos=hold.tariff.completion_nanos,
        cached_prompt_price_nanos=hold.tariff.cached_prompt_nanos,
        multiplier_bps=hold.tariff.multiplier_bps,
        amount_nanos=hold.amount_nanos,
        status=HoldStatus.OPEN.value,
        charged_nanos=0,
        created_at=hold.at,
    )


def close_hold(request_id: str, status: HoldStatus, charged: int, at: datetime) -> Update:
    """Move a hold from open to `status`; matches no row unless it is still open."""
    return (
        update(HoldRow)
        .where(HoldRow.request_id == request_id, HoldRow.status == HoldStatus.OPEN.value)
        .values(status=status.value, charged_nanos=charged, resolved_at=at)
        .returning(HoldRow.account_id, HoldRow.key_id, HoldRow.model, HoldRow.amount_nanos)
    )


def insert_charge_entry(charge: Charge, account_id: str, balance_after: int) -> Insert:
    """The ledger line of a settlement (a non-positive amount)."""
    return insert(LedgerEntryRow).values(
        account_id=account_id,
        kind=LedgerKind.CHARGE.value,
        amount_nanos=-charge.charge_nanos,
        balance_after_nanos=balance_after,
        request_id=charge.request_id,
        note="",
        created_at=charge.at,
    )


def insert_usage_record(charge: Charge, account_id: str, key_id: str, model: str) -> Insert:
    """The usage log line of a settlement."""
    usage = charge.usage
    return insert(UsageRecordRow).values(
        request_id=charge.request_id,
        account_id=account_id,
        key_id=key_id,
        model=model,
        channel=charge.channel,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_source=charge.usage_source.value,
        cost_nanos=charge.charge_nanos,
        created_at=charge.at,
    )


def insert_top_up_entry(top_up: TopUp, balance_after: int) -> Insert:
    """The ledger line of a top-up; an empty reference is stored as NULL (no uniqueness)."""
    return insert(LedgerEntryRow).values(
        account_id=top_up.account_id,
        kind=LedgerKind.TOPUP.value,
        amount_nanos=top_up.amount_nanos,
        balance_after_nanos=balance_after,
        reference=top_up.reference or None,
        note=top_up.note,
        created_at=top_up.at,
    )


def read_top_up(reference: str) -> Select[str, int]:
    """The account and amount of the top-up recorded under `reference`."""
    return select(LedgerEntryRow.account_id, LedgerEntryRow.amount_nanos).where(
        LedgerEntryRow.reference == reference
    )
