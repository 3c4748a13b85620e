"""The SQL off the hot path: references, the expiry scan, redemption codes, ledger reads.

Plain Core statements through `Connection.execute` (these run rarely, so the compiled
fast path of `statements.py` is not worth its constraints here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Integer, func, insert, literal, or_, select, union_all, update
from sqlalchemy.sql.selectable import Select, Subquery

from services.billing.admin_types import LedgerEntry, LedgerMismatch, NewBatch
from services.billing.domain import WALLET_PREFIX, HoldStatus, TransferKind
from services.billing.models import (
    HoldRow,
    RedemptionBatchRow,
    RedemptionCodeRow,
    TransferRow,
    WalletRow,
)


def utc(at: datetime) -> datetime:
    """`at` as an aware UTC time (SQLite hands back naive ones, stored as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def read_reference(conn: Connection, reference: str) -> tuple[str, str, int] | None:
    """(debit account, credit account, amount) of the transfer recorded under `reference`."""
    row = conn.execute(
        select(TransferRow.debit_account, TransferRow.credit_account, TransferRow.amount_nanos)
        .where(TransferRow.reference == reference)
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def expired_hold_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Up to `limit` open holds whose deadline has passed, oldest deadline first."""
    rows = conn.execute(
        select(HoldRow.request_id)
        .where(HoldRow.status == HoldStatus.OPEN.value, HoldRow.expires_at <= now)
        .order_by(HoldRow.expires_at)
        .limit(limit)
    )
    return [row[0] or "" for row in rows]


def batch_exists(conn: Connection, reference: str) -> bool:
    """Whether a batch was created under `reference`."""
    found = conn.execute(
        select(RedemptionBatchRow.id).where(RedemptionBatchRow.reference == reference)
    ).first()
    return found is not None


def insert_batch(conn: Connection, batch: NewBatch) -> None:
    """Store a batch and its codes' hashes."""
    conn.execute(
        insert(RedemptionBatchRow).values(
            id=batch.batch_id,
            amount_nanos=batch.amount_nanos,
            code_count=len(batch.code_hashes),
            expires_at=batch.expires_at,
            note=batch.note,
            reference=batch.reference or None,
            created_at=batch.at,
        )
    )
    conn.execute(
        insert(RedemptionCodeRow),
        [
            {
                "code_hash": code_hash,
                "batch_id": batch.batch_id,
                "amount_nanos": batch.amount_nanos,
                "expires_at": batch.expires_at,
                "redeemed_by": None,
                "redeemed_at": None,
            }
            for code_hash in batch.code_hashes
        ],
    )


def lock_code(conn: Connection, code_hash: str) -> tuple[int, datetime | None, str | None] | None:
    """(amount, expiry, redeemer) of a code under FOR UPDATE; None for an unknown code."""
    row = conn.execute(
        select(
            RedemptionCodeRow.amount_nanos,
            RedemptionCodeRow.expires_at,
            RedemptionCodeRow.redeemed_by,
        )
        .where(RedemptionCodeRow.code_hash == code_hash)
        .with_for_update()
    ).one_or_none()
    if row is None:
        return None
    expires_at = None if row[1] is None else utc(row[1])
    return row[0], expires_at, row[2]


def claim_code(conn: Connection, code_hash: str, account_id: str, at: datetime) -> bool:
    """Mark the code redeemed by `account_id` unless someone redeemed it (the arbiter)."""
    result = conn.execute(
        update(RedemptionCodeRow)
        .where(RedemptionCodeRow.code_hash == code_hash, RedemptionCodeRow.redeemed_by.is_(None))
        .values(redeemed_by=account_id, redeemed_at=at)
    )
    return result.rowcount == 1


def list_entries(
    conn: Connection, account: str, before_id: int | None, limit: int
) -> list[LedgerEntry]:
    """Up to `limit` transfers of a ledger account, newest first, with ids below `before_id`."""
    stmt = select(
        TransferRow.id,
        TransferRow.kind,
        TransferRow.amount_nanos,
        TransferRow.debit_account,
        TransferRow.credit_account,
        TransferRow.request_id,
        TransferRow.reference,
        TransferRow.note,
        TransferRow.created_at,
    ).where(or_(TransferRow.debit_account == account, TransferRow.credit_account == account))
    if before_id is not None:
        stmt = stmt.where(TransferRow.id < before_id)
    rows = conn.execute(stmt.order_by(TransferRow.id.desc()).limit(limit))
    entries = []
    for id_, kind, amount, debit, credit, request_id, reference, note, created_at in rows:
        incoming = credit == account
        entries.append(
            LedgerEntry(
                id=id_,
                kind=kind,
                amount_nanos=amount if incoming else -amount,
                counterparty=debit if incoming else credit,
                request_id=request_id or "",
                # Shown without the kind's namespace ("topup:<ref>" -> "<ref>").
                reference=(reference or "").split(":", 1)[-1],
                note=note,
                created_at=utc(created_at),
            )
        )
    return entries


def _sides() -> Subquery:
    # Each transfer once as +amount for its credit account and once as -amount for its debit.
    return union_all(
        select(TransferRow.credit_account.label("account"), TransferRow.amount_nanos.label("n")),
        select(TransferRow.debit_account.label("account"), (-TransferRow.amount_nanos).label("n")),
    ).subquery()


def _mismatches() -> Select[str, int, Any, int, Any]:
    sides = _sides()
    sums = (
        select(sides.c.account, func.sum(sides.c.n).label("total"))
        .group_by(sides.c.account)
        .subquery()
    )
    holds = (
        select(HoldRow.account_id, func.sum(HoldRow.amount_nanos).label("total"))
        .where(HoldRow.status == HoldStatus.OPEN.value)
        .group_by(HoldRow.account_id)
        .subquery()
    )
    summed = func.coalesce(sums.c.total, 0)
    held = func.coalesce(holds.c.total, 0)
    return (
        select(WalletRow.account_id, WalletRow.balance_nanos, summed, WalletRow.held_nanos, held)
        .outerjoin(sums, sums.c.account == literal(WALLET_PREFIX) + WalletRow.account_id)
        .outerjoin(holds, holds.c.account_id == WalletRow.account_id)
        .where(or_(WalletRow.balance_nanos != summed, WalletRow.held_nanos != held))
        .order_by(WalletRow.account_id)
    )


# Built once: CheckLedger then reuses SQLAlchemy's compiled form of each.
_MISMATCHES = _mismatches()
_NET = select(func.coalesce(func.sum(_sides().c.n), 0))
_COUNT_WALLETS = select(func.count()).select_from(WalletRow)
_COUNT_TRANSFERS = select(func.count()).select_from(TransferRow)
_CHARGED_TWICE = (
    select(TransferRow.request_id)
    .where(TransferRow.kind == TransferKind.CHARGE.value)
    .group_by(TransferRow.request_id)
    .having(func.count() > literal(1, Integer))
    .order_by(TransferRow.request_id)
)


def ledger_sums(conn: Connection) -> tuple[int, int, list[LedgerMismatch]]:
    """(wallets, transfers, mismatches): each wallet against its transfers and open holds."""
    mismatches = [
        LedgerMismatch(row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4]))
        for row in conn.execute(_MISMATCHES)
    ]
    wallets = int(conn.execute(_COUNT_WALLETS).scalar_one())
    return wallets, int(conn.execute(_COUNT_TRANSFERS).scalar_one()), mismatches


def net_nanos(conn: Connection) -> int:
    """Σ over every ledger account of credits - debits (0 for a balanced ledger)."""
    return int(conn.execute(_NET).scalar_one())


def charged_twice(conn: Connection) -> list[str]:
    """Request ids with more than one charge transfer (the unique index forbids it)."""
    return [row[0] or "" for row in conn.execute(_CHARGED_TWICE)]
